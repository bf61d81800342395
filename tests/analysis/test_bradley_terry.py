import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from evalsite.analysis.bradley_terry import (
    _pair_cells,
    bootstrap_cells,
    bradley_terry,
    fit_from_cells,
    to_elo,
)
from evalsite.analysis.schema import make_ratings


def _ratings(triples):
    """(model_a, model_b, winner[, left_side]) -> ratings table."""
    rows = []
    for k, t in enumerate(triples):
        rows.append(
            {
                "rating_id": k,
                "comparison_id": k,
                "prompt_id": k % 7,
                "rater_id": "r",
                "model_a": t[0],
                "model_b": t[1],
                "winner": t[2],
                "left_side": t[3] if len(t) > 3 else "A",
            }
        )
    return make_ratings(rows)


def test_two_models_closed_form():
    # 3 wins to 1: beta_x - beta_y = ln 3, i.e. 400*log10(3) = 190.8 rating points.
    r = _ratings([("x", "y", "A")] * 3 + [("x", "y", "B")])
    res = bradley_terry(r, n_boot=0, l2=0.0)
    beta = dict(zip(res["models"], res["beta"], strict=True))
    assert beta["x"] - beta["y"] == pytest.approx(math.log(3), abs=1e-8)
    assert beta["x"] + beta["y"] == pytest.approx(0.0, abs=1e-12)
    elo = dict(zip(res["models"], res["elo"], strict=True))
    assert elo["x"] - elo["y"] == pytest.approx(400 * math.log10(3), abs=1e-6)


def test_ties_and_both_bad_count_half():
    # 2 wins + 1 tie + 1 both-bad vs nothing: scores 3 to 1 again.
    r = _ratings([("x", "y", "A"), ("x", "y", "A"), ("x", "y", "tie"), ("y", "x", "both_bad")])
    beta = bradley_terry(r, n_boot=0, l2=0.0)["beta"]
    assert beta[0] - beta[1] == pytest.approx(math.log(3), abs=1e-8)


def test_balanced_cycle_is_all_equal():
    r = _ratings([("a", "b", "A"), ("b", "c", "A"), ("c", "a", "A")] * 4)
    assert np.allclose(bradley_terry(r, n_boot=0)["beta"], 0.0, atol=1e-9)


def test_matches_vote_level_maximum_likelihood():
    rng = np.random.default_rng(3)
    m, n = 5, 3000
    truth = np.array([0.8, 0.3, 0.0, -0.4, -0.7])
    i = rng.integers(0, m, n)
    j = (i + rng.integers(1, m, n)) % m
    score = (rng.random(n) < 1 / (1 + np.exp(-(truth[i] - truth[j])))).astype(float)
    score[rng.random(n) < 0.1] = 0.5
    coef = fit_from_cells(np.bincount(_pair_cells(i, j, score, m), minlength=3 * m * m)[None].astype(float), m, l2=0.0)[
        0
    ]

    def nll(b):
        d = b[i] - b[j]
        return -(score * -np.logaddexp(0, -d) + (1 - score) * -np.logaddexp(0, d)).sum()

    ref = minimize(nll, np.zeros(m), method="BFGS", options={"gtol": 1e-8}).x
    assert np.allclose(coef, ref - ref.mean(), atol=1e-4)


def test_batched_fit_equals_separate_fits():
    rng = np.random.default_rng(0)
    m = 4
    i = rng.integers(0, m, 500)
    j = (i + rng.integers(1, m, 500)) % m
    cells = _pair_cells(i, j, rng.choice([0.0, 0.5, 1.0], 500), m)
    boot = bootstrap_cells(cells, 3 * m * m, n_boot=5, rng=rng)
    assert boot.sum(axis=1) == pytest.approx(np.full(5, 500.0))
    together = fit_from_cells(boot, m)
    apart = np.vstack([fit_from_cells(boot[k : k + 1], m) for k in range(5)])
    assert np.allclose(together, apart, atol=1e-10)


def test_clustered_bootstrap_keeps_prompts_whole():
    rng = np.random.default_rng(1)
    cells = np.array([0, 0, 5, 5, 5, 7])
    prompts = np.array(["p", "p", "q", "q", "q", "r"])
    boot = bootstrap_cells(cells, 9, n_boot=200, rng=rng, clusters=prompts)
    # Cells 0 and 5 only appear in whole-prompt multiples: 2 per draw of p, 3 per draw of q.
    assert np.all(boot[:, 0] % 2 == 0) and np.all(boot[:, 5] % 3 == 0)
    assert np.all(boot.sum(axis=1) > 0)


def test_separated_data_is_flagged_not_rated():
    # x won all 5: no finite rating exists; the result gives a one-sided bound, not a prior's number.
    r = _ratings([("x", "y", "A")] * 5)
    res = bradley_terry(r, n_boot=50)
    assert res["separated"] and "separation" in res["warnings"][0]
    rows = {row["model"]: row for row in res["rows"]}
    assert rows["x"]["status"] == "never_lost" and rows["x"]["elo"] is None and rows["x"]["bound"] == "lower"
    assert rows["y"]["status"] == "never_won" and rows["y"]["bound"] == "upper"
    assert "won all 5 of its votes" in rows["x"]["note"]


def test_position_term_recovered(study):
    crowd = study.ratings[
        ~study.ratings["is_expert"] & ~study.ratings["is_attention_check"] & ~study.ratings["flagged"]
    ]
    res = bradley_terry(crowd, position=True, n_boot=300)
    assert res["gamma_lo"] < study.truth["left_bias"] < res["gamma_hi"]
    assert res["gamma_lo"] > 0


def test_interval_contains_estimate_and_ranks(study):
    res = bradley_terry(study.ratings, n_boot=200)
    rated = [row for row in res["rows"] if row["identified"]]
    for row in rated:
        assert row["elo_lo"] <= row["elo"] <= row["elo_hi"]
    assert [r["rank"] for r in rated] == list(range(1, len(rated) + 1))
    # Attention checks pair the two attention "models" only with each other: separated, unranked.
    unrated = {r["model"]: r for r in res["rows"] if not r["identified"]}
    assert set(unrated) == {"attention-bad", "attention-good"}
    assert all(r["status"] == "separated" and r["rank"] is None for r in unrated.values())
    assert to_elo(np.array([0.0]))[0] == 1000.0


def test_rejects_unknown_bootstrap():
    with pytest.raises(ValueError, match="bootstrap"):
        bradley_terry(_ratings([("x", "y", "A")]), bootstrap="jackknife")


def test_empty_input_is_refused_naming_the_columns():
    with pytest.raises(ValueError, match="'model_a' / 'model_b'"):
        bradley_terry(make_ratings(pd.DataFrame()), n_boot=10)
