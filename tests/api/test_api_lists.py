"""List endpoints: cursor paging walks every row once; filters narrow; the analysis endpoint."""

import pytest
from django.utils import timezone

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("endpoint", ["ratings", "responses", "comparisons"])
def test_cursor_paging_visits_every_row_once(client_for, rated_study, endpoint):
    client = client_for("owner")
    url = f"/api/v1/{endpoint}/?study={rated_study.slug}&page_size=4"
    seen: list[int] = []
    pages = 0
    while url:
        page = client.get(url).json()
        assert "count" not in page  # cursor pages never COUNT(*) a large table
        seen += [item["id"] for item in page["results"]]
        url, pages = page["next"], pages + 1
    expected = {
        "ratings": rated_study.ratings.values_list("id", flat=True),
        "responses": [r.pk for p in rated_study.prompts.all() for r in p.responses.all()],
        "comparisons": rated_study.comparisons.values_list("id", flat=True),
    }[endpoint]
    assert seen == sorted(expected) and pages > 1


def test_bad_cursor_is_a_client_error(client_for, rated_study):
    assert client_for("owner").get("/api/v1/ratings/?cursor=garbage").status_code == 404


def test_filters_narrow_lists(client_for, rated_study):
    client = client_for("owner")
    teachers = client.get(f"/api/v1/models/?study={rated_study.slug}&role=teacher").json()["results"]
    assert [m["alias"] for m in teachers] == ["teacher-0"]
    factual = client.get(f"/api/v1/prompts/?study={rated_study.slug}&category=factual-qa").json()["results"]
    assert factual and all(p["category"] == "factual-qa" for p in factual)
    checks = client.get(f"/api/v1/comparisons/?study={rated_study.slug}&attention_check=true").json()["results"]
    assert len(checks) == 1 and checks[0]["expected_winner"] == "A"
    live = client.get("/api/v1/studies/?status=live").json()["results"]
    assert live == []
    ready = client.get("/api/v1/studies/?status=ready").json()["results"]
    assert [s["slug"] for s in ready] == [rated_study.slug]
    done = client.get(f"/api/v1/generation-jobs/?study={rated_study.slug}&status=done").json()["results"]
    assert len(done) == 1 and done[0]["percent"] == 100.0


def test_rating_rows_carry_pseudonyms_and_sides(client_for, rated_study):
    rows = client_for("owner").get(f"/api/v1/ratings/?study={rated_study.slug}").json()["results"]
    assert {r["rater"] for r in rows} == set(rated_study.raters.values_list("pseudonym", flat=True))
    assert {r["left_side"] for r in rows} == {"A", "B"}
    assert not any("RAW-PLATFORM-ID" in str(r) for r in rows)


def test_analysis_serves_the_cached_report(client_for, rated_study):
    from evalsite.dashboard.models import StudyReport
    from evalsite.dashboard.reports import ReportOptions

    StudyReport.objects.create(
        study=rated_study,
        options={"include_flagged": False},
        options_key=ReportOptions().key,
        status="done",
        payload={"headline": "crowd fooled 42% of the time"},
        n_ratings=18,
        computed_at=timezone.now(),
    )
    body = client_for("shared").get(f"/api/v1/studies/{rated_study.slug}/analysis/").json()
    assert body["report"] == {"headline": "crowd fooled 42% of the time"}
    assert body["n_ratings"] == 18


def test_analysis_computes_only_when_asked(client_for, rated_study):
    client = client_for("owner")
    missing = client.get(f"/api/v1/studies/{rated_study.slug}/analysis/")
    assert missing.status_code == 404 and "compute=true" in missing.json()["detail"]
    computed = client.get(f"/api/v1/studies/{rated_study.slug}/analysis/?compute=true")
    assert computed.status_code == 200, computed.content[:500]
    assert computed.json()["report"]["headline"] and computed.json()["computed_at"]
