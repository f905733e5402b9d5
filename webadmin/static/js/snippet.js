/* The site page's "Copy" button for the snippet tag.  Without clipboard access (the admin opened
 * over plain HTTP on a LAN address is not a secure context) it selects the text and says how to
 * copy it by hand.  A <button> already answers Enter and Space; the result is announced. */
(function () {
  'use strict';
  var button = document.getElementById('snippet-copy');
  var box = document.getElementById('snippet-code');
  var status = document.getElementById('snippet-status');
  if (!button || !box || !status) return;

  function say(text) { status.textContent = text; }
  function byHand() {
    box.focus();
    box.select();
    say(button.getAttribute('data-failed'));
  }

  button.addEventListener('click', function () {
    say('');
    if (!navigator.clipboard || !window.isSecureContext) { byHand(); return; }
    navigator.clipboard.writeText(box.value).then(function () {
      say(button.getAttribute('data-copied'));
    }, byHand);
  });
})();
