"""Adaptive allocation of ratings across models: the sampling rule and its benchmark, in simulation.

The lease engine (``evalsite/rating/assignment.py``) calls :func:`allocation_probabilities` for a
study with ``allocation = "adaptive"`` (its uniform path serves the least-rated comparison); this
module also holds a fast simulation of the rule. ``benchmarks/allocation.py`` measures the same
rule through the real engine.

The rule (Chatbot Arena, Chiang et al. 2024, Eq. 9, applied to "each model against the teacher"):
the next rating goes to model i with probability proportional to how much one more rating shrinks
its interval, ``sqrt(V_i / n_i) - sqrt(V_i / (n_i + 1))`` (V_i the per-rating variance of its
P(>= teacher), design effect included), among the models not yet at the target precision; mixed
with ``mix`` of uniform over every model with room left under the cap, so every eligible
comparison keeps a known, positive probability. Within a model the engine's order stays (least
rated first, random among equals): with correlated ratings of a prompt, spreading ratings over
prompts is what buys precision.

Estimates: each model's P(>= teacher) is the plain mean of its own ratings, which all come from
one comparison per prompt in the engine's order whatever the allocation; the allocation changes
only how many each model gets, from past ratings, so each rating's error has mean zero given the
past and the per-model mean's estimating equation is unbiased (a martingale argument, spelled out
in ``evalsite/rating/assignment.py``). Inverse-probability weights (the engine records each
lease's probability, exported as ``selection_probability``) keep that property but add variance;
they matter for estimators that pool pairs with one common weighting (Chatbot Arena's win matrix),
not for per-model means or the Bradley-Terry likelihood.
:func:`simulate_allocation` checks the coverage of the report's interval at the stop.
"""

from __future__ import annotations

import numpy as np

from .planning import z_value


def allocation_probabilities(
    n: np.ndarray, variance: np.ndarray, room: np.ndarray, wanted: np.ndarray, mix: float = 0.2
) -> np.ndarray:
    """Probability that the next rating goes to each model (last axis).

    ``n`` ratings so far, ``variance`` per-rating variance estimates, ``room`` (bool) whether the
    model is below its cap, ``wanted`` (bool) whether its interval is still wider than the target.
    Zero for models without room; at least ``mix / (models with room)`` for every model with room.
    """
    n = np.asarray(n, dtype=float)
    room = np.asarray(room, dtype=bool)
    wanted = np.asarray(wanted, dtype=bool) & room
    v = np.maximum(np.asarray(variance, dtype=float), 1e-12)
    safe_n = np.maximum(n, 1.0)
    gain = np.where(wanted, np.sqrt(v / safe_n) - np.sqrt(v / (safe_n + 1.0)), 0.0)
    n_room = room.sum(axis=-1, keepdims=True)
    uniform = np.where(room, 1.0 / np.maximum(n_room, 1), 0.0)
    total = gain.sum(axis=-1, keepdims=True)
    greedy = np.divide(gain, total, out=uniform.copy(), where=total > 0)
    return (1.0 - mix) * greedy + mix * uniform


def _running_stats(y: np.ndarray, k: int, prompts: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and cluster-robust standard error after each rating, for ratings in engine order.

    ``y`` is (..., k, prompts): pass j, prompt i. Returns two (..., k * prompts + 1) arrays, index
    = ratings so far (index 0: no ratings, se = inf)."""
    lead = y.shape[:-2]
    before = np.concatenate([np.zeros((*lead, 1, prompts)), np.cumsum(y, axis=-2)[..., :-1, :]], axis=-2)
    count = np.broadcast_to(np.arange(k)[:, None], y.shape).astype(float)
    flat = lambda a: a.reshape(*lead, k * prompts)  # noqa: E731
    yf, sf, cf = flat(y), flat(before), flat(count)
    n = np.arange(1, k * prompts + 1, dtype=float)
    mean = np.cumsum(yf, axis=-1) / n
    q = np.cumsum(2 * sf * yf + yf**2, axis=-1)
    pq = np.cumsum(sf + cf * yf + yf, axis=-1)
    rr = np.cumsum(2 * cf + 1, axis=-1)
    g = np.minimum(n, prompts)
    var_cr = np.maximum(q - 2 * mean * pq + mean**2 * rr, 0.0) / n**2 * g / np.maximum(g - 1, 1)
    # Floor: the independent-ratings variance at the Agresti-Coull centre (two pseudo-ratings each
    # way), so that a run of identical verdicts on a model near 0 or 1 cannot end its sampling early.
    shrunk = (n * mean + 2.0) / (n + 4.0)
    var_iid = shrunk * (1.0 - shrunk) / n
    se = np.sqrt(np.maximum(var_cr, var_iid))
    pad = np.zeros((*lead, 1))
    return np.concatenate([pad, mean], axis=-1), np.concatenate([pad + np.inf, se], axis=-1)


def simulate_allocation(
    p_geq: list[float],
    prompts: int,
    k: int,
    icc: float,
    target_halfwidth: float,
    *,
    adaptive: bool,
    n_studies: int = 500,
    batch: int = 20,
    mix: float = 0.2,
    min_prompts: int = 30,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, float]:
    """Ratings needed until every model's 95% interval of P(>= teacher) is at most
    ``target_halfwidth``, with uniform (the engine today: every model in turn) or adaptive
    allocation, and the coverage of those intervals at the stop.

    Each model has one comparison with the teacher on each of ``prompts`` prompts, at most ``k``
    ratings each; prompt i's P(>=) is Beta-distributed with within-prompt correlation ``icc``.
    Ratings arrive in batches of ``batch`` (raters working at once).
    """
    rng = np.random.default_rng(seed)
    p = np.asarray(p_geq, dtype=float)
    m = len(p)
    if icc > 0:
        c = 1.0 / icc - 1.0
        theta = rng.beta(p[None, :, None] * c, (1 - p[None, :, None]) * c, size=(n_studies, m, prompts))
    else:
        theta = np.broadcast_to(p[None, :, None], (n_studies, m, prompts))
    y = (rng.random((n_studies, m, k, prompts)) < theta[:, :, None, :]).astype(float)
    mean, se = _running_stats(y, k, prompts)
    z = z_value(alpha)
    cap = k * prompts
    n = np.zeros((n_studies, m), dtype=np.int64)
    rows = np.arange(n_studies)[:, None]
    cols = np.arange(m)[None, :]
    stop_at = np.full(n_studies, -1, dtype=np.int64)
    stop_n = np.zeros((n_studies, m), dtype=np.int64)
    for _ in range(cap * m // batch + 2):
        half = z * se[rows, cols, n]
        ready = np.minimum(n, prompts) >= min_prompts
        done = ((half <= target_halfwidth) & ready).all(axis=1) | (n >= cap).all(axis=1)
        new = done & (stop_at < 0)
        stop_at[new] = n[new].sum(axis=1)
        stop_n[new] = n[new]
        if (stop_at >= 0).all():
            break
        room = n < cap
        wanted = ~((half <= target_halfwidth) & ready)
        if adaptive:
            variance = np.where(np.isfinite(half), (half / z) ** 2 * np.maximum(n, 1), 0.25)
            probs = allocation_probabilities(n, variance, room, wanted, mix)
        else:
            probs = room / np.maximum(room.sum(axis=1, keepdims=True), 1)
        active = stop_at < 0
        probs[~active] = 1.0 / m
        draws = rng.multinomial(batch, probs)
        n = np.where(active[:, None], np.minimum(n + draws, cap), n)
    reached = (z * se[rows, cols, stop_n] <= target_halfwidth + 1e-12).all(axis=1)
    err = np.abs(mean[rows, cols, stop_n] - p[None, :])
    covered = err <= z * se[rows, cols, stop_n]
    return {
        "mean_ratings": float(stop_at.mean()),
        "reached_share": float(reached.mean()),
        "coverage": float(covered.mean()),
        "coverage_all_models": float(covered.all(axis=1).mean()),
        "ratings_per_model": stop_n.mean(axis=0).tolist(),
    }
