"""Subscribing evalsite's webhook to a Prolific workspace's submission events.

Prolific tells evalsite when a participant returns a study or times out (``submission.status.change``),
so their lease goes back to the pool at once instead of at the next poll. Setting that up takes
three calls (:mod:`.prolific`): a workspace secret, a subscription, and its confirmation with the
``X-Hook-Secret`` the subscription call answered. The workspace secret signs every event; the web
server reads it from ``EVALSITE_PROLIFIC_WEBHOOK_SECRET`` and never stores it, so a new one is
printed once for the administrator to set. Running the set-up again changes nothing when the
workspace already has an enabled subscription to the same URL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .errors import PlatformError
from .prolific import ProlificClient

EVENT_TYPE = "submission.status.change"
SECRET_ENV = "EVALSITE_PROLIFIC_WEBHOOK_SECRET"


@dataclass
class HookSetup:
    """What :func:`subscribe_submission_events` did; ``new_secret`` is set only when one was made."""

    subscription_id: str
    created: bool
    new_secret: str = ""
    messages: list[str] = field(default_factory=list)


def check_target_url(url: str) -> str | None:
    """None if Prolific can deliver to ``url``, else why not (it needs a public https address)."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return f"Prolific delivers webhooks only to https:// addresses, not {url!r}."
    if parts.hostname in ("localhost", "127.0.0.1", "::1") or parts.hostname.endswith(".localhost"):
        return f"Prolific cannot reach {parts.hostname}: give the server's public address."
    if not parts.path.rstrip("/").endswith("/platforms/hooks/prolific"):
        return f"The evalsite webhook lives at https://<your server>/platforms/hooks/prolific/, not {url!r}."
    return None


def subscribe_submission_events(
    client: ProlificClient, workspace_id: str, target_url: str, *, new_secret: bool = False
) -> HookSetup:
    """Make sure the workspace sends ``submission.status.change`` to ``target_url``.

    A workspace secret is created when the server has none (``EVALSITE_PROLIFIC_WEBHOOK_SECRET``
    unset) or when ``new_secret`` asks for one; it replaces the workspace's current secret, so
    every server receiving this workspace's events must then be given the new one.
    Raises :class:`~.errors.PlatformError` subclasses as the client does, ``ValueError`` for a
    target URL Prolific cannot use.
    """
    if problem := check_target_url(target_url):
        raise ValueError(problem)
    setup = HookSetup(subscription_id="", created=False)
    if new_secret or not os.environ.get(SECRET_ENV, "").strip():
        secret = client.create_secret(workspace_id).get("value", "")
        if not secret:
            raise PlatformError("Prolific answered the secret request without a secret.")
        setup.new_secret = secret
        setup.messages.append(
            f"New workspace secret: set {SECRET_ENV} to it on the web server (it is not stored and "
            "will not be shown again); it replaces the workspace's previous secret."
        )
    for existing in client.list_subscriptions(workspace_id):
        if (
            existing.get("event_type") == EVENT_TYPE
            and existing.get("target_url") == target_url
            and existing.get("is_enabled", True)
        ):
            setup.subscription_id = str(existing.get("id", ""))
            setup.messages.append(f"Already subscribed ({setup.subscription_id}): nothing to do.")
            return setup
    subscription, hook_secret = client.subscribe(workspace_id, EVENT_TYPE, target_url)
    setup.subscription_id = str(subscription.get("id", ""))
    if not setup.subscription_id or not hook_secret:
        raise PlatformError("Prolific created the subscription but sent no id or X-Hook-Secret to confirm it.")
    client.confirm_subscription(setup.subscription_id, hook_secret)
    setup.created = True
    setup.messages.append(f"Subscribed {EVENT_TYPE} to {target_url} ({setup.subscription_id}), confirmed.")
    return setup
