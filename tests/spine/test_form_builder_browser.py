"""The rating-form builder and the task preview in a real headless Chromium (screenshots in /tmp)."""

import pytest

from evalsite.rating.models import Assignment, Rater
from evalsite.studies import actions
from evalsite.studies.models import Study

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = "/tmp"


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


def test_build_the_form_then_preview_it(page, live_server, transactional_db, staff_user, make_study):
    study = make_study(slug="builder", n_prompts=2, owner=staff_user)
    actions.build_comparisons(study)
    change_path = f"/admin/studies/study/{study.pk}/change/"
    page.goto(f"{live_server.url}/admin/login/?next={change_path}")
    page.fill("#id_username", "researcher")
    page.fill("#id_password", "pw-researcher-1")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}{change_path}")

    # Build: rationale required and one more style aspect; error spans off.
    assert page.is_checked("#id_form_preference") and page.is_disabled("#id_form_preference")
    page.uncheck("#id_form_error_spans")
    page.fill("#id_form_extra_aspects", "concise")
    page.check("input[name=form_required][value=rationale]")
    page.locator("#id_form_strength").scroll_into_view_if_needed()
    page.locator("fieldset:has(#id_form_strength)").screenshot(path=f"{SHOTS}/form_builder_admin.png")
    page.click("input[name=_continue]")
    page.wait_for_selector(".messagelist .success")
    study.refresh_from_db()
    assert study.rating_form == {
        "strength": True,
        "style_aspects": ["fluent", "confident", "concise"],
        "correctness": True,
        "error_spans": False,
        "rationale": True,
        "required": ["preference", "correctness", "rationale"],
    }

    # Preview, one click from the study page: the worker's page, which cannot submit.
    page.click("#preview-task")
    page.wait_for_url(f"{live_server.url}/studies/{study.slug}/preview/")
    assert page.text_content("#label-left") == "Answer 1" and page.text_content("#label-right") == "Answer 2"
    assert page.is_visible("text=Concise") and page.is_visible("text=Is Answer 2 factually correct?")
    assert not page.is_visible("text=Mark an error")
    assert page.is_disabled("#submit")
    page.screenshot(path=f"{SHOTS}/form_builder_preview.png", full_page=True)
    page.check("input[name=preference][value=left]")
    page.keyboard.press("Enter")
    page.wait_for_timeout(300)
    assert page.url == f"{live_server.url}/studies/{study.slug}/preview/"
    assert not Assignment.objects.exists() and not Rater.objects.exists()


def test_a_live_studys_builder_is_disabled(page, live_server, transactional_db, staff_user, make_study):
    study = make_study(slug="frozen", n_prompts=2, owner=staff_user, attention_check_rate=0.0)
    actions.build_comparisons(study)
    actions.mark_study_ready(study)
    actions.launch_study(study)
    change_path = f"/admin/studies/study/{study.pk}/change/"
    page.goto(f"{live_server.url}/admin/login/?next={change_path}")
    page.fill("#id_username", "researcher")
    page.fill("#id_password", "pw-researcher-1")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}{change_path}")
    assert "frozen while the study is live: pause it to change the form" in page.text_content("#form-frozen")
    assert page.is_disabled("#id_form_strength") and page.is_disabled("input[name=form_required][value=strength]")
    page.locator("fieldset:has(#id_form_strength)").screenshot(path=f"{SHOTS}/form_builder_frozen.png")
    before = Study.objects.get(pk=study.pk).rating_form
    page.fill("#id_description", "saved while live")
    page.click("input[name=_continue]")
    page.wait_for_selector(".messagelist .success")
    study.refresh_from_db()
    assert study.rating_form == before and study.description == "saved while live"
