"""The lease engine: which comparison a rater sees next, and how a rating is stored.

This module is the only place that writes :class:`Assignment` and :class:`Rating` rows or moves the
``Comparison.n_live`` / ``n_submitted`` and ``Rater`` counters. Every write goes through
:func:`lease_next`, :func:`submit`, :func:`release_live_lease` or :func:`expire_stale_leases`, each
one transaction. The same code runs on PostgreSQL (production, the benchmark) and SQLite (the
demo), and its tests run on both in CI:

* PostgreSQL: the candidate comparison is picked and its live counter bumped in one ``UPDATE …
  WHERE id = (SELECT … FOR UPDATE SKIP LOCKED) RETURNING id``; a concurrent rater skips rows another
  transaction holds instead of queueing behind it, and the bound (k) is re-checked on the locked
  row, so k can never be exceeded.
* SQLite: there is no row locking, but the settings open every transaction ``IMMEDIATE``, so
  writers serialize and the same statements are correct.

Experts (invited, ``Rater.is_expert``) have their own slots: a comparison in the study's expert
pool takes ``study.expert_redundancy`` expert ratings, counted in ``n_expert_live`` /
``n_expert_submitted``, so expert work never takes a crowd slot and the crowd never takes an
expert's. Each assignment records which kind of slot it holds (``Assignment.expert``).

The rater's row is locked first in every transaction, which serializes one rater's tabs; the
unique constraints on :class:`Assignment` (one lease per rater×comparison, one live lease per
rater) are the last line of defence, not the mechanism.

Lock order is always rater → assignment → comparison; the sweep takes assignments (skipping locked
ones) then comparisons in id order. Nothing waits for a lock while holding a comparison lock it
picked, so these transactions cannot deadlock.
"""

from __future__ import annotations

import random
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from evalsite.studies.models import Comparison, Study

from . import quality
from .models import Assignment, Rater, Rating
from .rendering import display_span_to_raw

LIVE = Assignment.Status.LIVE
SUBMITTED = Assignment.Status.SUBMITTED
EXPIRED = Assignment.Status.EXPIRED

# The lazy sweep runs at most this often per study and process: expired leases only matter once
# they hold back a slot, and the pick retries after a sweep when it finds nothing (see below).
SWEEP_INTERVAL_SECONDS = 5.0
_last_sweep: dict[int, float] = {}
# How many of the least-rated comparisons the fast path of a lease chooses among at random.
PICK_WINDOW = 64
# A rater's first lease is this short until the page reports an interaction (:func:`touch`):
# made-up worker ids that open the link and walk away must not hold slots for a full lease.
FIRST_LEASE_SECONDS = 120
REACH_COUNT_CAP = 200
# What a rater may have seen beyond their submitted tasks (expired leases, the live one).
REACH_SLACK = 64


class LeaseError(Exception):
    """A submission the engine refuses; ``str(error)`` is a message fit for the rater."""


class AssignmentNotFound(LeaseError):
    """The token is unknown or belongs to another rater (the two are not distinguished on purpose)."""


class InvalidRating(LeaseError):
    """The rating itself is malformed (e.g. an error span outside the response)."""


class LeaseExpired(LeaseError):
    """The lease ran out before the rating arrived; the comparison went back to the pool."""


class StudyNotLive(LeaseError):
    """The study was paused or closed after the lease: nothing is stored and no counter moves."""


STUDY_NOT_LIVE = "This study is not running any more, so this rating was not stored. Please return to your platform."


@dataclass
class RatingInput:
    """A rating as the rater gave it, in *screen* terms (left/right), already validated.

    ``preference`` is ``left``, ``right``, ``tie`` or ``both_bad``; ``style`` maps a side to
    aspect scores; ``error_spans`` are ``(side, start, end)`` offsets into that response's raw text.
    """

    preference: str
    strength: int | None = None
    style: dict[str, dict[str, int]] = field(default_factory=dict)
    correct: dict[str, str] = field(default_factory=dict)
    error_spans: list[tuple[str, int, int]] = field(default_factory=list)
    rationale: str = ""
    client_seconds: float | None = None


def stored_side(assignment: Assignment, screen_side: str) -> str:
    """Translate a screen side (``left``/``right``) into the comparison's stored ``A``/``B``."""
    left = assignment.left_side
    right = "B" if left == "A" else "A"
    return left if screen_side == "left" else right


def lease_next(rater: Rater, study: Study, *, now: datetime | None = None) -> Assignment | None:
    """Return the rater's live lease, or lease them a new comparison; ``None`` when there is no work.

    No work means: the study is not live, the rater is blocked, their quota is used up, or no
    comparison they have not seen has a free slot (fewer than k submitted-plus-live ratings).
    Attention checks are mixed in at ``study.attention_check_rate`` and are not bound by k.
    """
    now = now or timezone.now()
    if study.status != Study.Status.LIVE:
        return None
    maybe_sweep(study, now)
    assignment = _lease_once(rater, study, now)
    if assignment is None and has_expired_leases(study, now):
        # Expired leases may be all that holds the remaining slots: free them and look again.
        expire_stale_leases(study, now=now)
        assignment = _lease_once(rater, study, now)
    return assignment


def _lease_once(rater: Rater, study: Study, now: datetime) -> Assignment | None:
    with transaction.atomic():
        # The rater row serializes one rater's tabs; it also gives fresh quota/blocked values.
        locked = Rater.objects.select_for_update().get(pk=rater.pk)
        _copy_counters(locked, rater)
        live = Assignment.objects.select_for_update().filter(rater_id=rater.pk, status=LIVE).first()
        if live is not None:
            if live.expires_at > now and not locked.blocked:
                return live
            _expire(live)
        if locked.blocked or locked.tasks_submitted >= study.tasks_per_rater:
            return None

        comparison_id = None
        expert = locked.is_expert
        if not expert and study.attention_check_rate > 0 and random.random() < study.attention_check_rate:
            comparison_id = _take(rater, study, attention=True)
        if comparison_id is None:
            comparison_id = _take(rater, study, attention=False, expert=expert)
        if comparison_id is None:
            return None
        seconds = study.lease_seconds
        if locked.tasks_submitted == 0:
            seconds = min(seconds, FIRST_LEASE_SECONDS)
        return Assignment.objects.create(
            rater_id=rater.pk,
            comparison_id=comparison_id,
            token=secrets.token_urlsafe(32),
            left_side=random.choice("AB"),
            status=LIVE,
            leased_at=now,
            expires_at=now + timedelta(seconds=seconds),
            expert=expert,
        )


def touch(token: str, rater: Rater, study: Study, *, now: datetime | None = None) -> bool:
    """The rater interacted with the task: extend a short first lease to the study's full lease.

    Returns whether the lease is live. An expired lease stays expired (its slot may be gone).
    """
    now = now or timezone.now()
    with transaction.atomic():
        live = (
            Assignment.objects.select_for_update()
            .filter(token=token, rater_id=rater.pk, status=LIVE, expires_at__gt=now)
            .first()
        )
        if live is None:
            return False
        full = live.leased_at + timedelta(seconds=study.lease_seconds)
        if live.expires_at < full:
            Assignment.objects.filter(pk=live.pk).update(expires_at=full)
    return True


def _open_for(rater: Rater, study: Study):
    """Comparisons this rater has not seen that still need ratings of their kind (attention checks aside)."""
    needing = Comparison.objects.filter(study_id=study.pk, is_attention_check=False)
    if rater.is_expert:
        needing = needing.filter(expert_pool=True, n_expert_submitted__lt=study.expert_redundancy)
    else:
        needing = needing.filter(n_submitted__lt=study.redundancy)
    return needing.exclude(assignments__rater_id=rater.pk)


def work_held_by_others(rater: Rater, study: Study) -> bool:
    """Whether the only work left for this rater is leased by others (it may free up)."""
    return _open_for(rater, study).exists()


def tasks_within_reach(rater: Rater, study: Study, *, holding: bool = True) -> int:
    """How many tasks this rater can still get in all, counting the one they hold now (``holding``).

    The count stops at :data:`REACH_COUNT_CAP` open comparisons: beyond that the quota is what
    limits the rater, and the page's "Task n of N" must not cost a scan of the whole study. While
    the study's open comparisons (counted at most every few seconds per process) exceed what this
    rater can have seen by far, no per-rater query is needed at all.
    """
    left = study.tasks_per_rater - rater.tasks_submitted
    cap = min(max(left, 0), REACH_COUNT_CAP)
    if _open_in_study(study, rater.is_expert) - rater.tasks_submitted - REACH_SLACK >= cap:
        return left
    open_now = _open_for(rater, study)[:cap].count() + int(holding)
    return left if open_now >= cap else min(left, open_now)


_open_counts: dict[tuple[int, bool], tuple[float, int]] = {}


def _open_in_study(study: Study, expert: bool) -> int:
    """Comparisons of the study that still need ratings of this kind, recounted every few seconds."""
    key = (study.pk, expert)
    at, count = _open_counts.get(key, (0.0, 0))
    if time.monotonic() - at >= SWEEP_INTERVAL_SECONDS:
        needing = Comparison.objects.filter(study_id=study.pk, is_attention_check=False)
        if expert:
            needing = needing.filter(expert_pool=True, n_expert_submitted__lt=study.expert_redundancy)
        else:
            needing = needing.filter(n_submitted__lt=study.redundancy)
        count = needing.count()
        _open_counts[key] = (time.monotonic(), count)
    return count


# The pick is the hottest query of the site, so it is written out once, by hand, instead of being
# recompiled by the ORM on every lease. The same statement runs on PostgreSQL and SQLite (3.35+ for
# RETURNING); only the locking clause differs. It picks the least-rated eligible comparison and
# counts the new live lease on it in one round trip. ``{window}`` is either empty (the full query)
# or the fast-path filter.
_TAKE_SQL = """
UPDATE {comparison} SET {live} = {live} + 1
WHERE id = (
    SELECT c.id FROM {comparison} c
    WHERE c.study_id = %(study)s AND c.is_attention_check = %(attention)s {pool_c}
      AND c.{submitted} + c.{live} < %(bound)s
      AND NOT EXISTS (SELECT 1 FROM {assignment} a WHERE a.rater_id = %(rater)s AND a.comparison_id = c.id)
      {window}
    ORDER BY c.{submitted}, c.{live}, RANDOM()
    LIMIT 1 {lock})
  AND {submitted} + {live} < %(bound)s
RETURNING id
"""
_WINDOW_SQL = """AND c.id IN (
        SELECT w.id FROM {comparison} w
        WHERE w.study_id = %(study)s AND w.is_attention_check = %(attention)s {pool_w}
          AND w.{submitted} + w.{live} < %(bound)s
          AND NOT EXISTS (SELECT 1 FROM {assignment} a WHERE a.rater_id = %(rater)s AND a.comparison_id = w.id)
        ORDER BY w.{submitted} LIMIT %(window)s)"""
_NO_BOUND = 2**31 - 1  # attention checks are not bound by k
_take_sql_cache: dict[tuple[str, bool, bool], str] = {}


def _take_sql(windowed: bool, expert: bool) -> str:
    key = (connection.vendor, windowed, expert)
    if key not in _take_sql_cache:
        live, submitted = counter_columns(expert)
        names = {
            "comparison": Comparison._meta.db_table,
            "assignment": Assignment._meta.db_table,
            "live": live,
            "submitted": submitted,
            "pool_c": "AND c.expert_pool" if expert else "",
            "pool_w": "AND w.expert_pool" if expert else "",
        }
        lock = "FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
        window = _WINDOW_SQL.format(**names) if windowed else ""
        _take_sql_cache[key] = _TAKE_SQL.format(window=window, lock=lock, **names)
    return _take_sql_cache[key]


def counter_columns(expert: bool) -> tuple[str, str]:
    """The (live, submitted) counter columns of a crowd or an expert slot."""
    return ("n_expert_live", "n_expert_submitted") if expert else ("n_live", "n_submitted")


def _take(rater: Rater, study: Study, *, attention: bool, expert: bool = False) -> int | None:
    """Take a slot on the least-rated comparison this rater may see; its id, or ``None``.

    Eligible: in the study, of the asked kind, not yet leased to this rater, and (unless it is an
    attention check) fewer than k submitted-plus-live ratings. PostgreSQL re-checks that bound on
    the newest version of the row it locks, so two raters can never both take the last slot.
    Order: fewest submitted ratings, then fewest live leases, then random. The fast path looks
    only at a window of the least-rated eligible comparisons (an index range on
    ``comparison_pool_idx``), so a lease does not sort the whole study; when everything in the
    window is locked by other raters, the full query runs.
    """
    params = {
        "study": study.pk,
        "attention": attention,
        "bound": _NO_BOUND if attention else (study.expert_redundancy if expert else study.redundancy),
        "rater": rater.pk,
        "window": PICK_WINDOW,
    }
    with connection.cursor() as cursor:
        for windowed in (True, False):
            cursor.execute(_take_sql(windowed, expert), params)
            row = cursor.fetchone()
            if row is not None:
                return row[0]
    return None


def _expire(assignment: Assignment) -> None:
    """Return a live lease to the pool (the caller holds its row lock)."""
    updated = Assignment.objects.filter(pk=assignment.pk, status=LIVE).update(status=EXPIRED)
    if updated:
        live, _ = counter_columns(assignment.expert)
        Comparison.objects.filter(pk=assignment.comparison_id).update(**{live: F(live) - 1})
    assignment.status = EXPIRED


def release_live_lease(rater: Rater) -> None:
    """Give up a rater's live lease at once (used when a rater is blocked)."""
    with transaction.atomic():
        live = Assignment.objects.select_for_update().filter(rater_id=rater.pk, status=LIVE).first()
        if live is not None:
            _expire(live)


def has_expired_leases(study: Study, now: datetime) -> bool:
    """Whether any lease in the study ran out without being returned to the pool yet."""
    return Assignment.objects.filter(status=LIVE, expires_at__lte=now, comparison__study_id=study.pk).exists()


def maybe_sweep(study: Study, now: datetime) -> None:
    """Expire the study's stale leases, at most every SWEEP_INTERVAL_SECONDS per process."""
    last = _last_sweep.get(study.pk, 0.0)
    if time.monotonic() - last >= SWEEP_INTERVAL_SECONDS:
        _last_sweep[study.pk] = time.monotonic()
        expire_stale_leases(study, now=now)


def expire_stale_leases(study: Study | None = None, *, now: datetime | None = None) -> int:
    """Return every expired live lease (of one study, or all) to the pool; the number expired.

    Safe to run concurrently with raters and with itself (for a periodic sweep): rows another
    transaction holds are skipped and picked up next time.
    """
    now = now or timezone.now()
    with transaction.atomic():
        stale = Assignment.objects.select_for_update(skip_locked=True, of=("self",)).filter(
            status=LIVE, expires_at__lte=now
        )
        if study is not None:
            stale = stale.filter(comparison__study_id=study.pk)
        rows = list(stale.values_list("pk", "comparison_id", "expert"))
        if not rows:
            return 0
        Assignment.objects.filter(pk__in=[pk for pk, _, _ in rows], status=LIVE).update(status=EXPIRED)
        for (comparison_id, expert), count in sorted(Counter((c, e) for _, c, e in rows).items()):
            live, _ = counter_columns(expert)
            Comparison.objects.filter(pk=comparison_id).update(**{live: F(live) - count})
    return len(rows)


def submit(token: str, rater: Rater, payload: RatingInput, *, now: datetime | None = None) -> Rating:
    """Store the rater's rating for the lease ``token``; idempotent per assignment.

    A replay, double click or second tab gets the rating already stored. Raises
    :class:`AssignmentNotFound` for a token that is not this rater's, :class:`StudyNotLive` when
    the study is no longer live (paused or closed: a lease outlives that, a rating must not), and
    :class:`LeaseExpired` when the lease ran out (the comparison is back in the pool; the rater
    should take the next).
    """
    now = now or timezone.now()
    rating = _submit(token, rater, payload, now)
    if rating is None:
        # Raised outside the transaction so that returning the lease to the pool is committed.
        raise LeaseExpired("Your time for this task ran out, so it went to someone else. Here is the next one.")
    return rating


def _submit(token: str, rater: Rater, payload: RatingInput, now: datetime) -> Rating | None:
    with transaction.atomic():
        # The study comes along (unlocked: ``of``) so its status is read fresh in this transaction.
        locked_rater = Rater.objects.select_for_update(of=("self",)).select_related("study").get(pk=rater.pk)
        assignment = (
            Assignment.objects.select_for_update(of=("self",))
            .select_related("comparison")
            .filter(token=token, rater_id=rater.pk)
            .first()
        )
        if assignment is None:
            raise AssignmentNotFound("This task is not yours or does not exist. Open the study link again.")
        if assignment.status == SUBMITTED:
            return Rating.objects.get(assignment_id=assignment.pk)
        study = locked_rater.study
        if study.status != Study.Status.LIVE:
            # Paused or closed: store nothing and leave the lease and every counter as they are.
            raise StudyNotLive(STUDY_NOT_LIVE)
        if assignment.status == EXPIRED or assignment.expires_at <= now or locked_rater.blocked:
            if assignment.status == LIVE:
                _expire(assignment)
            return None

        comparison = assignment.comparison
        rating = Rating(
            assignment=assignment,
            study_id=study.pk,
            comparison_id=comparison.pk,
            rater_id=rater.pk,
            winner=_stored_winner(assignment, payload.preference),
            strength=payload.strength,
            style={stored_side(assignment, side): scores for side, scores in payload.style.items()},
            correct_a=_correct_for(assignment, payload, "A"),
            correct_b=_correct_for(assignment, payload, "B"),
            error_spans=_stored_spans(assignment, payload),
            rationale=payload.rationale,
            server_seconds=(now - assignment.leased_at).total_seconds(),
            client_seconds=payload.client_seconds,
        )
        quality.judge(rating, comparison, locked_rater, study)
        rating.save()
        Assignment.objects.filter(pk=assignment.pk).update(status=SUBMITTED, submitted_at=now)
        live, submitted = counter_columns(assignment.expert)
        Comparison.objects.filter(pk=comparison.pk).update(**{live: F(live) - 1, submitted: F(submitted) + 1})
        locked_rater.tasks_submitted += 1
        quality.apply(rating, locked_rater, study)
        _copy_counters(locked_rater, rater)
    return rating


def _stored_winner(assignment: Assignment, preference: str) -> str:
    if preference in ("left", "right"):
        return stored_side(assignment, preference)
    return preference


def _correct_for(assignment: Assignment, payload: RatingInput, stored: str) -> str:
    for side, verdict in payload.correct.items():
        if stored_side(assignment, side) == stored:
            return verdict
    return ""


def _stored_spans(assignment: Assignment, payload: RatingInput) -> list[dict]:
    """Spans with the stored response letter and the exact raw substring they cover.

    The page offers the text with newlines normalized (as HTML does), so offsets are mapped back.
    """
    spans = []
    for side, start, end in payload.error_spans:
        letter = stored_side(assignment, side)
        response = assignment.comparison.response_a if letter == "A" else assignment.comparison.response_b
        try:
            raw_start, raw_end = display_span_to_raw(response.text, start, end)
        except ValueError as exc:
            raise InvalidRating(f"A marked error does not fit the {side} answer: {exc}") from exc
        spans.append({"response": letter, "start": raw_start, "end": raw_end, "text": response.text[raw_start:raw_end]})
    return spans


def _copy_counters(source: Rater, target: Rater) -> None:
    """Keep the caller's Rater object in step with the locked row we just read or wrote."""
    if source is target:
        return
    for name in (
        "blocked",
        "blocked_reason",
        "tasks_submitted",
        "attention_passed",
        "attention_failed",
        "too_fast",
        "consented_at",
        "completed_at",
    ):
        setattr(target, name, getattr(source, name))


def choose_expert_pool(study: Study, *, seed: int | None = None) -> int:
    """Mark which comparisons experts rate: ``study.expert_share`` of them; returns the pool size.

    Prompts without a reference answer come first: there the experts' verdict is the only truth
    the report has. Comparisons experts already rated stay in the pool. Attention checks never are.
    """
    import math

    comparisons = list(
        Comparison.objects.filter(study_id=study.pk, is_attention_check=False).values_list(
            "pk", "prompt__reference_answers", "n_expert_submitted", "n_expert_live"
        )
    )
    size = math.ceil(study.expert_share * len(comparisons))
    rng = random.Random(study.pk if seed is None else seed)
    order = sorted(comparisons, key=lambda c: (not (c[2] or c[3]), bool(c[1]), rng.random()))
    pool = [pk for pk, *_ in order[:size]]
    pool += [pk for pk, _, done, live in order[size:] if done or live]
    with transaction.atomic():
        Comparison.objects.filter(study_id=study.pk).exclude(pk__in=pool).update(expert_pool=False)
        Comparison.objects.filter(pk__in=pool).update(expert_pool=True)
    return len(pool)
