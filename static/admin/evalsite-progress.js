// Keeps generation progress bars current: polls each study's progress URL every 2 s while
// any bar on the page belongs to an unfinished job, and stops once all of them are finished.
(function () {
  "use strict";
  var INTERVAL_MS = 2000;

  function bars() {
    return Array.prototype.slice.call(document.querySelectorAll(".evalsite-progress[data-url]"));
  }

  function update(job) {
    bars().forEach(function (el) {
      if (el.getAttribute("data-job") !== String(job.id)) { return; }
      var bar = el.querySelector("progress");
      bar.max = Math.max(job.total, 1);
      bar.value = job.done + job.failed;
      el.querySelector(".evalsite-progress-label").textContent = job.label;
      el.setAttribute("data-finished", job.finished ? "1" : "0");
      el.title = job.last_error || "";
    });
  }

  function poll() {
    var pending = bars().filter(function (el) { return el.getAttribute("data-finished") !== "1"; });
    if (!pending.length) { return; }
    var urls = {};
    pending.forEach(function (el) { urls[el.getAttribute("data-url")] = true; });
    var requests = Object.keys(urls).map(function (url) {
      return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : { jobs: [] }; })
        .then(function (data) { data.jobs.forEach(update); })
        .catch(function () { /* a missed poll is retried on the next tick */ });
    });
    Promise.all(requests).then(function () { window.setTimeout(poll, INTERVAL_MS); });
  }

  document.addEventListener("DOMContentLoaded", function () { window.setTimeout(poll, INTERVAL_MS); });
})();
