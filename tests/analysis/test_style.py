import numpy as np
import pandas as pd
import pytest

from evalsite.analysis.schema import make_ratings, select_ratings
from evalsite.analysis.style import fit_weighted_logit, pair_features, style_controlled, style_features

TEXT = """# Title
I think the answer might be **Paris**, but it is possible that it is __Lyon__.
- first point
* second point
1. third point
Definitely, clearly true."""


def test_features_of_a_known_text():
    f = style_features([TEXT, ""]).iloc[0]
    assert f["headers"] == 1
    assert f["list_items"] == 3
    assert f["bold"] == 2
    assert f["hedging"] == 3  # "I think", "might", "it is possible"
    assert f["assertive"] == 2  # "Definitely", "clearly"
    assert f["length"] == len(__import__("re").findall(r"\w+|[^\w\s]", TEXT))
    assert style_features([""]).iloc[0].sum() == 0


def test_pair_feature_formula_and_antisymmetry():
    rows = [
        {
            "rating_id": 1,
            "comparison_id": 1,
            "prompt_id": 1,
            "rater_id": "r",
            "model_a": "x",
            "model_b": "y",
            "winner": "A",
            "left_side": "A",
            "text_a": "one two three",
            "text_b": "one",
        }
    ]
    d = pair_features(make_ratings(rows))
    assert d.loc[0, "length"] == pytest.approx((3 - 1) / (3 + 1 + 1))
    rows[0]["text_a"], rows[0]["text_b"] = rows[0]["text_b"], rows[0]["text_a"]
    assert pair_features(make_ratings(rows)).loc[0, "length"] == pytest.approx(-0.4)


def test_weighted_logit_matches_weights_as_repeats():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = (rng.random(300) < 1 / (1 + np.exp(-X @ [1.0, -0.5, 0.2]))).astype(float)
    w = rng.poisson(1.0, size=300).astype(float)
    weighted = fit_weighted_logit(X, y, w[None], l2=0.0)[0]
    repeated = fit_weighted_logit(
        np.repeat(X, w.astype(int), axis=0), np.repeat(y, w.astype(int)), np.ones((1, int(w.sum()))), l2=0.0
    )[0]
    assert np.allclose(weighted, repeated, atol=1e-8)


def test_length_preference_recovered(study):
    analysed, _ = select_ratings(study.ratings)
    crowd = analysed[~analysed["is_expert"]]
    res = style_controlled(crowd, n_boot=300, seed=1)
    coef = {c["feature"]: c for c in res["coefficients"]}
    length = coef["length"]
    truth = study.truth["length_coef_raw"]
    assert length["coef"] > 0 and length["lo"] > 0  # sign: longer answers win
    assert length["raw_lo"] < truth < length["raw_hi"]  # size: the planted value is inside
    assert abs(length["coef"] - study.truth["length_coef"]) < 0.15
    assert coef["left_side"]["lo"] < study.truth["left_bias"] < coef["left_side"]["hi"]


def test_no_length_effect_when_none_is_planted():
    from evalsite.analysis.simulate import simulate_study

    sim = simulate_study(seed=4, length_coef=0.0, n_prompts=300)
    analysed, _ = select_ratings(sim.ratings)
    res = style_controlled(analysed[~analysed["is_expert"]], n_boot=300)
    length = next(c for c in res["coefficients"] if c["feature"] == "length")
    assert length["lo"] < 0.0 < length["hi"]
    assert abs(length["coef"]) < 0.12


def test_constant_feature_is_dropped():
    rows = [
        {
            "rating_id": k,
            "comparison_id": k,
            "prompt_id": k,
            "rater_id": "r",
            "model_a": "x",
            "model_b": "y",
            "winner": "A" if k % 3 else "B",
            "left_side": "A",
            "text_a": "a b c" * (k % 4 + 1),
            "text_b": "a",
        }
        for k in range(30)
    ]
    res = style_controlled(make_ratings(pd.DataFrame(rows)), n_boot=20)
    assert "bold" in res["dropped_features"] and "length" in res["features"]


def test_bootstrap_refit_equals_full_newton():
    from evalsite.analysis.style import bootstrap_weighted_logit

    rng = np.random.default_rng(5)
    X = rng.normal(size=(400, 4))
    y = (rng.random(400) < 1 / (1 + np.exp(-X @ [0.8, -0.4, 0.1, 0.0]))).astype(float)
    point = fit_weighted_logit(X, y, np.ones((1, 400)))[0]
    w = rng.poisson(1.0, size=(30, 400)).astype(float)
    fast = bootstrap_weighted_logit(X, y, w, point, tol=1e-6)
    exact = fit_weighted_logit(X, y, w, tol=1e-10)
    assert np.allclose(fast, exact, atol=1e-5)


def test_poisson_weights_have_poisson_moments():
    from evalsite.analysis.intervals import poisson_weights

    w = poisson_weights(100_000, 4, np.random.default_rng(0))
    assert w.shape == (4, 100_000)
    assert w.mean() == pytest.approx(1.0, abs=0.01) and w.var() == pytest.approx(1.0, abs=0.02)
    assert (w == 0).mean() == pytest.approx(np.exp(-1), abs=0.005)
