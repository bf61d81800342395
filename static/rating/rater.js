// Rater task page: keyboard shortcuts, error-span marking, browser time on task.
// Offsets of marked errors are taken on a plain-text copy of each answer whose text content is the
// answer's raw text, so they index the raw text directly (the server maps CR LF back).
(function () {
  "use strict";
  var form = document.getElementById("rating-form");
  if (!form || form.classList.contains("preview")) return;
  var started = performance.now();
  var spans = [];
  var spansInput = form.querySelector("input[name=error_spans]");
  var clientInput = form.querySelector("input[name=client_ms]");
  var submitting = false;

  function plainFor(side) {
    return form.querySelector('.plain[data-side="' + side + '"]');
  }

  // Rebuild the plain view with <mark>s; the text content (and so every offset) is unchanged.
  function paint(side) {
    var box = plainFor(side);
    var text = box.textContent;
    var mine = spans.filter(function (s) { return s.side === side; })
      .sort(function (a, b) { return a.start - b.start; });
    box.textContent = "";
    var pos = 0;
    mine.forEach(function (s) {
      var start = Math.max(s.start, pos);
      if (start >= s.end) return;
      box.appendChild(document.createTextNode(text.slice(pos, start)));
      var mark = document.createElement("mark");
      mark.textContent = text.slice(start, s.end);
      box.appendChild(mark);
      pos = s.end;
    });
    box.appendChild(document.createTextNode(text.slice(pos)));
    var list = form.querySelector('ul.spans[data-side="' + side + '"]');
    list.textContent = "";
    mine.forEach(function (s) {
      var li = document.createElement("li");
      li.textContent = "\u201c" + s.text + "\u201d ";
      var remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "remove";
      remove.addEventListener("click", function () {
        spans.splice(spans.indexOf(s), 1);
        sync();
        paint(side);
      });
      li.appendChild(remove);
      list.appendChild(li);
    });
  }

  function sync() {
    spansInput.value = JSON.stringify(spans.map(function (s) {
      return { side: s.side, start: s.start, end: s.end };
    }));
  }

  function showPlain(side) {
    var section = document.getElementById("response-" + side);
    section.querySelector(".rendered").hidden = true;
    plainFor(side).hidden = false;
    section.querySelector(".mark-mode").hidden = true;
    section.querySelector(".mark-error").hidden = false;
  }

  function markSelection() {
    var sel = window.getSelection();
    if (!sel || sel.rangeCount === 0 || sel.isCollapsed) return false;
    var range = sel.getRangeAt(0);
    var boxes = form.querySelectorAll(".plain");
    for (var i = 0; i < boxes.length; i++) {
      var box = boxes[i];
      if (!box.contains(range.startContainer) || !box.contains(range.endContainer)) continue;
      var before = document.createRange();
      before.selectNodeContents(box);
      before.setEnd(range.startContainer, range.startOffset);
      var start = before.toString().length;
      var text = range.toString();
      if (!text) return false;
      spans.push({ side: box.dataset.side, start: start, end: start + text.length, text: text });
      sel.removeAllRanges();
      sync();
      paint(box.dataset.side);
      return true;
    }
    return false;
  }

  form.querySelectorAll(".mark-mode").forEach(function (b) {
    b.addEventListener("click", function () { showPlain(b.dataset.side); });
  });
  form.querySelectorAll(".mark-error").forEach(function (b) {
    b.addEventListener("mousedown", function (e) { e.preventDefault(); }); // keep the selection
    b.addEventListener("click", markSelection);
  });

  document.addEventListener("keydown", function (e) {
    var t = e.target;
    var typing = t && (t.tagName === "TEXTAREA" || (t.tagName === "INPUT" && t.type === "text"));
    if (typing || e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.key >= "1" && e.key <= "4") {
      var radio = form.querySelector('input[name=preference][data-key="' + e.key + '"]');
      if (radio) { radio.checked = true; radio.focus(); e.preventDefault(); }
    } else if (e.key === "m" || e.key === "M") {
      if (markSelection()) e.preventDefault();
    } else if (e.key === "Enter" && !(t && t.tagName === "BUTTON")) {
      e.preventDefault();
      form.requestSubmit();
    }
  });

  form.addEventListener("submit", function (e) {
    if (submitting) { e.preventDefault(); return; }  // a double submit is harmless, but pointless
    submitting = true;
    clientInput.value = String(Math.round(performance.now() - started));
    form.querySelector("#submit").disabled = true;
  });
})();
