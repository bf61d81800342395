"""The researcher's whole journey in Chromium, as a new non-superuser researcher walks it.

Log in → create a study (with a teacher and an imitation model, both imported) → upload the Koala
prompts → upload the models' answers → build comparisons (and read what was left out) → launch →
a crowd worker opens the Prolific link in another browser and rates three tasks → an invited
expert rates two → the report shows crowd and expert figures.
"""

import json
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission

from evalsite.rating.models import Rater, Rating
from evalsite.studies.datasets import koala_test_set
from evalsite.studies.models import Comparison, Study

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
SHOTS = Path("/tmp/journey")


def shot(page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def expect_success(page, name: str) -> None:
    """The admin said it worked (a success message); else keep a screenshot of what it said."""
    page.wait_for_load_state("load")
    if page.locator(".messagelist li:not(.error):not(.warning)").count() == 0:
        shot(page, f"failed-{name}")
        raise AssertionError(f"{name}: no success message; see {SHOTS}/failed-{name}.png")


def answers_file(tmp_path: Path, name: str, koala: Path, n: int, style: str) -> Path:
    rows = [json.loads(line) for line in koala.read_text().splitlines() if line.strip()][:n]
    path = tmp_path / f"{name}.jsonl"
    path.write_text(
        "".join(json.dumps({"id": r["id"], "response": f"{style} answer to {r['id']}."}) + "\n" for r in rows)
    )
    return path


def rate(frame_or_page, n_tasks: int) -> None:
    for _ in range(n_tasks):
        frame_or_page.wait_for_selector("#rating-form")
        for name, value in (("correct_left", "correct"), ("correct_right", "error"), ("preference", "left")):
            frame_or_page.click(f"label:has(input[name={name}][value={value}])")
        with frame_or_page.expect_navigation():
            frame_or_page.click("#submit")


def test_blank_study_to_a_finding(browser, live_server, django_user_model, tmp_path):
    koala = koala_test_set()
    assert koala is not None, "the Koala test set is beside the checkout (../shared/data/koala-test-set)"
    user = django_user_model.objects.create_user("rita", "rita@example.org", "rita-pw-123", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label__in=["studies", "rating"]))
    base = live_server.url

    researcher = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = researcher.new_page()
    page.goto(f"{base}/")
    page.click("text=log in")
    page.fill("#id_username", "rita")
    page.fill("#id_password", "rita-pw-123")
    page.click("input[type=submit]")
    page.wait_for_selector("text=Your studies")

    # Create the study in the admin, with its two models as inline rows.
    page.click("text=Create a study")
    page.fill("#id_title", "Does the imitation match its teacher?")
    page.press("#id_title", "Tab")  # the admin fills the slug from the title; then the researcher edits it
    page.fill("#id_slug", "journey")
    page.dispatch_event("#id_slug", "change")
    page.fill("#id_completion_code", "JOURNEY-DONE")
    page.fill("#id_min_seconds_per_task", "0")
    page.fill("#id_attention_check_rate", "0")
    for i, (alias, role) in enumerate((("teacher", "teacher"), ("imitation", "imitation"))):
        page.click("#models-group .add-row a")
        page.fill(f"#id_models-{i}-alias", alias)
        page.select_option(f"#id_models-{i}-role", role)
        page.select_option(f"#id_models-{i}-backend", "imported")
    shot(page, "1-create")
    page.click("input[name=_continue]")
    expect_success(page, "create")
    study = Study.objects.get(slug="journey")
    assert study.owner == user  # a non-superuser keeps the study they create

    # Upload the prompts, then each model's answers (the imitation answered fewer prompts).
    upload = f"{base}/admin/studies/study/{study.pk}/upload/"
    page.goto(upload)
    page.check("input[name=kind][value=prompts]")
    page.set_input_files("#id_file", str(koala))
    page.click("input[type=submit]")
    expect_success(page, "prompts")
    for alias, n, style in (("teacher", 12, "A careful"), ("imitation", 8, "A confident")):
        page.goto(upload)
        page.check("input[name=kind][value=responses]")
        page.select_option("#id_model", label=next(o for o in page.locator("#id_model option").all_inner_texts()
                                                   if alias in o))
        page.set_input_files("#id_file", str(answers_file(tmp_path, alias, koala, n, style)))
        page.click("input[type=submit]")
        expect_success(page, alias)

    # The study page: build comparisons, read what was left out, launch.
    page.goto(f"{base}/studies/journey/")
    assert "Next: Build comparisons" in page.inner_text("#next-step")
    assert "172 of 180 prompts have no usable answer from imitation" in page.inner_text("#skipped")
    page.click("#steps button:has-text('Build comparisons')")
    assert "8 comparisons added" in page.inner_text(".message")
    page.click("#steps button:has-text('Launch')")
    assert "The study is live" in page.inner_text(".message")
    shot(page, "2-study-live")
    prolific = page.input_value("#prolific-url")
    assert Comparison.objects.filter(study=study, is_attention_check=False).count() == 8

    # A crowd worker, in another browser, as Prolific would send them.
    crowd = browser.new_context(viewport={"width": 390, "height": 844})
    worker = crowd.new_page()
    link = (
        prolific.replace("{{%PROLIFIC_PID%}}", "crowd-1")
        .replace("{{%STUDY_ID%}}", "S1")
        .replace("{{%SESSION_ID%}}", "sess-1")
    )
    worker.goto(link)
    assert "Does the imitation" not in worker.content()  # raters see the public title only
    worker.check("input[name=agree]")
    worker.click("#start")
    shot(worker, "3-crowd-task")
    rate(worker, 3)

    # An invited expert.
    page.fill("#invite-form input[name=label]", "Dr. K")
    page.click("#invite-form button")
    expert_link = page.input_value(".expert-link")
    expert = browser.new_context().new_page()
    expert.goto(expert_link)
    expert.check("input[name=agree]")
    expert.click("#start")
    rate(expert, 2)

    assert Rating.objects.filter(study=study, rater__is_expert=False).count() == 3
    assert Rating.objects.filter(study=study, rater__is_expert=True).count() == 2
    assert Rater.objects.filter(study=study).count() == 2
    # Expert ratings took no crowd slot.
    assert sum(Comparison.objects.filter(study=study).values_list("n_submitted", flat=True)) == 3

    # The report, one click from the study page.
    page.goto(f"{base}/studies/journey/")
    page.click("#report-link")
    page.wait_for_selector("#crowd-vs-expert")
    text = page.inner_text("body")
    assert "(3 crowd, 2 expert, " in text
    shot(page, "4-report")
    for context in (researcher, crowd, expert.context):
        context.close()
