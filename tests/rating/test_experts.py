"""Invited experts: a personal link, their own slots (never the crowd's), correctness required."""

import re

import pytest
from django.test import Client

from evalsite.rating import assignment as engine
from evalsite.rating.actions import invite_expert, repair_counters
from evalsite.rating.assignment import RatingInput
from evalsite.rating.models import Rater, Rating
from evalsite.studies.models import Comparison, Prompt

from .pages import ANSWERED, token_of

pytestmark = [pytest.mark.django_db, pytest.mark.engine]


def test_expert_ratings_do_not_take_crowd_slots(live_study, make_rater):
    study = live_study(n_prompts=2, redundancy=1, expert_redundancy=1)
    engine.choose_expert_pool(study)
    expert = invite_expert(study).rater
    seen = []
    while (a := engine.lease_next(expert, study)) is not None:
        seen.append(a.comparison_id)
        engine.submit(a.token, expert, RatingInput("left", correct={"left": "correct", "right": "error"}))
    assert len(seen) == 2
    # Every crowd slot is still free: two crowd raters get one comparison each.
    for i in range(2):
        crowd = make_rater(study, f"c{i}")
        a = engine.lease_next(crowd, study)
        assert a is not None and not a.expert
        engine.submit(a.token, crowd, RatingInput("tie"))
    for c in Comparison.objects.filter(study=study, is_attention_check=False):
        assert (c.n_submitted, c.n_live, c.n_expert_submitted, c.n_expert_live) == (1, 0, 1, 0)
    assert repair_counters(dry_run=True) == []  # the repair recounts both kinds the same way


def test_expert_pool_prefers_prompts_without_a_reference(live_study):
    study = live_study(n_prompts=4, expert_share=0.5)
    Prompt.objects.filter(study=study).update(reference_answers=["known"])
    no_reference = Prompt.objects.filter(study=study).order_by("id")[:2]
    Prompt.objects.filter(pk__in=[p.pk for p in no_reference]).update(reference_answers=[])
    assert engine.choose_expert_pool(study) == 2
    pool = Comparison.objects.filter(study=study, expert_pool=True)
    assert {c.prompt_id for c in pool} == {p.pk for p in no_reference}
    expert = invite_expert(study).rater
    leased = engine.lease_next(expert, study)
    assert leased.comparison_id in {c.pk for c in pool}


def test_invited_expert_walks_in_by_link_and_must_judge_correctness(live_study):
    study = live_study(n_prompts=2, tasks_per_rater=5)
    engine.choose_expert_pool(study)
    study.rating_form = {**study.rating_form, "required": ["preference"]}  # the crowd may skip it
    study.save()
    invitation = invite_expert(study, name="AB")
    client = Client()
    r = client.get(invitation.path)
    assert r.status_code == 200 and b"Before you start" in r.content
    r = client.post(invitation.path, {"agree": "yes"})
    page = client.get(r.url)
    assert page.status_code == 200 and b"Task 1 of 2" in page.content
    action = re.search(r'action="([^"]+)"', page.content.decode()).group(1).replace("&amp;", "&")
    r = client.post(action, {"preference": "left"})
    assert r.status_code == 400 and b"whether Answer 1 is correct" in r.content
    r = client.post(action, {**ANSWERED, "preference": "left"})
    assert r.status_code == 302
    rating = Rating.objects.get()
    assert rating.rater.is_expert and rating.assignment.expert
    assert Rater.objects.get().platform == "expert"
    assert token_of(client.get(r.url)) != token_of(page)


def test_api_invites_an_expert(live_study, django_user_model):
    from rest_framework.test import APIClient

    owner = django_user_model.objects.create_user("own", "o@example.org", "pw-own-1", is_staff=True)
    study = live_study(owner=owner)
    client = APIClient()
    client.force_authenticate(owner)
    r = client.post(f"/api/v1/studies/{study.slug}/invite-expert/", {"label": "K"}, format="json")
    assert r.status_code == 201, r.content
    link = r.json()["result"]["link"]
    assert "/consent/?t=" in link and Rater.objects.get().is_expert
    stranger = django_user_model.objects.create_user("x", "x@example.org", "pw-x-1", is_staff=True)
    client.force_authenticate(stranger)
    assert client.post(f"/api/v1/studies/{study.slug}/invite-expert/").status_code == 404
