"""The rater page in a real headless Chromium (Playwright driving Debian's /usr/bin/chromium)."""

import pytest

from evalsite.rating.models import Rater, Rating
from evalsite.studies.models import Comparison

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    # Nothing outside the test server may load (no CDN, no remote images, no Prolific).
    pg.route(
        "**/*",
        lambda route: (
            route.continue_()
            if route.request.url.startswith(("http://localhost", "http://127.0.0.1"))
            else route.abort()
        ),
    )
    yield pg
    context.close()


def start(page, live_server, study, query="?PROLIFIC_PID=browser1&STUDY_ID=s&SESSION_ID=x"):
    page.goto(f"{live_server.url}/r/{study.slug}/{query}")
    page.check("input[name=agree]")
    page.click("#start")
    page.wait_for_selector("#rating-form")
    page.wait_for_load_state("load")  # rater.js is deferred: keys pressed before it runs are lost


def test_consent_three_tasks_keyboard_and_mouse_then_code(page, live_server, live_study):
    study = live_study(slug="browser", n_prompts=3, tasks_per_rater=3, consent_text="You agree to **rate**.")
    start(page, live_server, study)
    assert page.text_content("#progress").strip() == "Task 1 of 3"
    # Task 1: keyboard only. Inside a question a digit picks its option; elsewhere, the verdict.
    page.focus("input[name=correct_left][value=correct]")
    page.keyboard.press("1")
    page.focus("input[name=correct_right][value=correct]")
    page.keyboard.press("1")
    page.focus(".rendered[data-side=left]")
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelector('#progress').textContent.includes('Task 2')")
    # Task 2: mouse only, with the optional questions.
    page.click("text=Answer 2 is better")
    page.click("fieldset.strength >> text=4")
    page.check("input[name=correct_left][value=error]")
    page.check("input[name=correct_right][value=correct]")
    page.check("input[name=style_right_fluent][value='5']")
    page.fill("textarea[name=rationale]", "The second one is right.")
    page.click("#submit")
    page.wait_for_function("document.querySelector('#progress').textContent.includes('Task 3')")
    page.wait_for_load_state("load")
    # Task 3: keyboard; Enter without the required answers is refused by the page, which moves the
    # focus to each missing answer in turn.
    page.keyboard.press("Enter")
    assert page.text_content("#progress").strip() == "Task 3 of 3"
    for _ in range(3):  # correctness of Answer 1, of Answer 2, then the verdict: "3" each time
        page.keyboard.press("3")
        page.keyboard.press("Enter")
    page.wait_for_selector("#completion-code")
    assert page.text_content("#completion-code").strip() == "DONE123"
    assert "cc=DONE123" in page.get_attribute("#return-link", "href")

    ratings = list(Rating.objects.order_by("id"))
    assert len(ratings) == 3
    assert ratings[0].winner == ratings[0].assignment.left_side
    second = ratings[1]
    right = "B" if second.assignment.left_side == "A" else "A"
    assert second.winner == right and second.strength == 4 and second.rationale == "The second one is right."
    assert getattr(second, f"correct_{second.assignment.left_side.lower()}") == "error"
    assert second.style == {right: {"fluent": 5}}
    assert ratings[2].winner == "tie"
    assert all(r.client_seconds and r.client_seconds > 0 for r in ratings)
    assert Rater.objects.get().completed_at is not None


def test_xss_in_a_response_does_not_execute(page, live_server, live_study):
    study = live_study(slug="xss", n_prompts=1)
    c = Comparison.objects.get(study=study)
    c.response_a.text = (
        "<script>window.pwned='script';alert(1)</script>\n\n<img src=x onerror=\"window.pwned='img'\">\n\n"
        "[click me](javascript:window.pwned='link') <svg onload=\"window.pwned='svg'\"></svg> "
        "<iframe src=\"javascript:parent.pwned='iframe'\"></iframe> **still bold**"
    )
    c.response_a.save()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    start(page, live_server, study)
    page.wait_for_timeout(300)
    section = page.locator(".response", has_text="still bold")
    section.locator(".rendered").get_by_text("click me").click()  # a rejected link must go nowhere
    assert page.locator("a[href^='javascript']").count() == 0
    section.locator(".mark-error").click()  # the mark dialog: the answer's text is looked up as text
    page.keyboard.type("still bold")
    page.keyboard.press("Enter")
    page.wait_for_timeout(200)
    assert page.evaluate("window.pwned") is None
    assert dialogs == []
    assert section.locator("strong", has_text="still bold").count() == 1
    # The only inline scripts are the answers' texts as JSON data (json_script escapes "<").
    assert page.locator("img, svg, iframe, script:not([src]):not([type='application/json'])").count() == 0
    side = section.get_attribute("data-side")
    assert section.locator("mark").text_content() == "still bold"
    assert "<script>window.pwned" in page.evaluate(f"JSON.parse(document.getElementById('answer-text-{side}').text)")


def test_phone_viewport_shows_both_responses(browser, live_server, live_study):
    study = live_study(slug="phone", n_prompts=1)
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        start(page, live_server, study)
        left = page.locator("#response-left").bounding_box()
        right = page.locator("#response-right").bounding_box()
        assert page.locator("#response-left").is_visible() and page.locator("#response-right").is_visible()
        for box in (left, right):
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390 + 0.5  # no sideways scrolling
        assert right["y"] >= left["y"] + left["height"]  # stacked, not squeezed side by side
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        context.close()


def test_span_highlighting_stores_raw_offsets(page, live_server, live_study):
    study = live_study(slug="spans", n_prompts=1)
    c = Comparison.objects.get(study=study)
    raw = "## Facts\r\n\r\nThe *capital* of Australia is Sydney, a fine city.\r\nIt has 5 million people."
    c.response_b.text = raw
    c.response_b.save()
    start(page, live_server, study)
    section = page.locator(".response", has_text="Australia")
    side = section.get_attribute("data-side")
    # Double-click the word in the formatted answer like a rater would, then press M to mark it.
    box = page.evaluate(
        """(el) => { const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT); let node;
                     while ((node = walker.nextNode()) && node.data.indexOf('Sydney') < 0) {}
                     const i = node.data.indexOf('Sydney');
                     const r = document.createRange(); r.setStart(node, i); r.setEnd(node, i + 6);
                     const b = r.getBoundingClientRect();
                     return {x: b.x + b.width / 2, y: b.y + b.height / 2}; }""",
        section.locator(".rendered").element_handle(),
    )
    page.mouse.dblclick(box["x"], box["y"])
    assert page.evaluate("window.getSelection().toString()").strip() == "Sydney"
    page.keyboard.press("m")
    assert section.locator("mark").text_content() == "Sydney"
    assert "Sydney" in section.locator("ul.spans").text_content()
    assert section.locator(f"input[name=correct_{side}][value=error]").is_checked()
    page.check(f"input[name=correct_{'left' if side == 'right' else 'right'}][value=correct]")
    page.focus(f".rendered[data-side={side}]")
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    page.wait_for_selector("#completion-code")  # the only comparison is done
    rating = Rating.objects.get()
    (span,) = rating.error_spans
    assert span["response"] == "B" and span["text"] == "Sydney"
    assert raw[span["start"] : span["end"]] == "Sydney"
    assert span["start"] == raw.index("Sydney")
