import pytest

from evalsite.analysis.schema import make_ratings
from evalsite.analysis.winrates import win_rates_vs_teacher


def _ratings():
    rows = []
    # imitation vs teacher on 4 prompts: from imitation's side 3 wins, 2 ties, 1 both-bad, 4 losses.
    outcomes = [
        ("A", "imit"),
        ("A", "imit"),
        ("B", "imit"),
        ("tie", None),
        ("tie", None),
        ("both_bad", None),
        ("A", "teach"),
        ("A", "teach"),
        ("B", "teach"),
        ("B", "teach"),
    ]
    for k, (winner, who) in enumerate(outcomes):
        # Alternate which label the teacher gets, so recoding by side is exercised.
        imit_is_a = k % 2 == 0
        if who == "imit":
            winner = "A" if imit_is_a else "B"
        elif who == "teach":
            winner = "B" if imit_is_a else "A"
        rows.append(
            {
                "rating_id": k,
                "comparison_id": k,
                "prompt_id": k % 4,
                "rater_id": f"r{k}",
                "category": "qa" if k < 5 else "chat",
                "model_a": "imit" if imit_is_a else "teach",
                "model_b": "teach" if imit_is_a else "imit",
                "role_a": "imitation" if imit_is_a else "teacher",
                "role_b": "teacher" if imit_is_a else "imitation",
                "winner": winner,
                "left_side": "A",
            }
        )
    return make_ratings(rows)


def test_counts_and_rates():
    res = win_rates_vs_teacher(_ratings(), n_boot=500)
    assert res["teacher"] == "teach"
    (row,) = res["overall"]
    assert (row["wins"], row["ties"], row["both_bad"], row["losses"], row["n"]) == (3, 2, 1, 4, 10)
    assert row["p_geq"] == pytest.approx(0.6)
    assert row["win_rate"] == pytest.approx(0.45)
    assert row["p_geq_lo"] <= 0.6 <= row["p_geq_hi"]
    assert row["p_geq_wilson_lo"] < 0.6 < row["p_geq_wilson_hi"]
    assert sum(r["n"] for rows in res["by_category"].values() for r in rows) == 10


def test_no_teacher_gives_empty_result():
    r = _ratings()
    r["role_a"] = "other"
    r["role_b"] = "other"
    assert win_rates_vs_teacher(r)["overall"] == []


def test_clustered_interval_wider_than_wilson_when_prompts_are_heterogeneous():
    rows = []
    for p in range(20):
        for k in range(10):  # every prompt is all-wins or all-losses: strong clustering
            rows.append(
                {
                    "rating_id": f"{p}-{k}",
                    "comparison_id": p,
                    "prompt_id": p,
                    "rater_id": f"r{k}",
                    "model_a": "imit",
                    "model_b": "teach",
                    "role_a": "imitation",
                    "role_b": "teacher",
                    "winner": "A" if p % 2 else "B",
                    "left_side": "A",
                }
            )
    (row,) = win_rates_vs_teacher(make_ratings(rows), n_boot=1000)["overall"]
    assert row["p_geq"] == pytest.approx(0.5)
    assert (row["p_geq_hi"] - row["p_geq_lo"]) > 2 * (row["p_geq_wilson_hi"] - row["p_geq_wilson_lo"])
