import pandas as pd
import pytest

from evalsite.analysis.schema import SchemaError, make_ratings, make_responses, select_ratings, teacher_model


def _row(**kw):
    row = {
        "rating_id": 1,
        "comparison_id": 1,
        "prompt_id": 1,
        "rater_id": "r1",
        "model_a": "t",
        "model_b": "s",
        "winner": "A",
        "left_side": "B",
        "role_a": "teacher",
        "role_b": "imitation",
    }
    row.update(kw)
    return row


def test_defaults_and_types():
    df = make_ratings([_row(), _row(rating_id=2, winner="both_bad", strength=4, flagged=True)])
    assert list(df["rating_id"]) == ["1", "2"]
    assert df["is_expert"].dtype == bool and not df["is_expert"].any()
    assert df["error_spans_a"].tolist() == [0, 0]
    assert df["strength"].isna().tolist() == [True, False]
    assert df["correct_a"].tolist() == [None, None]
    assert teacher_model(df) == "t"


@pytest.mark.parametrize(
    "bad, column",
    [
        ({"winner": "left"}, "winner"),
        ({"left_side": "C"}, "left_side"),
        ({"correct_a": "maybe"}, "correct_a"),
        ({"strength": 9}, "strength"),
    ],
)
def test_rejects_bad_values(bad, column):
    with pytest.raises(SchemaError, match=column):
        make_ratings([_row(**bad)])


def test_rejects_missing_column_and_duplicates():
    with pytest.raises(SchemaError, match="winner"):
        make_ratings(pd.DataFrame([{k: v for k, v in _row().items() if k != "winner"}]))
    with pytest.raises(SchemaError, match="unique"):
        make_ratings([_row(), _row()])


def test_responses_reference_lists():
    df = make_responses(
        [
            {"response_id": 1, "prompt_id": 1, "model": "t", "text": "x", "reference_answers": "Paris"},
            {"response_id": 2, "prompt_id": 1, "model": "s", "text": "y"},
        ]
    )
    assert df["reference_answers"].tolist() == [["Paris"], []]


def test_select_ratings_counts_exclusions():
    df = make_ratings(
        [_row(), _row(rating_id=2, is_attention_check=True, flagged=True), _row(rating_id=3, flagged=True)]
    )
    kept, excluded = select_ratings(df)
    assert kept["rating_id"].tolist() == ["1"]
    assert excluded == {"attention_checks": 1, "flagged_raters": 1, "total": 2}
    kept, excluded = select_ratings(df, include_flagged=True, include_attention=True)
    assert len(kept) == 3 and excluded["total"] == 0
