"""Benchmark: Bradley-Terry with 1,000 bootstrap rounds on 1M votes among 20 models (issues 6, 13).

Compares the batched count-based fit in ``evalsite.analysis.bradley_terry`` with a
straightforward baseline that refits a vote-level logistic regression (scipy L-BFGS on a sparse
design) on every bootstrap resample. The baseline is timed on a few rounds and extrapolated to
1,000; the output says so. Also times the style-controlled fit with its Poisson bootstrap.

Issue 13 rows, each with its peak memory (numpy and Python allocations, by ``tracemalloc``):

* the public ``bradley_terry()`` on a ratings table of ``--votes`` rows: prompt-clustered
  bootstrap beside cluster-robust (sandwich) standard errors, and how far apart the two are;
* the prompt-clustered bootstrap with ``--cluster-prompts`` distinct prompts (rounds drawn in
  chunks: memory bounded whatever the number of prompts);
* ``style_controlled()`` with prompt-clustered intervals on ``--style-votes`` votes (goal < 60 s at 1M).

Run:  .venv/bin/python benchmarks/analysis.py [--votes 1000000] [--models 20] [--baseline-rounds 3]
Small: .venv/bin/python benchmarks/analysis.py --votes 20000 --prompts 500 --rounds 100 \
          --baseline-rounds 1 --style-votes 20000 --style-rounds 50 --cluster-prompts 20000
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.optimize import minimize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evalsite.analysis.bradley_terry import (  # noqa: E402
    _pair_cells,
    bootstrap_cells,
    bradley_terry,
    fit_from_cells,
)
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


def peak_rss_mb() -> float:
    """The process's peak resident set size so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def measured(fn):
    """(result, seconds, peak MB allocated while it ran) of ``fn()``; tracemalloc sees numpy's arrays."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    start = time.perf_counter()
    try:
        out = fn()
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    return out, seconds, peak


def ratings_table(i, j, score, prompts, n_models: int, texts=None) -> pd.DataFrame:
    """A ratings table as ``make_ratings`` returns it, built column-wise (1M rows in about a second)."""
    n = len(i)
    names = pd.Categorical.from_codes(np.r_[i, j], [f"m{k:02d}" for k in range(n_models)]).astype(str)
    ids = np.arange(n).astype(str)
    table = {
        "rating_id": ids,
        "comparison_id": ids,
        "prompt_id": pd.Series(prompts).astype(str).to_numpy(),
        "rater_id": "r",
        "model_a": names[:n],
        "model_b": names[n:],
        "winner": np.where(score == 1.0, "A", np.where(score == 0.0, "B", "tie")).astype(object),
        "left_side": "A",
    }
    if texts is not None:
        table["text_a"], table["text_b"] = texts
    return make_ratings(pd.DataFrame(table))


def bt_clustered_row(i, j, score, prompts, n_models: int, rounds: int) -> None:
    """The public fit on a ratings table: prompt bootstrap and sandwich side by side."""
    ratings, t_table = timed(lambda: ratings_table(i, j, score, prompts, n_models))
    result, seconds, peak = measured(lambda: bradley_terry(ratings, n_boot=rounds, seed=1))
    rows = [r for r in result["rows"] if r["identified"]]
    boot_se = np.array([r["elo_se"] for r in rows])
    sandwich_se = np.array([r["elo_se_sandwich"] for r in rows])
    ratio = sandwich_se / boot_se
    print(
        f"bradley_terry() on {len(ratings):,} votes, {result['n_prompts']:,} prompts: {rounds} prompt-clustered "
        f"bootstrap rounds + cluster-robust sandwich SEs: {seconds:.2f}s, peak {peak:.0f} MB "
        f"(table built in {t_table:.2f}s; mean SE {boot_se.mean():.2f} bootstrap vs {sandwich_se.mean():.2f} "
        f"sandwich rating points, sandwich/bootstrap {ratio.min():.2f}-{ratio.max():.2f})"
    )


def cluster_memory_row(n_votes: int, n_models: int, n_prompts: int, rounds: int) -> None:
    """The prompt-clustered bootstrap when (almost) every vote has its own prompt: bounded memory."""
    i, j, score, _, _ = make_votes(n_votes, n_models, n_prompts, seed=3)
    prompts = np.arange(n_votes) % n_prompts  # every prompt used when n_prompts <= n_votes
    n_cells = 3 * n_models * n_models
    cells = _pair_cells(i, j, score, n_models)
    boot, seconds, peak = measured(
        lambda: bootstrap_cells(cells, n_cells, n_boot=rounds, rng=np.random.default_rng(0), clusters=prompts)
    )
    all_at_once = rounds * len(np.unique(prompts)) * 8 / 2**20
    print(
        f"prompt-clustered bootstrap, {rounds} rounds over {len(np.unique(prompts)):,} prompts ({n_votes:,} votes): "
        f"{seconds:.2f}s, peak {peak:.0f} MB (all rounds' weights at once would take {all_at_once:,.0f} MB)"
    )


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


def style_benchmark(
    n_votes: int, n_models: int, n_boot: int, seed: int = 0, bootstrap: str = "votes", n_prompts: int = 500
) -> dict:
    """Style-controlled fit + bootstrap (``"votes"``: Poisson per vote; ``"prompt"``: prompt-clustered)
    on ``n_votes`` votes with real text features."""
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
                "prompt_id": rng.integers(0, n_prompts, n_votes),
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
    result, seconds, peak = measured(lambda: style_controlled(ratings, n_boot=n_boot, seed=seed, bootstrap=bootstrap))
    length = next(c for c in result["coefficients"] if c["feature"] == "length")
    return {
        "seconds": seconds,
        "peak_mb": peak,
        "n_prompts": result["n_prompts"],
        "se_ratio": length["se_sandwich"] / length["se"],
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
    parser.add_argument("--style-prompts", type=int, default=5_000)
    parser.add_argument("--clustered-style-votes", type=int, default=1_000_000)
    parser.add_argument("--clustered-style-rounds", type=int, default=1_000)
    parser.add_argument("--cluster-prompts", type=int, default=1_000_000)
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

    # Issue 13: cluster-robust intervals, bounded memory, style with prompt-clustered intervals.
    bt_clustered_row(i, j, score, prompts, m, args.rounds)
    cluster_memory_row(args.cluster_prompts, m, args.cluster_prompts, args.rounds)
    clustered = style_benchmark(
        args.clustered_style_votes, m, args.clustered_style_rounds, bootstrap="prompt", n_prompts=args.style_prompts
    )
    print(
        f"style-controlled fit + {args.clustered_style_rounds} prompt-clustered bootstrap rounds on "
        f"{args.clustered_style_votes:,} votes ({clustered['n_prompts']:,} prompts): {clustered['seconds']:.2f}s "
        f"(goal < 60 s at 1M votes), peak {clustered['peak_mb']:.0f} MB "
        f"(length coef raw {clustered['length_raw']:.2f}, "
        f"95% CI {clustered['length_raw_ci'][0]:.2f}-{clustered['length_raw_ci'][1]:.2f}; "
        f"sandwich/bootstrap SE {clustered['se_ratio']:.2f})"
    )
    print(f"peak resident memory of the whole run: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
