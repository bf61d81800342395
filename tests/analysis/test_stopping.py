"""Stopping on evidence (issue 14, point 4): confidence sequences under continuous monitoring."""

import math

import numpy as np
import pandas as pd
import pytest

from evalsite.analysis.planning import Design, plan, simulate_prompts
from evalsite.analysis.stopping import (
    clustered_mean,
    cs_halfwidth,
    mixture_precision,
    simulate_monitoring,
    stopping_status,
)


def test_normal_mixture_boundary():
    se, r = 0.02, 300.0
    info = 1 / se**2
    expected = math.sqrt((info + r) * math.log((info + r) / (r * 0.05**2))) / info
    assert cs_halfwidth(se, r) == pytest.approx(expected)
    # Always wider than the fixed-n interval, and narrowest near the precision it was tuned for.
    r = mixture_precision(0.02)
    assert cs_halfwidth(0.02, r) > 1.96 * 0.02
    assert cs_halfwidth(0.02, r) < cs_halfwidth(0.02, r * 3) and cs_halfwidth(0.02, r) < cs_halfwidth(0.02, r / 3)
    assert cs_halfwidth(0.02, r) / (1.96 * 0.02) == pytest.approx(1.55, abs=0.02)


def test_clustered_mean_is_the_sandwich():
    y = np.array([1, 1, 1, 0, 0, 0.5, 1, 0])
    prompts = np.array([1, 1, 1, 2, 2, 2, 3, 3])
    got = clustered_mean(y, prompts)
    mean = y.mean()
    sums = np.array([y[prompts == p].sum() - (prompts == p).sum() * mean for p in (1, 2, 3)])
    assert got["estimate"] == pytest.approx(mean)
    assert got["se"] == pytest.approx(math.sqrt((sums**2).sum() / 64 * 1.5))
    assert got["n_clusters"] == 3
    # Identical verdicts: the floor keeps the standard error away from zero.
    assert clustered_mean(np.ones(40), np.arange(40))["se"] > 0


@pytest.mark.parametrize(("prompts", "k", "icc"), [(300, 3, 0.2), (1000, 1, 0.0), (100, 7, 0.3)])
def test_false_stop_rate_under_continuous_monitoring(prompts, k, icc):
    """The truth is parity (win rate 0.5 with ties as half). Looking after every single rating:
    the confidence sequence stops falsely in at most 5% of studies, naive 95% intervals in far more."""
    planned = plan(Design(prompts=prompts, k=k, win_rate=0.45, tie_rate=0.1, icc=icc))
    se = planned["win_rate_half_ties_ci_halfwidth"] / 1.959964
    result = simulate_monitoring(prompts, k, 0.45, 0.1, icc, n_studies=2000, seed=prompts, planned_se=se)
    print(f"\n{prompts}x{k} rho={icc}: {result}")
    assert result["looks"] >= 500
    assert result["false_stop_cs"] <= 0.05
    assert result["false_stop_naive"] > 0.15


def test_stopping_at_the_target_precision_keeps_the_interval_honest():
    """Stopping when the fixed 95% interval is narrow enough looks at precision, not at the
    estimate: the interval still covers the truth about 95% of the time at the stop."""
    result = simulate_monitoring(400, 3, 0.6, 0.1, 0.15, n_studies=2000, seed=9, planned_se=0.02, target_halfwidth=0.05)
    assert result["stopped_share"] == 1.0
    assert result["coverage_fixed_at_stop"] >= 0.93
    assert result["coverage_cs_at_stop"] >= 0.95


def _table(model_verdicts: dict[str, tuple[np.ndarray, np.ndarray, int]]) -> pd.DataFrame:
    rows = []
    for model, (wins, ties, k) in model_verdicts.items():
        for prompt, (w, t) in enumerate(zip(wins, ties, strict=True)):
            for j, verdict in enumerate(["B"] * w + ["tie"] * t + ["A"] * (k - w - t)):
                rows.append(
                    {
                        "rating_id": f"{model}-{prompt}-{j}",
                        "comparison_id": f"{model}-{prompt}",
                        "prompt_id": str(prompt),
                        "rater_id": f"r{j}",
                        "model_a": "teacher",
                        "model_b": model,
                        "role_a": "teacher",
                        "role_b": "imitation",
                        "winner": verdict,
                        "left_side": "A",
                    }
                )
    return pd.DataFrame(rows)


def test_study_status_answers_and_reaches_precision():
    rng = np.random.default_rng(1)
    worse = simulate_prompts(300, 3, 0.25, 0.1, 0.1, 1, rng)
    even = simulate_prompts(300, 3, 0.45, 0.1, 0.1, 1, rng)
    table = _table({"weak": (worse[0][0], worse[1][0], 3), "imitation": (even[0][0], even[1][0], 3)})
    status = stopping_status(table, target_halfwidth=0.2, planned_se=0.02)
    rows = {row["model"]: row for row in status["models"]}
    assert rows["weak"]["answered"] == "worse than the teacher"
    assert rows["weak"]["win_rate_cs_hi"] < 0.5
    assert rows["imitation"]["answered"] is None
    assert rows["imitation"]["precision_reached"]
    assert status["may_stop"] and "target precision reached" in status["reason"]
    # A stricter target: the model at parity is not done, so the study keeps going.
    strict = stopping_status(table, target_halfwidth=0.01, planned_se=0.02)
    assert not strict["may_stop"] and "imitation" in strict["reason"]


def test_study_status_waits_for_enough_prompts():
    table = _table({"imitation": (np.zeros(10, dtype=int), np.zeros(10, dtype=int), 2)})
    status = stopping_status(table, target_halfwidth=0.5)
    (row,) = status["models"]
    assert row["answered"] is None and not row["precision_reached"]
    assert row["status"].startswith("waiting: 10 of at least 30")
    assert not status["may_stop"]
    assert stopping_status(_table({}).reindex(columns=list(table.columns)))["reason"].startswith("No crowd")
