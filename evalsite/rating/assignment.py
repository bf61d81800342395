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

Adaptive allocation (``study.allocation == "adaptive"``, crowd leases only): the lease first draws
an *arm* (a model pair of the study: each model against the teacher) with the probabilities of
:func:`evalsite.analysis.allocation.allocation_probabilities`, from per-arm counts and variance
estimates cached per process (:func:`arm_state`), then runs the same single-statement pick
restricted to that arm; the drawn arm's probability is stored on the assignment
(``selection_probability``, in the export). The uniform path is unchanged. Why each model's plain
mean of P(≥ teacher) stays unbiased without weights: the draw decides only *which model* gets the
next rating, from past ratings, never which prompt (within an arm the engine's order stays: least
rated first, random among equals) nor the outcome. So for each rating t of model i,
E[y_t − p_i | everything before t, arm_t = i] = 0, and Σ_t 1{arm_t = i}(y_t − p_i) is a
martingale with mean zero: the estimating equation of the per-model mean (and, likewise, of the
Bradley–Terry likelihood, whose score is a sum of such terms) is unbiased under any allocation that
depends on the past only. Weighting each term by 1/π_t, which is also decided before the rating,
keeps it unbiased but adds variance, so the report does not weight; the probabilities are exported
for estimators that pool pairs with one common weighting (Chatbot Arena's win matrix).

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
from django.db.models import Count, F
from django.utils import timezone

from evalsite.studies.models import Comparison, LanguageModel, Response, Study

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
        probability = None
        expert = locked.is_expert
        if not expert and study.attention_check_rate > 0 and random.random() < study.attention_check_rate:
            comparison_id = _take(rater, study, attention=True)
        if comparison_id is None and not expert and study.allocation == Study.Allocation.ADAPTIVE:
            comparison_id, probability = _take_adaptive(rater, study)
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
            selection_probability=probability,
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
# or the fast-path filter. ``{arm_c}`` / ``{arm_w}`` are empty except for adaptive allocation,
# which restricts the same pick to the comparisons of one model pair (:func:`_take_adaptive`).
_TAKE_SQL = """
UPDATE {comparison} SET {live} = {live} + 1
WHERE id = (
    SELECT c.id FROM {comparison} c
    WHERE c.study_id = %(study)s AND c.is_attention_check = %(attention)s {pool_c}
      AND c.{submitted} + c.{live} < %(bound)s
      AND NOT EXISTS (SELECT 1 FROM {assignment} a WHERE a.rater_id = %(rater)s AND a.comparison_id = c.id)
      {arm_c}{window}
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
          {arm_w}
        ORDER BY w.{submitted} LIMIT %(window)s)"""
# One model pair's comparisons, in either storage order (two primary-key lookups per row).
_ARM_SQL = """AND EXISTS (
        SELECT 1 FROM {response} ra, {response} rb
        WHERE ra.id = {x}.response_a_id AND rb.id = {x}.response_b_id
          AND ((ra.model_id = %(arm_a)s AND rb.model_id = %(arm_b)s)
               OR (ra.model_id = %(arm_b)s AND rb.model_id = %(arm_a)s)))
      """
_NO_BOUND = 2**31 - 1  # attention checks are not bound by k
_take_sql_cache: dict[tuple[str, bool, bool, bool], str] = {}


def _take_sql(windowed: bool, expert: bool, arm: bool = False) -> str:
    key = (connection.vendor, windowed, expert, arm)
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
        response = Response._meta.db_table
        names["arm_c"] = _ARM_SQL.format(response=response, x="c") if arm else ""
        names["arm_w"] = _ARM_SQL.format(response=response, x="w") if arm else ""
        lock = "FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
        window = _WINDOW_SQL.format(**names) if windowed else ""
        _take_sql_cache[key] = _TAKE_SQL.format(window=window, lock=lock, **names)
    return _take_sql_cache[key]


def counter_columns(expert: bool) -> tuple[str, str]:
    """The (live, submitted) counter columns of a crowd or an expert slot."""
    return ("n_expert_live", "n_expert_submitted") if expert else ("n_live", "n_submitted")


def _take(
    rater: Rater, study: Study, *, attention: bool, expert: bool = False, arm: tuple[int, int] | None = None
) -> int | None:
    """Take a slot on the least-rated comparison this rater may see; its id, or ``None``.

    Eligible: in the study, of the asked kind, not yet leased to this rater, and (unless it is an
    attention check) fewer than k submitted-plus-live ratings. PostgreSQL re-checks that bound on
    the newest version of the row it locks, so two raters can never both take the last slot.
    Order: fewest submitted ratings, then fewest live leases, then random. The fast path looks
    only at a window of the least-rated eligible comparisons (an index range on
    ``comparison_pool_idx``), so a lease does not sort the whole study; when everything in the
    window is locked by other raters, the full query runs. ``arm`` (two model ids) restricts the
    pick to that model pair's comparisons (adaptive allocation); the order within stays the same.
    """
    params = {
        "study": study.pk,
        "attention": attention,
        "bound": _NO_BOUND if attention else (study.expert_redundancy if expert else study.redundancy),
        "rater": rater.pk,
        "window": PICK_WINDOW,
    }
    if arm is not None:
        params["arm_a"], params["arm_b"] = arm
    with connection.cursor() as cursor:
        for windowed in (True, False):
            cursor.execute(_take_sql(windowed, expert, arm is not None), params)
            row = cursor.fetchone()
            if row is not None:
                return row[0]
    return None


# --- adaptive allocation ---------------------------------------------------------------------------
# Per process and study, the arms' counts and variance estimates are recomputed at most this often:
# the rule needs where each model stands, not the last rating (the same staleness as _open_in_study).
ALLOCATION_REFRESH_SECONDS = 5.0
# Share of every draw spread uniformly over the arms with room: each keeps a known, positive chance.
ALLOCATION_MIX = 0.2


@dataclass
class ArmState:
    """Where each arm (a model pair: each model against the teacher) of an adaptive study stands.

    ``keys`` are (lower model id, higher model id); ``probabilities`` the chance that the next
    lease draws each arm (zero only for an arm with no open comparison); ``arm_of`` maps a
    comparison to its arm (for leases that fell back to the unrestricted pick).
    """

    at: float
    keys: list[tuple[int, int]]
    probabilities: list[float]
    arm_of: dict[int, int]
    rows: list[dict] = field(default_factory=list)


_arm_states: dict[int, ArmState] = {}


def arm_state(study: Study, *, refresh: bool = False) -> ArmState:
    """The study's arms and draw probabilities, recomputed every ALLOCATION_REFRESH_SECONDS."""
    state = _arm_states.get(study.pk)
    if refresh or state is None or time.monotonic() - state.at >= ALLOCATION_REFRESH_SECONDS:
        state = _compute_arm_state(study)
        _arm_states[study.pk] = state
    return state


def forget_arm_state(study_id: int | None = None) -> None:
    """Drop the cached arm statistics (of one study, or all): the next lease recomputes them."""
    if study_id is None:
        _arm_states.clear()
    else:
        _arm_states.pop(study_id, None)


def _compute_arm_state(study: Study) -> ArmState:
    """Counts and variance estimates per arm from the study's crowd ratings, and the draw.

    Per arm, the target quantity is P(the focal model is rated >= the other): the focal model is
    the non-teacher side (of two non-teachers, the later one). Its standard error is clustered by
    prompt and floored at the independent-ratings one at the Agresti-Coull centre, as in
    :func:`evalsite.analysis.allocation._running_stats`. An arm is *wanted* while it has fewer
    than ``MIN_PROMPTS`` prompts rated or its 95% half-width exceeds ``study.target_halfwidth``
    (always, without a target); :func:`~evalsite.analysis.allocation.allocation_probabilities`
    turns that into the draw.
    """
    import numpy as np

    from evalsite.analysis.allocation import allocation_probabilities
    from evalsite.analysis.planning import z_value
    from evalsite.analysis.stopping import MIN_PROMPTS

    teachers = set(
        LanguageModel.objects.filter(study_id=study.pk, role=LanguageModel.Role.TEACHER).values_list("pk", flat=True)
    )
    comparisons = Comparison.objects.filter(study_id=study.pk, is_attention_check=False).values_list(
        "pk", "prompt_id", "response_a__model_id", "response_b__model_id", "n_submitted", "n_live"
    )
    index: dict[tuple[int, int], int] = {}
    arm_of: dict[int, int] = {}
    focal_letter: dict[int, str] = {}
    prompt_of: dict[int, int] = {}
    room: list[bool] = []
    for pk, prompt_id, model_a, model_b, submitted, live in comparisons.iterator(chunk_size=5000):
        key = (min(model_a, model_b), max(model_a, model_b))
        if key not in index:
            index[key] = len(index)
            room.append(False)
        arm = index[key]
        arm_of[pk] = arm
        prompt_of[pk] = prompt_id
        if model_b in teachers and model_a not in teachers:
            focal_letter[pk] = "A"
        elif model_a in teachers and model_b not in teachers:
            focal_letter[pk] = "B"
        else:
            focal_letter[pk] = "A" if model_a > model_b else "B"
        if submitted + live < study.redundancy:
            room[arm] = True
    # Per arm and prompt: ratings and ratings with the focal model >= the other.
    cells: list[dict[int, list[float]]] = [{} for _ in index]
    counts = (
        Rating.objects.filter(
            study_id=study.pk, comparison__is_attention_check=False, assignment__expert=False, flagged=False
        )
        .values("comparison_id", "winner")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in counts.iterator(chunk_size=5000):
        pk = row["comparison_id"]
        if pk not in arm_of:
            continue
        cell = cells[arm_of[pk]].setdefault(prompt_of[pk], [0.0, 0.0])
        cell[0] += row["n"]
        if row["winner"] in (Rating.Winner.TIE, Rating.Winner.BOTH_BAD, focal_letter[pk]):
            cell[1] += row["n"]
    z = z_value(0.05)
    n = np.zeros(len(index))
    variance = np.full(len(index), 0.25)
    wanted = np.ones(len(index), dtype=bool)
    rows = []
    for arm, per_prompt in enumerate(cells):
        halfwidth = float("inf")
        if per_prompt:
            ng, sg = np.array(list(per_prompt.values())).T
            total = ng.sum()
            mean = sg.sum() / total
            g = len(ng)
            var_cr = float(((sg - mean * ng) ** 2).sum()) / total**2 * (g / (g - 1) if g > 1 else 1.0)
            shrunk = (sg.sum() + 2.0) / (total + 4.0)
            se2 = max(var_cr, shrunk * (1.0 - shrunk) / total)
            n[arm] = total
            variance[arm] = se2 * total
            halfwidth = z * se2**0.5
            enough = g >= MIN_PROMPTS
            wanted[arm] = not (enough and study.target_halfwidth is not None and halfwidth <= study.target_halfwidth)
        rows.append({"n": int(n[arm]), "halfwidth": halfwidth, "room": room[arm], "wanted": bool(wanted[arm])})
    has_room = np.array(room, dtype=bool)
    if has_room.any():
        probabilities = allocation_probabilities(n, variance, has_room, wanted, ALLOCATION_MIX).tolist()
    else:
        probabilities = [0.0] * len(index)
    keys = list(index)
    for row, key, p in zip(rows, keys, probabilities, strict=True):
        row.update(arm=key, probability=p)
    return ArmState(time.monotonic(), keys, probabilities, arm_of, rows)


def _take_adaptive(rater: Rater, study: Study) -> tuple[int | None, float | None]:
    """Adaptive allocation: draw an arm (model pair) from the cached probabilities, then run the
    engine's pick restricted to it; the comparison id and the probability its arm had.

    When the drawn arm has nothing eligible for this rater, the unrestricted pick runs instead;
    that lease records its arm's draw probability, then a lower bound of its actual chance (the
    fallback adds to it), or none when its arm was not open at the last refresh. ``(None, None)``:
    no arm, or nothing left for this rater. k stays a cap: the restricted pick has the same bound.
    """
    state = arm_state(study)
    if not state.keys:
        return None, None
    u = random.random()
    chosen = None
    for arm, p in enumerate(state.probabilities):
        if p > 0:
            chosen = arm
            u -= p
            if u < 0:
                break
    if chosen is None:
        return None, None
    comparison_id = _take(rater, study, attention=False, arm=state.keys[chosen])
    if comparison_id is not None:
        return comparison_id, state.probabilities[chosen]
    comparison_id = _take(rater, study, attention=False)
    if comparison_id is None:
        return None, None
    arm = state.arm_of.get(comparison_id)
    probability = state.probabilities[arm] if arm is not None and state.probabilities[arm] > 0 else None
    return comparison_id, probability


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
