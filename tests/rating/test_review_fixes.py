"""Regressions from the code review: the completion code must be earned, and a study that is no
longer live accepts no ratings (on both submit paths)."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from evalsite.rating import assignment as engine
from evalsite.rating.models import Assignment, Rater, Rating
from evalsite.studies import lifecycle
from evalsite.studies.models import Comparison

from .pages import ANSWERED, token_of
from .pages import enter_and_consent as consent_and_first_task

pytestmark = [pytest.mark.django_db, pytest.mark.engine]


ENTRY = "?PROLIFIC_PID=abc&STUDY_ID=s&SESSION_ID=x"


# --- 1. the completion code ----------------------------------------------------------------------


def test_done_without_consent_or_work_gives_no_code(client, live_study):
    study = live_study(tasks_per_rater=2)
    assert client.get(f"/r/{study.slug}/{ENTRY}").status_code == 302
    r = client.get(f"/r/{study.slug}/done/")
    assert r.status_code == 400 and "open the study link" in r.content.decode()
    assert "DONE123" not in r.content.decode() and "prolific.com" not in r.content.decode()
    assert not Rater.objects.exists()  # the entry link alone creates no rater


def test_done_after_consent_but_before_the_quota_gives_no_code(client, live_study):
    study = live_study(tasks_per_rater=2)
    page = consent_and_first_task(client, study, ENTRY)
    r = client.get(f"/r/{study.slug}/done/")
    assert r.status_code == 302 and r.url.split("?")[0].endswith("/task/")
    assert "DONE123" not in r.content.decode()
    # Still the same task: the check resumed the live lease rather than taking another.
    assert token_of(client.get(r.url)) == token_of(page)
    assert Rater.objects.get().completed_at is None


def test_done_while_the_study_is_paused_before_the_quota_gives_no_code(client, live_study):
    study = live_study(tasks_per_rater=2)
    consent_and_first_task(client, study, ENTRY)
    lifecycle.pause(study)
    r = client.get(f"/r/{study.slug}/done/")
    assert r.status_code == 200 and "not running" in r.content.decode() and "DONE123" not in r.content.decode()
    assert Rater.objects.get().completed_at is None


def test_rater_who_did_the_quota_gets_the_code(client, live_study):
    study = live_study(tasks_per_rater=1)
    page = consent_and_first_task(client, study, ENTRY)
    client.post(f"/r/{study.slug}/task/{token_of(page)}/", {**ANSWERED, "preference": "tie"})
    lifecycle.close(study)  # finishing before the study closed still earns the code
    done = client.get(f"/r/{study.slug}/done/")
    assert done.status_code == 200
    html = done.content.decode().replace("&amp;", "&")
    assert "DONE123" in html and "https://app.prolific.com/submissions/complete?cc=DONE123" in html
    assert Rater.objects.get().completed_at is not None


def test_rater_with_no_task_done_never_gets_the_code(client, live_study):
    study = live_study(tasks_per_rater=10, redundancy=1)
    # Every comparison already has its k ratings.
    Comparison.objects.filter(study=study).update(n_submitted=1)
    r = consent_and_first_task(client, study, ENTRY)
    assert r.status_code == 302 and r.url.split("?")[0].endswith("/done/")
    done = client.get(r.url)
    assert done.status_code == 200 and "DONE123" not in done.content.decode()
    assert "nothing to do" in done.content.decode()
    rater = Rater.objects.get()
    assert rater.tasks_submitted == 0 and rater.completed_at is None
    assert not Assignment.objects.exists()


def test_rater_whose_work_ran_out_after_one_task_gets_the_code(client, live_study):
    study = live_study(n_prompts=2, tasks_per_rater=10, redundancy=1)
    page = consent_and_first_task(client, study, ENTRY)
    Comparison.objects.filter(study=study, n_live=0).update(n_submitted=1)  # the rest is done
    r = client.post(f"/r/{study.slug}/task/{token_of(page)}/", {**ANSWERED, "preference": "tie"})
    r = client.get(r.url)
    assert r.status_code == 302 and r.url.split("?")[0].endswith("/done/")
    assert "DONE123" in client.get(r.url).content.decode()


def test_work_held_by_others_means_wait_not_code(client, live_study, make_rater):
    """Made-up ids holding every remaining slot: an honest rater waits (the page retries), no code."""
    study = live_study(n_prompts=2, tasks_per_rater=10, redundancy=1)
    for i in range(Comparison.objects.filter(study=study).count()):
        hoarder = make_rater(study, f"hoarder{i}", consented_at=timezone.now())
        engine.lease_next(hoarder, study)
    r = consent_and_first_task(client, study, ENTRY)
    assert r.status_code == 302 and r.url.split("?")[0].endswith("/done/")
    wait = client.get(r.url)
    html = wait.content.decode()
    assert wait.status_code == 200 and "DONE123" not in html and 'data-seconds="5"' in html
    assert "wait=1" in html
    # The hoarders' first leases are short: once they lapse, the honest rater gets work.
    Assignment.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    engine._last_sweep.clear()
    retry = re.search(r'data-url="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert client.get(retry).status_code == 200


def test_first_lease_is_short_until_the_rater_interacts(client, live_study):
    study = live_study(lease_seconds=1800)
    page = consent_and_first_task(client, study, ENTRY)
    leased = Assignment.objects.get(token=token_of(page))
    assert (leased.expires_at - leased.leased_at).total_seconds() == engine.FIRST_LEASE_SECONDS
    touch = re.search(r'data-touch-url="([^"]+)"', page.content.decode()).group(1).replace("&amp;", "&")
    assert client.post(touch).json() == {"live": True}
    leased.refresh_from_db()
    assert (leased.expires_at - leased.leased_at).total_seconds() == 1800


def test_blocked_rater_still_gets_no_code(client, live_study):
    study = live_study(tasks_per_rater=1)
    page = consent_and_first_task(client, study, ENTRY)
    client.post(f"/r/{study.slug}/task/{token_of(page)}/", {**ANSWERED, "preference": "tie"})
    Rater.objects.update(blocked=True)
    done = client.get(f"/r/{study.slug}/done/").content.decode()
    # Never the completion code; a Prolific worker gets the failed-quality code instead.
    assert "attention checks" in done and done.count("DONE123") == done.count("DONE123-QC")
    assert Rater.objects.get().completed_at is None


# --- 2. no ratings once the study is paused or closed ------------------------------------------


def _state(token):
    a = Assignment.objects.select_related("comparison", "rater").get(token=token)
    return (a.status, a.comparison.n_live, a.comparison.n_submitted, a.rater.tasks_submitted)


@pytest.mark.parametrize("stop", [lifecycle.pause, lifecycle.close], ids=["paused", "closed"])
@pytest.mark.parametrize("spans", [False, True], ids=["sql-path", "orm-path"])
def test_engine_refuses_a_rating_once_the_study_is_not_live(live_study, make_rater, stop, spans):
    study = live_study()
    rater = make_rater(study)
    leased = engine.lease_next(rater, study)
    before = _state(leased.token)
    stop(study)
    payload = engine.RatingInput(preference="left")
    if spans:  # error spans read the response text: a different branch of the same submit
        payload.error_spans = [("left", 0, 6)]
    with pytest.raises(engine.StudyNotLive, match="not running any more"):
        engine.submit(leased.token, Rater.objects.get(pk=rater.pk), payload)
    assert not Rating.objects.exists()
    assert _state(leased.token) == before  # lease, comparison and rater counters untouched


def test_a_replay_after_pausing_still_returns_the_stored_rating(live_study, make_rater):
    study = live_study()
    rater = make_rater(study)
    leased = engine.lease_next(rater, study)
    first = engine.submit(leased.token, rater, engine.RatingInput(preference="tie"))
    lifecycle.pause(study)
    assert engine.submit(leased.token, rater, engine.RatingInput(preference="tie")).pk == first.pk


def test_pages_and_api_refuse_a_rating_after_the_study_is_paused(client, live_study):
    study = live_study()
    page = consent_and_first_task(client, study, ENTRY)
    token = token_of(page)
    lifecycle.pause(study)
    r = client.post(f"/r/{study.slug}/task/{token}/", {**ANSWERED, "preference": "tie"})
    assert r.status_code == 409 and "not running any more" in r.content.decode()
    r = client.post(
        f"/r/{study.slug}/task/{token}/",
        {**ANSWERED, "preference": "left", "error_spans": '[{"side":"left","start":0,"end":6}]'},
    )
    assert r.status_code == 409
    assert not Rating.objects.exists()
    assert Assignment.objects.get(token=token).status == "live"
    assert Rater.objects.get().tasks_submitted == 0
