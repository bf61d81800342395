"""Stopping on evidence: confidence sequences that stay valid however often the report is checked.

A fixed-n 95% interval is valid once, at a sample size fixed in advance. Checked after every batch
of ratings and acted on ("the imitation is worse than the teacher: stop"), it declares a difference
that is not there far more often than 5% of the time. A *confidence sequence* holds at every look
at once: P(the truth ever leaves it) <= alpha.

Here: Robbins' two-sided normal mixture (Howard et al. 2021, "Time-uniform, nonparametric,
nonasymptotic confidence sequences", the normal-mixture boundary) applied to the running estimate
on the information scale. With information I = 1 / se^2 the process I * (estimate - truth) is, in
the large-sample limit, a Brownian motion in I, and

    |estimate - truth| <= sqrt((I + r) * log((I + r) / (r * alpha^2))) / I     for all I at once

with probability >= 1 - alpha, for any mixture precision r > 0 chosen *before* the data (we tune
it so the sequence is narrowest at the planned final precision, :func:`mixture_precision`). The
standard error is cluster-robust (clustered by prompt): ratings of one prompt are correlated, and
the lease engine serves comparisons least-rated first in random order, so the first pass over the
prompts is independent ratings and later passes add correlated ones. This is an asymptotic
confidence sequence (Waudby-Smith et al. 2024, "Time-uniform central limit theory"); no stop is
considered before ``min_prompts`` prompts are rated, and the standard error is floored at the
independent-ratings one so that a run of identical verdicts cannot make it vanish.
:func:`simulate_monitoring` checks the false-stop rate under continuous monitoring.

Two reasons to stop: the target precision is reached (the fixed 95% interval of P(>= teacher) is
narrow enough: a rule that looks only at precision, not at the estimate, leaves that interval
valid), or the question is answered (the confidence sequence of the win rate, ties as half,
excludes parity 0.5: the model is rated better or worse than the teacher).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from .planning import z_value

MIN_PROMPTS = 30


def cs_halfwidth(se: np.ndarray | float, r: float, alpha: float = 0.05) -> np.ndarray | float:
    """Half-width of the normal-mixture confidence sequence at standard error ``se``."""
    se = np.asarray(se, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        info = 1.0 / np.square(se)
        width = np.sqrt((info + r) * np.log((info + r) / (r * alpha**2))) / info
    width = np.where(se > 0, width, 0.0)
    return float(width) if width.ndim == 0 else width


def mixture_precision(planned_se: float, alpha: float = 0.05) -> float:
    """The mixture precision r that makes the sequence narrowest when the standard error is
    ``planned_se`` (the plan's final one); any fixed r keeps the sequence valid."""
    info = 1.0 / planned_se**2

    def width(log_r: float) -> float:
        return float(cs_halfwidth(planned_se, math.exp(log_r), alpha))

    best = minimize_scalar(width, bounds=(math.log(info) - 15, math.log(info) + 5), method="bounded")
    return float(math.exp(best.x))


def clustered_mean(values: np.ndarray, clusters: np.ndarray) -> dict[str, float]:
    """Mean of ``values`` with a cluster-robust standard error (small-sample factor G / (G - 1)),
    floored at the standard error of independent ratings with one pseudo-rating of variance 1/4."""
    y = np.asarray(values, dtype=float)
    n = len(y)
    if n == 0:
        return {"estimate": float("nan"), "se": float("nan"), "n": 0, "n_clusters": 0}
    codes, labels = pd.factorize(np.asarray(clusters))
    g = len(labels)
    mean = float(y.mean())
    resid = np.bincount(codes, weights=y - mean, minlength=g)
    var_cr = float((resid**2).sum()) / n**2 * (g / (g - 1) if g > 1 else 1.0)
    var_iid = (float(((y - mean) ** 2).sum()) + 0.25) / (n + 1) / n
    return {"estimate": mean, "se": math.sqrt(max(var_cr, var_iid)), "n": n, "n_clusters": g}


def stopping_status(
    ratings: pd.DataFrame,
    *,
    teacher: str | None = None,
    target_halfwidth: float | None = None,
    planned_se: float | None = None,
    null: float = 0.5,
    alpha: float = 0.05,
    min_prompts: int = MIN_PROMPTS,
) -> dict[str, Any]:
    """Where each model stands against the teacher, and whether the study may stop, and why.

    ``ratings`` is a ratings table; crowd ratings without attention checks and flagged raters are
    used (as in the report). ``planned_se`` (the plan's final standard error of the win rate, from
    the design, not from these ratings) tunes the confidence sequence; without it, the sequence is
    tuned for the standard error of 1,000 independent ratings.
    """
    from .schema import make_ratings, select_ratings, teacher_model
    from .winrates import outcomes_vs

    table, _ = select_ratings(make_ratings(ratings))
    table = table[~table["is_expert"]].reset_index(drop=True)
    teacher = teacher or teacher_model(table)
    z = z_value(alpha)
    r = mixture_precision(planned_se if planned_se else 0.5 / math.sqrt(1000), alpha)
    out: dict[str, Any] = {
        "teacher": teacher,
        "alpha": alpha,
        "null": null,
        "target_halfwidth": target_halfwidth,
        "mixture_precision": r,
        "models": [],
        "may_stop": False,
        "reason": "No crowd ratings against the teacher yet.",
    }
    if teacher is None or table.empty:
        return out
    vs = outcomes_vs(table, teacher)
    if vs.empty:
        return out
    geq = (vs["win"] + vs["tie"] + vs["both_bad"]).to_numpy()
    score = (vs["win"] + 0.5 * (vs["tie"] + vs["both_bad"])).to_numpy()
    models = sorted(vs["model"].unique())
    reasons = []
    for model in models:
        mask = (vs["model"] == model).to_numpy()
        prompts = vs["prompt_id"].to_numpy()[mask]
        p = clustered_mean(geq[mask], prompts)
        s = clustered_mean(score[mask], prompts)
        enough = p["n_clusters"] >= min_prompts
        p_cs = cs_halfwidth(p["se"], r, alpha)
        s_cs = cs_halfwidth(s["se"], r, alpha)
        row = {
            "model": model,
            "n_ratings": p["n"],
            "n_prompts": p["n_clusters"],
            "p_geq": p["estimate"],
            "p_geq_se": p["se"],
            "p_geq_halfwidth": z * p["se"],
            "p_geq_cs_lo": max(p["estimate"] - p_cs, 0.0),
            "p_geq_cs_hi": min(p["estimate"] + p_cs, 1.0),
            "win_rate": s["estimate"],
            "win_rate_cs_lo": max(s["estimate"] - s_cs, 0.0),
            "win_rate_cs_hi": min(s["estimate"] + s_cs, 1.0),
            "precision_reached": bool(enough and target_halfwidth is not None and z * p["se"] <= target_halfwidth),
            "answered": None,
        }
        if enough and abs(s["estimate"] - null) > s_cs:
            row["answered"] = "better than the teacher" if s["estimate"] > null else "worse than the teacher"
        if not enough:
            row["status"] = f"waiting: {p['n_clusters']} of at least {min_prompts} prompts rated"
        elif row["answered"]:
            row["status"] = (
                f"answered: rated {row['answered']} (win rate {s['estimate']:.3f}, "
                f"confidence sequence {row['win_rate_cs_lo']:.3f}-{row['win_rate_cs_hi']:.3f} excludes {null:g})"
            )
        elif row["precision_reached"]:
            row["status"] = f"target precision reached (±{z * p['se']:.3f} <= ±{target_halfwidth:.3f})"
        else:
            row["status"] = "continue"
        out["models"].append(row)
        if row["answered"] or row["precision_reached"]:
            reasons.append(f"{model}: {row['status']}")
    done = [row for row in out["models"] if row["answered"] or row["precision_reached"]]
    out["may_stop"] = len(done) == len(out["models"])
    if out["may_stop"]:
        out["reason"] = "The study may stop. " + "; ".join(reasons) + "."
    else:
        waiting = [row["model"] for row in out["models"] if row not in done]
        out["reason"] = f"Keep rating: {', '.join(waiting)} neither answered nor at the target precision."
    return out


# --- simulation --------------------------------------------------------------------------------


def simulate_monitoring(
    prompts: int,
    k: int,
    win_rate: float,
    tie_rate: float,
    icc: float,
    *,
    n_studies: int = 2000,
    seed: int = 0,
    null: float = 0.5,
    alpha: float = 0.05,
    planned_se: float | None = None,
    min_prompts: int = MIN_PROMPTS,
    target_halfwidth: float | None = None,
) -> dict[str, float]:
    """Monitor ``n_studies`` simulated studies after every rating, as the lease engine serves them
    (pass after pass over the prompts, least-rated first), and count how often each rule stops on
    "the win rate (ties as half) differs from ``null``": the confidence sequence, and naive repeated
    95% intervals. With the truth at the null, those are false stops.

    With ``target_halfwidth``, also the coverage of the truth by the fixed 95% interval and by the
    confidence sequence at the first look where the fixed interval is that narrow.
    """
    rng = np.random.default_rng(seed)
    p = np.array([win_rate, tie_rate, max(1.0 - win_rate - tie_rate, 0.0)])
    truth = win_rate + tie_rate / 2
    if icc > 0:
        g = rng.gamma(p * (1.0 / icc - 1.0), size=(n_studies, prompts, 3))
        total = g.sum(axis=-1, keepdims=True)
        theta = np.divide(g, total, out=np.broadcast_to(p, g.shape).copy(), where=total > 0)
    else:
        theta = np.broadcast_to(p, (n_studies, prompts, 3))
    cut = np.cumsum(theta, axis=-1)
    u = rng.random((n_studies, k, prompts))  # pass j, prompt i (prompts are exchangeable: any order)
    y = np.where(u < cut[:, None, :, 0], 1.0, np.where(u < cut[:, None, :, 1], 0.5, 0.0))
    # Each prompt's sum and count before the rating arrives.
    before = np.concatenate([np.zeros((n_studies, 1, prompts)), np.cumsum(y, axis=1)[:, :-1]], axis=1)
    count = np.broadcast_to(np.arange(k)[None, :, None], y.shape)
    flat = lambda a: a.reshape(n_studies, k * prompts)  # noqa: E731 (arrival order: pass-major)
    yf, sf, cf = flat(y), flat(before), flat(count).astype(float)
    n = np.arange(1, k * prompts + 1, dtype=float)
    total_y = np.cumsum(yf, axis=1)
    total_y2 = np.cumsum(yf**2, axis=1)
    q = np.cumsum(2 * sf * yf + yf**2, axis=1)  # sum over prompts of (prompt sum)^2
    pq = np.cumsum(sf + cf * yf + yf, axis=1)  # sum of prompt sum x prompt count
    rr = np.cumsum(2 * cf + 1, axis=1)  # sum of prompt count^2
    mean = total_y / n
    clusters = np.minimum(n, prompts)
    var_cr = np.maximum(q - 2 * mean * pq + mean**2 * rr, 0.0) / n**2 * clusters / np.maximum(clusters - 1, 1)
    var_iid = (np.maximum(total_y2 - n * mean**2, 0.0) + 0.25) / (n + 1) / n
    se = np.sqrt(np.maximum(var_cr, var_iid))
    looks = clusters >= min_prompts
    z = z_value(alpha)
    if planned_se is None:
        planned_se = float(se[:, -1].mean())
    r = mixture_precision(planned_se, alpha)
    cs = cs_halfwidth(se, r, alpha)
    dev = np.abs(mean - null)
    out = {
        "n_studies": n_studies,
        "looks": int(looks.sum()),
        "false_stop_cs": float(((dev > cs) & looks).any(axis=1).mean()),
        "false_stop_naive": float(((dev > z * se) & looks).any(axis=1).mean()),
        "final_cs_over_fixed": float((cs[:, -1] / (z * se[:, -1])).mean()),
    }
    if target_halfwidth is not None:
        reached = looks & (z * se <= target_halfwidth)
        stopped = reached.any(axis=1)
        at = np.argmax(reached, axis=1)
        rows = np.flatnonzero(stopped)
        err = np.abs(mean[rows, at[rows]] - truth)
        out["stopped_share"] = float(stopped.mean())
        out["mean_ratings_at_stop"] = float((at[rows] + 1).mean()) if len(rows) else float("nan")
        out["coverage_fixed_at_stop"] = float((err <= z * se[rows, at[rows]]).mean()) if len(rows) else float("nan")
        out["coverage_cs_at_stop"] = float((err <= cs[rows, at[rows]]).mean()) if len(rows) else float("nan")
    return out
