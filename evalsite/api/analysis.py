"""The study's analysis report for the API: the dashboard's cached report, or one computed now."""

from typing import Any

from evalsite.dashboard.models import StudyReport
from evalsite.dashboard.reports import ReportOptions, cached_report, request_report
from evalsite.rating.models import Rating
from evalsite.studies.models import Study


class NoReportYet(LookupError):
    """This study has no computed report (or it failed); the message says what to do."""


class ReportQueued(NoReportYet):
    """The study is too large to analyse in a request: its report is being computed by a worker."""


def study_report(study: Study, compute: bool = False, options: ReportOptions | None = None) -> dict[str, Any]:
    """The cached report of ``study``; with ``compute``, one computed now for a small study (at most
    ``SYNC_RATING_LIMIT`` ratings), else queued on the worker (:class:`ReportQueued`)."""
    options = options or ReportOptions()
    report = cached_report(study, options)
    if compute and (report is None or report.status != StudyReport.Status.DONE):
        report = request_report(study, options, Rating.objects.filter(study=study).count())
        if report is not None and report.status in (StudyReport.Status.PENDING, StudyReport.Status.RUNNING):
            raise ReportQueued(
                f"Study {study.slug!r} is being analysed by a worker; call this endpoint again (without "
                "?compute) in a minute."
            )
    if report is None or report.status != StudyReport.Status.DONE:
        why = f" (last attempt failed: {report.error})" if report is not None and report.error else ""
        raise NoReportYet(
            f"Study {study.slug!r} has no computed report yet{why}: open its report page, "
            "or call this endpoint with ?compute=true to compute one now."
        )
    return {
        "study": study.slug,
        "options": report.options,
        "n_ratings": report.n_ratings,
        "computed_at": report.computed_at.isoformat() if report.computed_at else None,
        "report": report.payload,
    }
