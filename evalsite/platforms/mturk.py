"""Amazon Mechanical Turk through boto3: the requester calls evalsite makes.

The requester sandbox (``https://mturk-requester-sandbox.us-east-1.amazonaws.com``, no real money)
is the default; a platform study uses production only when created with ``sandbox=False`` and the
server allows it (``EVALSITE_MTURK_ALLOW_PRODUCTION=1``). Credentials come from the standard AWS
environment (see :mod:`.credentials`).

Calls: ``CreateHIT`` with an ExternalQuestion (and a ``UniqueRequestToken``, so a retried create
makes no second HIT; ``RequesterAnnotation`` finds it again), ``GetHIT``, ``ListAssignmentsForHIT``
(Submitted / Approved / Rejected; MTurk does not list returned or abandoned assignments, so their
leases come back by expiry), ``ApproveAssignment`` / ``RejectAssignment`` (``RequesterFeedback`` is
the reason the worker sees), ``SendBonus`` with ``UniqueRequestToken`` (MTurk refuses a repeat of a
token for 24 hours, so a retry after a timeout pays nothing twice), ``ListBonusPayments`` (what was
paid on an assignment), ``CreateAdditionalAssignmentsForHIT`` (more places; a HIT created with
fewer than 10 assignments cannot grow to 10 or more) and ``UpdateExpirationForHIT`` with a past
time (expire now: no new workers, submitted work stays reviewable).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from .errors import NotConfigured, Refused, Unsure

SANDBOX_ENDPOINT = "https://mturk-requester-sandbox.us-east-1.amazonaws.com"
PRODUCTION_ENDPOINT = "https://mturk-requester.us-east-1.amazonaws.com"
REGION = "us-east-1"
EXTERNAL_QUESTION = (
    '<ExternalQuestion xmlns="http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2006-07-14/'
    'ExternalQuestion.xsd"><ExternalURL>{url}</ExternalURL><FrameHeight>0</FrameHeight></ExternalQuestion>'
)
# Assignment statuses.
SUBMITTED, APPROVED, REJECTED = "Submitted", "Approved", "Rejected"
# HIT statuses that still take workers.
OPEN_HIT_STATUSES = {"Assignable", "Unassignable"}
# "Expire now": any time in the past.
EXPIRED_AT = datetime(2015, 1, 1, tzinfo=UTC)


def production_allowed() -> bool:
    return os.environ.get("EVALSITE_MTURK_ALLOW_PRODUCTION", "") == "1"


def external_question(url: str) -> str:
    return EXTERNAL_QUESTION.format(url=escape(url))


def dollars(cents: int) -> str:
    """MTurk's amount strings: "0.50", "12.00"."""
    return f"{cents // 100}.{cents % 100:02d}"


def cents(amount: str) -> int:
    whole, _, frac = str(amount).partition(".")
    return int(whole or 0) * 100 + int((frac + "00")[:2])


def make_client(*, sandbox: bool = True):
    """A boto3 MTurk client for the sandbox or production; refuses when no AWS credentials are set."""
    import boto3
    import botocore.session
    from botocore.config import Config

    session = botocore.session.get_session()
    if os.environ.get("EVALSITE_MTURK_INSTANCE_ROLE", "") != "1":
        resolver = session.get_component("credential_provider")
        resolver.remove("iam-role")
    if session.get_credentials() is None:
        raise NotConfigured(
            "No AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) for the "
            "web server and workers, with an MTurk requester account behind them."
        )
    return boto3.Session(botocore_session=session).client(
        "mturk",
        region_name=REGION,
        endpoint_url=SANDBOX_ENDPOINT if sandbox else PRODUCTION_ENDPOINT,
        config=Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=10, read_timeout=30),
    )


def call(client, operation: str, **params):
    """Call one MTurk operation; errors become :class:`Refused` (RequestError) or :class:`Unsure`."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return getattr(client, operation)(**params)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "Error"), error.get("Message", str(exc))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        text = f"MTurk {operation}: {code}: {message}"
        if code == "ServiceFault" or (status or 0) >= 500:
            raise Unsure(text, status=status) from exc
        raise Refused(text, status=status) from exc
    except BotoCoreError as exc:  # timeouts, connection errors, missing credentials at call time
        raise Unsure(f"MTurk {operation}: {exc}") from exc


def list_assignments(client, hit_id: str) -> list[dict]:
    found, token = [], None
    while True:
        params = {"HITId": hit_id, "MaxResults": 100, "AssignmentStatuses": [SUBMITTED, APPROVED, REJECTED]}
        if token:
            params["NextToken"] = token
        page = call(client, "list_assignments_for_hit", **params)
        found += page.get("Assignments", [])
        token = page.get("NextToken")
        if not token:
            return found


def find_hit_by_annotation(client, annotation: str) -> dict | None:
    """The HIT a create with this annotation made (after a create whose answer was lost)."""
    token = None
    while True:
        page = call(client, "list_hits", **({"NextToken": token, "MaxResults": 100} if token else {"MaxResults": 100}))
        for hit in page.get("HITs", []):
            if hit.get("RequesterAnnotation") == annotation:
                return hit
        token = page.get("NextToken")
        if not token:
            return None
