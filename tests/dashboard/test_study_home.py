"""The researcher's study page: next step, lifecycle buttons, skip reasons, links, experts; and ``/``."""

import pytest
from django.contrib.auth.models import Permission

from evalsite.rating.models import Rater
from evalsite.studies.models import Comparison, Response, Study

pytestmark = pytest.mark.django_db


@pytest.fixture
def researcher(django_user_model):
    def make(name: str):
        user = django_user_model.objects.create_user(name, f"{name}@example.org", f"pw-{name}-1", is_staff=True)
        user.user_permissions.set(Permission.objects.filter(content_type__app_label__in=["studies", "rating"]))
        return user

    return make


def test_front_door(client, researcher):
    about = client.get("/")
    assert about.status_code == 200 and b"Human evaluation of language models" in about.content
    client.force_login(researcher("r1"))
    r = client.get("/")
    assert r.status_code == 302 and r.url == "/studies/"


def test_from_build_to_live_with_the_reason_for_skipped_prompts(client, researcher, make_study):
    owner = researcher("owner")
    study = make_study(slug="walk", n_prompts=4, owner=owner)
    # One model has no answer on one prompt: that prompt is left out, and the page says why.
    Response.objects.filter(prompt__study=study, model__alias="imitation-1", prompt__source_id="p3").delete()
    client.force_login(owner)
    page = client.get("/studies/walk/").content.decode()
    assert "Next: Build comparisons" in page
    assert "1 of 4 prompts have no usable answer from imitation-1" in page
    r = client.post("/studies/walk/step/build/", follow=True)
    assert "3 comparisons added" in r.content.decode() and Comparison.objects.filter(study=study).count() == 3
    assert "Next: Launch" in r.content.decode()
    r = client.post("/studies/walk/step/launch/", follow=True)
    study.refresh_from_db()
    assert study.status == "live" and "The study is live" in r.content.decode()
    html = r.content.decode()
    placeholders = "PROLIFIC_PID={{%PROLIFIC_PID%}}&amp;STUDY_ID={{%STUDY_ID%}}&amp;SESSION_ID={{%SESSION_ID%}}"
    assert f"/r/walk/?{placeholders}" in html
    assert "<ExternalURL>http://testserver/r/walk/</ExternalURL>" in html.replace("&lt;", "<").replace("&gt;", ">")
    assert 'id="completion-code">DONE123' in html
    r = client.post("/studies/walk/step/pause/", follow=True)
    study.refresh_from_db()
    assert study.status == "ready"


def test_a_refused_step_says_why(client, researcher, make_study):
    owner = researcher("owner")
    make_study(slug="empty", owner=owner)
    client.force_login(owner)
    r = client.post("/studies/empty/step/launch/", follow=True)
    assert "has no comparisons" in r.content.decode()
    assert Study.objects.get(slug="empty").status != "live"


def test_expert_invitation_link_appears_and_works(client, researcher, make_study):
    owner = researcher("owner")
    study = make_study(slug="exp", owner=owner)
    client.force_login(owner)
    client.post("/studies/exp/step/build/")
    client.post("/studies/exp/step/launch/")
    r = client.post("/studies/exp/invite/", {"label": "Dr. K"}, follow=True)
    html = r.content.decode()
    assert "Expert invited" in html and "Dr. K" in html
    expert = Rater.objects.get(study=study, is_expert=True)
    link = html.split('aria-label="Personal link for Dr. K"')[0].rsplit('value="', 1)[1].split('"')[0]
    from django.test import Client

    visitor = Client()
    consent = visitor.get(link.replace("&amp;", "&"))
    assert consent.status_code == 200 and b"Before you start" in consent.content
    assert expert.platform == "expert"


def test_others_cannot_see_or_press(client, researcher, make_study):
    owner, other, colleague = researcher("owner"), researcher("other"), researcher("colleague")
    study = make_study(slug="mine", owner=owner)
    study.shared_with.add(colleague)
    client.force_login(other)
    assert client.get("/studies/mine/").status_code == 404
    assert client.post("/studies/mine/step/build/").status_code == 404
    assert "mine" not in client.get("/studies/").content.decode()
    client.force_login(colleague)
    page = client.get("/studies/mine/").content.decode()
    assert "Shared with you read-only" in page and 'id="steps"' not in page
    assert client.post("/studies/mine/step/build/").status_code == 404
    assert client.post("/studies/mine/invite/").status_code == 404
    assert not Comparison.objects.exists()
