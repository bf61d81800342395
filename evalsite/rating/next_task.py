"""The rater API's hot path: the next task for the rater id in a signed cookie, in one statement.

The HTML pages load the rater and its study and then call :func:`.assignment.lease_next`; the JSON
pair (``/r/<slug>/api/next/`` and ``/api/submit/<token>/``) is what a page script or a scripted
client calls once per task, so it skips both loads: on PostgreSQL the lease statement itself
locks the rater, checks it belongs to the study in the URL, reads the study's settings (status,
k, quota, lease time: always fresh) and returns the task with its texts. Other databases (the
SQLite demo) take the ORM path with the same rules.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.db import connection
from django.utils import timezone

from evalsite.studies.models import Study

from . import assignment as engine
from . import pg_hotpath
from .models import Assignment, Rater

# How long a process reuses a study's rating form when parsing submissions. The form only says
# which questions are parsed; status, thresholds and counters are always read fresh in the
# submit statement. A form edited on a live study applies to submissions within this many seconds.
FORM_CACHE_SECONDS = 5.0
_forms: dict[str, tuple[float, int, dict]] = {}


@dataclass
class NextTask:
    """``state`` is ``task``, ``done`` (no work for this rater), ``not_live``, ``not_consented``
    or ``no_rater`` (the cookie's rater is not in this study)."""

    state: str
    assignment: Assignment | None = None
    number: int = 0
    total: int = 0


def next_task(rater_id: int, slug: str) -> NextTask:
    """Resume or lease the next task of a consented rater in the study ``slug``."""
    now = timezone.now()
    if connection.vendor != "postgresql":
        return _orm_next_task(rater_id, slug)
    found = engine.retry_race(
        lambda: pg_hotpath.lease(rater_id, now, window=engine.PICK_WINDOW, slug=slug, require_consent=True)
    )
    if found is pg_hotpath.SLOW:
        return _orm_next_task(rater_id, slug)
    if found is None:
        return NextTask("no_rater")
    if not found.study_live:
        return NextTask("not_live")
    if not found.consented:
        return NextTask("not_consented")
    study = engine.loaded(Study, id=found.study_id)
    engine.maybe_sweep(study, now)
    if found.kind is None:
        # Expired leases may be all that holds the remaining slots: the engine frees them and looks again.
        return _orm_next_task(rater_id, slug) if engine.has_expired_leases(study, now) else NextTask("done")
    rater = engine.loaded(Rater, id=rater_id, study_id=found.study_id)
    leased = engine.from_lease(found, rater)
    return NextTask("task", leased, min(found.tasks_submitted + 1, found.tasks_per_rater), found.tasks_per_rater)


def _orm_next_task(rater_id: int, slug: str) -> NextTask:
    rater = Rater.objects.select_related("study").filter(pk=rater_id, study__slug=slug).first()
    if rater is None:
        return NextTask("no_rater")
    study = rater.study
    if study.status != Study.Status.LIVE:
        return NextTask("not_live")
    if rater.consented_at is None:
        return NextTask("not_consented")
    leased = engine.lease_next(rater, study)
    if leased is None:
        return NextTask("done")
    return NextTask("task", leased, min(rater.tasks_submitted + 1, study.tasks_per_rater), study.tasks_per_rater)


def study_form(slug: str) -> tuple[int, dict] | None:
    """The study's id and rating form (cached per process for :data:`FORM_CACHE_SECONDS`).

    ``None`` when there is no such study.
    """
    cached = _forms.get(slug)
    if cached is not None and time.monotonic() < cached[0]:
        return cached[1], cached[2]
    row = Study.objects.filter(slug=slug).values_list("id", "rating_form").first()
    if row is None:
        return None
    _forms[slug] = (time.monotonic() + FORM_CACHE_SECONDS, row[0], row[1] or {})
    return row[0], row[1] or {}
