"""Benchmark: adaptive vs uniform allocation through the real lease engine (issue 14, point 3).

Simulated raters lease and submit through ``engine.lease_next`` / ``engine.submit`` on a real
database (a SQLite file by default; any ``DATABASE_URL`` works): a study with a teacher and
several models of known P(rated >= teacher), one comparison per model and prompt, at most k
ratings each. Each prompt's P(>=) is Beta-distributed around the model's (within-prompt
correlation ``icc``), so ratings of one prompt are correlated as real ones are. Raters work
``batch`` at a time (``batch`` leases, then their ratings), each doing up to 20 tasks; the adaptive
engine's cached arm statistics are refreshed after every batch (in production: every few seconds).

A run stops when every model's 95% interval of P(>= teacher) (prompt-clustered, as on the study
page) is at most ``target`` wide on each side, with at least 30 prompts rated, or when no work is
left. Reported per mode: mean ratings to the stop, the share of runs that reached the target, and
the coverage of the true P(>=) by those intervals at the stop (plain per-model means: see
``evalsite/rating/assignment.py`` for why they need no weights).

Run:  .venv/bin/python benchmarks/allocation.py [--runs 30] [--small]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FULL = dict(p_geq=[0.55, 0.1, 0.92, 0.75], prompts=500, k=5, icc=0.15, target=0.05)
SMALL = dict(p_geq=[0.55, 0.1, 0.92], prompts=150, k=3, icc=0.15, target=0.1)
TASKS_PER_RATER = 20
MIN_PROMPTS = 30


def build_study(slug: str, p_geq: list[float], prompts: int, k: int, target: float, adaptive: bool):
    """A live study: a teacher and one model per entry of ``p_geq``, one comparison per model and
    prompt (teacher stored as A), no attention checks; bulk-created for speed."""
    from evalsite.studies.models import Comparison, LanguageModel, Prompt, Response, Study

    study = Study.objects.create(
        slug=slug, title=slug, completion_code="BENCH", redundancy=k, tasks_per_rater=TASKS_PER_RATER,
        attention_check_rate=0.0, min_seconds_per_task=0.0, target_halfwidth=target,
        allocation="adaptive" if adaptive else "uniform",
    )  # fmt: skip
    roles = ["teacher"] + ["imitation"] * len(p_geq)
    models = LanguageModel.objects.bulk_create(
        [LanguageModel(study=study, alias=f"m{i}", role=role, backend="imported") for i, role in enumerate(roles)]
    )
    rows = Prompt.objects.bulk_create(
        [Prompt(study=study, source_id=f"p{i}", text=f"Question {i}?", position=i) for i in range(prompts)]
    )
    responses = Response.objects.bulk_create(
        [Response(prompt=p, model=m, text=f"{m.alias} on {p.source_id}") for p in rows for m in models]
    )
    by = {(r.prompt_id, r.model_id): r for r in responses}
    comparisons = Comparison.objects.bulk_create(
        [
            Comparison(study=study, prompt=p, response_a=by[p.pk, models[0].pk], response_b=by[p.pk, m.pk])
            for p in rows
            for m in models[1:]
        ]
    )
    # Which model and prompt each comparison is (model index into p_geq, prompt index).
    index = {c.pk: (i % len(p_geq), i // len(p_geq)) for i, c in enumerate(comparisons)}
    Study.objects.filter(pk=study.pk).update(status=Study.Status.LIVE)
    study.refresh_from_db()
    return study, index


def run_once(p_geq, prompts, k, icc, target, *, adaptive: bool, seed: int, batch: int = 20) -> dict:
    """One simulated study through the engine; ratings to the stop and coverage at the stop."""
    from evalsite.analysis.planning import z_value
    from evalsite.analysis.stopping import clustered_mean
    from evalsite.rating import assignment as engine
    from evalsite.rating.identity import pseudonym
    from evalsite.rating.models import Rater

    rng = np.random.default_rng(seed)
    random.seed(seed)  # the engine's own draws (sides, arms); the database's RANDOM() stays free
    p = np.asarray(p_geq, dtype=float)
    c = 1.0 / icc - 1.0
    theta = rng.beta(p[:, None] * c, (1 - p[:, None]) * c, size=(len(p), prompts))
    slug = f"bench-{'a' if adaptive else 'u'}-{seed}-{time.monotonic_ns()}"
    study, index = build_study(slug, p_geq, prompts, k, target, adaptive)
    z = z_value(0.05)
    outcomes: list[list[tuple[int, float]]] = [[] for _ in p]
    raters: list = []
    made = 0

    def new_rater():
        nonlocal made
        made += 1
        external = f"r{made}"
        return Rater.objects.create(
            study=study, platform="link", external_id=external, pseudonym=pseudonym(study, "link", external)
        )

    def halfwidths() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        half, est, ready = np.full(len(p), np.inf), np.full(len(p), np.nan), np.zeros(len(p), dtype=bool)
        for i, rows in enumerate(outcomes):
            if rows:
                prompts_of, ys = zip(*rows, strict=True)
                m = clustered_mean(np.array(ys), np.array(prompts_of))
                half[i], est[i], ready[i] = z * m["se"], m["estimate"], m["n_clusters"] >= MIN_PROMPTS
        return half, est, ready

    refresh = engine.ALLOCATION_REFRESH_SECONDS
    engine.ALLOCATION_REFRESH_SECONDS = float("inf")  # refreshed after each batch instead
    try:
        engine.forget_arm_state(study.pk)
        while True:
            half, est, ready = halfwidths()
            if ((half <= target) & ready).all():
                break
            leases = []
            for _ in range(batch):
                rater = raters.pop(0) if raters else new_rater()
                a = engine.lease_next(rater, study)
                if a is None and rater.tasks_submitted:
                    rater = new_rater()  # this rater has seen what is left: a fresh one may not have
                    a = engine.lease_next(rater, study)
                if a is None:
                    break
                leases.append((rater, a))
            if not leases:
                break  # every comparison at k: the target is out of reach
            for rater, a in leases:
                model, prompt = index[a.comparison_id]
                y = float(rng.random() < theta[model, prompt])
                # y = 1: the model (stored B) rated >= the teacher (A).
                model_side = "left" if a.left_side == "B" else "right"
                teacher_side = "right" if model_side == "left" else "left"
                engine.submit(a.token, rater, engine.RatingInput(preference=model_side if y else teacher_side))
                outcomes[model].append((prompt, y))
                if rater.tasks_submitted < TASKS_PER_RATER:
                    raters.append(rater)
            engine.forget_arm_state(study.pk)
    finally:
        engine.ALLOCATION_REFRESH_SECONDS = refresh
        engine.forget_arm_state(study.pk)
    half, est, ready = halfwidths()
    return {
        "ratings": sum(len(rows) for rows in outcomes),
        "per_model": [len(rows) for rows in outcomes],
        "reached": bool(((half <= target) & ready).all()),
        "covered": (np.abs(est - p) <= half).tolist(),
    }


def compare(scenario: dict, runs: int, batch: int = 20, seed: int = 0) -> dict:
    """Adaptive vs uniform over ``runs`` simulated studies each (the same truths per seed)."""
    out = {"scenario": scenario, "runs": runs}
    for mode in ("uniform", "adaptive"):
        t0 = time.perf_counter()
        results = [run_once(**scenario, adaptive=mode == "adaptive", seed=seed + i, batch=batch) for i in range(runs)]
        out[mode] = {
            "mean_ratings": float(np.mean([r["ratings"] for r in results])),
            "ratings_per_model": np.mean([r["per_model"] for r in results], axis=0).round(1).tolist(),
            "reached_share": float(np.mean([r["reached"] for r in results])),
            "coverage": float(np.mean([c for r in results for c in r["covered"]])),
            "seconds": time.perf_counter() - t0,
        }
    out["ratings_saved"] = 1.0 - out["adaptive"]["mean_ratings"] / out["uniform"]["mean_ratings"]
    return out


def report(result: dict) -> str:
    s = result["scenario"]
    lines = [
        f"P(>= teacher) {s['p_geq']}, {s['prompts']} prompts, k <= {s['k']}, rho = {s['icc']}, "
        f"target ±{s['target']}, {result['runs']} runs each:"
    ]
    for mode in ("uniform", "adaptive"):
        r = result[mode]
        lines.append(
            f"  {mode:8s} {r['mean_ratings']:7.0f} ratings (per model {r['ratings_per_model']}), "
            f"coverage {r['coverage']:.1%}, target reached in {r['reached_share']:.0%} of runs ({r['seconds']:.0f} s)"
        )
    lines.append(f"  ratings saved by adaptive allocation: {result['ratings_saved']:.1%}")
    return "\n".join(lines)


def setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "evalsite.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--small", action="store_true", help="the CI size (3 models, 150 prompts, ±0.1)")
    parser.add_argument("--batch", type=int, default=20, help="raters working at once")
    parser.add_argument("--database", default="sqlite:////dev/shm/evalsite_allocation_bench.sqlite3")
    args = parser.parse_args()
    if args.database.startswith("sqlite:///"):
        Path(args.database.removeprefix("sqlite://")).unlink(missing_ok=True)
    setup_django(args.database)
    print(report(compare(SMALL if args.small else FULL, args.runs, args.batch)))


if __name__ == "__main__":
    main()
