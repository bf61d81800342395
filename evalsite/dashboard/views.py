"""Staff report pages: parse, call the report service, render. The analysis lives elsewhere."""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST

from evalsite.dashboard.models import StudyReport
from evalsite.dashboard.reports import (
    ReportOptions,
    cached_report,
    report_staleness,
    request_report,
    source_fingerprint,
)
from evalsite.rating.models import Rater, Rating
from evalsite.studies.access import can_change_study, visible_studies
from evalsite.studies.models import Study

PLOT_TITLES = {
    "accuracy_vs_preference": "Human preference beside factual accuracy",
    "win_rates": "Win rates against the teacher",
    "strengths": "Bradley–Terry ratings: raw and style-controlled",
    "style": "How much style sways raters",
}
# One sentence per figure on how to read it (here, not in evalsite.analysis.plots: the web process
# does not import matplotlib).
PLOT_NOTES = {
    "accuracy_vs_preference": (
        "For each model, the blue bar is how often crowd raters rated it as good as or better than the teacher "
        "and the hatched green bar how often its answers contain the reference answer; whiskers are 95% intervals, "
        "and a tall blue bar beside a short green one is style winning over substance."
    ),
    "win_rates": (
        "Each bar splits a model's crowd ratings against the teacher into win, tie, both bad and loss (left to "
        "right); the black dot is P(≥ teacher) with its 95% interval, and the dotted line marks 50%."
    ),
    "strengths": (
        "Points are Bradley–Terry ratings (1000 is the average model; 100 points ≈ 64% expected wins) with 95% "
        "intervals; an orange (style-controlled) square left of the blue (raw) circle means part of the model's "
        "raw rating comes from how its answers look. Models without a rating are named above the plot, not drawn."
    ),
    "style": (
        "Each point is how much one style feature moves the log-odds of winning per standard unit of its "
        "difference between the two answers; an interval that excludes 0 means raters are swayed by it."
    ),
}


def _study_for(request, slug: str) -> Study:
    study = get_object_or_404(Study, slug=slug)
    if not visible_studies(request.user).filter(pk=study.pk).exists():
        raise Http404("No such study.")
    return study


def study_progress(study: Study) -> dict:
    """Live counts for the progress panel (cheap aggregate queries, never cached)."""
    comparisons = study.comparisons.aggregate(
        real=Count("id", filter=Q(is_attention_check=False)), checks=Count("id", filter=Q(is_attention_check=True))
    )
    raters = Rater.objects.filter(study=study).aggregate(
        total=Count("id"), blocked=Count("id", filter=Q(blocked=True)), experts=Count("id", filter=Q(is_expert=True))
    )
    counts = Rating.objects.filter(study=study).aggregate(
        all=Count("id"), real=Count("id", filter=Q(comparison__is_attention_check=False))
    )
    submitted = counts["real"]
    target = comparisons["real"] * study.redundancy
    jobs = [
        {
            "model": job.model.alias,
            "status": job.status,
            "done": job.done,
            "failed": job.failed,
            "total": job.total,
            "percent": job.percent,
        }
        for job in study.generation_jobs.select_related("model").order_by("model__alias", "-created_at")
    ]
    return {
        "comparisons": comparisons["real"],
        "attention_checks": comparisons["checks"],
        "ratings": submitted,
        "ratings_all": counts["all"],
        "ratings_target": target,
        "percent": 100.0 * submitted / target if target else 0.0,
        "raters": raters["total"],
        "blocked": raters["blocked"],
        "experts": raters["experts"],
        "jobs": jobs,
    }


def strength_table(payload: dict) -> list[dict]:
    """One row per model: raw, position-corrected and style-controlled ratings side by side."""
    sources = {
        "raw": payload.get("bradley_terry", {}),
        "position": payload.get("bradley_terry_position", {}),
        "style": payload.get("style", {}),
    }
    by_source = {name: {row["model"]: row for row in result.get("rows", [])} for name, result in sources.items()}
    return [
        {
            "model": row["model"],
            "n_votes": row.get("n_votes"),
            **{name: by_source[name].get(row["model"]) for name in sources},
        }
        for row in sources["raw"].get("rows", [])
    ]


def _context(study: Study, report: StudyReport | None, options: ReportOptions) -> dict:
    payload = report.payload if report is not None and report.payload else None
    plots = []
    if report is not None:
        # The SVGs are produced by our own plotting code from aliases (slugs), not user HTML.
        plots = [
            {"name": name, "title": title, "note": PLOT_NOTES.get(name, ""), "svg": mark_safe(report.svgs[name])}
            for name, title in PLOT_TITLES.items()
            if report.svgs.get(name)
        ]
    return {
        "study": study,
        "report": report,
        "r": payload,
        "plots": plots,
        "options": options,
        "strengths": strength_table(payload) if payload else [],
        "raters": sorted(
            payload["rater_quality"], key=lambda q: (q["majority_agreement"] is None, q["majority_agreement"] or 0)
        )[:200]
        if payload
        else [],
    }


@staff_member_required
def index(request):
    """The studies this researcher can see, with links to their reports."""
    studies = visible_studies(request.user).annotate(n_ratings=Count("ratings")).order_by("-created_at")
    return render(request, "dashboard/index.html", {"studies": studies})


@staff_member_required
def study_report(request, slug: str):
    """The report page. Shows the cached report; computes one now if none exists and the study is small."""
    study = _study_for(request, slug)
    options = ReportOptions.from_query(request.GET)
    report = cached_report(study, options)
    progress = study_progress(study)
    # Computing is the owner's: a collaborator the study is shared with sees the cached report only.
    if report is None and can_change_study(request.user, study):
        report = request_report(study, options, progress["ratings"])
    context = _context(study, report, options)
    context["progress"] = progress
    context["stale"] = report_staleness(report, source_fingerprint(study))
    context["can_compute"] = can_change_study(request.user, study)
    return render(request, "dashboard/report.html", context)


@staff_member_required
@require_POST
def recompute(request, slug: str):
    """Recompute the report (in the request for small studies, else on the Celery task)."""
    study = _study_for(request, slug)
    if not can_change_study(request.user, study):
        raise PermissionDenied("Only the study's owner can recompute its report; it is shared with you read-only.")
    options = ReportOptions.from_query(request.POST)
    request_report(study, options, study_progress(study)["ratings"])
    query = "&".join(
        f"{k}=1" for k, on in (("flagged", options.include_flagged), ("attention", options.include_attention)) if on
    )
    return redirect(reverse("dashboard:report", args=[study.slug]) + (f"?{query}" if query else ""))


def _ready_report(request, study: Study) -> StudyReport:
    options = ReportOptions.from_query(request.GET)
    report = cached_report(study, options)
    if (report is None or not report.payload) and can_change_study(request.user, study):
        # Small studies now, larger ones on the worker (never an unbounded analysis in a request).
        report = request_report(study, options, study_progress(study)["ratings"])
    if report is None or not report.payload:
        why = report.error if report is not None and report.error else "not computed yet; open the report page"
        raise Http404(f"The report is not available: {why}")
    return report


@staff_member_required
def download_html(request, slug: str):
    """The report as one self-contained HTML file (inline CSS and SVG, no external requests)."""
    study = _study_for(request, slug)
    report = _ready_report(request, study)
    context = _context(study, report, ReportOptions.from_query(request.GET))
    context["progress"] = study_progress(study)
    html = render_to_string("dashboard/report_standalone.html", context, request=None)
    response = HttpResponse(html, content_type="text/html; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{study.slug}-report.html"'
    return response


@staff_member_required
def download_json(request, slug: str):
    """The report's data as JSON (the same payload the API serves)."""
    study = _study_for(request, slug)
    report = _ready_report(request, study)
    response = JsonResponse(
        {
            "study": study.slug,
            "computed_at": report.computed_at.isoformat(),
            "options": report.options,
            "report": report.payload,
        }
    )
    response["Content-Disposition"] = f'attachment; filename="{study.slug}-report.json"'
    return response
