"""The lease engine under races, on whichever database the run uses (CI runs PostgreSQL and SQLite).

PostgreSQL serializes one rater's tabs on the rater's row lock; SQLite serializes every writer
(``IMMEDIATE`` transactions). Either way the same rules must hold.
"""

import threading

import pytest
from django.db import connection, connections
from django.test import Client

from evalsite.rating import assignment
from evalsite.rating.assignment import RatingInput
from evalsite.rating.models import Assignment, Rater, Rating
from evalsite.studies.models import Comparison

from .pages import ANSWERED, enter_and_consent

pytestmark = pytest.mark.engine


def run_threads(n: int, target) -> list[BaseException]:
    errors: list[BaseException] = []

    def wrapped(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            connections.close_all()  # each thread has its own connection

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    return errors


@pytest.mark.django_db(transaction=True)
def test_one_raters_tabs_racing_get_one_lease_and_one_rating_each(live_study, make_rater):
    """Several tabs of one rater lease and submit at the same instant, over and over."""
    study = live_study(slug="tabs", n_prompts=12, redundancy=2, tasks_per_rater=12)
    rater = make_rater(study)
    tabs, rounds = 4, 6
    barrier = threading.Barrier(tabs)
    tokens: list[list[str]] = [[] for _ in range(tabs)]
    ratings: list[list[int]] = [[] for _ in range(tabs)]

    def tab(i: int) -> None:
        try:
            for _ in range(rounds):
                barrier.wait()
                leased = assignment.lease_next(Rater.objects.get(pk=rater.pk), study)
                tokens[i].append(leased.token if leased else "")
                barrier.wait()
                if leased:
                    rating = assignment.submit(leased.token, Rater.objects.get(pk=rater.pk), RatingInput("tie"))
                    ratings[i].append(rating.pk)
        except BaseException:
            barrier.abort()
            raise

    assert run_threads(tabs, tab) == []
    for r in range(rounds):
        assert len({tokens[i][r] for i in range(tabs)}) == 1  # every tab got the same lease
        assert len({ratings[i][r] for i in range(tabs)}) == 1  # and the same, single rating
    assert Rating.objects.filter(rater=rater).count() == rounds
    assert Assignment.objects.filter(rater=rater).count() == rounds
    rater.refresh_from_db()
    assert rater.tasks_submitted == rounds
    assert sum(Comparison.objects.filter(study=study).values_list("n_live", flat=True)) == 0


@pytest.mark.django_db(transaction=True)
def test_many_raters_take_every_slot_once(live_study, make_rater):
    study = live_study(slug="crowd2", n_prompts=6, roles=("teacher", "imitation", "base"), redundancy=2)
    raters = [make_rater(study, f"w{i}") for i in range(8)]
    capacity = Comparison.objects.filter(study=study).count() * study.redundancy  # 12 × 2

    def work(i: int) -> None:
        rater = raters[i]
        while (a := assignment.lease_next(rater, study)) is not None:
            assignment.submit(a.token, rater, RatingInput(preference="tie"))

    assert run_threads(len(raters), work) == []
    assert Rating.objects.count() == capacity
    for c in Comparison.objects.filter(study=study):
        assert c.n_live == 0 and c.n_submitted == study.redundancy


@pytest.mark.django_db
def test_blocked_rater_with_a_live_lease_loses_it(live_study):
    study = live_study()
    client = Client()
    enter_and_consent(client, study, "?PROLIFIC_PID=w1&STUDY_ID=s&SESSION_ID=x")
    leased = Assignment.objects.get()
    Rater.objects.update(blocked=True)
    r = client.get(f"/r/{study.slug}/task/")
    assert r.status_code == 302 and r.url.split("?")[0].endswith("/done/")
    leased.refresh_from_db()
    assert leased.status == "expired" and leased.comparison.n_live == 0
    r = client.post(f"/r/{study.slug}/task/{leased.token}/", {**ANSWERED, "preference": "tie"})
    assert not Rating.objects.exists()


@pytest.mark.django_db
def test_the_take_statement_is_one_round_trip(live_study, make_rater):
    """Picking the comparison and counting the lease on it is one statement on both databases."""
    from django.test.utils import CaptureQueriesContext

    study = live_study()
    rater = make_rater(study)
    assignment._last_sweep[study.pk] = 1e18  # no sweep in the measured lease
    with CaptureQueriesContext(connection) as q:
        assert assignment.lease_next(rater, study) is not None
    comparison_sql = [x["sql"] for x in q.captured_queries if "studies_comparison" in x["sql"]]
    assert len(comparison_sql) == 1 and comparison_sql[0].lstrip().startswith("UPDATE"), comparison_sql
