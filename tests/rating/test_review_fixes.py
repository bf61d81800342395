"""Regressions from the code review: the completion code must be earned, and a study that is no
longer live accepts no ratings (on both submit paths)."""

import re

import pytest

from evalsite.rating import assignment as engine
from evalsite.rating.models import Assignment, Rater, Rating
from evalsite.studies import lifecycle
from evalsite.studies.models import Comparison

pytestmark = [pytest.mark.django_db, pytest.mark.engine]


def consent_and_first_task(client, study, query=""):
    r = client.get(f"/r/{study.slug}/{query}")
    assert r.status_code == 302 and r.url.endswith("/consent/")
    r = client.post(f"/r/{study.slug}/consent/", {"agree": "yes"})
    assert r.status_code == 302 and r.url.endswith("/task/")
    return client.get(f"/r/{study.slug}/task/")


def token_of(page) -> str:
    match = re.search(r'action="/r/[\w-]+/task/([\w-]+)/"', page.content.decode())
    assert match, "task page has no submit form"
    return match.group(1)


ENTRY = "?PROLIFIC_PID=abc&STUDY_ID=s&SESSION_ID=x"


# --- 1. the completion code ----------------------------------------------------------------------


def test_done_without_consent_or_work_gives_no_code(client, live_study):
    study = live_study(tasks_per_rater=2)
    assert client.get(f"/r/{study.slug}/{ENTRY}").status_code == 302
    r = client.get(f"/r/{study.slug}/done/")
    assert r.status_code == 302 and r.url.endswith("/consent/")
    assert "DONE123" not in r.content.decode() and "prolific.com" not in r.content.decode()
    assert Rater.objects.get().completed_at is None


def test_done_after_consent_but_before_the_quota_gives_no_code(client, live_study):
    study = live_study(tasks_per_rater=2)
    page = consent_and_first_task(client, study, ENTRY)
    r = client.get(f"/r/{study.slug}/done/")
    assert r.status_code == 302 and r.url.endswith("/task/")
    assert "DONE123" not in r.content.decode()
    # Still the same task: the check resumed the live lease rather than taking another.
    assert token_of(client.get(r.url)) == token_of(page)
    assert Rater.objects.get().completed_at is None


def test_done_while_the_study_is_paused_before_the_quota_gives_no_code(client, live_study):
    study = live_study(tasks_per_rater=2)
    consent_and_first_task(client, study, ENTRY)
    lifecycle.pause(study)
    r = client.get(f"/r/{study.slug}/done/")
    assert r.status_code == 302 and r.url.endswith("/task/")
    assert Rater.objects.get().completed_at is None


def test_rater_who_did_the_quota_gets_the_code(client, live_study):
    study = live_study(tasks_per_rater=1)
    page = consent_and_first_task(client, study, ENTRY)
    client.post(f"/r/{study.slug}/task/{token_of(page)}/", {"preference": "tie"})
    lifecycle.close(study)  # finishing before the study closed still earns the code
    done = client.get(f"/r/{study.slug}/done/")
    assert done.status_code == 200
    html = done.content.decode().replace("&amp;", "&")
    assert "DONE123" in html and "https://app.prolific.com/submissions/complete?cc=DONE123" in html
    assert Rater.objects.get().completed_at is not None


def test_rater_with_no_work_left_gets_the_code(client, live_study):
    study = live_study(tasks_per_rater=10, redundancy=1)
    # Every comparison already has its k ratings' worth of slots taken.
    Comparison.objects.filter(study=study).update(n_submitted=1)
    r = consent_and_first_task(client, study, ENTRY)
    assert r.status_code == 302 and r.url.endswith("/done/")
    done = client.get(r.url)
    assert done.status_code == 200 and "DONE123" in done.content.decode()
    rater = Rater.objects.get()
    assert rater.tasks_submitted == 0 and rater.completed_at is not None
    assert not Assignment.objects.exists()


def test_blocked_rater_still_gets_no_code(client, live_study):
    study = live_study(tasks_per_rater=1)
    page = consent_and_first_task(client, study, ENTRY)
    client.post(f"/r/{study.slug}/task/{token_of(page)}/", {"preference": "tie"})
    Rater.objects.update(blocked=True)
    done = client.get(f"/r/{study.slug}/done/").content.decode()
    assert "attention checks" in done and "DONE123" not in done
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
    r = client.post(f"/r/{study.slug}/task/{token}/", {"preference": "tie"})
    assert r.status_code == 409 and "not running any more" in r.content.decode()
    r = client.post(
        f"/r/{study.slug}/task/{token}/",
        {"preference": "left", "error_spans": '[{"side":"left","start":0,"end":6}]'},
    )
    assert r.status_code == 409
    assert not Rating.objects.exists()
    assert Assignment.objects.get(token=token).status == "live"
    assert Rater.objects.get().tasks_submitted == 0
