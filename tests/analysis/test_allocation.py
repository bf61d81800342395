"""Adaptive allocation across models (issue 14, point 3), benchmarked in simulation.

The rule's fast simulation; tests/rating/test_allocation_benchmark.py runs it through the lease engine.
"""

import numpy as np
import pytest

from evalsite.analysis.allocation import allocation_probabilities, simulate_allocation


def test_probabilities_favour_wide_intervals_and_keep_everyone_eligible():
    n = np.array([100, 100, 10, 50])
    variance = np.array([0.25, 0.05, 0.25, 0.25])
    room = np.array([True, True, True, False])
    wanted = np.array([True, True, True, True])
    p = allocation_probabilities(n, variance, room, wanted, mix=0.2)
    assert p.sum() == pytest.approx(1.0)
    assert p[3] == 0.0  # at its cap
    assert (p[:3] >= 0.2 / 3 - 1e-12).all()  # every model with room keeps a known, positive share
    assert p[2] > p[0] > p[1]  # fewer ratings, then more variance, get more
    # A model already at the target gets only the uniform share.
    done = allocation_probabilities(n, variance, room, np.array([False, True, True, True]), mix=0.2)
    assert done[0] == pytest.approx(0.2 / 3)
    # Nobody wanted: uniform over the models with room.
    idle = allocation_probabilities(n, variance, room, np.zeros(4, dtype=bool), mix=0.2)
    assert idle[:3] == pytest.approx([1 / 3] * 3)


def test_adaptive_allocation_saves_ratings_at_the_same_coverage():
    """Four models far apart (the paper's kind of study: an imitation near parity, a base model
    far below the teacher): adaptive allocation reaches ±5 points on every model with >= 30% fewer
    ratings than the engine's uniform allocation, and both intervals cover >= 93%."""
    scenario = dict(p_geq=[0.55, 0.1, 0.92, 0.75], prompts=500, k=5, icc=0.15, target_halfwidth=0.05)
    uniform = simulate_allocation(**scenario, adaptive=False, n_studies=400, seed=1)
    adaptive = simulate_allocation(**scenario, adaptive=True, n_studies=400, seed=1)
    saved = 1 - adaptive["mean_ratings"] / uniform["mean_ratings"]
    print(
        f"\nuniform {uniform['mean_ratings']:.0f} ratings, coverage {uniform['coverage']:.3f}; "
        f"adaptive {adaptive['mean_ratings']:.0f}, coverage {adaptive['coverage']:.3f}; saved {saved:.1%}"
    )
    assert uniform["reached_share"] == adaptive["reached_share"] == 1.0
    assert saved >= 0.30
    assert uniform["coverage"] >= 0.93 and adaptive["coverage"] >= 0.93


def test_adaptive_allocation_costs_nothing_when_models_are_alike():
    scenario = dict(p_geq=[0.6, 0.65, 0.7], prompts=400, k=5, icc=0.1, target_halfwidth=0.05)
    uniform = simulate_allocation(**scenario, adaptive=False, n_studies=300, seed=2)
    adaptive = simulate_allocation(**scenario, adaptive=True, n_studies=300, seed=2)
    assert adaptive["mean_ratings"] <= uniform["mean_ratings"] * 1.02
    assert adaptive["coverage"] >= 0.93
