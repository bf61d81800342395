"""Who the rater is: platform parameters on the entry link, pseudonyms, and the rater cookie.

Prolific sends ``PROLIFIC_PID``, ``STUDY_ID`` and ``SESSION_ID``; MTurk sends ``workerId``,
``assignmentId``, ``hitId`` and ``turkSubmitTo`` (and ``assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE``
while the worker only previews the HIT). A plain link gets a random anonymous id. After entry the
rater is known by a signed cookie holding the rater's id, one cookie per study, so the hot path
needs no session table.
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


def rater_id_from_cookie(request: HttpRequest, slug: str) -> int | None:
    """The rater id this browser's signed cookie for the study holds (no query), or ``None``.

    The signature covers the cookie's name, which contains the slug; callers still check that the
    rater belongs to the study (:func:`rater_from_cookie` does it in its query).
    """
    try:
        return int(request.get_signed_cookie(cookie_name(slug), salt=COOKIE_SALT, max_age=COOKIE_MAX_AGE))
    except (KeyError, ValueError, signing.BadSignature):
        return None


def rater_from_cookie(request: HttpRequest, slug: str) -> Rater | None:
    """The rater this browser entered the study as (with its study loaded, one query), or ``None``."""
    rater_id = rater_id_from_cookie(request, slug)
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


def enter(study: Study, entry: Entry, current: Rater | None) -> Rater:
    """Find or create the rater for this entry; a returning browser keeps its rater.

    A platform id on the link wins over the cookie (two workers can share a browser); a plain link
    reuses the cookie's rater or creates an anonymous one.
    """
    if entry.platform == Rater.Platform.LINK:
        if current is not None:
            return current
        external_id = secrets.token_urlsafe(16)
    else:
        external_id = entry.external_id
    if current is not None and current.platform == entry.platform and current.external_id == external_id:
        rater, created = current, False
    else:
        rater, created = Rater.objects.get_or_create(
            study=study,
            platform=entry.platform,
            external_id=external_id,
            defaults={
                "pseudonym": pseudonym(study, entry.platform, external_id),
                "platform_data": entry.platform_data,
            },
        )
    if (
        not created
        and entry.platform_data
        and any(rater.platform_data.get(k) != v for k, v in entry.platform_data.items())
    ):
        # MTurk issues a new assignmentId when a worker re-accepts; the latest one must be submitted.
        rater.platform_data = {**rater.platform_data, **entry.platform_data}
        rater.save(update_fields=["platform_data"])
    return rater
