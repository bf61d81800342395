import pytest

from evalsite.analysis.factuality import accuracy_by_model, answer_contained, exact_match, normalize_answer
from evalsite.analysis.schema import make_responses


@pytest.mark.parametrize(
    "raw, normal",
    [
        ("The Eiffel Tower!", "eiffel tower"),
        ("  an   APPLE, a pear ", "apple pear"),
        ("U.S.A.", "usa"),
        ("Theatre", "theatre"),
        ("", ""),
    ],
)
def test_squad_normalization(raw, normal):
    assert normalize_answer(raw) == normal


def test_exact_match():
    assert exact_match("The Beatles.", ["beatles"]) is True
    assert exact_match("The Beatles were a band", ["beatles"]) is False
    assert exact_match("anything", []) is None


def test_answer_contained_respects_token_boundaries():
    assert answer_contained("It was founded in 1990 by two people.", ["1990"]) is True
    assert answer_contained("It was founded in 19905.", ["1990"]) is False
    assert answer_contained("The capital is Paris, France.", ["Lyon", "paris"]) is True
    assert answer_contained("No idea", None) is None
    assert answer_contained("x", ["the"]) is None  # a reference that normalises to nothing is unusable


def test_accuracy_per_model_and_category():
    rows = []
    for k in range(10):
        rows.append(
            {
                "response_id": f"t{k}",
                "prompt_id": k,
                "model": "t",
                "category": "qa",
                "text": "answer is Paris" if k < 8 else "Rome",
                "reference_answers": ["Paris"],
            }
        )
        rows.append(
            {
                "response_id": f"s{k}",
                "prompt_id": k,
                "model": "s",
                "category": "qa",
                "text": "answer is Paris" if k < 3 else "Rome",
                "reference_answers": ["Paris"],
            }
        )
    rows.append({"response_id": "open", "prompt_id": 99, "model": "s", "category": "open", "text": "essay"})
    res = accuracy_by_model(make_responses(rows))
    acc = {r["model"]: r for r in res["overall"]}
    assert res["n_checked"] == 20
    assert acc["t"]["accuracy"] == pytest.approx(0.8) and acc["s"]["accuracy"] == pytest.approx(0.3)
    assert acc["t"]["lo"] < 0.8 < acc["t"]["hi"]
    assert set(res["by_category"]) == {"qa"}


def test_simulated_accuracy_matches_planted(factual_study):
    res = accuracy_by_model(factual_study.responses)
    for row in res["overall"]:
        assert row["lo"] < factual_study.truth["accuracy"][row["model"]] < row["hi"]
