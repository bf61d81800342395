"""The JSON pair's hot path: one SQL statement per call on PostgreSQL, with every rule intact.

The rules are checked on every database; the statement count and the races need PostgreSQL.
"""

import pytest
from django.db import connection
from django.test import Client

from evalsite.rating import assignment
from evalsite.rating.models import Assignment, Rater, Rating
from evalsite.studies import lifecycle
from evalsite.studies.models import Comparison

needs_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the one-statement path and its row locks are PostgreSQL's"
)


def enter(client: Client, slug: str, pid: str, consent: bool = True) -> str:
    """Entry (and consent); returns the CSRF token the JSON submit must echo."""
    client.get(f"/r/{slug}/?PROLIFIC_PID={pid}&STUDY_ID=s&SESSION_ID=x")
    client.get(f"/r/{slug}/consent/")
    csrf = client.cookies["csrftoken"].value
    if consent:
        client.post(f"/r/{slug}/consent/", {"agree": "yes", "csrfmiddlewaretoken": csrf})
    return csrf


class Statements:
    """Counts SQL statements sent (an execute wrapper survives the reconnects between requests)."""

    def __init__(self):
        self.sql: list[str] = []

    def __call__(self, execute, sql, params, many, context):
        self.sql.append(sql)
        return execute(sql, params, many, context)

    def __enter__(self):
        self._cm = connection.execute_wrapper(self)
        self._cm.__enter__()
        return self

    def __exit__(self, *exc):
        self._cm.__exit__(*exc)

    @property
    def captured_queries(self) -> list[str]:
        return self.sql


@needs_postgresql
@pytest.mark.django_db(transaction=True)
def test_next_and_submit_are_one_statement_each(live_study, monkeypatch):
    monkeypatch.setattr(assignment, "_last_sweep", {pk: 1e18 for pk in range(1, 10_000)})  # no sweep now
    study = live_study(tasks_per_rater=3)
    client = Client(enforce_csrf_checks=True)
    csrf = enter(client, study.slug, "w1")
    for _ in range(2):
        with Statements() as next_q:
            task = client.get(f"/r/{study.slug}/api/next/").json()
        with Statements() as resume_q:
            again = client.get(f"/r/{study.slug}/api/next/").json()
        # the rating form comes from a per-process cache after the first submit
        client.post(task["submit_url"], {"preference": "tie"}, content_type="application/json", HTTP_X_CSRFTOKEN=csrf)
        with Statements() as replay_q:
            r = client.post(
                task["submit_url"], {"preference": "left"}, content_type="application/json", HTTP_X_CSRFTOKEN=csrf
            )
        assert again["token"] == task["token"] and r.json()["ok"]
        assert len(next_q.captured_queries) == 1, next_q.sql
        assert len(resume_q.captured_queries) == 1
    with Statements() as submit_q:
        task = client.get(f"/r/{study.slug}/api/next/").json()
        client.post(task["submit_url"], {"preference": "tie"}, content_type="application/json", HTTP_X_CSRFTOKEN=csrf)
    assert len(submit_q.captured_queries) == 2, submit_q.sql
    assert len(replay_q.captured_queries) == 2  # a replay also reads the stored rating back
    assert Rating.objects.count() == 3 and client.get(f"/r/{study.slug}/api/next/").json()["done"] is True
    c = Comparison.objects.filter(study=study)
    assert sum(x.n_submitted for x in c) == 3 and sum(x.n_live for x in c) == 0


@pytest.mark.django_db
def test_json_submit_needs_the_csrf_header(live_study):
    study = live_study()
    client = Client(enforce_csrf_checks=True)
    csrf = enter(client, study.slug, "w1")
    task = client.get(f"/r/{study.slug}/api/next/").json()
    r = client.post(task["submit_url"], {"preference": "tie"}, content_type="application/json")
    assert r.status_code == 403 and not Rating.objects.exists()
    r = client.post(task["submit_url"], {"preference": "tie"}, content_type="application/json", HTTP_X_CSRFTOKEN=csrf)
    assert r.status_code == 200 and Rating.objects.count() == 1


@pytest.mark.django_db
def test_no_task_before_consent_nor_in_a_paused_study(live_study):
    study = live_study()
    client = Client()
    enter(client, study.slug, "w1", consent=False)
    r = client.get(f"/r/{study.slug}/api/next/")
    assert r.status_code == 403 and "consent" in r.json()["error"] and not Assignment.objects.exists()
    client.post(f"/r/{study.slug}/consent/", {"agree": "yes"})
    assert client.get(f"/r/{study.slug}/api/next/").json()["done"] is False
    lifecycle.pause(study)
    r = client.get(f"/r/{study.slug}/api/next/")  # status is read in the statement: no stale cache
    assert r.status_code == 409 and r.json()["done"] is True


@pytest.mark.django_db
def test_a_cookie_for_another_study_gets_nothing(live_study):
    first, second = live_study(slug="first"), live_study(slug="second")
    client = Client()
    enter(client, first.slug, "w1")
    rater = Rater.objects.get(study=first)
    # Replay first's cookie value under second's cookie name: the signature covers the name.
    client.cookies[f"evalsite_rater_{second.slug}"] = client.cookies[f"evalsite_rater_{first.slug}"].value
    assert client.get(f"/r/{second.slug}/api/next/").status_code == 403
    assert not Assignment.objects.filter(rater=rater, comparison__study=second).exists()


@pytest.mark.django_db
def test_blocked_rater_with_a_live_lease_loses_it(live_study):
    study = live_study()
    client = Client()
    enter(client, study.slug, "w1")
    task = client.get(f"/r/{study.slug}/api/next/").json()
    Rater.objects.update(blocked=True)
    assert client.get(f"/r/{study.slug}/api/next/").json()["done"] is True
    leased = Assignment.objects.get(token=task["token"])
    assert leased.status == "expired" and leased.comparison.n_live == 0
    r = client.post(task["submit_url"], {"preference": "tie"}, content_type="application/json")
    assert r.status_code == 409 and not Rating.objects.exists()


@needs_postgresql
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_one_raters_tabs_racing_get_one_lease_and_one_rating_each(live_study, make_rater):
    """Several tabs of one rater lease and submit at the same instant, over and over.

    A statement's snapshot predates the rater lock it waits for, so a tab may miss the lease
    another tab just inserted; the unique constraints turn that into a retry, never a second lease.
    """
    import threading

    from django.db import connections

    from evalsite.rating.assignment import RatingInput

    study = live_study(slug="tabs", n_prompts=12, redundancy=2, tasks_per_rater=12)
    rater = make_rater(study)
    tabs, rounds = 4, 8
    barrier = threading.Barrier(tabs)
    errors: list[BaseException] = []
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
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
            barrier.abort()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=tab, args=(i,)) for i in range(tabs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == [] and not any(t.is_alive() for t in threads)
    for r in range(rounds):
        assert len({tokens[i][r] for i in range(tabs)}) == 1  # every tab got the same lease
        assert len({ratings[i][r] for i in range(tabs)}) == 1  # and the same, single rating
    assert Rating.objects.filter(rater=rater).count() == rounds
    assert Assignment.objects.filter(rater=rater).count() == rounds
    rater.refresh_from_db()
    assert rater.tasks_submitted == rounds
    assert sum(Comparison.objects.filter(study=study).values_list("n_live", flat=True)) == 0
