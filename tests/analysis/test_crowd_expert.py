import pytest

from evalsite.analysis.crowd_expert import comparison_truth, error_flag_rates, fooled_rates
from evalsite.analysis.schema import make_ratings, make_responses, select_ratings


def _tables():
    responses = make_responses(
        [
            {
                "response_id": "t1",
                "prompt_id": "p1",
                "model": "t",
                "text": "It is Paris.",
                "reference_answers": ["Paris"],
            },
            {
                "response_id": "s1",
                "prompt_id": "p1",
                "model": "s",
                "text": "It is Lyon.",
                "reference_answers": ["Paris"],
            },
            {"response_id": "t2", "prompt_id": "p2", "model": "t", "text": "essay"},
            {"response_id": "s2", "prompt_id": "p2", "model": "s", "text": "essay"},
        ]
    )
    votes = [
        # p1 (reference decides: A = t right, B = s wrong)
        ("c1", "p1", "u1", False, "B", None),
        ("c1", "p1", "u2", False, "tie", None),
        ("c1", "p1", "u3", False, "A", None),
        ("c1", "p1", "u4", False, "both_bad", "error"),
        ("c1", "p1", "e1", True, "A", "error"),
        # p2 (no reference; experts say B is wrong, 2 to 1)
        ("c2", "p2", "u1", False, "B", None),
        ("c2", "p2", "e1", True, "A", "error"),
        ("c2", "p2", "e2", True, "A", "error"),
        ("c2", "p2", "e3", True, "B", "correct"),
    ]
    rows = [
        {
            "rating_id": k,
            "comparison_id": c,
            "prompt_id": p,
            "rater_id": r,
            "is_expert": e,
            "model_a": "t",
            "model_b": "s",
            "role_a": "teacher",
            "role_b": "imitation",
            "winner": w,
            "left_side": "A",
            "correct_a": "correct" if e else None,
            "correct_b": cb,
            "category": p,
        }
        for k, (c, p, r, e, w, cb) in enumerate(votes)
    ]
    return make_ratings(rows), responses


def test_truth_from_reference_then_experts():
    ratings, responses = _tables()
    truth = comparison_truth(ratings, responses).set_index("comparison_id")
    assert truth.loc["c1", "truth_a"] is True and truth.loc["c1", "truth_b"] is False
    assert truth.loc["c1", "source_b"] == "reference"
    assert truth.loc["c2", "truth_b"] is False and truth.loc["c2", "source_b"] == "expert"


def test_fooled_rate_by_hand():
    ratings, responses = _tables()
    res = fooled_rates(ratings, responses, n_boot=200)
    # Crowd: c1 u1 (B, fooled), u2 (tie, fooled), u3 (A), u4 (both bad: not fooled); c2 u1 (B, fooled): 3/5.
    assert res["overall"]["crowd"]["estimate"] == pytest.approx(3 / 5)
    # Experts, each against a truth independent of them: c1 e1 (reference; A, not fooled). On c2
    # (no reference) each expert is scored against the *other* experts: e1 and e2 each leave a
    # 1-1 tie (not scored); e3 leaves e1 + e2 saying B is wrong, and chose B (fooled): 1/2.
    assert res["overall"]["expert"]["estimate"] == pytest.approx(1 / 2)
    assert res["overall"]["expert"]["n"] == 2 and res["expert_ratings_unscored"] == 2
    assert res["overall"]["gap"]["estimate"] == pytest.approx(3 / 5 - 1 / 2)
    assert res["by_wrong_model"]["s"]["crowd"]["estimate"] == pytest.approx(3 / 5)
    assert res["truth_sources"] == {"reference": 1, "expert": 1}
    # Split by truth source, with counts.
    ref, exp = res["by_source"]["reference"], res["by_source"]["expert"]
    assert (ref["crowd"]["estimate"], ref["crowd"]["n"]) == (pytest.approx(2 / 4), 4)
    assert (ref["expert"]["estimate"], ref["expert"]["n"]) == (pytest.approx(0.0), 1)
    assert (exp["crowd"]["estimate"], exp["crowd"]["n"]) == (pytest.approx(1.0), 1)
    assert (exp["expert"]["estimate"], exp["expert"]["n"]) == (pytest.approx(1.0), 1)
    assert ref["n_comparisons"] == 1 and exp["n_comparisons"] == 1


def test_an_expert_is_never_scored_against_their_own_label():
    ratings, responses = _tables()
    # A lone expert on a comparison without references: no independent truth, so not scored,
    # even though the (crowd-side) truth of that comparison is the expert's own verdict.
    lone = ratings[~ratings["rater_id"].isin(["e2", "e3"]) | (ratings["comparison_id"] == "c1")]
    res = fooled_rates(lone.reset_index(drop=True), responses, n_boot=0)
    assert res["overall"]["expert"]["n"] == 1  # only c1, against the reference
    assert res["by_source"]["expert"]["expert"]["n"] == 0
    assert res["by_source"]["expert"]["crowd"]["n"] == 1  # the crowd is scored against the expert


def test_error_flag_rate_by_hand():
    ratings, responses = _tables()
    res = error_flag_rates(ratings, responses, n_boot=0)
    # Wrong responses: s on c1 (5 ratings: u4 and e1 flag) and s on c2 (4 ratings: e1, e2 flag).
    assert res["wrong_responses"]["crowd"]["estimate"] == pytest.approx(1 / 5)
    # Experts: e1 on c1 (reference) flags; on c2 only e3 has an independent truth (e1 + e2 say
    # B is wrong) and does not flag it: 1/2.
    assert res["wrong_responses"]["expert"]["estimate"] == pytest.approx(1 / 2)
    assert res["by_source"]["reference"]["expert"]["n"] == 1 and res["by_source"]["expert"]["expert"]["n"] == 1


def test_crowd_expert_gap_recovered(factual_study):
    analysed, _ = select_ratings(factual_study.ratings)
    res = fooled_rates(analysed, factual_study.responses, n_boot=500)
    crowd, expert, gap = res["overall"]["crowd"], res["overall"]["expert"], res["overall"]["gap"]
    truth = factual_study.truth["expected_fooled_factual"]
    assert crowd["lo"] < truth["crowd"] < crowd["hi"]
    assert expert["lo"] < truth["expert"] < expert["hi"]
    assert gap["lo"] > 0.15  # a large, clearly non-zero gap
    assert res["truth_sources"] == {"reference": res["n_comparisons"]}
    flags = error_flag_rates(analysed, factual_study.responses, n_boot=300)["wrong_responses"]
    cfg = factual_study.truth["config"]
    assert flags["crowd"]["lo"] < cfg.crowd_flag_wrong < flags["crowd"]["hi"]
    assert flags["expert"]["lo"] < cfg.expert_flag_wrong < flags["expert"]["hi"]
