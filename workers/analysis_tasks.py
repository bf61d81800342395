"""Celery tasks of the analysis: a study's cached report, and its stopping rule.

``evalsite.dashboard.reports.request_report`` and ``evalsite.rating.actions.maybe_stop`` send them
by name; nothing in ``evalsite/`` imports them.
"""

from __future__ import annotations

from celery import shared_task

from evalsite.dashboard import reports, study_plan
from evalsite.studies.models import Study


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def compute_report(self, study_id: int, options: dict | None = None) -> dict:
    """Analyse one study and store the report (``evalsite.dashboard.models.StudyReport``).

    Idempotent: recomputing overwrites the cached report for the same options.
    """
    study = Study.objects.get(pk=study_id)
    report = reports.compute_report(study, reports.ReportOptions(**(options or {})))
    return {"study": study.slug, "report": report.pk, "status": report.status}


@shared_task(acks_late=True, reject_on_worker_lost=True)
def check_stopping_rule(study_id: int) -> str | None:
    """Close a live study that asks to stop when precise once its rule is met; the reason, or None.

    Idempotent: a study already closed, or no longer asking, is left alone.
    """
    study = Study.objects.filter(pk=study_id, stop_when_precise=True, status=Study.Status.LIVE).first()
    if study is None:
        return None
    return study_plan.close_if_rule_met(study)
