import pytest

from evalsite.analysis.report import build_report
from evalsite.dashboard.loader import load_frames, load_judgments
from evalsite.dashboard.models import JudgeVerdict

pytestmark = pytest.mark.django_db


def test_frames_match_the_database(rated_study):
    ratings, responses = load_frames(rated_study)
    assert len(ratings) == 8 * 4 and len(responses) == 16
    assert set(ratings["model_a"]) == {"teacher-0"} and set(ratings["role_b"]) == {"imitation"}
    assert ratings["is_expert"].sum() == 8
    expert_wrong = ratings[ratings["is_expert"] & (ratings["correct_b"] == "error")]
    assert (expert_wrong["error_spans_b"] == 1).all() and (ratings["error_spans_a"] == 0).all()
    assert (ratings["text_a"] != "").all()
    assert ratings["aspect_confident_b"].isin([4, 5]).all() and (ratings["aspect_fluent_a"] == 4).all()
    assert responses["reference_answers"].map(len).sum() == 8  # 4 factual prompts x 2 models


def test_blocked_rater_ratings_are_flagged(rated_study):
    rater = rated_study.raters.get(pseudonym="c0")
    rater.blocked = True
    rater.save()
    ratings, _ = load_frames(rated_study)
    assert ratings.loc[ratings["flagged"], "rater_id"].unique().tolist() == [str(rater.pk)]


def test_report_from_the_database(rated_study):
    report = build_report(*load_frames(rated_study), n_boot=50)
    assert report["teacher"] == "teacher-0"
    fooled = report["crowd_vs_expert"]["fooled"]
    assert fooled["n_comparisons"] == 2  # the two prompts where the imitation answer is wrong
    assert fooled["overall"]["expert"]["estimate"] == 0.0
    assert fooled["overall"]["crowd"]["estimate"] > 0.0
    assert set(report["agreement"]["all"]["alpha_aspects"]) == {"fluent", "confident"}


def test_judgments_need_both_orders(rated_study):
    judge = rated_study.models.get(alias="teacher-0")
    first, second = rated_study.comparisons.all()[:2]
    JudgeVerdict.objects.create(comparison=first, judge=judge, order="AB", verdict="A")
    assert load_judgments(rated_study) is None
    JudgeVerdict.objects.create(comparison=first, judge=judge, order="BA", verdict="B")
    JudgeVerdict.objects.create(comparison=second, judge=judge, order="AB", verdict="A")
    table = load_judgments(rated_study)
    assert table.to_dict("records") == [{"comparison_id": str(first.pk), "verdict_ab": "A", "verdict_ba": "B"}]


def test_attention_checks_are_marked_and_their_answers_left_out(rated_study):
    from django.utils import timezone

    from evalsite.rating.attention import build_attention_checks
    from evalsite.rating.models import Assignment, Rating

    check = build_attention_checks(rated_study, limit=1, seed=0)[0]
    rater = rated_study.raters.get(pseudonym="c1")
    now = timezone.now()
    assignment = Assignment.objects.create(
        rater=rater,
        comparison=check,
        token="att",
        left_side="A",
        status="submitted",
        leased_at=now,
        expires_at=now,
        submitted_at=now,
    )
    wrong = "B" if check.expected_winner == "A" else "A"
    Rating.objects.create(
        assignment=assignment, study=rated_study, comparison=check, rater=rater, winner=wrong, server_seconds=3.0
    )
    ratings, responses = load_frames(rated_study)
    assert "attention" not in set(responses["role"])
    row = ratings[ratings["is_attention_check"]].iloc[0]
    assert row["expected_winner"] == check.expected_winner and row["text_a"] and row["text_b"]
    report = build_report(ratings, responses, n_boot=0)
    assert report["excluded"]["attention_checks"] == 1
    quality = {q["rater_id"]: q for q in report["rater_quality"]}
    assert quality[str(rater.pk)]["attention_pass_rate"] == 0.0
