// The first interaction with a task turns the short first lease into a full one (the server keeps
// a rater's first lease short so that ids which open the link and walk away cannot hoard slots).
(function () {
  "use strict";
  var form = document.getElementById("rating-form");
  var url = form && form.getAttribute("data-touch-url");
  if (!url) return;
  var sent = false;
  function touch() {
    if (sent) return;
    sent = true;
    ["pointerdown", "keydown", "input", "scroll"].forEach(function (name) {
      document.removeEventListener(name, touch, true);
    });
    fetch(url, { method: "POST", credentials: "same-origin" }).catch(function () { sent = false; });
  }
  ["pointerdown", "keydown", "input", "scroll"].forEach(function (name) {
    document.addEventListener(name, touch, { capture: true, passive: true });
  });
})();
