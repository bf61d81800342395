"""Every write a person can trigger on raters and the rating counters, one function each.

Atomic, with the rule checks inside; a refusal is an :class:`~evalsite.studies.errors.ActionError`
the admin shows as a message and the API answers as a 400/403/409. ``actor`` is the user asking
(``None``: the system, e.g. a management command), checked against the study's owner.

- :func:`block_rater` / :func:`unblock_rater`: by hand, with the reason kept. Unblocking forgives
  the attention-check failures counted so far (``Rater.attention_failures_forgiven``), so the
  automatic rule in :mod:`.quality` does not block the rater again at their next rating.
- :func:`repair_counters`: the denormalised counters the lease engine keeps (``Comparison.n_live``
  / ``n_submitted``, ``Rater.tasks_submitted`` / ``attention_passed`` / ``attention_failed``)
  recomputed from the Assignment and Rating rows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from evalsite.celery import send_task
from evalsite.studies.actions import check_can_change
from evalsite.studies.errors import ActionConflict
from evalsite.studies.models import Comparison, Study

from . import assignment as engine
from .assignment import release_live_lease
from .models import Assignment, Rater, Rating

logger = logging.getLogger(__name__)

__all__ = ["CounterChange", "Invitation", "block_rater", "invite_expert", "repair_counters", "unblock_rater"]


def _lock(rater: Rater) -> Rater:
    return Rater.objects.select_for_update(of=("self",)).select_related("study").get(pk=rater.pk)


def _copy(source: Rater, target: Rater) -> Rater:
    for name in ("blocked", "blocked_reason", "attention_failures_forgiven", "unblocked_at"):
        setattr(target, name, getattr(source, name))
    return target


def block_rater(rater: Rater, reason: str, actor=None) -> Rater:
    """Block a rater: no more tasks, their live lease goes back to the pool, their ratings are flagged."""
    with transaction.atomic():
        locked = _lock(rater)
        check_can_change(actor, locked.study)
        if locked.blocked:
            reason = locked.blocked_reason or "no reason given"
            raise ActionConflict(f"Rater {locked.pseudonym} is already blocked ({reason}).")
        locked.blocked = True
        locked.blocked_reason = (reason or "Blocked by hand.")[:200]
        locked.save(update_fields=["blocked", "blocked_reason"])
        Rating.objects.filter(rater_id=locked.pk).update(flagged=True)
        release_live_lease(locked)
    return _copy(locked, rater)


def unblock_rater(rater: Rater, actor=None) -> Rater:
    """Lift a block, and keep it lifted: the attention-check failures so far are forgiven.

    The ratings that were flagged only because of the block are unflagged; those that were too
    fast or failed an attention check stay flagged. Failing more checks than the study allows,
    counted from now, blocks the rater again.
    """
    with transaction.atomic():
        locked = _lock(rater)
        check_can_change(actor, locked.study)
        if not locked.blocked:
            raise ActionConflict(f"Rater {locked.pseudonym} is not blocked.")
        locked.blocked = False
        locked.blocked_reason = ""
        locked.attention_failures_forgiven = locked.attention_failed
        locked.unblocked_at = timezone.now()
        locked.save(update_fields=["blocked", "blocked_reason", "attention_failures_forgiven", "unblocked_at"])
        study = locked.study
        ratings = Rating.objects.filter(rater_id=locked.pk, server_seconds__gte=study.min_seconds_per_task)
        ratings.exclude(attention_passed=False).update(flagged=False)
    return _copy(locked, rater)


# --- experts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Invitation:
    """An invited expert: their rater row and the personal link to send them (a path; add the host)."""

    rater: Rater
    path: str


def invitation_path(rater: Rater) -> str:
    """The expert's personal link: the consent page, naming the rater by its signed token."""
    from django.urls import reverse

    from .identity import rater_token

    slug = rater.study.slug
    return reverse("rating:consent", kwargs={"slug": slug}) + f"?t={rater_token(rater, slug)}"


def invite_expert(study: Study, actor=None, *, name: str = "") -> Invitation:
    """Invite one expert: a rater marked expert, reached by a personal link (no platform account).

    Experts rate on the crowd's page with the correctness questions required, in their own slots
    (``study.expert_redundancy`` per comparison of the expert pool), so they never take crowd work.
    ``name`` is a label for the researcher (e.g. the expert's initials); it is never shown to raters.
    """
    import secrets

    from .identity import pseudonym

    with transaction.atomic():
        locked = Study.objects.select_for_update().get(pk=study.pk)
        check_can_change(actor, locked)
        if locked.status == Study.Status.CLOSED:
            raise ActionConflict("This study is closed: it takes no more ratings, so there is nothing to invite to.")
        external_id = f"{secrets.token_urlsafe(12)}"
        rater = Rater.objects.create(
            study=locked,
            platform=Rater.Platform.EXPERT,
            external_id=external_id,
            pseudonym=pseudonym(locked, Rater.Platform.EXPERT, external_id),
            is_expert=True,
            platform_data={"label": name.strip()[:100]} if name.strip() else {},
            user=actor if getattr(actor, "is_authenticated", False) else None,
        )
    rater.study = locked
    return Invitation(rater, invitation_path(rater))


# --- counters -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CounterChange:
    """One counter that disagreed with the rows: ``what`` names the row ("comparison 12")."""

    what: str
    field: str
    old: int
    new: int

    def __str__(self) -> str:
        return f"{self.what}: {self.field} {self.old} → {self.new}"


_LIVE = Q(assignments__status=Assignment.Status.LIVE)
_SUBMITTED = Q(assignments__status=Assignment.Status.SUBMITTED)
_EXPERT = Q(assignments__expert=True)
COMPARISON_COUNTERS = {
    "n_live": Count("assignments", filter=_LIVE & ~_EXPERT),
    "n_submitted": Count("assignments", filter=_SUBMITTED & ~_EXPERT),
    "n_expert_live": Count("assignments", filter=_LIVE & _EXPERT),
    "n_expert_submitted": Count("assignments", filter=_SUBMITTED & _EXPERT),
}
RATER_COUNTERS = {
    "tasks_submitted": Count("ratings"),
    "attention_passed": Count("ratings", filter=Q(ratings__attention_passed=True)),
    "attention_failed": Count("ratings", filter=Q(ratings__attention_passed=False)),
}
# ``Rater.too_fast`` is not recomputed: it depends on the study's min_seconds_per_task at the time
# of each rating, which the rows do not record.


def _mismatches(queryset, counters: dict) -> dict[int, dict[str, tuple[int, int]]]:
    """``{pk: {field: (stored, counted)}}`` for the rows whose counters disagree with the rows."""
    annotated = queryset.order_by().annotate(**{f"_{name}": expr for name, expr in counters.items()})
    agree = Q()
    for name in counters:
        agree &= Q(**{name: F(f"_{name}")})
    found: dict[int, dict[str, tuple[int, int]]] = {}
    names = list(counters)
    for row in annotated.exclude(agree).values("pk", *names, *(f"_{n}" for n in names)):
        diff = {n: (row[n], row[f"_{n}"]) for n in names if row[n] != row[f"_{n}"]}
        if diff:
            found[row["pk"]] = diff
    return found


def _repair(model, scope, counters: dict, label, dry_run: bool) -> list[CounterChange]:
    candidates = _mismatches(scope, counters)
    if not candidates or dry_run:
        found = candidates
    else:
        # Lock the rows that looked wrong, then count again: the lease engine changes a counter
        # in the same transaction as the rows it counts, holding the same row lock, so what is
        # counted now is exactly what the counter must say.
        list(model.objects.select_for_update().filter(pk__in=candidates).order_by("pk").values_list("pk"))
        found = _mismatches(model.objects.filter(pk__in=candidates), counters)
        for pk, diff in found.items():
            model.objects.filter(pk=pk).update(**{name: new for name, (_old, new) in diff.items()})
    labels = label(found)
    return [CounterChange(labels[pk], name, old, new) for pk in sorted(found) for name, (old, new) in found[pk].items()]


def repair_counters(*, dry_run: bool = False, study: Study | None = None) -> list[CounterChange]:
    """Recompute the engine's counters from the Assignment and Rating rows; return what changed.

    With ``dry_run`` nothing is written and the list says what would change. ``study`` limits the
    repair to one study's comparisons and raters.
    """
    comparisons = Comparison.objects.all()
    raters = Rater.objects.all()
    if study is not None:
        comparisons, raters = comparisons.filter(study=study), raters.filter(study=study)

    def comparison_labels(found) -> dict[int, str]:
        return {pk: f"comparison {pk}" for pk in found}

    def rater_labels(found) -> dict[int, str]:
        names = dict(Rater.objects.filter(pk__in=found).values_list("pk", "pseudonym"))
        return {pk: f"rater {pk} ({names.get(pk, '?')})" for pk in found}

    # Two transactions: the engine locks a rater before a comparison, so holding comparison locks
    # while taking rater locks could deadlock with it.
    with transaction.atomic():
        changes = _repair(Comparison, comparisons, COMPARISON_COUNTERS, comparison_labels, dry_run)
    with transaction.atomic():
        changes += _repair(Rater, raters, RATER_COUNTERS, rater_labels, dry_run)
    return changes


# --- a rater's submit ------------------------------------------------------------------------------


def submit_rating(token: str, rater: Rater, payload: engine.RatingInput, *, now: datetime | None = None) -> Rating:
    """Store a rater's rating (the engine's idempotent submit), then let the study's stopping rule
    close it when it asks to. The engine raises as :func:`.assignment.submit` documents."""
    rating = engine.submit(token, rater, payload, now=now)
    maybe_stop(rating.study_id)
    return rating


# A study with ``stop_when_precise`` has its stopping rule checked after a submit, at most this often
# per web process: the check reads every rating of the study (on a worker, never in the rater's
# request), and the rule needs no faster reaction.
STOP_CHECK_SECONDS = 30.0
CHECK_STOPPING_TASK = "workers.analysis_tasks.check_stopping_rule"
_last_stop_check: dict[int, float] = {}


def maybe_stop(study_id: int) -> bool:
    """After a submit: ask a worker to close the study if it stops when precise and its rule is
    met. Whether a check was sent. Throttled per process and study; failing to send is logged,
    never passed on to the rater, whose rating is already stored (the next submit tries again)."""
    last = _last_stop_check.get(study_id)
    if last is not None and time.monotonic() - last < STOP_CHECK_SECONDS:
        return False
    _last_stop_check[study_id] = time.monotonic()
    if not Study.objects.filter(pk=study_id, stop_when_precise=True, status=Study.Status.LIVE).exists():
        return False
    try:
        # Sent at once: the rating's transaction has committed, so the worker sees it.
        send_task(CHECK_STOPPING_TASK, [study_id])
    except Exception:  # noqa: BLE001 (a broker outage must not fail a stored rating)
        logger.exception("Could not send the stopping-rule check of study %s", study_id)
        _last_stop_check.pop(study_id, None)
        return False
    return True
