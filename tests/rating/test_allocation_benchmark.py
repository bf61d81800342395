"""The adaptive-allocation benchmark at its CI size, through the real lease engine (issue 14)."""

import importlib.util
from pathlib import Path

import pytest

from evalsite.rating import assignment as engine

_spec = importlib.util.spec_from_file_location(
    "bench_allocation", Path(__file__).resolve().parents[2] / "benchmarks" / "allocation.py"
)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def test_adaptive_allocation_saves_ratings_through_the_engine(monkeypatch):
    monkeypatch.setattr(engine, "_arm_states", {})
    monkeypatch.setattr(engine, "_last_sweep", {})
    result = bench.compare(bench.SMALL, runs=4)
    print("\n" + bench.report(result))
    assert result["uniform"]["reached_share"] == 1.0 and result["adaptive"]["reached_share"] == 1.0
    # Three models far apart: the two far from parity need far fewer ratings than the one near it.
    assert result["ratings_saved"] >= 0.2
    assert result["adaptive"]["coverage"] >= 0.75 and result["uniform"]["coverage"] >= 0.75
