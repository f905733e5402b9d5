// Forms with class="confirm" ask before they submit. The question, already translated, is the
// form's data-confirm attribute (else the script tag's data-default). One listener on the
// document, in the capture phase, covers every such form, those added later too.
(function () {
  "use strict";
  var script = document.currentScript;
  var fallback = (script && script.getAttribute("data-default")) || "?";
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains("confirm")) return;
    if (!window.confirm(form.getAttribute("data-confirm") || fallback)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);
})();
