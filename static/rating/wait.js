// The wait page looks again by itself (the server doubles the delay each time, up to a minute).
// A script, not <meta http-equiv="refresh">: a timed refresh is an accessibility failure, and the
// countdown tells the rater what will happen.
(function () {
  "use strict";
  var box = document.getElementById("wait");
  if (!box) return;
  var left = parseInt(box.getAttribute("data-seconds"), 10) || 30;
  var url = box.getAttribute("data-url");
  var shown = document.getElementById("wait-seconds");
  var timer = setInterval(function () {
    left -= 1;
    if (shown) shown.textContent = String(Math.max(left, 0));
    if (left <= 0) {
      clearInterval(timer);
      window.location.assign(url);
    }
  }, 1000);
})();
