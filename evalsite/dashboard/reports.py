"""Compute, cache and read study reports (the write path behind the report page and the task).

A report is keyed by its options; computing one replaces the cached row for those options in one
transaction, so readers see the old report or the new one, never half of each.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from evalsite.celery import send_task_on_commit
from evalsite.dashboard.models import StudyReport
from evalsite.studies.models import Study

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

    @property
    def key(self) -> str:
        # A digest: fits the indexed column whatever options are added later.
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()

    @classmethod
    def from_query(cls, query) -> ReportOptions:
        """Options from a request's GET/POST (``flagged=1``, ``attention=1``); bootstrap rounds
        from the ``REPORT_BOOTSTRAP_ROUNDS`` setting (``EVALSITE_REPORT_BOOTSTRAP_ROUNDS``)."""
        return cls(
            include_flagged=query.get("flagged") == "1",
            include_attention=query.get("attention") == "1",
            n_boot=int(settings.REPORT_BOOTSTRAP_ROUNDS),
        )


def cached_report(study: Study, options: ReportOptions) -> StudyReport | None:
    """The stored report of ``study`` for ``options`` (any status), or None."""
    return StudyReport.objects.filter(study=study, options_key=options.key).first()


def compute_report(study: Study, options: ReportOptions) -> StudyReport:
    """Analyse ``study`` now and store the result (status ``done``, or ``failed`` with the error)."""
    report, _ = StudyReport.objects.get_or_create(
        study=study, options_key=options.key, defaults={"options": asdict(options)}
    )
    StudyReport.objects.filter(pk=report.pk).update(status=StudyReport.Status.RUNNING)
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
