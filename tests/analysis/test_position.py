import pytest

from evalsite.analysis.position import left_win_share
from evalsite.analysis.schema import make_ratings, select_ratings
from evalsite.analysis.simulate import simulate_study


def test_left_share_by_hand():
    sides = [("A", "A"), ("B", "A"), ("A", "B"), ("B", "B"), ("tie", "A")]  # (winner, left): 2 of 4 decisive
    rows = [
        {
            "rating_id": k,
            "comparison_id": k,
            "prompt_id": k,
            "rater_id": "r",
            "model_a": "x",
            "model_b": "y",
            "winner": w,
            "left_side": s,
        }
        for k, (w, s) in enumerate(sides)
    ]
    res = left_win_share(make_ratings(rows), n_boot=100)
    assert res["n_decisive"] == 4 and res["left_wins"] == 2 and res["share"] == pytest.approx(0.5)


def test_planted_left_bias_is_detected_and_absent_when_not_planted():
    biased, _ = select_ratings(simulate_study(seed=2, left_bias=0.4).ratings)
    fair, _ = select_ratings(simulate_study(seed=2, left_bias=0.0).ratings)
    assert left_win_share(biased)["lo"] > 0.5
    res = left_win_share(fair)
    assert res["lo"] < 0.5 < res["hi"]
