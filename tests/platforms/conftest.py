"""Fixtures: a live study, its owner and a collaborator, the contract Prolific server, MTurk stubs."""

import pytest
from django.contrib.auth.models import Permission

from evalsite.platforms.credentials import default_token_env
from evalsite.rating.identity import Entry, enter
from evalsite.rating.models import Rater
from evalsite.studies import actions as study_actions

from .fake_prolific import FakeProlific


@pytest.fixture(autouse=True)
def no_real_platforms(monkeypatch):
    """Nothing here may reach the internet: no AWS credentials, no instance metadata."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("EVALSITE_PROLIFIC_API_BASE", "http://127.0.0.1:9/api/v1")  # nothing listens there


@pytest.fixture
def researcher(django_user_model):
    def make(name: str):
        user = django_user_model.objects.create_user(name, f"{name}@example.org", f"pw-{name}-1", is_staff=True)
        user.user_permissions.set(Permission.objects.filter(content_type__app_label__in=["studies", "rating"]))
        return user

    return make


@pytest.fixture
def owner(researcher):
    return researcher("owner")


@pytest.fixture
def collaborator(researcher):
    return researcher("collab")


@pytest.fixture
def live_study(make_study, owner, collaborator):
    """Teacher vs imitation on 6 prompts (k=3: 18 ratings), 4 tasks per rater, no attention checks."""
    study = make_study(slug="crowd", n_prompts=6, owner=owner, tasks_per_rater=4, attention_check_rate=0.0)
    study.shared_with.add(collaborator)
    study_actions.build_comparisons(study)
    study_actions.mark_study_ready(study)
    study_actions.launch_study(study)
    study.refresh_from_db()
    return study


@pytest.fixture
def fake_prolific(monkeypatch, live_study):
    server = FakeProlific(token="test-token").start()
    monkeypatch.setenv("EVALSITE_PROLIFIC_API_BASE", server.base_url)
    monkeypatch.setenv("EVALSITE_PROLIFIC_TIMEOUT", "0.5")
    monkeypatch.setenv(default_token_env(live_study.slug), "test-token")
    yield server
    server.stop()


def join(study, platform: str, worker: str, session: str, *, tasks: int = 4, **counters) -> Rater:
    """A participant who consented on the rater page (the identity module's rules), with counters."""
    data = {"SESSION_ID": session} if platform == "prolific" else {"assignmentId": session, "hitId": "H"}
    rater = enter(study, Entry(platform, worker, data))
    Rater.objects.filter(pk=rater.pk).update(tasks_submitted=tasks, **counters)
    rater.refresh_from_db()
    return rater
