// The call card's speech analytics: a tag's time or a transcript word moves the player there;
// ?t= (a search result, a tag in the call log) starts it at that second.
(function () {
  "use strict";
  var player = document.getElementById("player");
  if (!player) return;
  function seek(seconds) {
    var at = Math.max(0, parseFloat(seconds) || 0);
    var go = function () { player.currentTime = at; };
    if (player.readyState >= 1) go(); else player.addEventListener("loadedmetadata", go, { once: true });
    return at;
  }
  document.addEventListener("click", function (event) {
    var target = event.target.closest && event.target.closest("[data-seek]");
    if (!target || target === player) return;
    seek(target.getAttribute("data-seek"));
    player.play().catch(function () {});
  });
  if (player.hasAttribute("data-seek")) seek(player.getAttribute("data-seek"));
})();
