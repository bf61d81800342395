"""Exports: every rating comes back intact (awkward text included), safely, and filtered alike."""

import csv
import io
import json
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evalsite.api.export_formats import FORMULA_PREFIXES, RATING_COLUMNS, guard_formula
from evalsite.rating.models import Rating

pytestmark = pytest.mark.django_db


def body(response) -> bytes:
    assert response.streaming, "exports must stream"
    return b"".join(response.streaming_content)


def csv_rows(response) -> list[dict]:
    text = body(response).decode("utf-8")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def jsonl_rows(response) -> list[dict]:
    return [json.loads(line) for line in body(response).decode("utf-8").splitlines()]


def unguard(cell: str) -> str:
    """Undo the formula guard, as a reader who knows about it would."""
    if cell.startswith("'") and cell[1:].startswith(FORMULA_PREFIXES):
        return cell[1:]
    return cell


def test_csv_round_trips_every_rating(client_for, rated_study, awkward_texts):
    response = client_for("owner").get(f"/api/v1/studies/{rated_study.slug}/ratings.csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert 'filename="rated-ratings.csv"' in response["Content-Disposition"]
    rows = csv_rows(response)
    ratings = {
        r.pk: r
        for r in Rating.objects.filter(study=rated_study).select_related(
            "rater",
            "assignment",
            "comparison__prompt",
            "comparison__response_a__model",
            "comparison__response_b__model",
        )
    }
    assert len(rows) == len(ratings) == 18
    assert list(rows[0]) == [c.name for c in RATING_COLUMNS]
    assert [int(r["rating_id"]) for r in rows] == sorted(ratings)
    for row in rows:
        rating = ratings[int(row["rating_id"])]
        assert unguard(row["rationale"]) == rating.rationale
        assert row["prompt_text"] == rating.comparison.prompt.text
        assert row["prompt_id"] == rating.comparison.prompt.source_id
        assert row["model_a"] == rating.comparison.response_a.model.alias
        assert row["role_b"] == rating.comparison.response_b.model.role
        assert row["left_side"] == rating.assignment.left_side
        assert row["winner"] == rating.winner
        assert int(row["strength"]) == rating.strength
        assert json.loads(row["style"]) == rating.style
        assert json.loads(row["error_spans"]) == rating.error_spans
        assert row["rater_id"] == rating.rater.pseudonym
        assert float(row["server_seconds"]) == rating.server_seconds
        assert row["client_seconds"] == ("" if rating.client_seconds is None else str(rating.client_seconds))
        assert row["flagged"] == ("true" if rating.flagged else "false")
        assert row["attention_passed"] == {None: "", True: "true", False: "false"}[rating.attention_passed]
        assert row["is_attention_check"] == ("true" if rating.comparison.is_attention_check else "false")
        assert datetime.fromisoformat(row["created_at"]) == rating.created_at
    # Every awkward string made it through, newlines, quotes, emoji and RTL included.
    assert {unguard(r["rationale"]) for r in rows} == set(awkward_texts)


def test_csv_never_contains_the_raw_platform_id(client_for, rated_study):
    text = body(client_for("owner").get(f"/api/v1/studies/{rated_study.slug}/ratings.csv")).decode()
    assert "RAW-PLATFORM-ID" not in text
    jsonl = body(client_for("owner").get(f"/api/v1/studies/{rated_study.slug}/ratings.jsonl")).decode()
    assert "RAW-PLATFORM-ID" not in jsonl


def test_csv_cells_cannot_run_as_formulas(client_for, rated_study):
    rows = csv_rows(client_for("owner").get(f"/api/v1/studies/{rated_study.slug}/ratings.csv"))
    for row in rows:
        for cell in row.values():
            assert not cell.startswith(FORMULA_PREFIXES), cell
    rationales = {r["rationale"] for r in rows}
    assert '\'=HYPERLINK("http://evil.example","click")' in rationales
    assert "'@SUM(A1:A2)" in rationales
    assert "'\tleading tab" in rationales


def test_csv_bom_for_excel(client_for, rated_study):
    plain = body(client_for("owner").get(f"/api/v1/studies/{rated_study.slug}/ratings.csv"))
    bom = body(client_for("owner").get(f"/api/v1/studies/{rated_study.slug}/ratings.csv?bom=1"))
    assert not plain.startswith(b"\xef\xbb\xbf")
    assert bom == b"\xef\xbb\xbf" + plain
    bad = client_for("owner").get(f"/api/v1/studies/{rated_study.slug}/ratings.csv?bom=maybe")
    assert bad.status_code == 400


def test_jsonl_round_trip(client_for, rated_study):
    response = client_for("owner").get(f"/api/v1/studies/{rated_study.slug}/ratings.jsonl")
    assert response["Content-Type"] == "application/x-ndjson; charset=utf-8"
    rows = jsonl_rows(response)
    ratings = {r.pk: r for r in Rating.objects.filter(study=rated_study).select_related("rater")}
    assert len(rows) == len(ratings)
    for row in rows:
        rating = ratings[row["rating_id"]]
        assert set(row) == {c.name for c in RATING_COLUMNS}
        assert row["rationale"] == rating.rationale  # no formula guard in JSON
        assert row["style"] == rating.style and row["error_spans"] == rating.error_spans
        assert row["rater_id"] == rating.rater.pseudonym
        assert row["client_seconds"] == rating.client_seconds
        assert row["flagged"] is rating.flagged


@pytest.mark.parametrize(
    ("query", "keep"),
    [
        ("flagged=false", lambda r: not r.flagged),
        ("flagged=true", lambda r: r.flagged),
        ("attention_check=false", lambda r: not r.comparison.is_attention_check),
        ("winner=A&winner=tie", lambda r: r.winner in {"A", "tie"}),
        ("model=base-2", lambda r: r.comparison.response_b.model.alias == "base-2"),
        ("role=imitation", lambda r: r.comparison.response_b.model.role == "imitation"),
        ("category=factual-qa", lambda r: r.comparison.prompt.category == "factual-qa"),
        ("rater={pseudonym}", lambda r: r.rater.pseudonym.endswith("x0")),
        ("created_after=2000-01-01T00:00:00Z", lambda r: True),
        ("created_before=2000-01-01T00:00:00Z", lambda r: False),
    ],
)
def test_export_filters_match_the_list_endpoint(client_for, rated_study, query, keep):
    pseudonym = rated_study.raters.get(pseudonym__endswith="x0").pseudonym
    query = query.format(pseudonym=pseudonym)
    client = client_for("owner")
    exported = {int(r["rating_id"]) for r in csv_rows(client.get(f"/api/v1/studies/rated/ratings.csv?{query}"))}
    wanted = {
        r.pk
        for r in Rating.objects.filter(study=rated_study).select_related(
            "comparison__prompt", "comparison__response_b__model", "rater"
        )
        if keep(r)
    }
    listed = {r["id"] for r in client.get(f"/api/v1/ratings/?study=rated&page_size=1000&{query}").json()["results"]}
    assert exported == wanted == listed


def test_bad_filter_values_are_a_400(client_for, rated_study):
    client = client_for("owner")
    for url in ("ratings.csv?created_after=yesterday", "ratings.jsonl?winner=C", "preference-pairs.jsonl?ties=x"):
        response = client.get(f"/api/v1/studies/rated/{url}")
        assert response.status_code == 400, url


def test_preference_pairs(client_for, rated_study):
    client = client_for("owner")
    pairs = jsonl_rows(client.get("/api/v1/studies/rated/preference-pairs.jsonl"))
    decided = Rating.objects.filter(study=rated_study, winner__in=["A", "B"]).select_related(
        "comparison__prompt", "comparison__response_a__model", "comparison__response_b__model"
    )
    assert len(pairs) == decided.count() > 0
    by_id = {r.pk: r for r in decided}
    for pair in pairs:
        rating = by_id[pair["rating_id"]]
        a, b = rating.comparison.response_a, rating.comparison.response_b
        chosen, rejected = (a, b) if rating.winner == "A" else (b, a)
        assert pair["prompt"] == rating.comparison.prompt.text
        assert (pair["chosen"], pair["rejected"]) == (chosen.text, rejected.text)
        assert (pair["chosen_model"], pair["rejected_model"]) == (chosen.model.alias, rejected.model.alias)
        assert pair["label"] == "preference"
    marked = jsonl_rows(client.get("/api/v1/studies/rated/preference-pairs.jsonl?ties=mark"))
    assert len(marked) == rated_study.ratings.count()
    labels = {p["rating_id"]: p["label"] for p in marked}
    for rating in rated_study.ratings.all():
        assert labels[rating.pk] == ("preference" if rating.winner in {"A", "B"} else rating.winner)
    clean = jsonl_rows(client.get("/api/v1/studies/rated/preference-pairs.jsonl?flagged=false&attention_check=false"))
    assert clean and all(not p["flagged"] and not p["is_attention_check"] for p in clean)


def test_export_of_an_empty_study_is_just_a_header(client_for, rated_study, make_study, cast):
    make_study("empty", owner=cast["owner"])
    text = body(client_for("owner").get("/api/v1/studies/empty/ratings.csv")).decode()
    assert text == ",".join(c.name for c in RATING_COLUMNS) + "\r\n"
    assert body(client_for("owner").get("/api/v1/studies/empty/ratings.jsonl")) == b""


def test_export_accepts_its_own_media_type(client_for, rated_study):
    response = client_for("owner").get("/api/v1/studies/rated/ratings.csv", HTTP_ACCEPT="text/csv")
    assert response.status_code == 200 and csv_rows(response)
    missing = client_for("owner").get("/api/v1/studies/nope/ratings.csv", HTTP_ACCEPT="text/csv")
    assert missing.status_code == 404


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=80))
def test_any_text_survives_the_csv_round_trip(client_for, rated_study, text):
    # PostgreSQL text cannot hold NUL; everything else a rater or a prompt file may contain must come back.
    rating = rated_study.ratings.order_by("id").first()
    Rating.objects.filter(pk=rating.pk).update(rationale=text)
    rated_study.prompts.filter(pk=rating.comparison.prompt_id).update(text=text)
    response = client_for("owner").get(f"/api/v1/studies/{rated_study.slug}/ratings.csv?rater={rating.rater.pseudonym}")
    row = next(r for r in csv_rows(response) if int(r["rating_id"]) == rating.pk)
    # Exactly the text, with the formula guard's quote in front where (and only where) it is needed.
    assert row["rationale"] == row["prompt_text"] == guard_formula(text)
    assert not row["rationale"].startswith(FORMULA_PREFIXES)


def test_the_studys_tie_rule_is_the_exports_default(client_for, rated_study):
    client = client_for("owner")
    total = rated_study.ratings.count()
    decided = rated_study.ratings.filter(winner__in=["A", "B"]).count()
    assert 0 < decided < total
    real = rated_study.ratings.filter(comparison__is_attention_check=False)  # TRL pairs leave checks out
    real_total, real_decided = real.count(), real.filter(winner__in=["A", "B"]).count()
    rated_study.tie_rule = "mark"
    rated_study.save(update_fields=["tie_rule"])
    for url, expected in (
        ("preference-pairs.jsonl", total),  # the study keeps ties, marked
        ("preference-pairs.jsonl?ties=exclude", decided),  # an export may still ask otherwise
        ("trl-pairs.jsonl", real_total),
        ("trl-pairs.jsonl?ties=exclude", real_decided),
    ):
        assert len(jsonl_rows(client.get(f"/api/v1/studies/rated/{url}"))) == expected, url
    # The rule is part of the study in the API, and a value outside the two is refused.
    assert client.get("/api/v1/studies/rated/").json()["tie_rule"] == "mark"
    refused = client.patch("/api/v1/studies/rated/", {"tie_rule": "half"}, content_type="application/json")
    assert refused.status_code == 400
