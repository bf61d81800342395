"""The cached report records what it was computed from and says when the study has moved on."""

import pytest
from django.urls import reverse
from django.utils import timezone

from evalsite.dashboard.models import StudyReport
from evalsite.dashboard.reports import ReportOptions, compute_report, report_staleness, source_fingerprint
from evalsite.rating.models import Assignment, Rater, Rating
from evalsite.studies.models import LanguageModel, Response

pytestmark = [pytest.mark.django_db]


@pytest.fixture(autouse=True)
def few_rounds(settings):
    settings.REPORT_BOOTSTRAP_ROUNDS = 50


def add_rating(study) -> Rating:
    """One more crowd rating, as the rater page would store it."""
    comparison = study.comparisons.order_by("id").first()
    rater = Rater.objects.create(study=study, platform="prolific", external_id="late", pseudonym="late")
    now = timezone.now()
    assignment = Assignment.objects.create(
        rater=rater, comparison=comparison, token="late-token", left_side="A", status="submitted",
        leased_at=now, expires_at=now, submitted_at=now,
    )
    return Rating.objects.create(
        assignment=assignment, study=study, comparison=comparison, rater=rater, winner="A", strength=4,
        correct_a="correct", correct_b="correct", server_seconds=20.0,
    )


def stale_banner(client, study) -> str | None:
    html = client.get(reverse("dashboard:report", args=[study.slug])).content.decode()
    forms = [f"<form{part.split('</form>')[0]}</form>" for part in html.split("<form")[1:]]
    found = [form for form in forms if 'id="stale"' in form]
    return " ".join(found[0].split()) if found else None


def test_the_banner_appears_after_a_new_rating_and_goes_after_recompute(client, staff_user, rated_study):
    client.force_login(staff_user)
    assert stale_banner(client, rated_study) is None  # computed on the first visit, up to date
    report = StudyReport.objects.get(study=rated_study)
    assert report.sources == source_fingerprint(rated_study) and report.sources["ratings"] == 32

    add_rating(rated_study)
    banner = stale_banner(client, rated_study)
    assert banner is not None
    assert "This report is out of date: 1 new rating since it was computed." in banner
    assert f'action="{reverse("dashboard:recompute", args=[rated_study.slug])}"' in banner and "Recompute" in banner

    response = client.post(reverse("dashboard:recompute", args=[rated_study.slug]))
    assert response.status_code == 302
    assert stale_banner(client, rated_study) is None
    assert StudyReport.objects.get(pk=report.pk).n_ratings == 33


def test_answers_models_and_flags_make_it_stale_too(client, staff_user, rated_study):
    client.force_login(staff_user)
    assert stale_banner(client, rated_study) is None
    response = Response.objects.filter(prompt__study=rated_study).first()
    Response.objects.filter(pk=response.pk).update(text=response.text + " More.")
    assert "out of date: answers changed since" in stale_banner(client, rated_study)
    LanguageModel.objects.filter(study=rated_study, role="imitation").update(alias="imitation-v2")
    assert "out of date: answers and models changed since" in stale_banner(client, rated_study)
    Rater.objects.filter(study=rated_study, pseudonym="c0").update(blocked=True)
    banner = stale_banner(client, rated_study)
    assert "flagged ratings or blocked raters, answers and models changed" in banner
    client.post(reverse("dashboard:recompute", args=[rated_study.slug]))
    assert stale_banner(client, rated_study) is None


def test_each_options_report_is_judged_on_its_own(client, staff_user, rated_study):
    client.force_login(staff_user)
    url = reverse("dashboard:report", args=[rated_study.slug])
    client.get(url)
    client.get(url + "?flagged=1")
    add_rating(rated_study)
    # Recomputing with flagged raters included leaves the default report stale, and says so.
    client.post(reverse("dashboard:recompute", args=[rated_study.slug]), {"flagged": "1"})
    assert 'id="stale"' not in client.get(url + "?flagged=1").content.decode()
    html = client.get(url).content.decode()
    assert "1 new rating" in html


def test_staleness_rules(rated_study):
    report = compute_report(rated_study, ReportOptions(n_boot=50))
    now = source_fingerprint(rated_study)
    assert report_staleness(report, now) is None
    assert report_staleness(None, now) is None
    report.status = StudyReport.Status.FAILED
    assert report_staleness(report, now) is None  # the page says it failed instead
    report.status = StudyReport.Status.DONE
    deleted = {**now, "ratings": now["ratings"] - 1}
    assert report_staleness(report, deleted).summary == "ratings changed"
    more = {**now, "ratings": now["ratings"] + 3, "last_rating": now["last_rating"] + 3, "prompts": [0, 0]}
    assert report_staleness(report, more).summary == "3 new ratings, prompts changed"
    report.sources = {}  # a report computed before reports recorded their sources
    assert report_staleness(report, now) is not None
