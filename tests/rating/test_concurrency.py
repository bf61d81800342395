"""Many raters leasing at once (PostgreSQL row locks, SQLite serialized writers): k is never exceeded,
nobody sees a pair twice."""

import threading
from collections import Counter

import pytest
from django.db import connections

from evalsite.rating import assignment as engine
from evalsite.rating.assignment import RatingInput
from evalsite.rating.models import Assignment, Rater, Rating
from evalsite.studies.models import Comparison

N_RATERS = 24


@pytest.mark.slow
@pytest.mark.engine
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("window", [64, 2], ids=["fast-path", "window-exhausted-fallback"])
def test_parallel_raters_never_exceed_k_or_repeat(live_study, make_rater, monkeypatch, window):
    # With a window of 2, concurrent raters constantly find it locked and take the full query.
    monkeypatch.setattr(engine, "PICK_WINDOW", window)
    study = live_study(
        slug="crowd", n_prompts=10, roles=("teacher", "imitation", "base"), redundancy=3, tasks_per_rater=8
    )
    raters = [make_rater(study, f"w{i}") for i in range(N_RATERS)]
    capacity = Comparison.objects.filter(study=study).count() * study.redundancy  # 20 × 3 = 60 slots
    barrier = threading.Barrier(N_RATERS)
    errors: list[BaseException] = []
    leased: dict[int, list[int]] = {}

    def work(rater: Rater) -> None:
        mine = leased.setdefault(rater.pk, [])
        try:
            barrier.wait()
            while (a := engine.lease_next(rater, study)) is not None:
                mine.append(a.comparison_id)
                engine.submit(a.token, rater, RatingInput(preference="tie"))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            connections.close_all()  # each thread has its own connection

    threads = [threading.Thread(target=work, args=(r,)) for r in raters]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []

    # No rater leased a comparison twice, in the engine's answers or in the table.
    for comparison_ids in leased.values():
        assert len(comparison_ids) == len(set(comparison_ids))
    pairs = Counter(Assignment.objects.values_list("rater_id", "comparison_id"))
    assert max(pairs.values()) == 1
    # No comparison got more than k ratings, and the counters agree with the rows.
    per_comparison = Counter(Rating.objects.values_list("comparison_id", flat=True))
    assert max(per_comparison.values()) <= study.redundancy
    for c in Comparison.objects.filter(study=study):
        assert c.n_live == 0 and c.n_submitted == per_comparison[c.pk]
    # Work was neither lost nor over-handed: 24 raters × quota 8 = 192 wanted, 60 slots exist.
    assert Rating.objects.count() == capacity
    assert sum(len(v) for v in leased.values()) == capacity
