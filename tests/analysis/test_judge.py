import numpy as np
import pandas as pd
import pytest

from evalsite.analysis.judge import combine_orders, combine_orders_array, judge_human_agreement
from evalsite.analysis.schema import make_ratings


@pytest.mark.parametrize(
    "ab, ba, combined",
    [
        ("A", "B", "A"),  # A first: A; B first: second shown (A) wins -> consistent A
        ("B", "A", "B"),
        ("A", "A", "tie"),  # always picks the first shown: position bias -> tie
        ("tie", "tie", "tie"),
        ("A", "tie", "tie"),
        ("B", "B", "tie"),
    ],
)
def test_combine_orders(ab, ba, combined):
    assert combine_orders(ab, ba) == combined
    assert combine_orders_array(np.array([ab]), np.array([ba]))[0] == combined


def test_combine_rejects_unknown():
    with pytest.raises(ValueError):
        combine_orders("left", "A")


def test_agreement_with_and_without_ties():
    rows = [
        {
            "rating_id": k,
            "comparison_id": c,
            "prompt_id": c,
            "rater_id": f"u{k}",
            "model_a": "x",
            "model_b": "y",
            "winner": w,
            "left_side": "A",
        }
        for k, (c, w) in enumerate([("1", "A"), ("1", "A"), ("2", "B"), ("3", "tie"), ("4", "A"), ("4", "B")])
    ]
    ratings = make_ratings(rows)
    judgments = pd.DataFrame(
        {
            "comparison_id": ["1", "2", "3", "4"],
            "verdict_ab": ["A", "A", "A", "B"],
            "verdict_ba": ["B", "B", "A", "A"],
        }
    )
    # combined: 1 -> A (human A), 2 -> A (human B), 3 -> tie (human tie), 4 -> B (human split = tie)
    res = judge_human_agreement(judgments, ratings)
    assert res["n_compared"] == 4 and res["n_both_decisive"] == 2
    assert res["agreement_ties_excluded"] == pytest.approx(0.5)
    assert res["agreement_ties_included"] == pytest.approx(0.5)
    assert res["order_consistency"] == pytest.approx(3 / 4)
