"""POST /api/v1/studies/<slug>/cancel-generation/: same permission as generate, 409 when nothing runs."""

import pytest

from evalsite.studies.models import GenerationJob, Study

pytestmark = pytest.mark.django_db


def generating(study: Study) -> GenerationJob:
    """Put the study in the middle of a generation: one job queued."""
    Study.objects.filter(pk=study.pk).update(status=Study.Status.GENERATING)
    return GenerationJob.objects.create(study=study, model=study.models.get(role="base"), total=3)


@pytest.mark.parametrize(
    ("caller", "status"),
    [("anonymous", 401), ("rater", 401), ("nonstaff", 403), ("other", 404), ("shared", 403)],
)
def test_only_the_owner_may_cancel_generation(client_for, rated_study, caller, status):
    job = generating(rated_study)
    response = client_for(caller).post(f"/api/v1/studies/{rated_study.slug}/cancel-generation/")
    assert response.status_code == status
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.QUEUED


@pytest.mark.parametrize("caller", ["owner", "superuser"])
def test_owner_cancels_and_the_study_leaves_generating(client_for, rated_study, caller):
    job = generating(rated_study)
    response = client_for(caller).post(f"/api/v1/studies/{rated_study.slug}/cancel-generation/")
    assert response.status_code == 200, response.content
    body = response.json()
    # Every answer of the rated study exists: it goes back to ready, not draft.
    assert body["status"] == "ready"
    assert [j["id"] for j in body["result"]["jobs"]] == [job.pk]
    assert body["result"]["jobs"][0]["status"] == "cancelled"
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.CANCELLED


def test_cancel_with_nothing_running_is_a_conflict(client_for, rated_study):
    response = client_for("owner").post(f"/api/v1/studies/{rated_study.slug}/cancel-generation/")
    assert response.status_code == 409
    assert "nothing to cancel" in response.json()["detail"]
