"""A researcher turns on adaptive allocation and self-stopping in the admin, in Chromium, and the
study page says so, with the study's target in the planner's form and the places it implies."""

from pathlib import Path

import pytest
from django.contrib.auth.models import Permission

from evalsite.studies import actions
from evalsite.studies.models import Study

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
SHOTS = Path("/tmp/plan-settings")


def test_adaptive_allocation_and_self_stopping_from_the_admin_to_the_study_page(
    browser, live_server, django_user_model, make_study
):
    user = django_user_model.objects.create_user("rita", "rita@example.org", "rita-pw-123", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label__in=["studies", "rating"]))
    study = make_study(slug="walk", n_prompts=40, owner=user, target_halfwidth=0.1)
    SHOTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "rita")
    page.fill("#id_password", "rita-pw-123")
    with page.expect_navigation():
        page.click("input[type=submit]")
    page.goto(f"{live_server.url}/admin/studies/study/{study.pk}/change/")
    page.select_option("select[name=allocation]", "adaptive")
    page.check("input[name=stop_when_precise]")
    with page.expect_navigation():
        page.click("input[name=_continue]")
    assert page.locator(".messagelist li.success").count() == 1
    study.refresh_from_db()
    assert (study.allocation, study.stop_when_precise, study.target_halfwidth) == (
        Study.Allocation.ADAPTIVE, True, 0.1)

    actions.build_comparisons(study)
    actions.mark_study_ready(study)
    actions.launch_study(study)
    page.goto(f"{live_server.url}/studies/walk/")
    page.screenshot(path=str(SHOTS / "study-page.png"), full_page=True)
    header = page.inner_text("body")
    assert "Adaptive" in header and "closes itself when its stopping rule is met" in header
    # The planner's form starts from the study's own target, and the page says what reaching it takes.
    assert page.input_value("input[name=target_halfwidth]") == "0.1"
    assert "To reach ±10.0 points" in header
    assert header.count("No crowd ratings against the teacher yet.") == 1
