// Completion page: go back to the platform after a few seconds, unless the rater chooses to stay
// (a timed redirect must be possible to stop: WCAG 2.2.1). Without JavaScript the link is there.
(function () {
  "use strict";
  var link = document.getElementById("return-link");
  var stay = document.getElementById("return-stay");
  if (!link || !stay) return;
  var timer = window.setTimeout(function () { window.location.assign(link.href); }, 8000);
  stay.hidden = false;
  stay.addEventListener("click", function () {
    window.clearTimeout(timer);
    document.getElementById("return-note").textContent =
      "Automatic return stopped. Use the button below when you are ready.";
    link.focus();
  });
})();
