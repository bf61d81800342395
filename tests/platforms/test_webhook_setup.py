"""Subscribing the Prolific webhook: secret, subscription, confirmation; idempotent; clear refusals.

Against the contract server (``fake_prolific``), whose webhook endpoints follow Prolific's
documentation (https://docs.prolific.com/api-reference/webhooks/subscribing).
"""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from evalsite.platforms.prolific import ProlificClient
from evalsite.platforms.webhooks import EVENT_TYPE, SECRET_ENV, subscribe_submission_events

from .fake_prolific import FakeProlific

URL = "https://evalsite.example.org/platforms/hooks/prolific/"
TOKEN_ENV = "EVALSITE_API_KEY_PROLIFIC_HOOKS"


@pytest.fixture
def server(monkeypatch):
    fake = FakeProlific(token="hook-token").start()
    monkeypatch.setenv("EVALSITE_PROLIFIC_API_BASE", fake.base_url)
    monkeypatch.setenv(TOKEN_ENV, "hook-token")
    monkeypatch.delenv(SECRET_ENV, raising=False)
    yield fake
    fake.stop()


def run(*extra: str) -> str:
    out = StringIO()
    call_command("prolific_webhook", "--workspace", "ws1", "--url", URL, "--token-env", TOKEN_ENV, *extra, stdout=out)
    return out.getvalue()


def test_first_run_makes_a_secret_subscribes_and_confirms(server, monkeypatch):
    out = run()
    secret = server.secrets["ws1"]
    assert f"{SECRET_ENV}={secret}" in out  # shown once, for the administrator to set
    (sub,) = server.subscriptions.values()
    assert (sub["event_type"], sub["target_url"], sub["is_enabled"]) == (EVENT_TYPE, URL, True)
    assert "confirmed" in out
    # Again, with the secret set on the server: nothing new, no secret replaced.
    monkeypatch.setenv(SECRET_ENV, secret)
    again = run()
    assert "Already subscribed" in again and SECRET_ENV + "=" not in again
    assert len(server.subscriptions) == 1 and server.secrets["ws1"] == secret
    assert server.count("POST", r"/hooks/secrets/") == 1


def test_a_server_with_its_secret_only_subscribes(server, monkeypatch):
    server.secrets["ws1"] = "existing"
    monkeypatch.setenv(SECRET_ENV, "existing")
    out = run()
    assert server.count("POST", r"/hooks/secrets/") == 0 and server.secrets["ws1"] == "existing"
    assert SECRET_ENV + "=" not in out and list(server.subscriptions.values())[0]["is_enabled"]


@pytest.mark.parametrize(
    "url, said",
    [
        ("http://evalsite.example.org/platforms/hooks/prolific/", "https://"),
        ("https://localhost/platforms/hooks/prolific/", "public address"),
        ("https://evalsite.example.org/r/study/", "/platforms/hooks/prolific/"),
    ],
)
def test_a_url_prolific_cannot_use_is_refused_before_any_call(server, url, said):
    with pytest.raises(CommandError, match=said):
        call_command("prolific_webhook", "--workspace", "ws1", "--url", url, "--token-env", TOKEN_ENV)
    assert server.requests == []


def test_missing_or_forbidden_token_variable(server, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV)
    with pytest.raises(CommandError, match="not set"):
        run()
    with pytest.raises(CommandError, match="token variable"):
        call_command("prolific_webhook", "--workspace", "ws1", "--url", URL, "--token-env", "SECRET_KEY")


def test_a_confirmation_prolific_refuses_is_an_error_not_a_subscription(server, monkeypatch):
    client = ProlificClient("hook-token", base=server.base_url)
    real = client.subscribe
    monkeypatch.setattr(client, "subscribe", lambda *a: (real(*a)[0], "wrong-secret"))
    with pytest.raises(Exception, match="does not match"):
        subscribe_submission_events(client, "ws1", URL)
    assert not list(server.subscriptions.values())[0]["is_enabled"]
