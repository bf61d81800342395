"""Celery task that computes and caches a study's analysis report.

``evalsite.dashboard.reports.request_report`` sends it by name; nothing in ``evalsite/`` imports it.
"""

from __future__ import annotations

from celery import shared_task

from evalsite.dashboard import reports
from evalsite.studies.models import Study


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def compute_report(self, study_id: int, options: dict | None = None) -> dict:
    """Analyse one study and store the report (``evalsite.dashboard.models.StudyReport``).

    Idempotent: recomputing overwrites the cached report for the same options.
    """
    study = Study.objects.get(pk=study_id)
    report = reports.compute_report(study, reports.ReportOptions(**(options or {})))
    return {"study": study.slug, "report": report.pk, "status": report.status}
