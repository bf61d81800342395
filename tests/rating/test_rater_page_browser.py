"""The rater task page as a crowd worker uses it, in headless Chromium (issue 11).

One test per point: keys act only on the question they are aimed at, required answers stop a
submit in the browser (and the server refuses them too), error spans marked on the formatted answer
keep their offsets across emoji, a draft survives a reload, a phone gets 44 px targets and folded
long answers, and axe-core finds no serious or critical problem on the consent, task and
completion pages.
"""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from evalsite.rating.models import Rating
from evalsite.studies.models import Comparison

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"

# Select `needle` (its n-th occurrence) in the text of `root`, across element boundaries.
SELECT = """([root, needle, nth]) => {
  const nodes = []; const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  let node; while ((node = walker.nextNode())) nodes.push(node);
  const text = nodes.map(n => n.data).join('');
  let at = -1; for (let k = 0; k <= nth; k++) { at = text.indexOf(needle, at + 1); if (at < 0) return false; }
  const point = (offset, isEnd) => { let pos = 0; for (const n of nodes) {
      if (offset < pos + n.data.length || (isEnd && offset === pos + n.data.length)) return [n, offset - pos];
      pos += n.data.length; } };
  const [sn, so] = point(at, false); const [en, eo] = point(at + needle.length, true);
  const range = document.createRange(); range.setStart(sn, so); range.setEnd(en, eo);
  const sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
  return sel.toString().length > 0; }"""


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.route("**/*", _local_only)
    yield pg
    context.close()


def _local_only(route):
    """Nothing outside the test server may load (no CDN, no remote images, no Prolific)."""
    if route.request.url.startswith(("http://localhost", "http://127.0.0.1")):
        route.continue_()
    else:
        route.abort()


def start(page, live_server, study, worker="keys1"):
    page.goto(f"{live_server.url}/r/{study.slug}/?PROLIFIC_PID={worker}&STUDY_ID=s&SESSION_ID=x")
    page.check("input[name=agree]")
    page.click("#start")
    page.wait_for_selector("#rating-form")
    page.wait_for_load_state("load")  # rater.js is deferred: keys pressed before it runs are lost


def checked(page, name):
    return page.evaluate(f"(document.querySelector('input[name={name}]:checked') || {{}}).value || null")


def active_name(page):
    return page.evaluate("document.activeElement && document.activeElement.name")


def select_in(page, side, needle, nth=0):
    root = page.locator(f".rendered[data-side={side}]").element_handle()
    assert page.evaluate(SELECT, [root, needle, nth]), needle


def side_with(page, text):
    return page.locator(".response", has_text=text).get_attribute("data-side")


def test_keys_act_only_on_the_question_in_focus(page, live_server, live_study):
    study = live_study(slug="keys", n_prompts=1)
    start(page, live_server, study)
    # Inside the "Fluent" 1-5 scale, 4 sets that scale and leaves the overall verdict alone.
    page.focus("input[name=style_left_fluent][value='1']")
    page.keyboard.press("4")
    assert checked(page, "style_left_fluent") == "4"
    assert checked(page, "preference") is None
    # Inside the correctness question of Answer 2, 2 is its second option ("Contains an error").
    page.focus("input[name=correct_right][value=correct]")
    page.keyboard.press("2")
    assert checked(page, "correct_right") == "error"
    # In the strength scale, 5 is 5; a digit beyond a question's options does nothing at all.
    page.focus("input[name=strength][value='1']")
    page.keyboard.press("5")
    page.focus("input[name=correct_left][value=correct]")
    page.keyboard.press("4")
    assert checked(page, "strength") == "5" and checked(page, "correct_left") is None
    # Typing in the text box types.
    page.focus("textarea[name=rationale]")
    page.keyboard.type("3 reasons")
    assert page.input_value("textarea[name=rationale]") == "3 reasons"
    assert checked(page, "preference") is None
    # Outside every question (here: in Answer 1's text), digits choose the verdict.
    page.focus(".rendered[data-side=left]")
    page.keyboard.press("2")
    assert checked(page, "preference") == "right"
    page.keyboard.press("1")  # focus is now in the verdict itself
    assert checked(page, "preference") == "left"
    assert checked(page, "style_left_fluent") == "4" and checked(page, "correct_right") == "error"
    # Enter with a required answer missing does not submit.
    page.keyboard.press("Enter")
    page.wait_for_timeout(300)
    assert Rating.objects.count() == 0
    assert "whether Answer 1 is correct" in page.text_content("#required-message")
    # The key map is on the page, keys in their real order, in the page's own words.
    keymap = page.locator("#keymap")
    assert keymap.is_visible()
    keys = [k.strip() for k in keymap.locator("dt").all_text_contents()][:4]
    assert keys == ["1", "2", "3", "4"]
    assert keymap.locator("dd").all_text_contents()[:4] == [
        "Answer 1 is better",
        "Answer 2 is better",
        "About the same",
        "Both are bad",
    ]
    page.screenshot(path="/tmp/rater-task-desktop.png", full_page=True)


def test_required_answers_stop_the_submit_and_move_focus(page, live_server, live_study):
    study = live_study(slug="required", n_prompts=2, tasks_per_rater=2)
    start(page, live_server, study)
    form = page.locator("#rating-form")
    assert form.get_attribute("data-required").split() == ["preference", "correct_left", "correct_right"]
    assert page.get_attribute("fieldset.correctness >> nth=0", "aria-required") == "true"
    assert page.locator("input[name=correct_left][required]").count() == 3
    # Enter with nothing: every missing answer is named, in page order, and the first gets the focus.
    page.keyboard.press("Enter")
    alert = page.locator("#required-message")
    assert alert.get_attribute("role") == "alert"
    assert alert.text_content() == (
        "Please answer whether Answer 1 is correct, whether Answer 2 is correct, "
        "which answer is better overall before submitting."
    )
    assert active_name(page) == "correct_left"
    assert page.get_attribute("fieldset[data-question=correct_left]", "aria-invalid") == "true"
    page.keyboard.press("1")  # focus is in that question: "Correct"
    assert checked(page, "correct_left") == "correct" and checked(page, "preference") is None
    assert "whether Answer 1 is correct" not in alert.text_content()  # the message follows the answers
    assert page.get_attribute("fieldset[data-question=correct_left]", "aria-invalid") is None
    # The button is stopped the same way; the focus moves on to the next missing answer.
    page.click("#submit")
    assert active_name(page) == "correct_right"
    page.keyboard.press("3")
    page.keyboard.press("Enter")
    assert active_name(page) == "preference"
    assert alert.text_content() == "Please answer which answer is better overall before submitting."
    assert Rating.objects.count() == 0
    page.keyboard.press("1")
    assert checked(page, "correct_right") == "unsure"
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelector('#progress').textContent.includes('Task 2')")
    page.wait_for_load_state("load")
    (rating,) = Rating.objects.all()
    assert rating.winner == rating.assignment.left_side
    # The server refuses the same thing when the page's check is bypassed (form.submit() skips it)
    # and names what is missing; the answers given come back from the draft.
    page.keyboard.press("2")
    page.evaluate("HTMLFormElement.prototype.submit.call(document.getElementById('rating-form'))")
    page.wait_for_selector("#form-error")
    assert "Answer 1" in page.text_content("#form-error")
    assert Rating.objects.count() == 1
    page.wait_for_load_state("load")
    assert checked(page, "preference") == "right"


def test_error_spans_on_the_formatted_answer_count_code_points(page, live_server, live_study):
    study = live_study(slug="spans-emoji", n_prompts=1)
    c = Comparison.objects.get(study=study)
    raw = (
        "## Facts 🎉\r\n\r\nThe **capital** of 🇦🇺 Australia (澳大利亚; cafe\u0301 👩\u200d👩\u200d👧) "
        "is Sydney, a fine city.\r\nIt has 5 million people."
    )
    c.response_b.text = raw
    c.response_b.save()
    start(page, live_server, study)
    side = side_with(page, "Australia")
    other = "left" if side == "right" else "right"
    section = page.locator(f"#response-{side}")
    # The answer stays formatted: no raw Markdown on the page.
    assert section.locator(".rendered h2").text_content() == "Facts 🎉"
    assert section.locator(".rendered strong").text_content() == "capital"
    # Select a word in the formatted answer and press M.
    select_in(page, side, "Sydney")
    page.keyboard.press("m")
    assert section.locator("mark").all_text_contents() == ["Sydney"]
    assert checked(page, f"correct_{side}") == "error"  # marking an error says it has one
    assert checked(page, f"correct_{other}") is None
    # An overlapping selection, marked with the button, merges with the first one.
    select_in(page, side, "is Sydney, a")
    section.locator(".mark-error").click()
    assert section.locator("ul.spans li").count() == 1
    assert section.locator("ul.spans q").text_content() == "is Sydney, a"
    assert "".join(section.locator("mark").all_text_contents()) == "is Sydney, a"
    # A selection across the bold text: stored as the raw text it covers, then removed again.
    select_in(page, side, "capital of")
    page.keyboard.press("M")
    assert section.locator("ul.spans li").count() == 2
    assert section.locator("ul.spans q").first.text_content() == "capital of"  # as shown
    sent = json.loads(page.input_value("input[name=error_spans]"))
    assert raw.replace("\r\n", "\n")[sent[0]["start"] : sent[0]["end"]] == "capital** of"  # as stored
    section.locator("ul.spans li").first.get_by_role("button", name="Remove").click()
    assert section.locator("ul.spans li").count() == 1
    # The keyboard way: focus in the answer, M opens a dialog, the typed words are found.
    page.focus(f".rendered[data-side={side}]")
    page.keyboard.press("m")
    dialog = page.locator("#mark-dialog")
    assert dialog.is_visible()
    page.keyboard.type("5 millon")
    page.keyboard.press("Enter")
    assert "is not in" in page.text_content("#mark-status")  # a typo: nothing marked, dialog stays
    page.fill("#mark-text", "5 million")
    page.keyboard.press("Enter")
    assert not dialog.is_visible()
    assert section.locator("ul.spans q").all_text_contents() == ["is Sydney, a", "5 million"]
    assert page.evaluate("document.activeElement.classList.contains('rendered')")
    # Offsets sent in code points of the display text (CR LF as LF).
    sent = json.loads(page.input_value("input[name=error_spans]"))
    display = raw.replace("\r\n", "\n")
    assert [display[s["start"] : s["end"]] for s in sent] == ["is Sydney, a", "5 million"]

    page.focus(f"input[name=correct_{other}][value=correct]")
    page.keyboard.press("1")
    page.focus(f".rendered[data-side={other}]")
    page.keyboard.press("3")
    page.keyboard.press("Enter")
    page.wait_for_selector("#completion-code")
    rating = Rating.objects.get()
    assert [s["text"] for s in rating.error_spans] == ["is Sydney, a", "5 million"]
    for span in rating.error_spans:
        assert span["response"] == "B"  # the answer with the emoji, whichever side it was shown on
        assert raw[span["start"] : span["end"]] == span["text"]
    assert rating.error_spans[0]["start"] == raw.index("is Sydney, a")


RICH = (
    "# Über 🎉 résumé\r\n\r\nCombining: cafe\u0301 and 北京 is the capital of 中国.\r\n\r\n"
    "1. First **bold *nested*** item\r\n2. Second item with `code span` inside\r\n\r\n"
    "| Name | Value |\r\n|------|-------|\r\n| Paris | 2.1M |\r\n| 東京 👩\u200d👩\u200d👧 | 14M |\r\n\r\n"
    "A [link text](https://example.org/long/path?x=1) then tail & more.\r\n\r\n"
    '```python\r\nprint("hi 🎉")\r\n```\r\n'
)


@pytest.mark.parametrize(
    "selected, expected",
    [
        ("🎉", "🎉"),
        ("cafe\u0301", "cafe\u0301"),
        ("北京", "北京"),
        ("capital of 中国", "capital of 中国"),
        ("bold nested", "bold *nested"),  # across <strong> and <em>: the raw text it covers
        ("item\nSecond", "item\n2. Second"),  # across two list items
        ("code span", "code span"),
        ("東京 👩\u200d👩\u200d👧", "東京 👩\u200d👩\u200d👧"),
        ("14M", "14M"),
        ("link text then", "link text](https://example.org/long/path?x=1) then"),
        ('print("hi 🎉")', 'print("hi 🎉")'),
    ],
)
def test_marks_in_formatted_text_map_to_code_points_of_the_raw_text(page, live_server, live_study, selected, expected):
    study = live_study(slug="rich", n_prompts=1)
    c = Comparison.objects.get(study=study)
    c.response_a.text = RICH
    c.response_a.save()
    start(page, live_server, study)
    side = side_with(page, "Combining")
    select_in(page, side, selected)
    page.keyboard.press("m")
    (span,) = json.loads(page.input_value("input[name=error_spans]"))
    display = RICH.replace("\r\n", "\n")  # what the server maps back from (rendering.display_text)
    assert display[span["start"] : span["end"]] == expected  # Python slices by code point, as the server
    assert page.locator(f"#response-{side} mark").count() >= 1


def test_crlf_answer_marked_in_the_rendered_text(page, live_server, live_study):
    study = live_study(slug="spans-crlf", n_prompts=1)
    c = Comparison.objects.get(study=study)
    raw = "## Facts\r\n\r\nThe *capital* of Australia is Sydney.\r\n\r\n- Canberra is small\r\n- It has 400k people"
    c.response_a.text = raw
    c.response_a.save()
    start(page, live_server, study)
    side = side_with(page, "Australia")
    select_in(page, side, "small\nIt has")  # across two list items
    page.keyboard.press("m")
    page.focus(f"input[name=correct_{'left' if side == 'right' else 'right'}][value=unsure]")
    page.keyboard.press("3")
    page.focus(f".rendered[data-side={side}]")
    page.keyboard.press("3")
    page.keyboard.press("Enter")
    page.wait_for_selector("#completion-code")
    (span,) = Rating.objects.get().error_spans
    assert span["text"] == "small\r\n- It has"
    assert raw[span["start"] : span["end"]] == span["text"]


def test_draft_survives_a_reload_and_is_cleared_on_submit(page, live_server, live_study):
    study = live_study(slug="draft", n_prompts=2, tasks_per_rater=2)
    start(page, live_server, study)
    token = page.get_attribute("#rating-form", "data-assignment")
    page.check("input[name=style_left_fluent][value='4']")
    page.check("input[name=strength][value='2']")
    page.fill("textarea[name=rationale]", "Answer 2 gets the year wrong.")
    side = "right"
    page.focus(f".rendered[data-side={side}]")  # as a click there would (M in the text box types an M)
    select_in(page, side, "result")
    page.keyboard.press("m")
    page.keyboard.press("1")
    assert checked(page, "correct_right") == "error"
    page.reload()
    page.wait_for_load_state("load")
    assert page.get_attribute("#rating-form", "data-assignment") == token  # the same task, resumed
    assert checked(page, "style_left_fluent") == "4"
    assert checked(page, "strength") == "2"
    assert checked(page, "preference") == "left"
    assert checked(page, "correct_right") == "error"
    assert page.input_value("textarea[name=rationale]") == "Answer 2 gets the year wrong."
    assert page.locator("#response-right mark").all_text_contents() == ["result"]
    assert page.locator("#response-right ul.spans q").all_text_contents() == ["result"]
    assert json.loads(page.input_value("input[name=error_spans]"))[0]["side"] == "right"
    page.check("input[name=correct_left][value=correct]")
    page.click("#submit")
    page.wait_for_function("document.querySelector('#progress').textContent.includes('Task 2')")
    page.wait_for_load_state("load")
    assert page.evaluate(f"localStorage.getItem('evalsite:draft:{token}')") is None
    rating = Rating.objects.get()
    assert rating.rationale == "Answer 2 gets the year wrong." and rating.strength == 2
    assert [s["text"] for s in rating.error_spans] == ["result"]
    # The next task starts empty.
    assert checked(page, "preference") is None and page.locator("mark").count() == 0


def test_phone_has_big_targets_and_folds_long_answers(browser, live_server, live_study):
    study = live_study(slug="phone-size", n_prompts=1)
    c = Comparison.objects.get(study=study)
    c.response_a.text = "\n\n".join(f"Paragraph {i}: a long answer keeps going and going." for i in range(40))
    c.response_a.save()
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.route("**/*", _local_only)
    try:
        start(page, live_server, study, worker="phone1")
        page.screenshot(path="/tmp/rater-task-phone.png", full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        left = page.locator("#response-left").bounding_box()
        right = page.locator("#response-right").bounding_box()
        assert right["y"] >= left["y"] + left["height"]  # stacked
        labels = page.locator("#rating-form label:has(input[type=radio])")
        assert labels.count() >= 20
        for i in range(labels.count()):
            box = labels.nth(i).bounding_box()
            assert box["height"] >= 44 and box["width"] >= 44, (labels.nth(i).text_content(), box)
        for button in page.locator("#rating-form button:visible").all():
            assert button.bounding_box()["height"] >= 44, button.text_content()
        # The long answer is folded with a button; the short one is not.
        side = side_with(page, "Paragraph 0")
        long_answer = page.locator(f".rendered[data-side={side}]")
        unfold = page.locator(f"#response-{side} .unfold")
        assert unfold.get_attribute("aria-expanded") == "false"
        folded = long_answer.bounding_box()["height"]
        assert folded < 600
        assert page.locator(".unfold").count() == 1
        unfold.tap()
        assert unfold.get_attribute("aria-expanded") == "true"
        assert long_answer.bounding_box()["height"] > folded * 2
        # Still usable by touch: a tap on a label answers it; select words, tap "Mark an error".
        page.locator("fieldset.preference label").nth(1).tap()
        assert checked(page, "preference") == "right"
        short = "left" if side == "right" else "right"
        select_in(page, short, "result")
        page.locator(f"#response-{short} .mark-error").tap()
        assert page.locator(f"#response-{short} mark").all_text_contents() == ["result"]
        assert not page.locator("#mark-dialog").is_visible()
    finally:
        context.close()


@pytest.fixture(scope="module")
def axe_source():
    """axe-core from npm, installed into the repository's git-ignored node_modules/ if missing."""
    if not AXE.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("needs npm to install axe-core (apt-get install npm)")
        subprocess.run(
            [npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(ROOT), "axe-core@4"],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return AXE.read_text()


def serious_violations(page, axe_source):
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=axe_source)
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def test_axe_finds_no_serious_problems(page, live_server, live_study, axe_source):
    study = live_study(slug="axe", n_prompts=1, tasks_per_rater=1, consent_text="You agree to **rate**.")
    page.goto(f"{live_server.url}/r/{study.slug}/?PROLIFIC_PID=axe1&STUDY_ID=s&SESSION_ID=x")
    page.wait_for_selector("#consent")
    assert serious_violations(page, axe_source) == []
    page.check("input[name=agree]")
    page.click("#start")
    page.wait_for_selector("#rating-form")
    page.wait_for_load_state("load")
    assert serious_violations(page, axe_source) == []
    # With the required-answers message, a marked error and the mark dialog open.
    page.keyboard.press("Enter")
    select_in(page, "left", "result")
    page.keyboard.press("m")
    assert serious_violations(page, axe_source) == []
    page.focus(".rendered[data-side=right]")
    page.keyboard.press("m")
    assert page.locator("#mark-dialog").is_visible()
    assert serious_violations(page, axe_source) == []
    page.keyboard.press("Escape")
    page.check("input[name=correct_left][value=error]")
    page.check("input[name=correct_right][value=correct]")
    page.check("input[name=preference][value=right]")
    page.click("#submit")
    page.wait_for_selector("#completion-code")
    assert serious_violations(page, axe_source) == []
