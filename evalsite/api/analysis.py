"""The study's analysis report for the API, from whatever the analysis side provides.

The analysis (``evalsite.analysis``) and the dashboard's cached reports (``evalsite.dashboard``)
are separate parts of the code base; the API only reads what they produce. They are looked up at
request time so the API keeps working, and says clearly what is missing, while they are absent.
"""

import importlib
import math
from typing import Any

from evalsite.studies.models import Study


class AnalysisUnavailable(RuntimeError):
    """No report can be served; the message says why and what to do."""


class NoReportYet(LookupError):
    """The analysis exists but this study has no computed report yet."""


def _optional(module: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def _cached(study: Study) -> dict[str, Any] | None:
    models = _optional("evalsite.dashboard.models")
    report_model = getattr(models, "StudyReport", None)
    if report_model is None:
        return None
    report = (
        report_model.objects.filter(study=study, status="done", payload__isnull=False)
        .order_by("-computed_at", "-pk")
        .first()
    )
    if report is None:
        return {}
    return {
        "study": study.slug,
        "source": "cache",
        "options": report.options,
        "n_ratings": report.n_ratings,
        "computed_at": report.computed_at.isoformat() if report.computed_at else None,
        "report": report.payload,
    }


def _computed(study: Study) -> dict[str, Any] | None:
    """Build the report now through the dashboard's loader, if both pieces exist."""
    report_mod = _optional("evalsite.analysis.report")
    loader = _optional("evalsite.dashboard.loader")
    build = getattr(report_mod, "build_report", None)
    load = next((getattr(loader, n) for n in ("load_frames", "load_study") if hasattr(loader, n)), None)
    if build is None or load is None:
        return None
    ratings_df, responses_df = load(study)
    return {"study": study.slug, "source": "computed", "report": _plain_json(build(ratings_df, responses_df))}


def _plain_json(value):
    """Strict JSON: NaN and infinities (undefined statistics of tiny groups) become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _plain_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_json(v) for v in value]
    return value


def study_report(study: Study, compute: bool = False) -> dict[str, Any]:
    """The latest cached report of ``study``; with ``compute``, one built now if none is cached.

    Computing runs the whole analysis (bootstraps included) inside the request, so it is only
    done when asked for; the dashboard computes reports in the background.
    """
    cached = _cached(study)
    if cached:
        return cached
    computed = None
    if compute or cached is None:
        try:
            computed = _computed(study)
        except ValueError as exc:  # the analysis rejects the data (e.g. no ratings yet); say why
            raise NoReportYet(f"Study {study.slug!r} cannot be analysed yet: {exc}") from exc
    if computed is not None:
        return computed
    if cached == {}:
        raise NoReportYet(
            f"Study {study.slug!r} has no computed report yet: open its report page in the dashboard, "
            "or call this endpoint with ?compute=true to compute one now."
        )
    raise AnalysisUnavailable(
        "The analysis is not installed in this deployment (evalsite.analysis.report / "
        "evalsite.dashboard are missing); export the ratings instead."
    )
