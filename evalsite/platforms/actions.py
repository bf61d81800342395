"""Every write on a crowd platform, one function each, and an audit-log entry for each.

Like the other apps' actions: ``actor`` is the user asking (``None``: the system, e.g. the poll
command), checked against the study's owner; a refusal by our rules is an
:class:`~evalsite.studies.errors.ActionError` (the page shows it, the API answers 400/403/409), a
refusal or silence of the platform is a :class:`~.errors.PlatformActionFailed` (502). Every call,
successful or not, leaves an :class:`~.models.AuditEntry`.

No database transaction is held across a network call. What must survive a crash or a lost answer
is written *before* the call that depends on it:

- a platform study row (and MTurk's ``UniqueRequestToken``) before the study or HIT is created;
- a review decision before it is sent (approve/reject are idempotent on Prolific; MTurk's state is
  read back when a repeat is refused);
- every bonus before anything is paid, and its ``sending`` state before the pay call. A bonus whose
  pay call got no answer stays ``sending`` and is never sent again by itself: on Prolific (whose pay
  call is not idempotent) it is confirmed from the submission's ``bonus_payments`` or decided by the
  researcher; on MTurk it is looked up with ``ListBonusPayments`` and otherwise re-sent with the same
  ``UniqueRequestToken``, which MTurk refuses to pay twice.

- :func:`publish` (create + publish a Prolific study / create an MTurk HIT), :func:`sync` (read the
  platform, store submissions, reclaim the leases of participants who returned or timed out),
  :func:`review` (approve / reject / return by the quality rule in :mod:`.review`),
  :func:`add_bonuses` (from a rule or CSV rows), :func:`pay_bonuses`, :func:`resolve_bonus`,
  :func:`add_places` (only ever more), :func:`close` (stop the Prolific study / expire the HIT),
  :func:`handle_prolific_event` (the webhook) and :func:`poll` (the periodic command).
"""

from __future__ import annotations

import csv
import io
import os
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from evalsite.rating.assignment import release_live_lease
from evalsite.rating.identity import Entry, participation
from evalsite.rating.models import Assignment, Rater
from evalsite.studies.actions import check_can_change
from evalsite.studies.errors import ActionConflict, ActionError
from evalsite.studies.models import Study

from . import mturk, prolific
from . import review as rules
from .credentials import check_token_env, default_token_env, read_token
from .errors import NotConfigured, PlatformActionFailed, PlatformError, Refused, Unsure
from .models import AuditEntry, Bonus, Platform, PlatformStudy, PlatformSubmission
from .places import HOLDING, initial_places, more_places

__all__ = [
    "add_bonuses",
    "add_places",
    "close",
    "handle_prolific_event",
    "parse_bonus_csv",
    "pay_bonuses",
    "poll",
    "preview_review",
    "publish",
    "resolve_bonus",
    "review",
    "sync",
]

P = Platform
PROLIFIC_QUERY = "PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
AWAITING = {P.PROLIFIC: prolific.AWAITING_REVIEW, P.MTURK: mturk.SUBMITTED}
APPROVED = {P.PROLIFIC: prolific.APPROVED, P.MTURK: mturk.APPROVED}
# Participations whose live lease goes back to the pool at once (the place is free on the platform).
RELEASE = {
    P.PROLIFIC: {prolific.RETURNED, prolific.TIMED_OUT, prolific.REJECTED},
    P.MTURK: {mturk.REJECTED},
}
OPEN_STATES = {P.PROLIFIC: {"ACTIVE", "PAUSED", "SCHEDULED"}, P.MTURK: mturk.OPEN_HIT_STATUSES}
RATER_PLATFORM = {P.PROLIFIC: Rater.Platform.PROLIFIC, P.MTURK: Rater.Platform.MTURK}
BONUS_LABEL = re.compile(r"^[A-Za-z0-9_.-]{1,60}$")
MTURK_TOKEN_HOURS = 24


def max_bonus_cents() -> int:
    """The largest single bonus accepted (``EVALSITE_MAX_BONUS``, in currency units; default 10.00)."""
    try:
        return int(Decimal(os.environ.get("EVALSITE_MAX_BONUS", "10.00")) * 100)
    except InvalidOperation:
        return 1000


def prolific_batch_size() -> int:
    return max(1, int(os.environ.get("EVALSITE_PROLIFIC_BONUS_BATCH", "100") or 100))


# --- plumbing -----------------------------------------------------------------------------------


def audit(study: Study, link: PlatformStudy | None, platform: str, actor, action: str, ok: bool, message: str,
          detail: dict | None = None) -> AuditEntry:
    return AuditEntry.objects.create(
        study=study,
        link=link,
        platform=platform,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        action=action,
        ok=ok,
        message=message[:2000],
        detail=detail or {},
    )


@dataclass
class Result:
    """What an action did: a sentence for the researcher and the numbers behind it."""

    message: str
    detail: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


def _failed(study: Study, link: PlatformStudy | None, platform: str, actor, action: str,
            exc: PlatformError) -> ActionError:
    """Audit a platform failure and keep it on the link; the error the action raises.

    Missing credentials are this server's set-up, not the platform's answer: a 409, not a 502.
    """
    link = link or PlatformStudy.objects.filter(study=study, platform=platform).first()
    audit(study, link, platform, actor, action, False, str(exc), getattr(exc, "detail", {}))
    if link is not None:
        PlatformStudy.objects.filter(pk=link.pk).update(last_error=str(exc)[:2000])
    if isinstance(exc, NotConfigured):
        return ActionConflict(str(exc))
    return PlatformActionFailed(str(exc))


def _audited(study: Study, link: PlatformStudy | None, platform: str, actor, action: str,
             work: Callable[[], Result]) -> Result:
    """Run ``work`` and audit its outcome; a platform failure becomes :class:`PlatformActionFailed`."""
    try:
        result = work()
    except PlatformError as exc:
        raise _failed(study, link, platform, actor, action, exc) from exc
    except ActionError as exc:
        link = link or PlatformStudy.objects.filter(study=study, platform=platform).first()
        audit(study, link, platform, actor, action, False, str(exc))
        raise
    link = link or PlatformStudy.objects.filter(study=study, platform=platform).first()
    audit(study, link, platform, actor, action, True, result.message, result.detail)
    return result


def prolific_client(link: PlatformStudy) -> prolific.ProlificClient:
    token = read_token(link.token_env)
    if token is None:
        problem = check_token_env(link.token_env)
        raise NotConfigured(problem or f"The Prolific token variable {link.token_env} is not set on this server.")
    try:
        timeout = float(os.environ.get("EVALSITE_PROLIFIC_TIMEOUT", "30") or 30)
    except ValueError:
        timeout = 30.0
    return prolific.ProlificClient(token, timeout=timeout)


def mturk_client(link: PlatformStudy):
    return mturk.make_client(sandbox=link.sandbox)


def _when(value) -> datetime | None:
    if isinstance(value, datetime):
        return value if timezone.is_aware(value) else timezone.make_aware(value, UTC)
    if isinstance(value, str) and value:
        parsed = parse_datetime(value)
        if parsed is not None and timezone.is_naive(parsed):
            parsed = timezone.make_aware(parsed, UTC)
        return parsed
    return None


def _check_platform(platform: str) -> str:
    if platform not in P.values:
        raise ActionError(f"Unknown platform {platform!r}: use prolific or mturk.")
    return platform


def get_link(study: Study, platform: str) -> PlatformStudy:
    link = PlatformStudy.objects.select_related("study").filter(study=study, platform=_check_platform(platform)).first()
    if link is None or not link.external_id:
        name = P(platform).label
        raise ActionConflict(f"This study is not on {name} yet: publish it there first.")
    return link


# --- publish ------------------------------------------------------------------------------------


def publish(
    study: Study,
    platform: str,
    actor=None,
    *,
    entry_url: str,
    reward_cents: int,
    estimated_minutes: int,
    places: int | None = None,
    description: str = "",
    token_env: str = "",
    sandbox: bool = True,
    lifetime_hours: int = 7 * 24,
    auto_approve_days: int = 3,
) -> Result:
    """Put the study on a platform: a published Prolific study, or an MTurk HIT.

    The study must be live (participants would otherwise find it not running). ``places`` defaults
    to what the study needs (:func:`.places.initial_places`). Prolific gets the completion code
    (manual review) and a second code for failed quality control; MTurk an ExternalQuestion.
    """
    platform = _check_platform(platform)
    link = PlatformStudy.objects.filter(study=study, platform=platform).first()

    def work() -> Result:
        check_can_change(actor, study)
        if study.status != Study.Status.LIVE:
            raise ActionConflict("Launch the study first: participants sent to it now would find it not running.")
        if link is not None and link.external_id and link.state not in {"", prolific.UNPUBLISHED}:
            raise ActionConflict(
                f"This study is already on {P(platform).label} ({link.external_id}, {link.state}): "
                "add places instead of publishing again."
            )
        draft = link is not None and bool(link.external_id)  # a Prolific draft: only the PUBLISH is left
        reward, minutes = int(reward_cents or 0), int(estimated_minutes or 0)
        if not draft and reward <= 0:
            raise ActionError("The reward must be more than 0.")
        if not draft and minutes <= 0:
            raise ActionError("The estimated time must be at least 1 minute.")
        total = int(places) if places else initial_places(study)
        if total < 1:
            raise ActionError("A study needs at least 1 place.")
        if platform == P.PROLIFIC:
            return _publish_prolific(study, actor, entry_url, reward, minutes, total, description, token_env)
        return _publish_mturk(study, actor, entry_url, reward, minutes, total, description, sandbox, lifetime_hours,
                              auto_approve_days)

    return _audited(study, link, platform, actor, "publish", work)


def _save_link(study: Study, platform: str, actor, **fields) -> PlatformStudy:
    with transaction.atomic():
        link, _ = PlatformStudy.objects.select_for_update().get_or_create(
            study=study, platform=platform, defaults={"created_by": actor if getattr(actor, "pk", None) else None}
        )
        for name, value in fields.items():
            setattr(link, name, value)
        link.save()
    return link


def _publish_prolific(study, actor, entry_url, reward, minutes, total, description, token_env) -> Result:
    if not study.completion_code:
        raise ActionConflict("Set the study's completion code first: Prolific needs it to confirm completion.")
    existing = PlatformStudy.objects.filter(study=study, platform=P.PROLIFIC).first()
    token_env = token_env or (existing.token_env if existing and existing.token_env else default_token_env(study.slug))
    if problem := check_token_env(token_env):
        raise ActionError(problem)
    failed_code = study.failed_quality_code
    config = {
        "description": description,
        "completion_code": study.completion_code,
        "failed_code": failed_code,
        "external_study_url": f"{entry_url}?{PROLIFIC_QUERY}",
    }
    link = _save_link(study, P.PROLIFIC, actor, token_env=token_env)
    if read_token(token_env) is None:
        raise NotConfigured(f"Set {token_env} to a Prolific API token on this server (it is never stored).")
    with prolific_client(link) as client:
        if not link.external_id:
            body = {
                "name": study.public_title,
                "internal_name": f"evalsite {study.slug}",
                "description": description or "Compare two answers to the same question and say which is better.",
                "external_study_url": config["external_study_url"],
                "prolific_id_option": "url_parameters",
                "completion_codes": [
                    {"code": study.completion_code, "code_type": "COMPLETED",
                     "actions": [{"action": "MANUALLY_REVIEW"}]},
                    {"code": failed_code, "code_type": "FAILED_ATTENTION_CHECK",
                     "actions": [{"action": "MANUALLY_REVIEW"}]},
                ],
                "total_available_places": total,
                "estimated_completion_time": minutes,
                "reward": reward,
                "device_compatibility": ["desktop", "tablet", "mobile"],
            }
            created = client.create_study(body)
            link = _save_link(
                study, P.PROLIFIC, actor,
                external_id=str(created["id"]), state=created.get("status", prolific.UNPUBLISHED),
                places=int(created.get("total_available_places", total)), reward_cents=reward,
                estimated_minutes=minutes, currency=str(created.get("currency_code", "") or "")[:3],
                config=config, last_error="",
            )
        published = client.transition_study(link.external_id, "PUBLISH")
        state = published.get("status") or client.get_study(link.external_id).get("status", "")
    link = _save_link(study, P.PROLIFIC, actor, state=state, last_error="")
    return Result(
        f"Published on Prolific: study {link.external_id} ({state}), {link.places} places at "
        f"{link.reward_cents / 100:.2f} each.",
        {"external_id": link.external_id, "places": link.places, "reward_cents": link.reward_cents, "state": state},
    )


def _publish_mturk(study, actor, entry_url, reward, minutes, total, description, sandbox, lifetime_hours,
                   auto_approve_days) -> Result:
    if not sandbox and not mturk.production_allowed():
        raise ActionError(
            "Real MTurk (not the sandbox) is off on this server: set EVALSITE_MTURK_ALLOW_PRODUCTION=1 to allow it."
        )
    existing = PlatformStudy.objects.filter(study=study, platform=P.MTURK).first()
    token = existing.request_token if existing and existing.request_token else f"ev-{secrets.token_hex(20)}"
    annotation = f"evalsite:{study.slug}:{token}"[:255]
    # Recorded before the call: a retry uses the same token, and MTurk makes no second HIT.
    link = _save_link(
        study, P.MTURK, actor, request_token=token, sandbox=sandbox, reward_cents=reward, estimated_minutes=minutes,
        currency="USD", config={"description": description, "annotation": annotation, "entry_url": entry_url},
    )
    client = mturk_client(link)
    params = {
        "Title": study.public_title[:128],
        "Description": (description or "Compare two answers to the same question and say which is better.")[:2000],
        "Keywords": "comparison, rating, text, evaluation",
        "Reward": mturk.dollars(reward),
        "MaxAssignments": total,
        "LifetimeInSeconds": max(60, int(lifetime_hours) * 3600),
        "AssignmentDurationInSeconds": min(max(30, minutes * 3 * 60), 31536000),
        "AutoApprovalDelayInSeconds": max(0, int(auto_approve_days) * 86400),
        "Question": mturk.external_question(entry_url),
        "RequesterAnnotation": annotation,
        "UniqueRequestToken": token,
    }
    try:
        hit = mturk.call(client, "create_hit", **params)["HIT"]
    except Refused:
        hit = mturk.find_hit_by_annotation(client, annotation)  # created by an earlier try whose answer was lost
        if hit is None:
            raise
    link = _save_link(
        study, P.MTURK, actor, external_id=hit["HITId"], state=hit.get("HITStatus", ""),
        places=int(hit.get("MaxAssignments", total)), last_error="",
    )
    where = "the MTurk sandbox" if sandbox else "MTurk"
    return Result(
        f"HIT {link.external_id} created on {where}: {link.places} assignments at ${mturk.dollars(reward)} each.",
        {"external_id": link.external_id, "places": link.places, "reward_cents": reward, "sandbox": sandbox},
    )


# --- sync and reclaim -----------------------------------------------------------------------------


@dataclass
class Remote:
    external_id: str
    worker_id: str
    status: str
    started_at: datetime | None = None
    completed_at: datetime | None = None


def _rater_for(link: PlatformStudy, worker_id: str, external_id: str) -> Rater | None:
    platform = RATER_PLATFORM[link.platform]
    data = {"SESSION_ID": external_id} if link.platform == P.PROLIFIC else {"assignmentId": external_id}
    _, key = participation(Entry(platform, worker_id, data))
    return Rater.objects.filter(study_id=link.study_id, platform=platform, external_id=key).first()


def _release(rater: Rater | None) -> bool:
    """Give the rater's live lease back to the pool; whether there was one."""
    if rater is None or not Assignment.objects.filter(rater=rater, status=Assignment.Status.LIVE).exists():
        return False
    release_live_lease(rater)
    return True


def _store(link: PlatformStudy, remote: Iterable[Remote]) -> tuple[int, int]:
    """Upsert the submissions; release the leases of returned / timed-out ones. (stored, released)."""
    stored = released = 0
    for item in remote:
        sub = PlatformSubmission.objects.filter(link=link, external_id=item.external_id).first()
        if sub is None:
            sub = PlatformSubmission(link=link, external_id=item.external_id)
        sub.worker_id = item.worker_id
        sub.status = item.status
        sub.started_at = item.started_at or sub.started_at
        sub.completed_at = item.completed_at or sub.completed_at
        if sub.rater_id is None:
            sub.rater = _rater_for(link, item.worker_id, item.external_id)
        if item.status in RELEASE[link.platform] and _release(sub.rater):
            sub.lease_released_at = timezone.now()
            released += 1
        sub.save()
        stored += 1
    return stored, released


def _read_prolific(link: PlatformStudy, client) -> list[Remote]:
    study = client.get_study(link.external_id)
    link.state = study.get("status", link.state)
    link.places = int(study.get("total_available_places", link.places) or 0)
    link.places_taken = int(study.get("places_taken", link.places_taken) or 0)
    return [
        Remote(
            str(s["id"]),
            str(s.get("participant_id") or s.get("participant") or ""),
            str(s.get("status", "")),
            _when(s.get("started_at")),
            _when(s.get("completed_at")),
        )
        for s in client.list_submissions(link.external_id)
    ]


def _read_mturk(link: PlatformStudy, client) -> list[Remote]:
    hit = mturk.call(client, "get_hit", HITId=link.external_id)["HIT"]
    link.state = hit.get("HITStatus", link.state)
    link.places = int(hit.get("MaxAssignments", link.places) or 0)
    link.places_taken = max(0, link.places - int(hit.get("NumberOfAssignmentsAvailable", 0) or 0))
    return [
        Remote(a["AssignmentId"], a.get("WorkerId", ""), a.get("AssignmentStatus", ""), _when(a.get("AcceptTime")),
               _when(a.get("SubmitTime")))
        for a in mturk.list_assignments(client, link.external_id)
    ]


def _sync(link: PlatformStudy, client) -> dict:
    remote = _read_prolific(link, client) if link.platform == P.PROLIFIC else _read_mturk(link, client)
    stored, released = _store(link, remote)
    link.last_synced_at = timezone.now()
    link.last_error = ""
    link.save(update_fields=["state", "places", "places_taken", "last_synced_at", "last_error", "updated_at"])
    confirmed = _confirm_prolific_bonuses(link, client) if link.platform == P.PROLIFIC else 0
    return {"submissions": stored, "released": released, "bonuses_confirmed": confirmed, "state": link.state}


def _with_client(link: PlatformStudy, use: Callable):
    if link.platform == P.PROLIFIC:
        with prolific_client(link) as client:
            return use(client)
    return use(mturk_client(link))


def sync(study: Study, platform: str, actor=None, *, audit_quiet: bool = False) -> Result:
    """Read the platform study and its submissions; reclaim the leases of who returned or timed out.

    ``audit_quiet`` (the poll command) audits only syncs that changed something or failed.
    """
    link = get_link(study, platform)

    def work() -> Result:
        check_can_change(actor, study)
        d = _with_client(link, lambda client: _sync(link, client))
        message = (
            f"{P(platform).label}: {d['state']}, {d['submissions']} submission(s) read, "
            f"{d['released']} lease(s) reclaimed from participants who returned or timed out"
            + (f", {d['bonuses_confirmed']} bonus(es) confirmed" if d["bonuses_confirmed"] else "")
            + "."
        )
        return Result(message, d)

    if not audit_quiet:
        return _audited(study, link, platform, actor, "sync", work)
    try:
        result = work()
    except PlatformError as exc:
        raise _failed(study, link, platform, actor, "sync", exc) from exc
    if result.detail["released"] or result.detail["bonuses_confirmed"]:
        audit(study, link, platform, actor, "sync", True, result.message, result.detail)
    return result


# --- review ---------------------------------------------------------------------------------------


def _awaiting(link: PlatformStudy):
    return link.submissions.filter(status=AWAITING[link.platform], decision_sent=False).select_related("rater")


def preview_review(link: PlatformStudy) -> dict[str, int]:
    """How many submissions awaiting review the rule would approve, reject, ask to return."""
    counts = {rules.APPROVE: 0, rules.REJECT: 0, rules.RETURN: 0}
    for sub in _awaiting(link):
        counts[rules.verdict(sub.rater, link.study).decision] += 1
    return counts


def _send_decision(link: PlatformStudy, client, sub: PlatformSubmission) -> str:
    """Send the recorded decision; the submission's new status."""
    if link.platform == P.PROLIFIC:
        if sub.decision == rules.APPROVE:
            answer = client.approve(sub.external_id)
        elif sub.decision == rules.REJECT:
            answer = client.reject(sub.external_id, category=sub.decision_category,
                                   message=rules.rejection_message(sub.decision_reason))
        else:
            answer = client.request_return(sub.external_id, rules.RETURN_REASONS)
        return str(answer.get("status") or sub.status)
    operation = "approve_assignment" if sub.decision == rules.APPROVE else "reject_assignment"
    params = {"AssignmentId": sub.external_id}
    if sub.decision == rules.APPROVE:
        params["RequesterFeedback"] = "Thank you: your ratings passed quality control."
    else:
        params["RequesterFeedback"] = rules.rejection_message(sub.decision_reason)[:1024]
    try:
        mturk.call(client, operation, **params)
    except Refused:
        # Perhaps decided by an earlier try whose answer was lost: MTurk says what it holds now.
        now = mturk.call(client, "get_assignment", AssignmentId=sub.external_id)["Assignment"]["AssignmentStatus"]
        wanted = mturk.APPROVED if sub.decision == rules.APPROVE else mturk.REJECTED
        if now != wanted:
            raise
        return now
    return mturk.APPROVED if sub.decision == rules.APPROVE else mturk.REJECTED


def review(study: Study, platform: str, actor=None) -> Result:
    """Approve, reject or ask to return every submission awaiting review, by the quality rule.

    Reads the platform first (so nothing already decided there is decided again), records each
    decision, then sends it. Returned / rejected participants' leases go back to the pool.
    """
    link = get_link(study, platform)

    def work() -> Result:
        check_can_change(actor, study)

        def run(client) -> Result:
            _sync(link, client)
            done = {rules.APPROVE: 0, rules.REJECT: 0, rules.RETURN: 0}
            failed: list[str] = []
            for sub in _awaiting(link):
                verdict = rules.verdict(sub.rater, study)
                sub.decision, sub.decision_category = verdict.decision, verdict.category
                sub.decision_reason, sub.decided_at, sub.decision_error = verdict.reason, timezone.now(), ""
                sub.save()  # recorded before it is sent
                try:
                    sub.status = _send_decision(link, client, sub)
                except PlatformError as exc:
                    sub.decision_error = str(exc)[:2000]
                    sub.save(update_fields=["decision_error", "synced_at"])
                    failed.append(f"{sub.external_id}: {exc}")
                    if isinstance(exc, Unsure):
                        break  # the platform is not answering: stop, the rest is sent next time
                    continue
                sub.decision_sent = True
                sub.save(update_fields=["status", "decision_sent", "synced_at"])
                if verdict.decision != rules.APPROVE:
                    _release(sub.rater)
                done[verdict.decision] += 1
            detail = {**done, "failed": failed[:50]}
            verb = "asked to return" if platform == P.PROLIFIC else "rejected (no work)"
            message = (
                f"{done[rules.APPROVE]} approved, {done[rules.REJECT]} rejected, {done[rules.RETURN]} {verb}"
                + (f"; {len(failed)} not sent: {failed[0]}" if failed else "")
                + "."
            )
            if failed and not any(done.values()):
                error = Refused(message)
                error.detail = detail
                raise error
            return Result(message, detail)

        return _with_client(link, run)

    return _audited(study, link, platform, actor, "review", work)


# --- bonuses --------------------------------------------------------------------------------------


def parse_bonus_csv(text: str) -> list[tuple[str, int]]:
    """``id,amount`` rows (a header row is allowed) → [(id, cents)]; every problem, with its line."""
    rows, problems = [], []
    cap = max_bonus_cents()
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        if len(cells) < 2:
            problems.append(f"line {number}: expected 'id,amount'")
            continue
        ident, raw = cells[0], cells[1].lstrip("£$")
        try:
            amount = Decimal(raw)
        except InvalidOperation:
            if number == 1:
                continue  # a header
            problems.append(f"line {number}: {cells[1]!r} is not an amount such as 1.50")
            continue
        if amount != amount.quantize(Decimal("0.01")) or amount <= 0:
            problems.append(f"line {number}: the amount must be positive, with at most 2 decimals")
            continue
        cents = int(amount * 100)
        if cents > cap:
            problems.append(f"line {number}: {amount} is more than the largest bonus allowed ({cap / 100:.2f}, "
                            "EVALSITE_MAX_BONUS)")
            continue
        rows.append((ident, cents))
    if problems:
        raise ActionError(["Nothing was recorded; fix these rows and retry.", *problems])
    if not rows:
        raise ActionError("The file has no bonus rows (expected 'id,amount' per line).")
    return rows


def _approved(link: PlatformStudy):
    return link.submissions.filter(status=APPROVED[link.platform]).select_related("rater")


def add_bonuses(
    study: Study,
    platform: str,
    actor=None,
    *,
    rows: list[tuple[str, int]] | None = None,
    flat_cents: int = 0,
    per_task_cents: int = 0,
    label: str = "bonus",
    reason: str = "",
) -> Result:
    """Record bonuses (nothing is paid yet): from CSV ``rows`` or from a rule over approved submissions.

    CSV rows name a submission (Prolific submission id / MTurk assignment id) or a worker with one
    submission here. The rule pays ``flat_cents`` + ``per_task_cents`` × the rater's submitted tasks.
    The idempotency key is ``label:submission``: recording the same label twice adds nothing.
    """
    link = get_link(study, platform)

    def work() -> Result:
        check_can_change(actor, study)
        if not BONUS_LABEL.match(label or ""):
            raise ActionError("The bonus label must be 1–60 letters, digits, '.', '_' or '-' (e.g. bonus-round-2).")
        cap = max_bonus_cents()
        wanted: list[tuple[PlatformSubmission, int]] = []
        if rows is not None:
            subs = list(link.submissions.all())
            by_id = {s.external_id: s for s in subs}
            by_worker: dict[str, list[PlatformSubmission]] = {}
            for s in subs:
                by_worker.setdefault(s.worker_id, []).append(s)
            problems = []
            for ident, cents in rows:
                sub = by_id.get(ident)
                if sub is None:
                    matches = by_worker.get(ident, [])
                    if len(matches) == 1:
                        sub = matches[0]
                    elif matches:
                        problems.append(f"{ident}: this worker has {len(matches)} submissions; name one by its id")
                        continue
                    else:
                        problems.append(f"{ident}: no such submission or worker here (refresh from the platform first)")
                        continue
                if cents <= 0 or cents > cap:
                    problems.append(f"{ident}: the amount must be between 0.01 and {cap / 100:.2f}")
                    continue
                wanted.append((sub, cents))
            if problems:
                raise ActionError(["Nothing was recorded; fix these rows and retry.", *problems])
        else:
            flat, per_task = int(flat_cents or 0), int(per_task_cents or 0)
            if flat < 0 or per_task < 0 or flat + per_task <= 0:
                raise ActionError("Give a flat amount or an amount per task (or both), more than 0.")
            for sub in _approved(link):
                tasks = sub.rater.tasks_submitted if sub.rater else 0
                cents = flat + per_task * tasks
                if cents > 0:
                    wanted.append((sub, min(cents, cap)))
            if not wanted:
                raise ActionConflict("No approved submission to pay a bonus to: review the submissions first.")
        created = skipped = total = 0
        text = (reason or "Bonus for careful ratings. Thank you!")[:250]
        with transaction.atomic():
            for sub, cents in wanted:
                _, made = Bonus.objects.get_or_create(
                    link=link,
                    key=f"{label}:{sub.external_id}",
                    defaults={
                        "submission": sub, "amount_cents": cents, "reason": text,
                        "request_token": f"ev{link.pk}-{secrets.token_hex(24)}"[:64],
                        "created_by": actor if getattr(actor, "pk", None) else None,
                    },
                )
                created += made
                skipped += not made
                total += cents if made else 0
        return Result(
            f"{created} bonus(es) recorded ({total / 100:.2f} in all)"
            + (f"; {skipped} already recorded under '{label}', not added again" if skipped else "")
            + ". Nothing is paid until you pay the pending bonuses.",
            {"recorded": created, "already": skipped, "total_cents": total, "label": label},
        )

    return _audited(study, link, platform, actor, "bonus.record", work)


def _set_state(bonuses: list[Bonus], **fields) -> None:
    Bonus.objects.filter(pk__in=[b.pk for b in bonuses]).update(**fields)


def _confirm_prolific_bonuses(link: PlatformStudy, client) -> int:
    """Mark unconfirmed bonuses paid when the submission's ``bonus_payments`` show them."""
    confirmed = 0
    unconfirmed = list(link.bonuses.filter(state=Bonus.State.SENDING).select_related("submission"))
    for sub_id in sorted({b.submission.external_id for b in unconfirmed}):
        paid = [int(round(float(x))) for x in (client.get_submission(sub_id).get("bonus_payments") or [])]
        ours = link.bonuses.filter(submission__external_id=sub_id)
        for bonus in [b for b in unconfirmed if b.submission.external_id == sub_id]:
            known = ours.filter(state=Bonus.State.PAID, amount_cents=bonus.amount_cents).count()
            if paid.count(bonus.amount_cents) > known:
                _set_state([bonus], state=Bonus.State.PAID, paid_at=timezone.now(), error="")
                bonus.state = Bonus.State.PAID
                confirmed += 1
    return confirmed


def _pay_prolific(link: PlatformStudy, client) -> dict:
    confirmed = _confirm_prolific_bonuses(link, client)
    pending = list(link.bonuses.filter(state=Bonus.State.PENDING).select_related("submission").order_by("id"))
    size = prolific_batch_size()
    paid = failed = 0
    stopped = ""
    for start in range(0, len(pending), size):
        chunk = pending[start:start + size]
        try:
            setup = client.set_up_bonuses(link.external_id, [(b.submission.external_id, b.amount_cents) for b in chunk])
        except Refused as exc:  # nothing was set up or paid
            if exc.status == 400:  # the rows themselves (an id that did not take part …)
                _set_state(chunk, state=Bonus.State.FAILED, error=str(exc)[:2000])
                failed += len(chunk)
                continue
            _set_state(chunk, error=str(exc)[:2000])  # the token, the study …: the rows stay pending
            stopped = str(exc)
            break
        except Unsure as exc:  # setting up pays nothing: the rows stay pending
            stopped = str(exc)
            break
        with transaction.atomic():  # committed before the pay call, which is not idempotent
            for b in chunk:
                Bonus.objects.filter(pk=b.pk).update(
                    state=Bonus.State.SENDING, batch_id=str(setup["id"]), sent_at=timezone.now(),
                    attempts=b.attempts + 1, error="",
                )
        try:
            client.pay_bonuses(str(setup["id"]))
        except Refused as exc:  # refused for sure (e.g. balance): not paid, may be sent again
            _set_state(chunk, state=Bonus.State.PENDING, error=str(exc)[:2000])
            stopped = str(exc)
            break
        except Unsure as exc:  # maybe paid: never paid again by itself
            _set_state(chunk, error=f"No confirmation from Prolific: {exc}"[:2000])
            stopped = str(exc)
            break
        _set_state(chunk, state=Bonus.State.PAID, paid_at=timezone.now())
        paid += len(chunk)
    return {"paid": paid, "failed": failed, "confirmed": confirmed, "stopped": stopped}


def _mturk_bonus_found(client, bonus: Bonus) -> bool:
    """Whether MTurk lists this bonus as paid on its assignment (its reference is in the reason)."""
    ref = bonus.request_token[-10:]
    token = None
    while True:
        params = {"AssignmentId": bonus.submission.external_id, "MaxResults": 100}
        if token:
            params["NextToken"] = token
        page = mturk.call(client, "list_bonus_payments", **params)
        if any(ref in (p.get("Reason") or "") for p in page.get("BonusPayments", [])):
            return True
        token = page.get("NextToken")
        if not token:
            return False


def _pay_mturk(link: PlatformStudy, client) -> dict:
    paid = failed = confirmed = 0
    stopped = ""
    queue = list(
        link.bonuses.filter(state__in=[Bonus.State.SENDING, Bonus.State.PENDING]).select_related("submission")
        .order_by("-state", "id")  # unconfirmed ("sending") first
    )
    for bonus in queue:
        if bonus.state == Bonus.State.SENDING and _mturk_bonus_found(client, bonus):
            _set_state([bonus], state=Bonus.State.PAID, paid_at=timezone.now(), error="")
            confirmed += 1
            continue
        _set_state([bonus], state=Bonus.State.SENDING, sent_at=bonus.sent_at or timezone.now(),
                   attempts=bonus.attempts + 1)
        try:
            mturk.call(
                client, "send_bonus",
                WorkerId=bonus.submission.worker_id, BonusAmount=mturk.dollars(bonus.amount_cents),
                AssignmentId=bonus.submission.external_id,
                Reason=f"{bonus.reason} (ref {bonus.request_token[-10:]})",
                UniqueRequestToken=bonus.request_token,
            )
        except Refused as exc:
            if bonus.attempts and _mturk_bonus_found(client, bonus):  # a repeat of a paid one
                _set_state([bonus], state=Bonus.State.PAID, paid_at=timezone.now(), error="")
                confirmed += 1
                continue
            _set_state([bonus], state=Bonus.State.PENDING, error=str(exc)[:2000])
            failed += 1
            continue
        except Unsure as exc:
            _set_state([bonus], error=f"No confirmation from MTurk: {exc}"[:2000])
            stopped = str(exc)
            break
        _set_state([bonus], state=Bonus.State.PAID, paid_at=timezone.now(), error="")
        paid += 1
    return {"paid": paid, "failed": failed, "confirmed": confirmed, "stopped": stopped}


def pay_bonuses(study: Study, platform: str, actor=None) -> Result:
    """Pay the recorded bonuses that are pending; confirm the unconfirmed ones where the platform says.

    Never pays a bonus twice: see the module docstring. The outcome is audited with the counts;
    if the platform stops answering, the run stops and says what is left.
    """
    link = get_link(study, platform)

    def work() -> Result:
        check_can_change(actor, study)
        with transaction.atomic():  # one payer at a time per platform study
            fresh = PlatformStudy.objects.select_for_update().get(pk=link.pk)
            claimed = parse_datetime(fresh.config.get("paying_since") or "")
            if claimed and timezone.now() - claimed < timedelta(minutes=10):
                raise ActionConflict("Bonuses of this study are being paid right now: wait for that run to finish.")
            link.config = {**fresh.config, "paying_since": timezone.now().isoformat()}
            PlatformStudy.objects.filter(pk=link.pk).update(config=link.config)
        try:
            d = _with_client(link, lambda c: (_pay_prolific if platform == P.PROLIFIC else _pay_mturk)(link, c))
        finally:
            link.config = {k: v for k, v in link.config.items() if k != "paying_since"}
            PlatformStudy.objects.filter(pk=link.pk).update(config=link.config)
        left = link.bonuses.filter(state=Bonus.State.PENDING).count()
        unsure = link.bonuses.filter(state=Bonus.State.SENDING).count()
        message = (
            f"{d['paid']} bonus(es) paid, {d['confirmed']} confirmed, {d['failed']} refused; "
            f"{left} pending, {unsure} sent without confirmation."
        )
        if d["stopped"]:
            error = Unsure(f"{message} Stopped: {d['stopped']}")
            error.detail = {**d, "pending": left, "unconfirmed": unsure}
            raise error
        return Result(message, {**d, "pending": left, "unconfirmed": unsure})

    return _audited(study, link, platform, actor, "bonus.pay", work)


def resolve_bonus(bonus: Bonus, actor=None, *, outcome: str) -> Result:
    """The researcher's decision on an unconfirmed or refused bonus, after looking at the platform.

    ``paid``: it was paid (sending → paid); ``resend``: it was not (→ pending, sent with the next
    payment); ``cancel``: do not pay it (→ failed).
    """
    link = bonus.link
    study = link.study

    def work() -> Result:
        check_can_change(actor, study)
        allowed = {
            "paid": ({Bonus.State.SENDING}, Bonus.State.PAID),
            "resend": ({Bonus.State.SENDING, Bonus.State.FAILED}, Bonus.State.PENDING),
            "cancel": ({Bonus.State.SENDING, Bonus.State.PENDING, Bonus.State.FAILED}, Bonus.State.FAILED),
        }
        if outcome not in allowed:
            raise ActionError("Say whether the bonus was paid, should be sent again, or cancelled.")
        sources, target = allowed[outcome]
        with transaction.atomic():
            locked = Bonus.objects.select_for_update().get(pk=bonus.pk)
            if locked.state not in sources:
                raise ActionConflict(f"This bonus is {locked.get_state_display().lower()}: nothing to {outcome}.")
            before = locked.state
            locked.state = target
            locked.error = "" if outcome != "cancel" else "Cancelled by the researcher."
            if target == Bonus.State.PAID:
                locked.paid_at = timezone.now()
            locked.save()
        bonus.state = locked.state
        return Result(
            f"Bonus {locked.amount_cents / 100:.2f} to {locked.submission.external_id}: {before} → {target}.",
            {"bonus": locked.pk, "from": before, "to": target},
        )

    return _audited(study, link, link.platform, actor, f"bonus.{outcome}", work)


# --- places and closing ---------------------------------------------------------------------------


def holding_places(link: PlatformStudy) -> int:
    return link.submissions.filter(status__in=HOLDING[link.platform]).count()


def suggested_more_places(link: PlatformStudy) -> int:
    return more_places(link, holding_places(link))


def add_places(study: Study, platform: str, actor=None, *, total: int | None = None) -> Result:
    """Raise the platform study's places to ``total`` (default: what the missing ratings need).

    Places only ever increase: a lower or equal total is refused.
    """
    link = get_link(study, platform)

    def work() -> Result:
        check_can_change(actor, study)
        target = int(total) if total else link.places + suggested_more_places(link)
        if target <= link.places:
            raise ActionConflict(
                f"The study has {link.places} places; places can only increase, so the new total must be more."
                if total else "No more places are needed for the ratings still missing."
            )
        before = link.places
        if platform == P.PROLIFIC:
            with prolific_client(link) as client:
                answer = client.update_study(link.external_id, total_available_places=target)
            link.places = int(answer.get("total_available_places", target) or target)
        else:
            client = mturk_client(link)
            mturk.call(
                client, "create_additional_assignments_for_hit",
                HITId=link.external_id, NumberOfAdditionalAssignments=target - before,
                UniqueRequestToken=f"{link.request_token[:40]}-places-{target}",
            )
            link.places = target
        PlatformStudy.objects.filter(pk=link.pk).update(places=link.places, last_error="")
        return Result(f"Places: {before} → {link.places}.", {"from": before, "to": link.places})

    return _audited(study, link, platform, actor, "places.increase", work)


def close(study: Study, platform: str, actor=None) -> Result:
    """Stop the Prolific study / expire the HIT: no new participants; submitted work stays reviewable."""
    link = get_link(study, platform)

    def work() -> Result:
        check_can_change(actor, study)
        if link.state not in OPEN_STATES[link.platform]:
            raise ActionConflict(f"The {P(platform).label} study is {link.state or 'not open'}: nothing to close.")
        if platform == P.PROLIFIC:
            with prolific_client(link) as client:
                answer = client.transition_study(link.external_id, "STOP")
                link.state = answer.get("status") or client.get_study(link.external_id).get("status", "")
        else:
            client = mturk_client(link)
            mturk.call(client, "update_expiration_for_hit", HITId=link.external_id, ExpireAt=mturk.EXPIRED_AT)
            link.state = mturk.call(client, "get_hit", HITId=link.external_id)["HIT"].get("HITStatus", "")
        PlatformStudy.objects.filter(pk=link.pk).update(state=link.state, last_error="")
        what = "stopped" if platform == P.PROLIFIC else "expired"
        return Result(f"The {P(platform).label} study is {what} ({link.state}).", {"state": link.state})

    return _audited(study, link, platform, actor, "close", work)


# --- webhook and polling ----------------------------------------------------------------------------


def normalize_status(status: str) -> str:
    """Prolific's status as the API lists it (webhooks may spell it ``TIMED_OUT``, ``AWAITING_REVIEW``)."""
    text = str(status or "").strip().upper().replace("_", " ")
    return "TIMED-OUT" if text in {"TIMED OUT", "TIMED-OUT"} else text


def handle_prolific_event(payload: dict) -> str:
    """A verified ``submission.status.change``: store the status, reclaim the lease if they left."""
    if payload.get("event_type") != "submission.status.change":
        return "ignored"
    sub_id, worker = str(payload.get("resource_id", "")), str(payload.get("participant_id", ""))
    status = normalize_status(payload.get("status", ""))
    if not sub_id:
        return "ignored"
    sub = (
        PlatformSubmission.objects.select_related("link__study", "rater")
        .filter(link__platform=P.PROLIFIC, external_id=sub_id).first()
    )
    if sub is not None:
        study, link = sub.link.study, sub.link
        rater = sub.rater or _rater_for(link, worker or sub.worker_id, sub_id)
        sub.rater = rater
    else:
        _, key = participation(Entry(Rater.Platform.PROLIFIC, worker, {"SESSION_ID": sub_id}))
        rater = Rater.objects.select_related("study").filter(platform=Rater.Platform.PROLIFIC, external_id=key).first()
        if rater is None:
            return "unknown submission"
        study = rater.study
        link = PlatformStudy.objects.filter(study=study, platform=P.PROLIFIC).first()
        if link is not None:
            sub = PlatformSubmission.objects.create(link=link, external_id=sub_id, worker_id=worker, rater=rater)
    released = status in RELEASE[P.PROLIFIC] and _release(rater)
    if sub is not None:
        sub.status = status
        if released:
            sub.lease_released_at = timezone.now()
        sub.save()
    message = f"Submission {sub_id} is {status}" + ("; its lease went back to the pool." if released else ".")
    audit(study, link, P.PROLIFIC, None, "webhook", True, message,
          {"submission": sub_id, "status": status, "released": bool(released)})
    return "released" if released else "stored"


def poll(study: Study | None = None) -> list[str]:
    """Sync every published platform study (of one study, or all), and close the platform studies of
    closed evalsite studies. One line per platform study; failures are reported, not raised."""
    lines = []
    links = PlatformStudy.objects.select_related("study").exclude(external_id="")
    if study is not None:
        links = links.filter(study=study)
    for link in links.order_by("id"):
        name = f"{link.study.slug} {link.platform}"
        try:
            result = sync(link.study, link.platform, None, audit_quiet=True)
            lines.append(f"{name}: {result.message}")
            link.refresh_from_db()
            if link.study.status == Study.Status.CLOSED and link.state in OPEN_STATES[link.platform]:
                lines.append(f"{name}: {close(link.study, link.platform, None).message}")
        except ActionError as exc:
            lines.append(f"{name}: FAILED: {exc}")
    return lines
