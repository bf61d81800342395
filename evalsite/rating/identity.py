"""Who the rater is: platform parameters on the entry link, pseudonyms, and the rater cookie.

Prolific sends ``PROLIFIC_PID``, ``STUDY_ID`` and ``SESSION_ID``; MTurk sends ``workerId``,
``assignmentId``, ``hitId`` and ``turkSubmitTo`` (and ``assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE``
while the worker only previews the HIT). A plain link gets a random anonymous id.

A participation is one platform session: the worker id together with Prolific's ``SESSION_ID`` or
MTurk's ``assignmentId``. The same worker id with another session is a new participation (its own
rater row), so knowing someone's worker id is not enough to take over their live lease.

No rater row exists until the visitor agrees to the consent form: the entry link hands the consent
page a signed *entry ticket* (what the link said), and agreeing creates the rater from it. After
that the rater is known by a signed *rater token* that travels in every rater URL and form (MTurk
shows the pages in a cross-site iframe, where browsers drop or block cookies), with a signed
cookie as a fallback for a browser that keeps it. Neither needs a session table.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from django.conf import settings
from django.core import signing
from django.http import HttpRequest, HttpResponse

from evalsite.studies.models import Study

from .models import Rater

MTURK_PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"
COOKIE_SALT = "evalsite.rating.rater"
COOKIE_MAX_AGE = 30 * 24 * 3600
TOKEN_SALT = "evalsite.rating.rater-token"
TICKET_SALT = "evalsite.rating.entry-ticket"
TICKET_MAX_AGE = 24 * 3600


@dataclass
class Entry:
    """What the entry link says about the visitor."""

    platform: str
    external_id: str = ""
    platform_data: dict[str, str] = field(default_factory=dict)
    preview: bool = False


def pseudonym(study: Study, platform: str, external_id: str) -> str:
    """A stable, exportable id: HMAC(SECRET_KEY, study + platform + external id), truncated."""
    message = f"{study.slug}\x1f{platform}\x1f{external_id}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()[:24]


def parse_entry(params) -> Entry:
    """Read the platform and worker id from the entry URL's query parameters."""
    if params.get("PROLIFIC_PID"):
        return Entry(
            Rater.Platform.PROLIFIC,
            params["PROLIFIC_PID"][:200],
            {k: params[k][:200] for k in ("STUDY_ID", "SESSION_ID") if params.get(k)},
        )
    if params.get("assignmentId") or params.get("workerId"):
        data = {k: params[k][:500] for k in ("assignmentId", "hitId", "turkSubmitTo") if params.get(k)}
        if params.get("assignmentId") == MTURK_PREVIEW or not params.get("workerId"):
            return Entry(Rater.Platform.MTURK, "", data, preview=True)
        return Entry(Rater.Platform.MTURK, params["workerId"][:200], data)
    return Entry(Rater.Platform.LINK)


def cookie_name(slug: str) -> str:
    return f"evalsite_rater_{slug}"


def rater_token(rater: Rater, slug: str) -> str:
    """The signed token that names this rater in the study's URLs and forms (``?t=``)."""
    return signing.dumps(rater.pk, salt=f"{TOKEN_SALT}:{slug}")


def rater_id_from_request(request: HttpRequest, slug: str) -> int | None:
    """The rater id named by the request's ``t`` token, else by the study's signed cookie; or ``None``.

    Both signatures cover the study's slug; callers still check that the rater belongs to the study
    (:func:`rater_from_request` does it in its query).
    """
    token = request.GET.get("t") or request.POST.get("t")
    if token:
        try:
            return int(signing.loads(token, salt=f"{TOKEN_SALT}:{slug}", max_age=COOKIE_MAX_AGE))
        except (ValueError, TypeError, signing.BadSignature):
            return None
    try:
        return int(request.get_signed_cookie(cookie_name(slug), salt=COOKIE_SALT, max_age=COOKIE_MAX_AGE))
    except (KeyError, ValueError, signing.BadSignature):
        return None


def rater_from_request(request: HttpRequest, slug: str) -> Rater | None:
    """The rater this visitor entered the study as (with its study loaded, one query), or ``None``."""
    rater_id = rater_id_from_request(request, slug)
    if rater_id is None:
        return None
    return Rater.objects.select_related("study").filter(pk=rater_id, study__slug=slug).first()


def set_rater_cookie(request: HttpRequest, response: HttpResponse, study: Study, rater: Rater) -> None:
    # Inside MTurk's iframe the page is third-party: the cookie then needs SameSite=None, which
    # browsers only accept together with Secure, i.e. over HTTPS.
    secure = request.is_secure()
    response.set_signed_cookie(
        cookie_name(study.slug),
        str(rater.pk),
        salt=COOKIE_SALT,
        max_age=COOKIE_MAX_AGE,
        httponly=True,
        secure=secure,
        samesite="None" if secure else "Lax",
    )


def participation(entry: Entry) -> tuple[str, str]:
    """``(worker id, participation id)`` for an entry; the participation id keys the rater row."""
    worker = entry.external_id
    session = entry.platform_data.get("SESSION_ID") or entry.platform_data.get("assignmentId") or ""
    return worker, (f"{worker[:100]}#{session[:99]}" if session else worker)


def entry_ticket(study: Study, entry: Entry) -> str:
    """A signed ticket of what the entry link said; agreeing to the consent form redeems it."""
    external_id = entry.external_id or secrets.token_urlsafe(16)  # a plain link: a fresh anonymous id
    payload = {"p": entry.platform, "x": external_id, "d": entry.platform_data}
    return signing.dumps(payload, salt=f"{TICKET_SALT}:{study.slug}", compress=True)


def read_ticket(study: Study, ticket: str) -> Entry | None:
    """The entry a ticket carries, or ``None`` when it is forged, for another study or too old."""
    try:
        payload = signing.loads(ticket, salt=f"{TICKET_SALT}:{study.slug}", max_age=TICKET_MAX_AGE)
        return Entry(str(payload["p"]), str(payload["x"]), {str(k): str(v) for k, v in payload["d"].items()})
    except (signing.BadSignature, KeyError, TypeError, AttributeError, ValueError):
        return None


def find_rater(study: Study, entry: Entry, current: Rater | None) -> Rater | None:
    """The existing rater for this entry (nothing is created); a returning browser keeps its rater.

    A platform id on the link wins over the token or cookie (two workers can share a browser); a
    plain link reuses the current rater.
    """
    if entry.platform == Rater.Platform.LINK:
        if current is not None or not entry.external_id:
            return current
        return Rater.objects.filter(study=study, platform=entry.platform, external_id=entry.external_id).first()
    _, key = participation(entry)
    if current is not None and current.platform == entry.platform and current.external_id == key:
        return current
    return Rater.objects.filter(study=study, platform=entry.platform, external_id=key).first()


def enter(study: Study, entry: Entry) -> Rater:
    """Find or create the rater of this participation (called when the visitor gives consent)."""
    worker, key = participation(entry)
    data = {**entry.platform_data, "worker_id": worker} if entry.platform != Rater.Platform.LINK else {}
    rater, created = Rater.objects.get_or_create(
        study=study,
        platform=entry.platform,
        external_id=key,
        # The pseudonym follows the worker, not the session: the analysis groups a worker's ratings.
        defaults={"pseudonym": pseudonym(study, entry.platform, worker), "platform_data": data},
    )
    if not created and data and any(rater.platform_data.get(k) != v for k, v in data.items()):
        rater.platform_data = {**rater.platform_data, **data}
        rater.save(update_fields=["platform_data"])
    return rater
