// Rater task page: scoped keys, required answers, error spans on the formatted answer, drafts that
// survive a reload, long answers folded on a phone, and browser time on task.
//
// Error spans. The rater selects words in the formatted (rendered Markdown) answer, or types them
// into a small dialog. The page also holds each answer's display text (the raw text with CR LF
// turned into LF, as the server's rendering.display_text makes it); a mark is found in that text
// and sent as [start, end) counted in Unicode code points, which is how the server counts
// (rendering.display_span_to_raw). JavaScript strings count UTF-16 units, so offsets are kept in
// UTF-16 internally and converted only when they are sent.
(function () {
  "use strict";
  var form = document.getElementById("rating-form");
  if (!form || form.classList.contains("preview")) return;

  var SIDES = ["left", "right"];
  var started = performance.now();
  var priorMs = 0; // time on task before a reload (from the draft)
  var spans = []; // {side, start, end}: UTF-16 offsets into the side's display text
  var spansInput = form.querySelector("input[name=error_spans]");
  var clientInput = form.querySelector("input[name=client_ms]");
  var message = document.getElementById("required-message");
  var dialog = document.getElementById("mark-dialog");
  var submitting = false;
  var required = (form.getAttribute("data-required") || "preference").split(/\s+/).filter(Boolean);
  var token = form.getAttribute("data-assignment") || "";
  var DRAFT_KEY = "evalsite:draft:" + token;
  var STASH_KEY = "evalsite:sent:" + token;
  var DRAFT_DAYS = 3;

  // --- answers: display text, rendered text and the alignment between them ---------------------

  var texts = {}; // side -> display text
  SIDES.forEach(function (side) {
    var node = document.getElementById("answer-text-" + side);
    if (node) texts[side] = JSON.parse(node.textContent);
  });
  var marking = Object.keys(texts).length > 0 && !!spansInput;

  function renderedFor(side) {
    return form.querySelector('.rendered[data-side="' + side + '"]');
  }

  function textNodes(root) {
    var walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    var nodes = [];
    var node;
    while ((node = walker.nextNode())) nodes.push(node);
    return nodes;
  }

  var SPACE = /\s/;
  var BLOCKS = /^(DIV|UL|OL|LI|TABLE|THEAD|TBODY|TR|BLOCKQUOTE|PRE)$/;
  var MARKUP = /[*_`~#>|\\+\-=:\d.)([\]]/; // what Markdown may put where the rendered text has a space

  // Map every UTF-16 unit of the rendered text (its text nodes, concatenated) to a position in the
  // display text, or -1. Greedy, in order: a run of up to 4 rendered characters is looked for
  // ahead (skipping Markdown syntax such as "**", "- ", "](url)"), a lone character only nearby.
  // Used to pick the right occurrence of a selection and to paint marks; not for the offsets
  // themselves, which come from finding the selected words in the display text.
  var alignments = {};
  function alignment(side) {
    if (alignments[side]) return alignments[side];
    var shown = textNodes(renderedFor(side)).map(function (n) { return n.data; }).join("");
    var raw = texts[side];
    var map = new Array(shown.length);
    var cur = 0;
    for (var i = 0; i < shown.length; i++) {
      var c = shown[i];
      var j;
      if (SPACE.test(c)) {
        j = cur;
        while (j < raw.length && j - cur < 12 && !SPACE.test(raw[j]) && MARKUP.test(raw[j])) j++;
        if (j < raw.length && SPACE.test(raw[j])) { map[i] = j; cur = j + 1; } else { map[i] = -1; }
        continue;
      }
      var k = i;
      while (k < shown.length && k - i < 4 && !SPACE.test(shown[k])) k++;
      var gram = shown.slice(i, k);
      j = raw.indexOf(gram, cur);
      var reach = gram.length >= 3 ? 4000 : 400;
      if (j < 0 || j - cur > reach) {
        j = raw.indexOf(c, cur);
        if (j >= 0 && j - cur > 24) j = -1;
      }
      if (j >= 0) { map[i] = j; cur = j + 1; } else { map[i] = -1; }
    }
    alignments[side] = { text: shown, map: map };
    return alignments[side];
  }

  // Position of a DOM point inside root as an offset into the concatenated text nodes.
  function offsetIn(root, container, offset) {
    var range = document.createRange();
    range.setStart(root, 0);
    range.setEnd(container, offset);
    return range.toString().length;
  }

  function escapeRegExp(s) {
    return s.replace(/[\^$\\.*+?()[\]{}|\/]/g, "\\$&");
  }

  // Patterns for the words to find, strictest first: exact; any whitespace; Markdown syntax
  // allowed between characters and in place of whitespace ("capital of" finds "*capital* of").
  function patterns(words) {
    var chars = Array.from(words);
    var loose = "";
    var strictParts = [];
    var gap = false;
    var word = "";
    chars.forEach(function (ch) {
      if (SPACE.test(ch)) {
        if (!gap && loose) loose += "(?:\\s|[*_`~#>|\\\\+-]|\\d+[.)](?=\\s))+";
        if (word) { strictParts.push(escapeRegExp(word)); word = ""; }
        gap = true;
        return;
      }
      if (loose && !gap) loose += "[*_`~\\\\]*";
      loose += escapeRegExp(ch);
      word += ch;
      gap = false;
    });
    if (word) strictParts.push(escapeRegExp(word));
    return [
      new RegExp(escapeRegExp(words), "gu"),
      new RegExp(strictParts.join("\\s+"), "gu"),
      new RegExp(loose, "gu"),
    ];
  }

  function occurrences(text, pattern) {
    var found = [];
    var m;
    pattern.lastIndex = 0;
    while ((m = pattern.exec(text)) !== null) {
      if (m[0].length === 0) { pattern.lastIndex++; continue; }
      found.push({ start: m.index, end: m.index + m[0].length });
    }
    return found;
  }

  // Never cut a surrogate pair (an emoji) in half.
  function wholeChars(text, span) {
    var start = span.start;
    var end = span.end;
    var low = /[\uDC00-\uDFFF]/;
    var high = /[\uD800-\uDBFF]/;
    if (start > 0 && low.test(text[start]) && high.test(text[start - 1])) start--;
    if (end < text.length && low.test(text[end]) && high.test(text[end - 1])) end++;
    return { start: start, end: end };
  }

  // Find words in the display text. choose(list) picks among the matches of the strictest pattern
  // that matches at all.
  function find(side, words, choose) {
    var raw = texts[side];
    var list = patterns(words);
    for (var p = 0; p < list.length; p++) {
      var found = occurrences(raw, list[p]);
      if (found.length) return wholeChars(raw, choose(found));
    }
    return null;
  }

  // A selection in the rendered answer ([s, e) in its concatenated text) as a display-text span.
  function spanFromRendered(side, s, e) {
    var a = alignment(side);
    var raw = texts[side];
    while (s < e && SPACE.test(a.text[s])) s++;
    while (e > s && SPACE.test(a.text[e - 1])) e--;
    if (s >= e) return null;
    var first = -1;
    var last = -1;
    for (var i = s; i < e; i++) {
      if (a.map[i] >= 0) { if (first < 0) first = a.map[i]; last = a.map[i]; }
    }
    var expected = first >= 0 ? first : Math.round((s / Math.max(1, a.text.length)) * raw.length);
    var span = find(side, a.text.slice(s, e), function (found) {
      return found.reduce(function (best, f) {
        return Math.abs(f.start - expected) < Math.abs(best.start - expected) ? f : best;
      });
    });
    if (!span && first >= 0) span = wholeChars(raw, { start: first, end: last + 1 });
    return span;
  }

  function selectionIn(side) {
    var sel = window.getSelection();
    if (!sel || sel.rangeCount === 0 || sel.isCollapsed) return null;
    var range = sel.getRangeAt(0);
    var sides = side ? [side] : Object.keys(texts);
    for (var i = 0; i < sides.length; i++) {
      var root = renderedFor(sides[i]);
      if (!root || !root.contains(range.startContainer) || !root.contains(range.endContainer)) continue;
      var s = offsetIn(root, range.startContainer, range.startOffset);
      var e = offsetIn(root, range.endContainer, range.endOffset);
      return { side: sides[i], s: s, e: e };
    }
    return null;
  }

  // A touch screen may drop the selection just before a button's click: remember the last one
  // for a moment (only the buttons use it; a key acts on the live selection only).
  var lastSelection = null;
  var lostAt = 0;
  document.addEventListener("selectionchange", function () {
    if (!marking) return;
    var found = selectionIn(null);
    if (found) { lastSelection = found; lostAt = 0; } else if (lastSelection && !lostAt) { lostAt = Date.now(); }
  });

  // --- spans: add (merging overlaps), list, paint ----------------------------------------------

  function codePoints(text, offset) {
    return Array.from(text.slice(0, offset)).length;
  }

  function sync() {
    spansInput.value = JSON.stringify(spans.map(function (s) {
      var text = texts[s.side];
      return { side: s.side, start: codePoints(text, s.start), end: codePoints(text, s.end) };
    }));
  }

  function addSpan(side, span) {
    var merged = { side: side, start: span.start, end: span.end };
    spans = spans.filter(function (s) {
      if (s.side !== side || s.end <= merged.start || s.start >= merged.end) return true;
      merged.start = Math.min(merged.start, s.start);
      merged.end = Math.max(merged.end, s.end);
      return false;
    });
    spans.push(merged);
    spans.sort(function (a, b) { return a.side < b.side ? -1 : a.side > b.side ? 1 : a.start - b.start; });
    var error = form.querySelector('input[name="correct_' + side + '"][value="error"]');
    if (error && !error.checked) {
      error.checked = true;
      error.dispatchEvent(new Event("change", { bubbles: true }));
    }
    changed(side);
    return merged;
  }

  function removeSpan(span) {
    spans.splice(spans.indexOf(span), 1);
    changed(span.side);
  }

  function changed(side) {
    sync();
    paint(side);
    list(side);
    saveDraft();
    refreshMessage();
  }

  function labelOf(side) {
    var h = document.getElementById("label-" + side);
    return h ? h.textContent.trim() : side;
  }

  function list(side) {
    var ul = form.querySelector('ul.spans[data-side="' + side + '"]');
    if (!ul) return;
    ul.textContent = "";
    spans.filter(function (s) { return s.side === side; }).forEach(function (s) {
      var li = document.createElement("li");
      var quote = document.createElement("q");
      var text = visibleText(s);
      quote.textContent = text;
      li.appendChild(quote);
      li.appendChild(document.createTextNode(" "));
      var remove = document.createElement("button");
      remove.type = "button";
      remove.className = "remove-span";
      remove.textContent = "Remove";
      remove.setAttribute("aria-label", "Remove the error \u201c" + text.slice(0, 60) + "\u201d in " + labelOf(side));
      remove.addEventListener("click", function () {
        removeSpan(s);
        var next = ul.querySelector("button") || form.querySelector('.mark-error[data-side="' + side + '"]');
        if (next) next.focus();
      });
      li.appendChild(remove);
      ul.appendChild(li);
    });
  }

  // The words of a span as the rater sees them (without Markdown syntax), for the list.
  function visibleText(span) {
    var a = alignment(span.side);
    var out = "";
    var open = false;
    for (var i = 0; i < a.text.length; i++) {
      var j = a.map[i];
      if (j >= span.start && j < span.end) { out += a.text[i]; open = true; }
      else if (j >= span.end) break;
      else if (j < 0 && open) out += a.text[i];
    }
    out = out.replace(/\s+/g, " ").trim();
    return out || texts[span.side].slice(span.start, span.end);
  }

  // Highlight the marks in the rendered answer: wrap the covered text in <mark>. The text (and so
  // every offset above) is unchanged.
  function paint(side) {
    var root = renderedFor(side);
    root.querySelectorAll("mark.error-mark").forEach(function (m) {
      var parent = m.parentNode;
      while (m.firstChild) parent.insertBefore(m.firstChild, m);
      parent.removeChild(m);
    });
    root.normalize();
    var mine = spans.filter(function (s) { return s.side === side; });
    if (!mine.length) return;
    var a = alignment(side);
    var inside = a.map.map(function (j) {
      if (j < 0) return null;
      return mine.some(function (s) { return j >= s.start && j < s.end; });
    });
    // Characters with no counterpart (a space between blocks) take their neighbours' state.
    for (var i = 0; i < inside.length; i++) {
      if (inside[i] !== null) continue;
      var k = i;
      while (k < inside.length && inside[k] === null) k++;
      var fill = i > 0 && inside[i - 1] === true && k < inside.length && inside[k] === true;
      for (; i < k; i++) inside[i] = fill;
      i = k - 1;
    }
    var pos = 0;
    textNodes(root).forEach(function (node) {
      var from = pos;
      pos += node.data.length;
      // Whitespace between blocks: no <mark> directly inside a list or a table.
      if (!node.data.trim() && BLOCKS.test(node.parentNode.nodeName)) return;
      var runs = [];
      for (var x = from; x < pos; x++) {
        if (!inside[x]) continue;
        var y = x;
        while (y < pos && inside[y]) y++;
        runs.push([x - from, y - from]);
        x = y;
      }
      for (var r = runs.length - 1; r >= 0; r--) {
        var target = node;
        if (runs[r][1] < target.data.length) target.splitText(runs[r][1]);
        if (runs[r][0] > 0) target = target.splitText(runs[r][0]);
        var mark = document.createElement("mark");
        mark.className = "error-mark";
        target.parentNode.insertBefore(mark, target);
        mark.appendChild(target);
      }
    });
  }

  function markSelection(side, fromButton) {
    var sel = selectionIn(side);
    var recent = lastSelection && (!lostAt || Date.now() - lostAt < 1500);
    if (!sel && fromButton && recent && lastSelection.side === side) sel = lastSelection;
    if (!sel) return false;
    var span = spanFromRendered(sel.side, sel.s, sel.e);
    lastSelection = null;
    if (!span) return false;
    addSpan(sel.side, span);
    var current = window.getSelection();
    if (current) current.removeAllRanges();
    return true;
  }

  // --- the keyboard way: a dialog to type the words -------------------------------------------

  var dialogSide = null;
  function openDialog(side) {
    if (!dialog) return;
    dialogSide = side;
    document.getElementById("mark-which").textContent = labelOf(side);
    document.getElementById("mark-status").textContent = "";
    var input = document.getElementById("mark-text");
    input.value = "";
    dialog.showModal();
    input.focus();
  }

  function closeDialog() {
    if (dialog.open) dialog.close();
  }

  if (dialog) {
    document.getElementById("mark-form").addEventListener("submit", function (e) {
      e.preventDefault();
      var words = document.getElementById("mark-text").value.trim();
      var status = document.getElementById("mark-status");
      if (!words) { status.textContent = "Type the words to mark."; return; }
      var covered = function (f) {
        return spans.some(function (s) { return s.side === dialogSide && s.start <= f.start && s.end >= f.end; });
      };
      var span = find(dialogSide, words, function (found) {
        for (var i = 0; i < found.length; i++) if (!covered(found[i])) return found[i];
        return found[0];
      });
      if (!span) {
        status.textContent = "\u201c" + words + "\u201d is not in " + labelOf(dialogSide) +
          ". Check the spelling, or type a shorter piece.";
        return;
      }
      addSpan(dialogSide, span);
      closeDialog();
    });
    document.getElementById("mark-cancel").addEventListener("click", closeDialog);
    dialog.addEventListener("close", function () {
      var back = renderedFor(dialogSide);
      if (back) back.focus();
    });
  }

  form.querySelectorAll(".mark-error").forEach(function (b) {
    b.addEventListener("mousedown", function (e) { e.preventDefault(); }); // keep the selection
    b.addEventListener("click", function () {
      if (!markSelection(b.dataset.side, true)) openDialog(b.dataset.side);
    });
  });

  // --- required answers ------------------------------------------------------------------------

  function answered(name) {
    var field = form.elements[name];
    if (!field) return true; // not asked on this page
    if (field.type === "radio" || field.type === "checkbox") return field.checked;
    return String(field.value || "").trim() !== "";
  }

  function questionGroups() {
    return Array.prototype.slice.call(form.querySelectorAll("[data-question]"));
  }

  function missingGroups() {
    return questionGroups().filter(function (g) {
      var name = g.getAttribute("data-question");
      return required.indexOf(name) >= 0 && !answered(name);
    });
  }

  function setInvalid(group, invalid) {
    var target = group.getAttribute("role") === "radiogroup" ? group : group.querySelector("textarea, input");
    group.classList.toggle("missing", invalid);
    if (!target) return;
    if (invalid) target.setAttribute("aria-invalid", "true"); else target.removeAttribute("aria-invalid");
  }

  var shown = false;
  function refreshMessage() {
    if (!shown) return;
    var missing = missingGroups();
    questionGroups().forEach(function (g) { setInvalid(g, missing.indexOf(g) >= 0); });
    if (!missing.length) { message.textContent = ""; shown = false; return; }
    message.textContent = "Please answer " + missing.map(function (g) {
      return g.getAttribute("data-label");
    }).join(", ") + " before submitting.";
  }

  function stopForMissing(missing) {
    shown = true;
    refreshMessage();
    var group = missing[0];
    var focus = group.querySelector("input:checked") || group.querySelector("input, textarea");
    if (focus) {
      focus.focus({ preventScroll: true });
      focus.scrollIntoView({ block: "center" });
    }
  }

  // --- keys --------------------------------------------------------------------------------------

  function typing(t) {
    if (!t || !t.tagName) return false;
    if (t.isContentEditable || t.tagName === "TEXTAREA" || t.tagName === "SELECT") return true;
    return t.tagName === "INPUT" && ["radio", "checkbox", "button", "submit", "reset"].indexOf(t.type) < 0;
  }

  function pick(radio) {
    if (!radio.checked) radio.click(); // fires input and change, like a rater's click
    radio.focus();
  }

  document.addEventListener("keydown", function (e) {
    if (e.defaultPrevented || e.altKey || e.ctrlKey || e.metaKey || e.isComposing) return;
    if (dialog && dialog.open) return; // the dialog has its own keys (Enter marks, Escape closes)
    var t = e.target;
    if (typing(t)) return;
    var group = t && t.closest ? t.closest("[data-question]") : null;
    var inOther = group && group.getAttribute("data-question") !== "preference";
    if (/^[1-9]$/.test(e.key)) {
      if (inOther) {
        // Inside a question, a digit picks that question's n-th option and nothing else.
        var options = group.querySelectorAll("input[type=radio]");
        var n = Number(e.key);
        if (n <= options.length) pick(options[n - 1]);
        e.preventDefault();
        return;
      }
      var verdict = form.querySelector('input[name=preference][data-key="' + e.key + '"]');
      if (verdict) { pick(verdict); e.preventDefault(); }
    } else if ((e.key === "m" || e.key === "M") && marking) {
      if (markSelection(null, false)) { e.preventDefault(); return; }
      var answer = t && t.closest ? t.closest(".response") : null;
      if (answer) { e.preventDefault(); openDialog(answer.getAttribute("data-side")); }
    } else if (e.key === "Enter") {
      if (t && t.closest && t.closest("button, a, summary, select, [contenteditable]")) return;
      e.preventDefault();
      form.requestSubmit();
    }
  });

  // --- drafts: kept per assignment in this browser, cleared on submit ------------------------------

  function storage() {
    try { return window.localStorage; } catch (err) { return null; } // blocked in some iframes
  }

  function fieldValues() {
    var values = {};
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || el.type === "hidden" || el.type === "submit" || el.type === "button") return;
      if (el.type === "radio" || el.type === "checkbox") {
        if (el.checked) values[el.name] = el.value;
      } else if (el.value) {
        values[el.name] = el.value;
      }
    });
    return values;
  }

  function elapsed() {
    return priorMs + (performance.now() - started);
  }

  function saveDraft() {
    var store = storage();
    if (!store || !token || submitting) return;
    var draft = {
      saved: Date.now(),
      ms: Math.round(elapsed()),
      fields: fieldValues(),
      spans: spans.map(function (s) { return { side: s.side, start: s.start, end: s.end }; }),
    };
    try { store.setItem(DRAFT_KEY, JSON.stringify(draft)); } catch (err) { /* full: no draft */ }
  }

  function applyDraft(draft) {
    Object.keys(draft.fields || {}).forEach(function (name) {
      var field = form.elements[name];
      if (!field) return;
      var value = draft.fields[name];
      if (field instanceof RadioNodeList || (field.type === "radio")) {
        var radios = field instanceof RadioNodeList ? field : [field];
        Array.prototype.forEach.call(radios, function (r) { if (r.value === value) r.checked = true; });
      } else if (field.tagName === "TEXTAREA" || field.tagName === "INPUT") {
        field.value = value;
      }
    });
    (draft.spans || []).forEach(function (s) {
      var text = texts[s.side];
      if (text === undefined || !(s.start >= 0 && s.end > s.start && s.end <= text.length)) return;
      spans.push({ side: s.side, start: s.start, end: s.end });
    });
    if (typeof draft.ms === "number" && draft.ms > 0) priorMs = draft.ms;
  }

  function restoreDraft() {
    var store = storage();
    if (!store || !token) return;
    var draft = null;
    try {
      draft = JSON.parse(store.getItem(DRAFT_KEY) || "null");
      // The server refused a submission (the page shows why): bring back what was sent.
      if (!draft && document.getElementById("form-error")) draft = JSON.parse(store.getItem(STASH_KEY) || "null");
      store.removeItem(STASH_KEY);
      // Forget drafts of other tasks that were never sent.
      var old = Date.now() - DRAFT_DAYS * 86400000;
      for (var i = store.length - 1; i >= 0; i--) {
        var key = store.key(i);
        if (!key || key.indexOf("evalsite:") !== 0 || key === DRAFT_KEY) continue;
        if (key.indexOf("evalsite:sent:") === 0) { store.removeItem(key); continue; }
        var saved = 0;
        try { saved = (JSON.parse(store.getItem(key)) || {}).saved || 0; } catch (err) { saved = 0; }
        if (saved < old) store.removeItem(key);
      }
    } catch (err) {
      draft = null;
    }
    if (draft) applyDraft(draft);
    spans.sort(function (a, b) { return a.side < b.side ? -1 : a.side > b.side ? 1 : a.start - b.start; });
    SIDES.forEach(function (side) { if (texts[side] !== undefined) { paint(side); list(side); } });
    if (marking) sync();
  }

  form.addEventListener("change", function () { saveDraft(); refreshMessage(); });
  form.addEventListener("input", function () { saveDraft(); refreshMessage(); });
  window.addEventListener("pagehide", saveDraft);

  // --- submit ------------------------------------------------------------------------------------

  form.noValidate = true; // the page checks the required answers itself, with a message that names them
  form.addEventListener("submit", function (e) {
    if (submitting) { e.preventDefault(); return; } // a double submit is harmless, but pointless
    var missing = missingGroups();
    if (missing.length) {
      e.preventDefault();
      stopForMissing(missing);
      return;
    }
    saveDraft();
    var store = storage();
    if (store && token) {
      try {
        var draft = store.getItem(DRAFT_KEY);
        if (draft) store.setItem(STASH_KEY, draft); // only read back if the server refuses it
        store.removeItem(DRAFT_KEY);
      } catch (err) { /* nothing to clear */ }
    }
    submitting = true;
    clientInput.value = String(Math.round(elapsed()));
    form.querySelector("#submit").disabled = true;
  });

  // --- long answers on a small screen: folded, with a button to show all -------------------------

  function fold() {
    if (!window.matchMedia || !window.matchMedia("(max-width: 760px)").matches) return;
    var limit = Math.max(320, Math.round(window.innerHeight * 0.45));
    form.querySelectorAll(".response .rendered").forEach(function (root) {
      if (root.scrollHeight <= limit * 1.3) return;
      var side = root.getAttribute("data-side");
      root.classList.add("folded");
      root.style.maxHeight = limit + "px";
      var button = document.createElement("button");
      button.type = "button";
      button.className = "unfold";
      button.setAttribute("aria-controls", root.id);
      button.setAttribute("aria-expanded", "false");
      button.textContent = "Show all of " + labelOf(side);
      button.addEventListener("click", function () {
        var open = root.classList.toggle("folded");
        root.style.maxHeight = open ? limit + "px" : "";
        button.setAttribute("aria-expanded", String(!open));
        button.textContent = (open ? "Show all of " : "Show less of ") + labelOf(side);
      });
      root.parentNode.insertBefore(button, root.nextSibling);
    });
  }

  // A code block wider than the page scrolls sideways: it must be reachable with the keyboard.
  function focusableScrollers() {
    document.querySelectorAll(".markdown pre").forEach(function (pre) {
      if (pre.scrollWidth > pre.clientWidth && !pre.hasAttribute("tabindex")) pre.setAttribute("tabindex", "0");
    });
  }

  restoreDraft();
  fold();
  focusableScrollers();
  if (document.getElementById("form-error") && missingGroups().length) { shown = true; refreshMessage(); }
})();
