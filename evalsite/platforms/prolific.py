"""Prolific's REST API, the calls evalsite makes (https://docs.prolific.com/api-reference).

Authentication is ``Authorization: Token <token>``; the base URL is ``EVALSITE_PROLIFIC_API_BASE``
(default ``https://api.prolific.com/api/v1``). Money is in the study currency's minor unit
(pence/cents) everywhere except the bonus CSV, which takes decimal amounts ("4.25").

Calls used, with their documented shapes:

- ``POST /studies/`` creates a draft (``UNPUBLISHED``); ``POST /studies/{id}/transition/`` with
  ``{"action": "PUBLISH" | "PAUSE" | "START" | "STOP"}``; ``GET`` / ``PATCH /studies/{id}/``
  (``total_available_places``: a published study's places can only grow).
- ``GET /submissions/?study={id}&page=&page_size=`` lists submissions (``results``);
  ``POST /submissions/{id}/transition/`` with ``{"action": "APPROVE"}`` or ``{"action": "REJECT",
  "rejection_category": …, "message": ≥100 characters}`` (idempotent, per the docs);
  ``POST /submissions/{id}/request-return/`` with ``{"request_return_reasons": [...]}``;
  ``GET /submissions/{id}/`` (``bonus_payments``: what was paid on it, in pence/cents).
- ``POST /submissions/bonus-payments/`` with ``{"study_id", "csv_bonuses": "<submission id>,<amount>\\n…"}``
  sets up a bulk bonus payment and pays nothing; ``POST /bulk-bonus-payments/{id}/pay/`` pays it.
  The pay call is **not idempotent**: the docs warn that a repeated request pays again. This client
  therefore never repeats it; :mod:`.actions` records every bonus before the call and marks it
  unconfirmed when the answer is lost.
- Webhook set-up (https://docs.prolific.com/api-reference/webhooks/subscribing):
  ``POST /hooks/secrets/`` ``{"workspace_id"}`` → ``{"id", "value", "workspace_id"}`` (one active
  secret per workspace; a new one replaces it); ``GET /hooks/subscriptions/?workspace_id=`` →
  ``{"results": [{"id", "event_type", "target_url", "workspace_id", "is_enabled"}]}``;
  ``POST /hooks/subscriptions/`` ``{"workspace_id", "event_type", "target_url"}`` → the subscription
  and an ``X-Hook-Secret`` header, which ``POST /hooks/subscriptions/{id}/`` ``{"secret"}`` confirms.
- Webhooks (``submission.status.change``): the body ``{"resource_id", "event_type",
  "participant_id", "status"}``, signed with the workspace's hook secret: base64(HMAC-SHA256(secret,
  ``X-Prolific-Request-Timestamp`` + body)) in ``X-Prolific-Request-Signature``.

Errors come back as ``{"error": {"status", "error_code", "title", "detail", …}}``. A 429 (rate
limit) means the request was not processed: it is retried after ``Retry-After`` (bounded), for
every call, the pay call included. Reads and documented-idempotent writes are also retried once
after a timeout or a 5xx; the rest surface as :class:`~.errors.Unsure`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from .errors import Refused, Unsure

DEFAULT_BASE = "https://api.prolific.com/api/v1"
PAGE_SIZE = 100
MAX_RATE_LIMIT_RETRIES = 5
MAX_RETRY_AFTER_SECONDS = 60.0

# Submission statuses (https://docs.prolific.com/api-reference/submissions/submission-object).
RESERVED, ACTIVE, TIMED_OUT = "RESERVED", "ACTIVE", "TIMED-OUT"
AWAITING_REVIEW, APPROVED, REJECTED, RETURNED = "AWAITING REVIEW", "APPROVED", "REJECTED", "RETURNED"
SCREENED_OUT = "SCREENED OUT"
# Study statuses.
UNPUBLISHED, STUDY_ACTIVE, PAUSED, STUDY_AWAITING_REVIEW, COMPLETED = (
    "UNPUBLISHED", "ACTIVE", "PAUSED", "AWAITING REVIEW", "COMPLETED",
)
# Rejection categories the API accepts.
REJECTION_CATEGORIES = (
    "TOO_QUICKLY", "TOO_SLOWLY", "FAILED_INSTRUCTIONS", "INCOMP_LONGITUDINAL", "FAILED_CHECK",
    "LOW_EFFORT", "MALINGERING", "NO_CODE", "BAD_CODE", "NO_DATA", "UNSUPP_DEVICE", "OTHER",
)
REJECTION_MESSAGE_MIN = 100


def base_url() -> str:
    return os.environ.get("EVALSITE_PROLIFIC_API_BASE", DEFAULT_BASE).rstrip("/")


def _message(response: httpx.Response) -> str:
    """The platform's own words for a refusal, short."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:300]}"
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        parts = [error.get("title"), error.get("detail"), error.get("additional_information")]
        text = " ".join(p if isinstance(p, str) else json.dumps(p) for p in parts if p)
        return f"HTTP {response.status_code}: {text or json.dumps(error)[:300]}"
    return f"HTTP {response.status_code}: {json.dumps(error)[:300]}"


class ProlificClient:
    """A thin client of the calls evalsite makes; every method returns the parsed JSON answer."""

    def __init__(
        self,
        token: str,
        *,
        base: str | None = None,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ):
        self.http = httpx.Client(
            base_url=(base or base_url()) + "/",
            headers={"Authorization": f"Token {token}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )
        self.sleep = sleep

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ProlificClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- transport ------------------------------------------------------------------------------

    def _request(
        self, method: str, path: str, *, json: Any = None, params=None, retry_unsure: bool = False,
        headers_out: dict | None = None,
    ) -> Any:
        """One call; 429s wait and retry, and with ``retry_unsure`` one timeout or 5xx is retried too.
        ``headers_out``, when given, receives the answer's headers."""
        unsure_retries = 1 if retry_unsure else 0
        limited = 0
        while True:
            try:
                response = self.http.request(method, path.lstrip("/"), json=json, params=params)
            except httpx.TimeoutException as exc:
                if unsure_retries:
                    unsure_retries -= 1
                    continue
                raise Unsure(f"Prolific did not answer {method} {path} in time ({type(exc).__name__}).") from exc
            except httpx.TransportError as exc:
                if unsure_retries:
                    unsure_retries -= 1
                    continue
                raise Unsure(f"The connection to Prolific failed during {method} {path}: {exc}.") from exc
            if response.status_code == 429 and limited < MAX_RATE_LIMIT_RETRIES:
                limited += 1
                self.sleep(self._retry_after(response, limited))
                continue
            if response.status_code >= 500:
                if unsure_retries:
                    unsure_retries -= 1
                    continue
                raise Unsure(f"Prolific failed on {method} {path}: {_message(response)}", status=response.status_code)
            if response.status_code >= 400:
                raise Refused(f"Prolific refused {method} {path}: {_message(response)}", status=response.status_code)
            if headers_out is not None:
                headers_out.update(response.headers)
            if not response.content:
                return {}
            try:
                return response.json()
            except ValueError:
                return {"detail": response.text}

    @staticmethod
    def _retry_after(response: httpx.Response, attempt: int) -> float:
        header = response.headers.get("Retry-After", "")
        try:
            wait = float(header)
        except ValueError:
            wait = 2.0 ** attempt
        return max(0.0, min(wait, MAX_RETRY_AFTER_SECONDS))

    # --- studies --------------------------------------------------------------------------------

    def create_study(self, body: dict) -> dict:
        # Not retried on a timeout: a second draft could be created. Drafts cost nothing, so the
        # caller may simply try again later.
        return self._request("POST", "studies/", json=body)

    def get_study(self, study_id: str) -> dict:
        return self._request("GET", f"studies/{study_id}/", retry_unsure=True)

    def update_study(self, study_id: str, **fields) -> dict:
        return self._request("PATCH", f"studies/{study_id}/", json=fields, retry_unsure=True)

    def transition_study(self, study_id: str, action: str) -> dict:
        return self._request("POST", f"studies/{study_id}/transition/", json={"action": action})

    # --- submissions ----------------------------------------------------------------------------

    def list_submissions(self, study_id: str) -> Iterator[dict]:
        page = 1
        while True:
            body = self._request(
                "GET", "submissions/", params={"study": study_id, "page": page, "page_size": PAGE_SIZE},
                retry_unsure=True,
            )
            results = body.get("results", []) if isinstance(body, dict) else []
            yield from results
            links = body.get("_links") if isinstance(body, dict) else None
            has_next = bool(((links or {}).get("next") or {}).get("href")) if links is not None else None
            if has_next is False or not results or (has_next is None and len(results) < PAGE_SIZE):
                return
            page += 1

    def get_submission(self, submission_id: str) -> dict:
        return self._request("GET", f"submissions/{submission_id}/", retry_unsure=True)

    def approve(self, submission_id: str) -> dict:
        return self._request(
            "POST", f"submissions/{submission_id}/transition/", json={"action": "APPROVE"}, retry_unsure=True
        )

    def reject(self, submission_id: str, *, category: str, message: str) -> dict:
        body = {"action": "REJECT", "rejection_category": category, "message": message}
        return self._request("POST", f"submissions/{submission_id}/transition/", json=body, retry_unsure=True)

    def request_return(self, submission_id: str, reasons: list[str]) -> dict:
        return self._request(
            "POST", f"submissions/{submission_id}/request-return/", json={"request_return_reasons": reasons}
        )

    # --- bonuses --------------------------------------------------------------------------------

    def set_up_bonuses(self, study_id: str, rows: list[tuple[str, int]]) -> dict:
        """Create a bulk bonus payment (pays nothing): ``rows`` are (submission id, cents)."""
        csv_bonuses = "".join(f"{sid},{cents // 100}.{cents % 100:02d}\n" for sid, cents in rows)
        body = {"study_id": study_id, "csv_bonuses": csv_bonuses}
        return self._request("POST", "submissions/bonus-payments/", json=body)

    def pay_bonuses(self, bulk_id: str) -> dict:
        """Pay a bulk bonus payment. Never retried on a timeout or a 5xx: that could pay twice."""
        return self._request("POST", f"bulk-bonus-payments/{bulk_id}/pay/")


    # --- webhooks -------------------------------------------------------------------------------

    def list_subscriptions(self, workspace_id: str) -> list[dict]:
        body = self._request("GET", "hooks/subscriptions/", params={"workspace_id": workspace_id}, retry_unsure=True)
        return body.get("results", []) if isinstance(body, dict) else []

    def create_secret(self, workspace_id: str) -> dict:
        """A new hook secret for the workspace (``value``); it replaces the workspace's current one."""
        return self._request("POST", "hooks/secrets/", json={"workspace_id": workspace_id})

    def subscribe(self, workspace_id: str, event_type: str, target_url: str) -> tuple[dict, str]:
        """Create a subscription: (the subscription, the ``X-Hook-Secret`` that confirms it)."""
        headers: dict = {}
        body = self._request(
            "POST", "hooks/subscriptions/",
            json={"workspace_id": workspace_id, "event_type": event_type, "target_url": target_url},
            headers_out=headers,
        )
        # The documentation shows both shapes: the subscription itself, or {"results": [it]}.
        if isinstance(body, dict) and isinstance(body.get("results"), list) and body["results"]:
            body = body["results"][0]
        return (body if isinstance(body, dict) else {}), headers.get("x-hook-secret", "")

    def confirm_subscription(self, subscription_id: str, hook_secret: str) -> dict:
        return self._request("POST", f"hooks/subscriptions/{subscription_id}/", json={"secret": hook_secret})


def verify_signature(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """Whether a webhook request was signed with ``secret`` (Prolific's documented scheme).

    The signature is base64(HMAC-SHA256(secret, timestamp + body)). The raw body is checked first;
    Prolific's own example signs ``json.dumps`` of the parsed body, so that form is accepted too.
    """
    if not (secret and timestamp and signature):
        return False
    candidates = [body]
    try:
        candidates.append(json.dumps(json.loads(body)).encode())
    except ValueError:
        pass
    for candidate in candidates:
        digest = hmac.new(secret.encode(), timestamp.encode() + candidate, hashlib.sha256).digest()
        if hmac.compare_digest(base64.b64encode(digest), signature.encode()):
            return True
    return False
