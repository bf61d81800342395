"""``/studies/<slug>/preview/``: the task page exactly as a worker sees it, for researchers.

Renders ``rating/task.html`` with the rater page's own context (:func:`evalsite.rating.views._task_context`)
for the study's first comparison, or a built-in sample when it has none yet, with ``preview`` set
so the form cannot submit. Nothing is leased, no rater is created, nothing is written.
"""

from __future__ import annotations

from types import SimpleNamespace

from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from evalsite.rating.views import _task_context
from evalsite.studies.access import visible_studies
from evalsite.studies.models import Comparison, Study

SAMPLE_PROMPT = "What is the boiling point of water at sea level, in degrees Celsius?"
SAMPLE_ANSWERS = (
    "Water boils at **100 °C** at sea level (standard atmospheric pressure, 101.325 kPa).",
    "At sea level water boils at about 90 °C; it is lower in the mountains because the air is thinner.",
)


def sample_comparison() -> SimpleNamespace:
    """A stand-in comparison (prompt and two answers) for a study that has none yet."""
    return SimpleNamespace(
        # A single-turn prompt: no earlier turns to show above it.
        prompt=SimpleNamespace(text=SAMPLE_PROMPT, parent_id=None, history=[], turn=1),
        response_a=SimpleNamespace(text=SAMPLE_ANSWERS[0]),
        response_b=SimpleNamespace(text=SAMPLE_ANSWERS[1]),
    )


@staff_member_required
@require_GET
def task_preview(request: HttpRequest, slug: str) -> HttpResponse:
    study = get_object_or_404(Study, slug=slug)
    if not visible_studies(request.user).filter(pk=study.pk).exists():
        raise Http404("No such study.")
    comparison = (
        Comparison.objects.filter(study=study, is_attention_check=False)
        .select_related("prompt", "response_a", "response_b")
        .order_by("id")
        .first()
    )
    context = _task_context(study, comparison or sample_comparison(), left_side="A", number=1)
    context["preview"] = True
    context["notice"] = (
        "Researcher preview of the task page as saved"
        + ("" if comparison is not None else ", with a sample question: this study has no comparisons yet")
        + ". Nothing is recorded."
    )
    return render(request, "rating/task.html", context)
