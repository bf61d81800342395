"""Computing a report is the owner's: a collaborator the study is shared with reads the cached one.

Before, a read-only collaborator could POST recompute, and opening the report page or a download
computed a report in the request, whatever the study's size.
"""

import pytest
from django.urls import reverse

from evalsite.dashboard import reports
from evalsite.dashboard.models import StudyReport

pytestmark = pytest.mark.django_db


@pytest.fixture
def collaborator(django_user_model, rated_study):
    user = django_user_model.objects.create_user("reader", "r@example.org", "pw-reader-1", is_staff=True)
    rated_study.shared_with.add(user)
    return user


def test_collaborator_cannot_recompute(client, collaborator, rated_study):
    client.force_login(collaborator)
    response = client.post(reverse("dashboard:recompute", args=[rated_study.slug]))
    assert response.status_code == 403
    assert not StudyReport.objects.exists()


def test_collaborator_opening_the_report_computes_nothing(client, collaborator, rated_study):
    client.force_login(collaborator)
    page = client.get(reverse("dashboard:report", args=[rated_study.slug]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "shared with you read-only" in html and 'id="recompute"' not in html
    for name in ("dashboard:download_html", "dashboard:download_json"):
        assert client.get(reverse(name, args=[rated_study.slug])).status_code == 404
    assert not StudyReport.objects.exists()


def test_collaborator_reads_the_owners_report(client, collaborator, staff_user, rated_study):
    client.force_login(staff_user)  # the owner (a superuser here) opens the page: computed
    assert client.get(reverse("dashboard:report", args=[rated_study.slug])).status_code == 200
    client.force_login(collaborator)
    page = client.get(reverse("dashboard:download_json", args=[rated_study.slug]))
    assert page.status_code == 200 and page.json()["report"]["counts"]["ratings_total"] == 32


def test_downloads_of_a_large_study_go_to_the_worker(client, staff_user, rated_study, monkeypatch):
    sent = []
    monkeypatch.setattr(reports, "SYNC_RATING_LIMIT", 0)
    monkeypatch.setattr(reports, "send_task_on_commit", lambda name, args: sent.append(args))
    client.force_login(staff_user)
    response = client.get(reverse("dashboard:download_json", args=[rated_study.slug]))
    assert response.status_code == 404 and len(sent) == 1
    assert StudyReport.objects.get().status == StudyReport.Status.PENDING
