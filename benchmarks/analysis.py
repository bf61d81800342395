"""Benchmark: Bradley-Terry with 1,000 bootstrap rounds on 1M votes among 20 models (issue 6).

Compares the batched count-based fit in ``evalsite.analysis.bradley_terry`` with a
straightforward baseline that refits a vote-level logistic regression (scipy L-BFGS on a sparse
design) on every bootstrap resample. The baseline is timed on a few rounds and extrapolated to
1,000; the output says so. Also times the style-controlled fit with its Poisson bootstrap.

Run:  .venv/bin/python benchmarks/analysis.py [--votes 1000000] [--models 20] [--baseline-rounds 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.optimize import minimize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evalsite.analysis.bradley_terry import _pair_cells, bootstrap_cells, fit_from_cells  # noqa: E402
from evalsite.analysis.schema import make_ratings  # noqa: E402
from evalsite.analysis.style import style_controlled  # noqa: E402


def make_votes(n_votes: int, n_models: int, n_prompts: int, seed: int = 0):
    """Random votes from known strengths with ties, prompts assigned at random.

    P(tie) = 0.2 * min(p, 1 - p) and P(first wins) = p - P(tie)/2 keep the expected score equal to p,
    so ties-as-half-wins Bradley-Terry targets exactly the planted strengths.
    """
    rng = np.random.default_rng(seed)
    beta = np.linspace(-1.0, 1.0, n_models)
    i = rng.integers(0, n_models, n_votes)
    j = (i + rng.integers(1, n_models, n_votes)) % n_models
    p = 1.0 / (1.0 + np.exp(-(beta[i] - beta[j])))
    tie = 0.2 * np.minimum(p, 1.0 - p)
    u = rng.random(n_votes)
    score = np.where(u < p - tie / 2, 1.0, np.where(u < p + tie / 2, 0.5, 0.0))
    prompts = rng.integers(0, n_prompts, n_votes)
    return i, j, score, prompts, beta - beta.mean()


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def baseline_round(i, j, score, n_models, rng) -> np.ndarray:
    """One bootstrap round the straightforward way: resample votes, refit the vote-level model."""
    idx = rng.integers(0, len(i), len(i))
    a, b, y = i[idx], j[idx], score[idx]
    n = len(idx)
    X = sparse.csr_matrix(
        (np.r_[np.ones(n), -np.ones(n)], (np.r_[np.arange(n), np.arange(n)], np.r_[a, b])),
        shape=(n, n_models),
    )

    def nll(beta):
        eta = X @ beta
        loss = np.logaddexp(0.0, eta) - y * eta
        grad = X.T @ (1.0 / (1.0 + np.exp(-eta)) - y)
        return loss.sum(), grad

    fit = minimize(nll, np.zeros(n_models), jac=True, method="L-BFGS-B", options={"gtol": 1e-6})
    return fit.x - fit.x.mean()


def style_benchmark(n_votes: int, n_models: int, n_boot: int, seed: int = 0) -> dict:
    """Style-controlled fit + Poisson bootstrap on ``n_votes`` votes with real text features."""
    rng = np.random.default_rng(seed)
    words = np.array("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split())
    pool = []
    for k in range(2000):  # distinct texts; features are computed once per distinct text
        body = " ".join(rng.choice(words, rng.integers(10, 200)))
        if k % 3 == 0:
            body = "## Notes\n- " + body.replace(" kappa ", "\n- ")
        if k % 5 == 0:
            body = "Definitely **" + body + "**"
        if k % 7 == 0:
            body = "I think it might be " + body
        pool.append(body)
    pool = np.array(pool, dtype=object)
    a = rng.integers(0, n_models, n_votes)
    b = (a + rng.integers(1, n_models, n_votes)) % n_models
    ta, tb = rng.integers(0, len(pool), n_votes), rng.integers(0, len(pool), n_votes)
    lengths = np.array([len(t.split()) for t in pool])
    d = (lengths[ta] - lengths[tb]) / (lengths[ta] + lengths[tb] + 1.0)
    beta = np.linspace(-1, 1, n_models)
    s = 1 / (1 + np.exp(-(beta[a] - beta[b] + 1.5 * d)))
    names = np.array([f"m{k:02d}" for k in range(n_models)], dtype=object)
    ratings = make_ratings(
        pd.DataFrame(
            {
                "rating_id": np.arange(n_votes),
                "comparison_id": np.arange(n_votes),
                "prompt_id": ta % 500,
                "rater_id": "r",
                "model_a": names[a],
                "model_b": names[b],
                "winner": np.where(rng.random(n_votes) < s, "A", "B"),
                "left_side": np.where(rng.random(n_votes) < 0.5, "A", "B"),
                "text_a": pool[ta],
                "text_b": pool[tb],
            }
        )
    )
    result, seconds = timed(lambda: style_controlled(ratings, n_boot=n_boot, seed=seed))
    length = next(c for c in result["coefficients"] if c["feature"] == "length")
    return {
        "seconds": seconds,
        "length_raw": length["coef_raw"],
        "length_raw_ci": (length["raw_lo"], length["raw_hi"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--prompts", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=1_000)
    parser.add_argument("--baseline-rounds", type=int, default=3)
    parser.add_argument("--style-votes", type=int, default=100_000)
    parser.add_argument("--style-rounds", type=int, default=1_000)
    args = parser.parse_args()
    m, n_cells = args.models, 3 * args.models * args.models

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, no GPU; "
        f"numpy {np.__version__}; load average at start {os.getloadavg()[0]:.1f} "
        "(other work shares the cores)"
    )
    (i, j, score, prompts, truth), t_gen = timed(lambda: make_votes(args.votes, m, args.prompts))
    print(f"data: {args.votes:,} votes, {m} models, {args.prompts:,} prompts (generated in {t_gen:.2f}s)")

    def fast(clustered: bool):
        rng = np.random.default_rng(1)
        cells = _pair_cells(i, j, score, m)
        counts = np.bincount(cells, minlength=n_cells)[None].astype(float)
        point = fit_from_cells(counts, m)[0]
        boot = fit_from_cells(
            bootstrap_cells(cells, n_cells, n_boot=args.rounds, rng=rng, clusters=prompts if clustered else None),
            m,
        )
        return point, boot

    fast(False)  # warm-up (BLAS threads, page faults)
    (point, boot), t_fast = timed(lambda: fast(False))
    (_, boot_c), t_fast_c = timed(lambda: fast(True))
    print(
        f"batched BT, {args.rounds} rounds, votes bootstrap (multinomial on pair counts): {t_fast:.2f}s "
        f"(max |beta - truth| = {np.abs(point - truth).max():.3f}, "
        f"mean bootstrap SE = {boot.std(0).mean():.4f})"
    )
    print(
        f"batched BT, {args.rounds} rounds, prompt-clustered bootstrap: {t_fast_c:.2f}s "
        f"(mean bootstrap SE = {boot_c.std(0).mean():.4f})"
    )

    rng = np.random.default_rng(2)
    per_round = []
    for _ in range(args.baseline_rounds):
        est, seconds = timed(lambda: baseline_round(i, j, score, m, rng))
        per_round.append(seconds)
    t_round = float(np.mean(per_round))
    t_base = t_round * args.rounds
    print(
        f"baseline (scipy L-BFGS refit over all votes per round): {t_round:.2f}s per round, timed on "
        f"{args.baseline_rounds} rounds and extrapolated to {args.rounds}: {t_base:.0f}s"
    )
    print(f"speed-up: {t_base / t_fast:.0f}x (votes bootstrap), {t_base / t_fast_c:.0f}x (prompt-clustered)")
    print(
        f"baseline estimate agrees with the count fit within {np.abs(est - point).max():.3f} "
        "(one resample vs the full-data fit)"
    )

    style = style_benchmark(args.style_votes, m, args.style_rounds)
    print(
        f"style-controlled fit + {args.style_rounds} Poisson-bootstrap rounds on {args.style_votes:,} votes "
        f"({m} models, 6 style features + left side): {style['seconds']:.2f}s "
        f"(length coef raw {style['length_raw']:.2f}, planted 1.50, 95% CI "
        f"{style['length_raw_ci'][0]:.2f}-{style['length_raw_ci'][1]:.2f})"
    )


if __name__ == "__main__":
    main()
