// Manager pop-up: a card for each call ringing at this user's phone (SSE "ring" events).
// Every value is set with textContent; links only if they are http(s) or same-origin paths.
(function () {
  "use strict";
  var url = document.body.getAttribute("data-popup-stream");
  if (!url || !window.EventSource) { return; }
  var box = document.getElementById("popups");
  var template = document.getElementById("popup-template");
  var shown = {};

  function safeHref(value) {
    if (!value) { return null; }
    try {
      var parsed = new URL(value, window.location.href);
      return (parsed.protocol === "http:" || parsed.protocol === "https:") ? parsed.href : null;
    } catch (e) { return null; }
  }
  function show(card) {
    if (shown[card.id]) { return; }
    shown[card.id] = true;
    var node = template.content.firstElementChild.cloneNode(true);
    node.setAttribute("data-call-id", String(card.id));
    node.querySelectorAll("[data-f]").forEach(function (el) {
      var key = el.getAttribute("data-f");
      if (el.tagName === "A") {
        var href = safeHref(card[key]);
        if (href) { el.href = href; } else { el.remove(); }
        return;
      }
      var value = card[key];
      if (key === "previous") {
        value = String(card.previous) + (card.last_call_at ? " · " + new Date(card.last_call_at).toLocaleString(document.documentElement.lang || undefined) : "");
      }
      el.textContent = value == null || value === "" ? "—" : String(value);
    });
    node.querySelector(".close").addEventListener("click", function () { node.remove(); });
    box.prepend(node);
  }
  var source = new EventSource(url);
  source.addEventListener("ring", function (event) { show(JSON.parse(event.data)); });
})();
