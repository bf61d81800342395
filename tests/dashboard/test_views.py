import json

import pytest
from django.urls import reverse

from evalsite.dashboard.models import StudyReport

pytestmark = [pytest.mark.django_db]


@pytest.fixture(autouse=True)
def few_rounds(settings):
    # The page's default is 1,000 bootstrap rounds; tests need no precision.
    settings.REPORT_BOOTSTRAP_ROUNDS = 50


def test_report_page_computes_and_caches(client, staff_user, rated_study):
    client.force_login(staff_user)
    page = client.get(reverse("dashboard:report", args=[rated_study.slug]))
    assert page.status_code == 200
    html = page.content.decode()
    for anchor in (
        "headline",
        "progress",
        "win-rates",
        "strengths",
        "style",
        "factuality",
        "crowd-vs-expert",
        "agreement",
        "raters",
        "plot-accuracy_vs_preference",
        "plot-win_rates",
    ):
        assert f'id="{anchor}"' in html, anchor
    assert "<svg" in html and "crowd raters preferred or tied the wrong answer" in html
    report = StudyReport.objects.get(study=rated_study)
    assert report.status == "done" and report.n_ratings == 32 and report.computed_at is not None
    # The second visit reads the cache instead of recomputing.
    computed_at = report.computed_at
    again = client.get(reverse("dashboard:report", args=[rated_study.slug])).content.decode()
    assert StudyReport.objects.get(pk=report.pk).computed_at == computed_at
    assert 'id="stale"' not in again
    # New ratings make the cached report stale, and the page says so.
    from evalsite.rating.models import Rating

    Rating.objects.filter(study=rated_study).first().delete()
    assert 'id="stale"' in client.get(reverse("dashboard:report", args=[rated_study.slug])).content.decode()


def test_recompute_and_downloads(client, staff_user, rated_study):
    client.force_login(staff_user)
    response = client.post(reverse("dashboard:recompute", args=[rated_study.slug]))
    assert response.status_code == 302
    html = client.get(reverse("dashboard:download_html", args=[rated_study.slug]))
    assert html["Content-Disposition"].startswith("attachment")
    body = html.content.decode()
    assert "<svg" in body and "<link" not in body and "<script" not in body  # self-contained
    data = client.get(reverse("dashboard:download_json", args=[rated_study.slug]))
    payload = json.loads(data.content)
    assert payload["report"]["counts"]["ratings_total"] == 32


def test_options_give_separate_reports(client, staff_user, rated_study):
    client.force_login(staff_user)
    client.get(reverse("dashboard:report", args=[rated_study.slug]))
    client.get(reverse("dashboard:report", args=[rated_study.slug]) + "?flagged=1")
    assert StudyReport.objects.filter(study=rated_study).count() == 2


def test_staff_only_and_visibility(client, django_user_model, rated_study):
    url = reverse("dashboard:report", args=[rated_study.slug])
    assert client.get(url).status_code == 302  # to the admin login
    other = django_user_model.objects.create_user("other", "o@example.org", "pw-other-123", is_staff=True)
    client.force_login(other)
    assert client.get(url).status_code == 404  # not shared with them
    rated_study.shared_with.add(other)
    assert client.get(url).status_code == 200


def test_index_lists_studies(client, staff_user, rated_study):
    client.force_login(staff_user)
    page = client.get(reverse("dashboard:index"))
    assert rated_study.title in page.content.decode()


def test_empty_study_renders(client, staff_user, make_study):
    study = make_study(slug="empty", owner=staff_user)
    client.force_login(staff_user)
    page = client.get(reverse("dashboard:report", args=[study.slug]))
    assert page.status_code == 200
    assert "No ratings against a teacher yet" in page.content.decode()


def test_large_study_goes_to_the_celery_task(client, staff_user, rated_study, monkeypatch):
    from evalsite.dashboard import reports
    from workers import analysis_tasks

    calls = []
    monkeypatch.setattr(reports, "SYNC_RATING_LIMIT", 0)
    monkeypatch.setattr(reports, "send_task_on_commit", lambda name, args: calls.append((name, args)))
    client.force_login(staff_user)
    page = client.get(reverse("dashboard:report", args=[rated_study.slug]))
    assert "A worker is computing it" in page.content.decode()
    # Sent by name: the report module never imports the task.
    assert len(calls) == 1 and calls[0][0] == analysis_tasks.compute_report.name
    assert calls[0][1][0] == rated_study.pk
    # What the worker runs:
    result = analysis_tasks.compute_report.run(*calls[0][1])
    assert result["status"] == "done"
    assert StudyReport.objects.get(pk=result["report"]).payload["counts"]["ratings_total"] == 32
