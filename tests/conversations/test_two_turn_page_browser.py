"""A second turn's task page in headless Chromium: the conversation so far above the two answers,
each side's own earlier reply on its side, turns that fold, and the page's own script still working.
The round trip ends here too: turns rated in the browser come out as TRL pairs that ``datasets`` loads.

Screenshots (desktop and phone) are written to pytest's temporary folder, and to
``$EVALSITE_SCREENSHOT_DIR`` when it is set, for a person to look at."""

import os
import shutil
from pathlib import Path

import pytest

from evalsite.studies.models import Comparison

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def keep(path: Path) -> None:
    if target := os.environ.get("EVALSITE_SCREENSHOT_DIR"):
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


def local_only(route):
    if route.request.url.startswith(("http://localhost", "http://127.0.0.1")):
        route.continue_()
    else:
        route.abort()


def shown_comparison(page) -> Comparison:
    page.wait_for_selector("#rating-form")
    page.wait_for_load_state("load")
    return Comparison.objects.get(assignments__token=page.get_attribute("#rating-form", "data-assignment"))


def rate(page, preference: str) -> None:
    page.check(f"input[name=preference][value={preference}]")
    page.check("input[name=correct_left][value=unsure]")
    page.check("input[name=correct_right][value=unsure]")
    page.click("#submit")
    page.wait_for_load_state("load")


def open_second_turn(page, live_server, study) -> tuple[Comparison, int]:
    """Enter as a Prolific worker and rate first turns (Answer 1 better) until a second turn's task
    comes up; returns it and how many first turns were rated."""
    page.goto(f"{live_server.url}/r/{study.slug}/?PROLIFIC_PID=shot&STUDY_ID=s&SESSION_ID=x")
    page.check("input[name=agree]")
    page.click("#start")
    for rated in range(6):
        comparison = shown_comparison(page)
        if page.locator("#conversation").count():
            return comparison, rated
        rate(page, "left")
    raise AssertionError("no second turn came up")


def test_two_turn_task_page(browser, live_server, mt_bench_live, tmp_path, client, staff_user):
    study = mt_bench_live(owner=staff_user)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.route("**/*", local_only)
    comparison, first_turns = open_second_turn(page, live_server, study)
    prompt = comparison.prompt
    assert prompt.turn == 2

    conversation = page.locator("#conversation")
    assert conversation.is_visible()
    assert page.locator(".prompt h2").inner_text() == "Last question (turn 2)"
    assert page.locator("#prompt").inner_text().strip() == prompt.text
    user_turn = conversation.locator("details.turn-user")
    assert user_turn.inner_text().startswith("User") and prompt.parent.text in user_turn.inner_text()
    # Each side's own first answer, on the side its second answer is shown.
    left_side = comparison.assignments.get().left_side
    left, right = ((comparison.response_a, comparison.response_b) if left_side == "A"
                   else (comparison.response_b, comparison.response_a))
    for side, response in (("left", left), ("right", right)):
        own = response.model.responses.get(prompt=prompt.parent).text
        shown = conversation.locator(f"details[data-side={side}] .markdown").inner_text()
        assert shown.split()[:4] == own.replace("*", "").split()[:4]
        assert page.locator(f"#text-{side}").inner_text().split()[:3] == response.text.replace("*", "").split()[:3]
    path = tmp_path / "two-turn-task.png"
    page.screenshot(path=str(path), full_page=True)
    keep(path)

    # On a phone (the same task: the rater's link leads back to the leased one) the two earlier
    # replies stack like the answers.
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    small = phone.new_page()
    small.route("**/*", local_only)
    small.goto(page.url)
    small.wait_for_selector("#conversation")
    left_box = small.locator("details[data-side=left]").bounding_box()
    right_box = small.locator("details[data-side=right]").bounding_box()
    assert right_box["y"] >= left_box["y"] + left_box["height"] - 1
    path = tmp_path / "two-turn-task-phone.png"
    small.screenshot(path=str(path), full_page=True)
    keep(path)
    phone.close()

    # Earlier turns fold and unfold.
    assert user_turn.evaluate("d => d.open")
    user_turn.locator("summary").click()
    assert not user_turn.evaluate("d => d.open")
    assert not conversation.locator("details.turn-user .markdown").is_visible()
    user_turn.locator("summary").click()
    assert user_turn.evaluate("d => d.open")

    # The page's script is unaffected: a key picks the verdict, and the task submits.
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("3")
    assert page.evaluate("document.querySelector('input[name=preference]:checked').value") == "tie"
    page.keyboard.press("1")
    assert page.evaluate("document.querySelector('input[name=preference]:checked').value") == "left"
    page.check("input[name=correct_left][value=correct]")
    page.check("input[name=correct_right][value=error]")
    page.click("#submit")
    page.wait_for_load_state("load")
    assert comparison.ratings.count() == 1
    rated = first_turns + 1
    while not first_turns:  # rate a first turn too (Answer 2 better this time)
        first_turns = shown_comparison(page).prompt.turn == 1
        rate(page, "right")
        rated += 1
    context.close()

    # Both turns, rated in the browser, export as TRL preference pairs that datasets loads.
    datasets = pytest.importorskip("datasets")
    client.force_login(staff_user)
    r = client.get(f"/api/v1/studies/{study.slug}/trl-pairs.jsonl")
    assert r.status_code == 200
    exported = tmp_path / "pairs.jsonl"
    exported.write_bytes(b"".join(r.streaming_content))
    pairs = datasets.load_dataset("json", data_files=str(exported), split="train")
    assert len(pairs) == rated and {1, 2} <= set(pairs["turn"])
    (second,) = [row for row in pairs if row["comparison_id"] == comparison.pk]
    # Answer 1 (left) was chosen: its model's own first reply, the second question, then its answer.
    assert second["prompt"] == [{"role": "user", "content": prompt.parent.text}]
    for messages, response in ((second["chosen"], left), (second["rejected"], right)):
        assert messages == [
            {"role": "assistant", "content": response.model.responses.get(prompt=prompt.parent).text},
            {"role": "user", "content": prompt.text},
            {"role": "assistant", "content": response.text},
        ]
