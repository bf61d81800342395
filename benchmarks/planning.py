"""Benchmark: plan, allocate, stop (issue 14), all by simulation.

1. The planner's predicted half-width of P(>= teacher) against the spread of the estimate over
   simulated studies (1.96 x SD, 2,000 studies per design), across the issue's grid: prompts
   30-2,000, k 1-7, win rate 0.3-0.8, within-prompt correlation 0-0.3, tie rate 0-0.2.
2. Bradley-Terry half-widths (3 models, both pairings) against fits to simulated studies.
3. Stopping: false stops under continuous monitoring (a look after every rating) with the
   confidence sequence vs naive repeated 95% intervals, truth at parity.
4. Adaptive vs uniform allocation across models: ratings to reach ±5 points on every model, and
   the coverage of the intervals at the stop.

Run:  .venv/bin/python benchmarks/planning.py [--studies 2000]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evalsite.analysis.allocation import simulate_allocation  # noqa: E402
from evalsite.analysis.bradley_terry import ELO_SCALE, fit_from_cells  # noqa: E402
from evalsite.analysis.planning import Design, plan, simulate_estimates, simulate_totals  # noqa: E402
from evalsite.analysis.stopping import simulate_monitoring  # noqa: E402


def grid_errors(n_studies: int) -> np.ndarray:
    errors = []
    grid = itertools.product(
        (30, 50, 100, 200, 500, 1000, 2000), range(1, 8), (0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
        (0.0, 0.05, 0.1, 0.2, 0.3), (0.0, 0.1, 0.2),
    )  # fmt: skip
    for i, (prompts, k, win, icc, tie) in enumerate(grid):
        if win + tie > 0.95:
            continue
        design = Design(prompts=prompts, k=k, win_rate=win, tie_rate=tie, icc=icc)
        predicted = plan(design)["win_rate_ci_halfwidth"]
        simulated = simulate_estimates(design, n_studies, seed=i)["win_rate_ci_halfwidth"]
        errors.append(simulated / predicted - 1)
    return np.array(errors)


def bt_errors(n_studies: int) -> np.ndarray:
    rng = np.random.default_rng(5)
    errors = []
    for pairing, prompts, k, win, icc in itertools.product(
        ("teacher", "all"), (100, 300, 1000, 2000), (1, 3, 7), (0.3, 0.55, 0.75), (0.0, 0.15, 0.3)
    ):
        d = Design(models=3, prompts=prompts, k=k, win_rate=win, tie_rate=0.1, icc=icc, pairing=pairing)
        cells = np.zeros((n_studies, 27))
        pairs = [(1, 0, win), (2, 0, win)] + ([(1, 2, 0.45)] if pairing == "all" else [])
        for first, second, w in pairs:
            wins, ties = simulate_totals(prompts, k, w, 0.1, icc, n_studies, rng)
            base = (first * 3 + second) * 3
            cells[:, base], cells[:, base + 1], cells[:, base + 2] = wins, ties, prompts * k - wins - ties
        beta = fit_from_cells(cells, 3)
        predicted = plan(d)
        sim = 1.959964 * ELO_SCALE * (beta[:, 1] - beta[:, 0]).std(ddof=1)
        errors.append(sim / predicted["bt_vs_teacher_ci_halfwidth_elo"] - 1)
        sim = 1.959964 * ELO_SCALE * (beta[:, 1] - beta[:, 2]).std(ddof=1)
        errors.append(sim / predicted["bt_between_models_ci_halfwidth_elo"] - 1)
    return np.array(errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=2000)
    args = parser.parse_args()

    t = time.perf_counter()
    e = grid_errors(args.studies)
    print(
        f"planner, P(>=) half-width, {len(e)} designs x {args.studies} studies: max |error| "
        f"{np.abs(e).max():.1%}, rms {np.sqrt((e**2).mean()):.1%}, within ±15%: {(np.abs(e) <= 0.15).mean():.1%} "
        f"({time.perf_counter() - t:.1f} s)"
    )
    t = time.perf_counter()
    e = bt_errors(min(args.studies, 1000))
    print(
        f"planner, Bradley-Terry half-widths, {len(e)} checks (prompts 100-2,000): max |error| "
        f"{np.abs(e).max():.1%}, rms {np.sqrt((e**2).mean()):.1%} ({time.perf_counter() - t:.1f} s)"
    )
    print("stopping, truth at parity, a look after every rating (false-stop rate):")
    for prompts, k, icc in [(300, 3, 0.2), (1000, 1, 0.0), (100, 7, 0.3), (2000, 3, 0.1)]:
        se = plan(Design(prompts=prompts, k=k, win_rate=0.45, tie_rate=0.1, icc=icc))["win_rate_half_ties_ci_halfwidth"]
        r = simulate_monitoring(prompts, k, 0.45, 0.1, icc, n_studies=2000, seed=prompts, planned_se=se / 1.959964)
        print(
            f"  {prompts} prompts x k={k}, rho={icc}: confidence sequence {r['false_stop_cs']:.1%}, "
            f"naive 95% intervals {r['false_stop_naive']:.1%} ({r['looks']} looks)"
        )
    print("allocation, ratings until every model is at ±5 points (P(>=) of each model in brackets):")
    for p_geq, prompts, k, icc in [
        ([0.55, 0.1, 0.92, 0.75], 500, 5, 0.15),
        ([0.55, 0.8, 0.92], 400, 5, 0.1),
        ([0.5, 0.85, 0.95], 300, 7, 0.2),
        ([0.6, 0.65, 0.7], 400, 5, 0.1),
    ]:
        kw = dict(p_geq=p_geq, prompts=prompts, k=k, icc=icc, target_halfwidth=0.05, n_studies=500, seed=1)
        u = simulate_allocation(**kw, adaptive=False)
        a = simulate_allocation(**kw, adaptive=True)
        print(
            f"  {p_geq}, {prompts} prompts, k<={k}, rho={icc}: uniform {u['mean_ratings']:.0f} "
            f"(coverage {u['coverage']:.1%}), adaptive {a['mean_ratings']:.0f} (coverage {a['coverage']:.1%}): "
            f"{1 - a['mean_ratings'] / u['mean_ratings']:.1%} fewer ratings"
        )


if __name__ == "__main__":
    main()
