"""The simulator plants the truth; the analysis must find it, and its 95% intervals must cover it."""

import time

import numpy as np
import pytest

from evalsite.analysis.bradley_terry import bradley_terry
from evalsite.analysis.schema import select_ratings
from evalsite.analysis.simulate import simulate_study
from evalsite.analysis.style import style_controlled

# Settings under which each estimator's target is exactly the planted parameter: no hidden
# correctness effect for the crowd (it would be absorbed into the strengths) and, for raw
# Bradley-Terry, no left-side bias (it attenuates uncorrected strengths).
EXACT = {"crowd_error_sensitivity": 0.0, "pairing": "all", "expert_share": 0.0}


def _crowd(sim):
    analysed, _ = select_ratings(sim.ratings)
    return analysed[~analysed["is_expert"]]


def _covered(result, truth):
    rows = {r["model"]: r for r in result["rows"]}
    return np.array(
        [rows[m]["elo_lo"] <= 1000 + 400 * b / np.log(10) <= rows[m]["elo_hi"] for m, b in truth["beta"].items()]
    )


def test_raw_strengths_inside_intervals():
    sim = simulate_study(seed=21, n_prompts=300, length_coef=0.0, left_bias=0.0, **EXACT)
    res = bradley_terry(_crowd(sim), n_boot=1000)
    assert _covered(res, sim.truth).all()
    est = dict(zip(res["models"], res["beta"], strict=True))
    assert max(abs(est[m] - b) for m, b in sim.truth["beta"].items()) < 0.2
    # Ranking recovered.
    assert [r["model"] for r in res["rows"]] == sorted(sim.truth["beta"], key=lambda m: -sim.truth["beta"][m])


def test_position_corrected_strengths_inside_intervals():
    sim = simulate_study(seed=22, n_prompts=300, length_coef=0.0, left_bias=0.4, **EXACT)
    corrected = bradley_terry(_crowd(sim), position=True, n_boot=1000)
    assert _covered(corrected, sim.truth).all()
    assert corrected["gamma_lo"] < 0.4 < corrected["gamma_hi"]


def test_style_controlled_strengths_and_length_inside_intervals():
    sim = simulate_study(seed=23, n_prompts=300, length_coef=0.5, left_bias=0.3, **EXACT)
    res = style_controlled(_crowd(sim), n_boot=500)
    # Four 95% intervals: allow one miss, but no estimate may be far off.
    assert _covered(res, sim.truth).sum() >= 3
    rows = {r["model"]: r for r in res["rows"]}
    assert all(
        abs(rows[m]["beta"] - b) < 3 * rows[m]["elo_se"] / (400 / np.log(10)) for m, b in sim.truth["beta"].items()
    )
    length = next(c for c in res["coefficients"] if c["feature"] == "length")
    assert length["raw_lo"] < sim.truth["length_coef_raw"] < length["raw_hi"]
    assert length["coef"] == pytest.approx(0.5, abs=0.15)
    # Raw Bradley-Terry on the same votes over-rates verbose models; style control removes it.
    raw = bradley_terry(_crowd(sim), n_boot=0)
    raw_beta = dict(zip(raw["models"], raw["beta"], strict=True))
    ctl_beta = dict(zip(res["models"], res["beta"], strict=True))
    verbose, terse = "imitation-13b", "base-13b"
    truth_gap = sim.truth["beta"][verbose] - sim.truth["beta"][terse]
    assert raw_beta[verbose] - raw_beta[terse] > truth_gap + 0.1
    assert abs(ctl_beta[verbose] - ctl_beta[terse] - truth_gap) < 0.15


@pytest.mark.slow
def test_interval_coverage_over_many_studies():
    """Nominal 95% intervals cover the planted value in 90-99% of 100 simulated studies.

    Each study is simulated twice from the same seed: without a length preference for
    position-corrected Bradley-Terry (whose target is then exactly the planted strengths), and
    with one for the style-controlled fit (strengths, length and left-side coefficients).
    """
    started = time.perf_counter()
    hits: dict[str, list[bool]] = {
        "BT strengths (position-corrected)": [],
        "BT left-side bias": [],
        "style-controlled strengths": [],
        "length coefficient": [],
        "style left-side coefficient": [],
    }
    common = dict(n_prompts=80, left_bias=0.3, attention_rate=0.0, n_flagged_raters=0, **EXACT)
    for seed in range(100):
        plain = simulate_study(seed=1000 + seed, length_coef=0.0, **common)
        bt = bradley_terry(_crowd(plain), position=True, n_boot=400, seed=seed)
        hits["BT strengths (position-corrected)"].extend(_covered(bt, plain.truth))
        hits["BT left-side bias"].append(bt["gamma_lo"] <= 0.3 <= bt["gamma_hi"])

        styled = simulate_study(seed=1000 + seed, length_coef=0.4, **common)
        style = style_controlled(_crowd(styled), n_boot=200, seed=seed)
        hits["style-controlled strengths"].extend(_covered(style, styled.truth))
        coef = {c["feature"]: c for c in style["coefficients"]}
        hits["length coefficient"].append(
            coef["length"]["raw_lo"] <= styled.truth["length_coef_raw"] <= coef["length"]["raw_hi"]
        )
        hits["style left-side coefficient"].append(coef["left_side"]["lo"] <= 0.3 <= coef["left_side"]["hi"])
    elapsed = time.perf_counter() - started
    rates = {name: float(np.mean(h)) for name, h in hits.items()}
    print(f"coverage over 100 studies ({elapsed:.0f}s):", rates)
    for name, rate in rates.items():
        assert 0.90 <= rate <= 0.99, f"{name}: coverage {rate:.3f}"
