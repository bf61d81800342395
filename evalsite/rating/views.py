"""Rater pages: entry, consent, task, submit (a form POST and its redirect), completion.

Views are thin: identify the rater, call the engine (:mod:`.assignment`), render. Rater pages are
frameable (MTurk shows them in an iframe); everything else in the site stays ``X-Frame-Options:
DENY``. Model identities never reach a page: the only handle is the assignment's opaque token.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from evalsite.studies.models import Comparison, Study

from . import assignment as engine
from .forms import RatingFormError, parse_rating
from .identity import enter, parse_entry, rater_from_cookie, set_rater_cookie
from .models import Assignment, Rater
from .rendering import display_text, render_markdown

PROLIFIC_COMPLETE = "https://app.prolific.com/submissions/complete"
MTURK_SUBMIT_HOSTS = ("https://www.mturk.com", "https://workersandbox.mturk.com")
PREFERENCE_CHOICES = [
    ("left", "Answer 1 is better", "1"),
    ("right", "Answer 2 is better", "2"),
    ("tie", "About the same", "3"),
    ("both_bad", "Both are bad", "4"),
]
STYLE_LABELS = {"fluent": "Fluent and well organized", "confident": "Sounds confident and authoritative"}


def _study(slug: str) -> Study:
    return get_object_or_404(Study, slug=slug)


def _not_live(request: HttpRequest, study: Study) -> HttpResponse:
    return render(request, "rating/not_live.html", {"study": study}, status=200)


def _current_rater(request: HttpRequest, slug: str) -> tuple[Study, Rater | None]:
    """The study and this browser's rater; one query on the hot path (the rater brings its study)."""
    rater = rater_from_cookie(request, slug)
    if rater is not None:
        return rater.study, rater
    return _study(slug), None


@xframe_options_exempt
@require_GET
def entry(request: HttpRequest, slug: str) -> HttpResponse:
    """``/r/<slug>/``: the link a platform sends workers to."""
    study = _study(slug)
    if study.status != Study.Status.LIVE:
        return _not_live(request, study)
    info = parse_entry(request.GET)
    if info.preview:
        return _preview(request, study)
    rater = enter(study, info, rater_from_cookie(request, study.slug))
    target = "rating:task" if rater.consented_at else "rating:consent"
    response = redirect(target, slug=study.slug)
    set_rater_cookie(request, response, study, rater)
    return response


def _preview(request: HttpRequest, study: Study) -> HttpResponse:
    """MTurk preview: a sample task, read-only, nothing leased."""
    comparison = (
        Comparison.objects.filter(study=study, is_attention_check=False)
        .select_related("prompt", "response_a", "response_b")
        .order_by("id")
        .first()
    )
    if comparison is None:
        return _not_live(request, study)
    context = _task_context(study, comparison, left_side="A", number=1)
    context["preview"] = True
    return render(request, "rating/task.html", context)


@xframe_options_exempt
@ensure_csrf_cookie
@require_http_methods(["GET", "POST"])
def consent(request: HttpRequest, slug: str) -> HttpResponse:
    """Consent statement and instructions; accepting them starts the first task."""
    study, rater = _current_rater(request, slug)
    if rater is None:
        return redirect("rating:entry", slug=slug)
    if study.status != Study.Status.LIVE:
        return _not_live(request, study)
    error = ""
    if request.method == "POST":
        if request.POST.get("agree") == "yes":
            Rater.objects.filter(pk=rater.pk, consented_at__isnull=True).update(consented_at=timezone.now())
            return redirect("rating:task", slug=slug)
        error = "Please tick the box to agree before starting, or close this page if you do not agree."
    return render(
        request,
        "rating/consent.html",
        {
            "study": study,
            "consent_html": render_markdown(study.consent_text),
            "instructions_html": render_markdown(study.instructions),
            "error": error,
        },
    )


@xframe_options_exempt
@ensure_csrf_cookie
@require_GET
def task(request: HttpRequest, slug: str) -> HttpResponse:
    """The current task: resume the live lease or lease the next comparison."""
    study, rater = _current_rater(request, slug)
    if rater is None:
        return redirect("rating:entry", slug=slug)
    if study.status != Study.Status.LIVE:
        return _not_live(request, study)
    if rater.consented_at is None:
        return redirect("rating:consent", slug=slug)
    leased = engine.lease_next(rater, study)
    if leased is None:
        return redirect("rating:done", slug=slug)
    context = _leased_context(study, rater, leased)
    if request.GET.get("expired"):
        context["notice"] = "Your time for the last task ran out, so it went to someone else. Here is the next one."
    return render(request, "rating/task.html", context)


@xframe_options_exempt
@require_POST
def submit(request: HttpRequest, slug: str, token: str) -> HttpResponse:
    """Store the rating (idempotent) and go on to the next task."""
    study, rater = _current_rater(request, slug)
    if rater is None:
        return redirect("rating:entry", slug=slug)
    try:
        payload = parse_rating(request.POST, study.rating_form)
        engine.submit(token, rater, payload)
    except engine.LeaseExpired:
        return redirect(reverse("rating:task", kwargs={"slug": slug}) + "?expired=1")
    except engine.StudyNotLive as exc:
        return render(request, "rating/message.html", {"study": study, "message": str(exc)}, status=409)
    except (RatingFormError, engine.LeaseError) as exc:
        leased = Assignment.objects.filter(token=token, rater_id=rater.pk, status=Assignment.Status.LIVE).first()
        if leased is None:
            return render(request, "rating/message.html", {"study": study, "message": str(exc)}, status=404)
        context = _leased_context(study, rater, leased)
        context["error"] = str(exc)
        return render(request, "rating/task.html", context, status=400)
    return redirect("rating:task", slug=slug)


@xframe_options_exempt
@require_GET
def done(request: HttpRequest, slug: str) -> HttpResponse:
    """Completion: the code, and the platform's way back."""
    study, rater = _current_rater(request, slug)
    if rater is None:
        return redirect("rating:entry", slug=slug)
    if rater.blocked:
        return _blocked(request, study)
    # The code is payment: only a rater who consented and finished earns it. Finished means the
    # quota is done, or the engine has no work left for them; a cookie alone is not enough.
    if rater.consented_at is None:
        return redirect("rating:consent", slug=slug)
    if rater.tasks_submitted < study.tasks_per_rater:
        if study.status != Study.Status.LIVE:
            return redirect("rating:task", slug=slug)  # which says the study is not running
        # Resumes a live lease or takes the next one (the task page then shows it); None: no work.
        if engine.lease_next(rater, study) is not None:
            return redirect("rating:task", slug=slug)
        if rater.blocked:  # the engine refreshed the rater's row
            return _blocked(request, study)
    if rater.completed_at is None:
        Rater.objects.filter(pk=rater.pk, completed_at__isnull=True).update(completed_at=timezone.now())
    code = study.completion_code
    context = {"study": study, "rater": rater, "code": code, "redirect_url": "", "mturk": None}
    if rater.platform == Rater.Platform.PROLIFIC:
        context["redirect_url"] = f"{PROLIFIC_COMPLETE}?{urlencode({'cc': code})}"
    elif rater.platform == Rater.Platform.MTURK:
        data = rater.platform_data
        submit_to = data.get("turkSubmitTo", "").rstrip("/")
        if submit_to not in MTURK_SUBMIT_HOSTS:  # the link is user-editable: never post elsewhere
            submit_to = MTURK_SUBMIT_HOSTS[0]
        context["mturk"] = {
            "action": f"{submit_to}/mturk/externalSubmit",
            "assignment_id": data.get("assignmentId", ""),
        }
    elif study.completion_url:
        context["redirect_url"] = study.completion_url
    return render(request, "rating/done.html", context)


def _blocked(request: HttpRequest, study: Study) -> HttpResponse:
    return render(
        request,
        "rating/message.html",
        {
            "study": study,
            "message": "Thank you. You did not pass the attention checks, so there are no more tasks "
            "for you. Please return this study on your platform.",
        },
    )


# --- page context ----------------------------------------------------------------------------


def _comparison_of(leased: Assignment) -> Comparison:
    return Comparison.objects.select_related("prompt", "response_a", "response_b").get(pk=leased.comparison_id)


def _leased_context(study: Study, rater: Rater, leased: Assignment) -> dict:
    comparison = _comparison_of(leased)
    context = _task_context(study, comparison, leased.left_side, number=rater.tasks_submitted + 1)
    context["token"] = leased.token
    context["expires_at"] = leased.expires_at
    return context


def _side(response) -> dict:
    return {"html": render_markdown(response.text), "text": display_text(response.text)}


def _task_context(study: Study, comparison: Comparison, left_side: str, number: int) -> dict:
    left, right = (
        (comparison.response_a, comparison.response_b)
        if left_side == "A"
        else (comparison.response_b, comparison.response_a)
    )
    form = study.rating_form or {}
    aspects = [(a, STYLE_LABELS.get(a, a.replace("_", " ").capitalize())) for a in form.get("style_aspects", [])]
    context = {
        "study": study,
        "form": form,
        "aspects": aspects,
        "preferences": PREFERENCE_CHOICES,
        "number": min(number, study.tasks_per_rater),
        "total": study.tasks_per_rater,
        "prompt_html": render_markdown(comparison.prompt.text),
        "instructions_html": render_markdown(study.instructions),
    }
    left_ctx = {"side": "left", "label": "Answer 1", **_side(left)}
    right_ctx = {"side": "right", "label": "Answer 2", **_side(right)}
    return {
        **context,
        "left": left_ctx,
        "right": right_ctx,
        "pair": (left_ctx, right_ctx),
        "scale": range(1, 6),
        "preview": False,
    }
