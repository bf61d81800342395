"""Compute, cache and read study reports (the write path behind the report page and the task).

A report is keyed by its options; computing one replaces the cached row for those options in one
transaction, so readers see the old report or the new one, never half of each.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, Q, Sum
from django.db.models.functions import Length
from django.utils import timezone

from evalsite.celery import send_task_on_commit
from evalsite.dashboard.models import JudgeVerdict, StudyReport
from evalsite.rating.models import Rating
from evalsite.studies.models import LanguageModel, Prompt, Response, Study

log = logging.getLogger(__name__)

COMPUTE_REPORT_TASK = "workers.analysis_tasks.compute_report"
# Studies with at most this many ratings are analysed inside the request when no cached report
# exists (a few seconds at most); larger ones go to the Celery task.
SYNC_RATING_LIMIT = 20_000


@dataclass(frozen=True)
class ReportOptions:
    """What a report was computed with; part of the cache key."""

    include_flagged: bool = False
    include_attention: bool = False
    n_boot: int = 1000
    seed: int = 0
    # Fewest prompts behind an interval (evalsite.analysis.intervals.MIN_PROMPTS).
    min_prompts: int = 10

    @property
    def key(self) -> str:
        # A digest: fits the indexed column whatever options are added later.
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()

    @classmethod
    def from_query(cls, query) -> ReportOptions:
        """Options from a request's GET/POST (``flagged=1``, ``attention=1``); bootstrap rounds
        and the minimum number of prompts behind an interval from the ``REPORT_BOOTSTRAP_ROUNDS``
        setting (``EVALSITE_REPORT_BOOTSTRAP_ROUNDS``) and :func:`report_min_prompts`."""
        return cls(
            include_flagged=query.get("flagged") == "1",
            include_attention=query.get("attention") == "1",
            n_boot=int(settings.REPORT_BOOTSTRAP_ROUNDS),
            min_prompts=report_min_prompts(),
        )


def report_min_prompts() -> int:
    """The fewest prompts behind a reported interval: the ``REPORT_MIN_PROMPTS`` setting, else the
    ``EVALSITE_REPORT_MIN_PROMPTS`` environment variable, else 10."""
    value = getattr(settings, "REPORT_MIN_PROMPTS", None)
    if value is None:
        value = os.environ.get("EVALSITE_REPORT_MIN_PROMPTS", "10")
    return max(1, int(value))


def cached_report(study: Study, options: ReportOptions) -> StudyReport | None:
    """The stored report of ``study`` for ``options`` (any status), or None."""
    return StudyReport.objects.filter(study=study, options_key=options.key).first()


def source_fingerprint(study: Study) -> dict:
    """A cheap summary of what a report of ``study`` is computed from (a handful of aggregates).

    Ratings (how many, the newest, how many flagged or by blocked raters), answers (how many, the
    newest, their total length, how many failed), prompts, the models (ids, aliases, roles) and the
    LLM judge's verdicts. A report whose fingerprint differs from the study's is out of date.
    """
    ratings = Rating.objects.filter(study=study).aggregate(
        n=Count("id"), last=Max("id"), flagged=Count("id", filter=Q(flagged=True) | Q(rater__blocked=True))
    )
    responses = Response.objects.filter(prompt__study=study).aggregate(
        n=Count("id"), last=Max("id"), chars=Sum(Length("text")), failed=Count("id", filter=~Q(error=""))
    )
    prompts = Prompt.objects.filter(study=study).aggregate(n=Count("id"), last=Max("id"))
    models = list(LanguageModel.objects.filter(study=study).order_by("pk").values_list("pk", "alias", "role"))
    verdicts = JudgeVerdict.objects.filter(comparison__study=study).aggregate(n=Count("id"), last=Max("id"))
    return {
        "ratings": ratings["n"],
        "last_rating": ratings["last"] or 0,
        "flagged": ratings["flagged"],
        "responses": [responses["n"], responses["last"] or 0, responses["chars"] or 0, responses["failed"]],
        "prompts": [prompts["n"], prompts["last"] or 0],
        "models": hashlib.sha256(json.dumps(models).encode()).hexdigest()[:16],
        "verdicts": [verdicts["n"], verdicts["last"] or 0],
    }


@dataclass
class Staleness:
    """How the study has changed since its report was computed."""

    new_ratings: int = 0
    changes: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        """E.g. "3 new ratings, answers and models changed"."""
        parts = []
        if self.new_ratings:
            parts.append(f"{self.new_ratings} new rating{'' if self.new_ratings == 1 else 's'}")
        if self.changes:
            *rest, last = self.changes
            parts.append(f"{', '.join(rest)} and {last} changed" if rest else f"{last} changed")
        return ", ".join(parts)


SOURCE_NAMES = {
    "flagged": "flagged ratings or blocked raters",
    "responses": "answers",
    "prompts": "prompts",
    "models": "models",
    "verdicts": "LLM-judge verdicts",
}


def report_staleness(report: StudyReport | None, current: dict) -> Staleness | None:
    """How a computed report differs from the study now (``current``: :func:`source_fingerprint`),
    or None when it is up to date (or not computed yet)."""
    if report is None or report.status != StudyReport.Status.DONE or report.computed_at is None:
        return None
    then = report.sources or {}
    if not then:  # computed before reports recorded their sources
        return Staleness(changes=["possibly ratings, answers or models"])
    stale = Staleness()
    added = current["ratings"] - then.get("ratings", 0)
    if added > 0:
        stale.new_ratings = added
    if added < 0 or (added == 0 and current["last_rating"] != then.get("last_rating")):
        stale.changes.append("ratings")
    stale.changes += [label for key, label in SOURCE_NAMES.items() if current[key] != then.get(key)]
    return stale if stale.new_ratings or stale.changes else None


def compute_report(study: Study, options: ReportOptions) -> StudyReport:
    """Analyse ``study`` now and store the result (status ``done``, or ``failed`` with the error)."""
    report, _ = StudyReport.objects.get_or_create(
        study=study, options_key=options.key, defaults={"options": asdict(options)}
    )
    StudyReport.objects.filter(pk=report.pk).update(status=StudyReport.Status.RUNNING)
    # Taken before the data is read: whatever arrives meanwhile makes the report stale, not lost.
    sources = source_fingerprint(study)
    try:
        # Imported here: pandas, scipy and matplotlib cost a web worker ~140 MB at rest, and only
        # computing a report needs them.
        from evalsite.analysis.plots import all_plots
        from evalsite.analysis.report import build_report
        from evalsite.dashboard.loader import load_frames, load_judgments

        ratings, responses = load_frames(study)
        payload = build_report(
            ratings,
            responses,
            include_flagged=options.include_flagged,
            include_attention=options.include_attention,
            n_boot=options.n_boot,
            seed=options.seed,
            min_prompts=options.min_prompts,
            judgments=load_judgments(study),
        )
        svgs = all_plots(payload)
    except Exception as exc:
        log.exception("report of study %s (%s) failed", study.slug, options.key)
        StudyReport.objects.filter(pk=report.pk).update(
            status=StudyReport.Status.FAILED, error=f"{type(exc).__name__}: {exc}"
        )
        report.refresh_from_db()
        return report
    with transaction.atomic():
        report = StudyReport.objects.select_for_update().get(pk=report.pk)
        report.options = asdict(options)
        report.payload = payload
        report.svgs = svgs
        report.n_ratings = payload["counts"]["ratings_total"]
        report.sources = sources
        report.status = StudyReport.Status.DONE
        report.error = ""
        report.computed_at = timezone.now()
        report.save()
    return report


def request_report(study: Study, options: ReportOptions, n_ratings: int) -> StudyReport | None:
    """Compute small studies now; queue larger ones on the Celery task. Returns the report row."""
    if n_ratings <= SYNC_RATING_LIMIT:
        return compute_report(study, options)
    report, _ = StudyReport.objects.get_or_create(
        study=study, options_key=options.key, defaults={"options": asdict(options)}
    )
    if report.status not in (StudyReport.Status.PENDING, StudyReport.Status.RUNNING) or report.payload is None:
        StudyReport.objects.filter(pk=report.pk).update(status=StudyReport.Status.PENDING)
        # By name (the task module imports this one), once the pending row is committed.
        send_task_on_commit(COMPUTE_REPORT_TASK, [study.pk, asdict(options)])
    report.refresh_from_db()
    return report
