import numpy as np
import pytest

from evalsite.analysis.agreement import (
    agreement_summary,
    fleiss_kappa,
    fleiss_kappa_details,
    krippendorff_alpha,
    leave_one_out_agreement,
    rater_quality,
    value_counts_matrix,
)
from evalsite.analysis.schema import make_ratings

# Fleiss (1971) as reproduced in the standard textbook/Wikipedia example: 10 subjects, 14 raters,
# 5 categories; kappa = 0.210.
FLEISS_TABLE = np.array(
    [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
)


def test_fleiss_kappa_textbook_example():
    assert fleiss_kappa(FLEISS_TABLE) == pytest.approx(0.210, abs=0.0005)


def test_fleiss_kappa_perfect_and_unequal_counts():
    assert fleiss_kappa(np.array([[3, 0], [0, 3], [3, 0]])) == pytest.approx(1.0)
    # Generalised kappa: the item with 2 raters is used, not dropped. Observed agreement per item
    # 1, 1, 0 (mean 2/3); chance: pi = (0.5, 0.5), 0.5; kappa = (2/3 - 1/2) / (1/2) = 1/3.
    details = fleiss_kappa_details(np.array([[3, 0], [0, 3], [1, 1]]))
    assert details["kappa"] == pytest.approx(1 / 3)
    assert details["n_items"] == 3 and (details["raters_min"], details["raters_max"]) == (2, 3)
    # Items rated once carry no agreement: left out, and counted.
    once = fleiss_kappa_details(np.array([[3, 0], [0, 3], [1, 0]]))
    assert once["kappa"] == pytest.approx(1.0) and (once["n_items"], once["n_items_total"]) == (2, 3)


def test_generalised_kappa_equals_fleiss_when_counts_are_equal():
    assert fleiss_kappa_details(FLEISS_TABLE)["kappa"] == pytest.approx(fleiss_kappa(FLEISS_TABLE))
    assert fleiss_kappa_details(FLEISS_TABLE)["n_items"] == 10


def test_krippendorff_alpha_known_value():
    # Krippendorff's reliability-data example (also in the package docs): nominal alpha 0.691.
    nan = np.nan
    data = [
        [nan, nan, nan, nan, nan, 3, 4, 1, 2, 1, 1, 3, 3, nan, 3],
        [1, nan, 2, 1, 3, 3, 4, 3, nan, nan, nan, nan, nan, nan, nan],
        [nan, nan, 2, 1, 3, 4, 4, nan, 2, 1, 1, 3, 3, nan, 4],
    ]
    counts = np.zeros((15, 4))
    for row in data:
        for unit, value in enumerate(row):
            if not np.isnan(value):
                counts[unit, int(value) - 1] += 1
    assert krippendorff_alpha(counts, "nominal") == pytest.approx(0.691358, abs=1e-6)
    assert krippendorff_alpha(np.array([[1, 0], [0, 1]])) is None  # nothing pairable


def _ratings(votes):
    rows = [
        {
            "rating_id": k,
            "comparison_id": c,
            "prompt_id": c,
            "rater_id": r,
            "model_a": "x",
            "model_b": "y",
            "winner": w,
            "left_side": "A",
        }
        for k, (c, r, w) in enumerate(votes)
    ]
    return make_ratings(rows)


def test_leave_one_out_majority():
    r = _ratings(
        [
            ("c1", "u1", "A"),
            ("c1", "u2", "A"),
            ("c1", "u3", "B"),
            ("c2", "u1", "A"),
            ("c2", "u2", "B"),  # each other rating is a single opposite vote
            ("c3", "u3", "tie"),
        ]
    )  # alone: no majority
    loo = leave_one_out_agreement(r)["agrees"].tolist()
    # c1: u1 and u2 each see one A and one B among the others (no majority); u3 sees A, A.
    assert np.isnan(loo[0]) and np.isnan(loo[1]) and loo[2] == 0.0
    # c2: each rater's only other vote disagrees; c3 has no other rating.
    assert loo[3] == 0.0 and loo[4] == 0.0 and np.isnan(loo[5])
    r = _ratings([("c1", "u1", "A"), ("c1", "u2", "A"), ("c1", "u3", "A"), ("c1", "u4", "B")])
    assert leave_one_out_agreement(r)["agrees"].tolist() == [1.0, 1.0, 1.0, 0.0]


def test_value_counts_ignores_values_outside_domain():
    r = _ratings([("c1", "u1", "A"), ("c1", "u2", "both_bad"), ("c2", "u1", "B")])
    counts = value_counts_matrix(r["comparison_id"], r["winner"], ("A", "B", "tie"))
    assert counts.tolist() == [[1, 0, 0], [0, 1, 0]]


def test_experts_agree_more_than_crowd(study):
    summary = agreement_summary(study.ratings[~study.ratings["is_attention_check"]])
    assert summary["expert"]["alpha_correctness"] > summary["crowd"]["alpha_correctness"] + 0.2
    assert -1 <= summary["crowd"]["alpha_preference"] <= 1
    assert summary["all"]["alpha_strength"] is not None


def test_rater_quality_flags_careless_raters(study):
    rows = {r["rater_id"]: r for r in rater_quality(study.ratings[~study.ratings["is_attention_check"]], study.ratings)}
    careless = [r for r in rows.values() if r["flagged"]]
    careful = [r for r in rows.values() if not r["flagged"] and r["attention_pass_rate"] is not None]
    assert careless and careful
    assert np.mean([r["attention_pass_rate"] for r in careless]) < np.mean([r["attention_pass_rate"] for r in careful])
    assert all(r["n_ratings"] > 0 for r in rows.values())


def test_likert_aspect_alpha():
    rows = [
        {
            "rating_id": k,
            "comparison_id": c,
            "prompt_id": c,
            "rater_id": f"u{k}",
            "model_a": "x",
            "model_b": "y",
            "winner": "A",
            "left_side": "A",
            "aspect_fluent_a": fa,
            "aspect_fluent_b": fb,
        }
        for k, (c, fa, fb) in enumerate([("1", 5, 1), ("1", 5, 1), ("2", 2, 4), ("2", 2, 4), ("3", 3, None)])
    ]
    summary = agreement_summary(make_ratings(rows))
    assert summary["all"]["alpha_aspects"]["fluent"] == pytest.approx(1.0)
    rows[1]["aspect_fluent_a"] = 1  # one strong disagreement
    assert agreement_summary(make_ratings(rows))["all"]["alpha_aspects"]["fluent"] < 0.8
