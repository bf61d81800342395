"""Rater pages: entry, consent, task, submit (a form POST and its redirect), completion.

Every rater URL and form carries the rater's signed token (``?t=``, see :mod:`.identity`), so the
pages work where cookies do not (MTurk's cross-site iframe, browsers blocking third-party
cookies). For the same reason the rater's POSTs are exempt from Django's cookie-based CSRF check:
each one already carries a secret an attacking site cannot know (the rater token and the
assignment's token, or the signed entry ticket, which only ever creates the ticket's own rater).

Views are thin: identify the rater, call the engine (:mod:`.assignment`), render. Rater pages are
frameable (MTurk shows them in an iframe); everything else in the site stays ``X-Frame-Options:
DENY``. Model identities never reach a page: the only handle is the assignment's opaque token.
"""

from __future__ import annotations

from functools import wraps
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.clickjacking import xframe_options_exempt as _xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from evalsite import edge
from evalsite.studies.conversations import earlier_turns, is_conversation
from evalsite.studies.models import Comparison, Study

from . import actions as rating_actions
from . import assignment as engine
from .forms import RatingFormError, parse_rating, required_fields
from .identity import (
    enter,
    entry_ticket,
    find_rater,
    parse_entry,
    rater_from_request,
    rater_token,
    read_ticket,
    set_rater_cookie,
)
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


def xframe_options_exempt(view):
    """Rater pages may be framed, but only by the crowd platforms (``RATER_FRAME_ANCESTORS``).

    Also the rater pages' request-size cap: a rating is a few KB, so a large body is refused (413)
    before Django parses it; a form field with a NUL character is refused (400) once it is parsed.
    """
    exempt = _xframe_options_exempt(view)

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.RATER_MAX_BODY_BYTES:
            return HttpResponse("This request is too large.", status=413, content_type="text/plain")
        if request.method == "POST":
            try:
                edge.check_query(request.POST, "The form")
            except (edge.EdgeError, MultiPartParserError) as exc:
                response = HttpResponse(str(exc), status=400, content_type="text/plain; charset=utf-8")
                response["Content-Security-Policy"] = f"frame-ancestors {settings.RATER_FRAME_ANCESTORS}"
                return response
        response = exempt(request, *args, **kwargs)
        response["Content-Security-Policy"] = f"frame-ancestors {settings.RATER_FRAME_ANCESTORS}"
        return response

    return wrapped


def _study(slug: str) -> Study:
    return get_object_or_404(Study, slug=slug)


def _not_live(request: HttpRequest, study: Study) -> HttpResponse:
    return render(request, "rating/not_live.html", {"study": study}, status=200)


def _current_rater(request: HttpRequest, slug: str) -> tuple[Study, Rater | None]:
    """The study and this visitor's rater; one query on the hot path (the rater brings its study)."""
    rater = rater_from_request(request, slug)
    if rater is not None:
        return rater.study, rater
    return _study(slug), None


def _url(name: str, study: Study, rater: Rater, query: str = "", **kwargs) -> str:
    """A rater URL that names the rater (``?t=``): no cookie needed to follow it."""
    path = reverse(f"rating:{name}", kwargs={"slug": study.slug, **kwargs})
    return f"{path}?t={rater_token(rater, study.slug)}{query}"


def _go(request: HttpRequest, name: str, study: Study, rater: Rater, query: str = "") -> HttpResponse:
    response = redirect(_url(name, study, rater, query))
    set_rater_cookie(request, response, study, rater)  # a fallback for browsers that keep it
    return response


def _lost(request: HttpRequest, study: Study) -> HttpResponse:
    """No rater token, ticket or cookie: say so instead of bouncing (and creating raters) in a loop."""
    message = "We could not tell who you are. Please open the study link from your platform again."
    return render(request, "rating/message.html", {"study": study, "message": message}, status=400)


@xframe_options_exempt
@require_GET
def entry(request: HttpRequest, slug: str) -> HttpResponse:
    """``/r/<slug>/``: the link a platform sends workers to. Creates nothing (consent does)."""
    study = _study(slug)
    if study.status != Study.Status.LIVE:
        return _not_live(request, study)
    info = parse_entry(request.GET)
    if info.preview:
        return _preview(request, study)
    rater = find_rater(study, info, rater_from_request(request, study.slug))
    if rater is None:
        return redirect(reverse("rating:consent", kwargs={"slug": slug}) + f"?e={entry_ticket(study, info)}")
    return _go(request, "task" if rater.consented_at else "consent", study, rater)


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
@csrf_exempt
@require_http_methods(["GET", "POST"])
def consent(request: HttpRequest, slug: str) -> HttpResponse:
    """Consent statement and instructions; agreeing creates the rater and starts the first task.

    Reached with an entry ticket (``?e=``, from the entry link: it names the participation and
    wins over any token or cookie, since two workers can share a browser) or a rater token.
    """
    ticket = request.GET.get("e", "")
    entry_info = None
    if ticket:
        study = _study(slug)
        entry_info = read_ticket(study, ticket)
        rater = find_rater(study, entry_info, None) if entry_info is not None else None
    else:
        study, rater = _current_rater(request, slug)
    if rater is None and entry_info is None:
        return _lost(request, study)
    if study.status != Study.Status.LIVE:
        return _not_live(request, study)
    if rater is not None and rater.consented_at is not None:
        return _go(request, "task", study, rater)
    error = ""
    if request.method == "POST":
        if request.POST.get("agree") == "yes":
            rater = rater or enter(study, entry_info)
            Rater.objects.filter(pk=rater.pk, consented_at__isnull=True).update(consented_at=timezone.now())
            return _go(request, "task", study, rater)
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
@require_GET
def task(request: HttpRequest, slug: str) -> HttpResponse:
    """The current task: resume the live lease or lease the next comparison."""
    study, rater = _current_rater(request, slug)
    if rater is None:
        return _lost(request, study)
    if study.status != Study.Status.LIVE:
        return _not_live(request, study)
    if rater.consented_at is None:
        return _go(request, "consent", study, rater)
    leased = engine.lease_next(rater, study)
    if leased is None:
        return _go(request, "done", study, rater, _wait_query(request))
    context = _leased_context(study, rater, leased)
    if request.GET.get("expired"):
        context["notice"] = "Your time for the last task ran out, so it went to someone else. Here is the next one."
    return render(request, "rating/task.html", context)


@xframe_options_exempt
@csrf_exempt
@require_POST
def submit(request: HttpRequest, slug: str, token: str) -> HttpResponse:
    """Store the rating (idempotent) and go on to the next task."""
    study, rater = _current_rater(request, slug)
    if rater is None:
        return _lost(request, study)
    try:
        payload = parse_rating(request.POST, study.rating_form, expert=rater.is_expert)
        rating_actions.submit_rating(token, rater, payload)
    except engine.LeaseExpired:
        return _go(request, "task", study, rater, "&expired=1")
    except engine.StudyNotLive as exc:
        return render(request, "rating/message.html", {"study": study, "message": str(exc)}, status=409)
    except (RatingFormError, engine.LeaseError) as exc:
        leased = Assignment.objects.filter(token=token, rater_id=rater.pk, status=Assignment.Status.LIVE).first()
        if leased is None:
            return render(request, "rating/message.html", {"study": study, "message": str(exc)}, status=404)
        context = _leased_context(study, rater, leased)
        context["error"] = str(exc)
        return render(request, "rating/task.html", context, status=400)
    return _go(request, "task", study, rater)


@xframe_options_exempt
@csrf_exempt
@require_POST
def touch(request: HttpRequest, slug: str, token: str) -> JsonResponse:
    """The page reports the rater's first interaction: a short first lease becomes a full one."""
    study, rater = _current_rater(request, slug)
    if rater is None:
        return JsonResponse({"live": False}, status=403)
    return JsonResponse({"live": engine.touch(token, rater, study)})


# Waiting for work others hold: retry after 5, 10, 20, 40, then every 60 seconds.
WAIT_STEPS = (5, 10, 20, 40, 60)


def _wait(request: HttpRequest, study: Study, rater: Rater) -> HttpResponse:
    try:
        attempt = max(0, min(int(request.GET.get("wait", "0")), 1000))
    except ValueError:
        attempt = 0
    seconds = WAIT_STEPS[min(attempt, len(WAIT_STEPS) - 1)]
    context = {"study": study, "seconds": seconds, "retry_url": _url("task", study, rater, f"&wait={attempt + 1}")}
    return render(request, "rating/wait.html", context)


@xframe_options_exempt
@require_GET
def done(request: HttpRequest, slug: str) -> HttpResponse:
    """Completion: the code, and the platform's way back."""
    study, rater = _current_rater(request, slug)
    if rater is None:
        return _lost(request, study)
    if rater.blocked:
        return _blocked(request, study, rater)
    # The code is payment: only a rater who consented and did work earns it. Finished means the
    # quota is done, or the engine has no work left for them at all; a rater with no submitted task
    # never gets the code, and one whose remaining work is only leased by others waits for it.
    if rater.consented_at is None:
        return _go(request, "consent", study, rater)
    if rater.tasks_submitted < study.tasks_per_rater:
        if study.status != Study.Status.LIVE:
            if rater.tasks_submitted == 0:
                return _not_live(request, study)
        else:
            # Resumes a live lease or takes the next one (the task page then shows it); None: no work.
            if engine.lease_next(rater, study) is not None:
                return _go(request, "task", study, rater)
            if rater.blocked:  # the engine refreshed the rater's row
                return _blocked(request, study, rater)
            if engine.work_held_by_others(rater, study):
                return _wait(request, study, rater)
        if rater.tasks_submitted == 0:
            message = "Thank you for your interest. All tasks of this study are taken, so there is nothing to do."
            return render(request, "rating/message.html", {"study": study, "message": message})
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


def _wait_query(request: HttpRequest) -> str:
    wait = request.GET.get("wait", "")
    return f"&wait={wait}" if wait.isdigit() else ""


def _blocked(request: HttpRequest, study: Study, rater: Rater) -> HttpResponse:
    """No more tasks. A Prolific worker gets the study's failed-quality code, so their submission
    reaches the researcher marked as such (Prolific's "failed QC" completion path)."""
    message = "Thank you. You did not pass the attention checks, so there are no more tasks for you."
    context = {"study": study, "message": message + " Please return this study on your platform."}
    if rater.platform == Rater.Platform.PROLIFIC and study.completion_code:
        code = study.failed_quality_code
        context["message"] = message + f" Please submit with this code: {code}"
        context["redirect_url"] = f"{PROLIFIC_COMPLETE}?{urlencode({'cc': code})}"
    return render(request, "rating/message.html", context)


# --- page context ----------------------------------------------------------------------------


def _comparison_of(leased: Assignment) -> Comparison:
    return Comparison.objects.select_related("prompt", "response_a", "response_b").get(pk=leased.comparison_id)


def _leased_context(study: Study, rater: Rater, leased: Assignment) -> dict:
    comparison = _comparison_of(leased)
    context = _task_context(study, comparison, leased.left_side, number=rater.tasks_submitted + 1)
    context["required"] = [name for name, _ in required_fields(study.rating_form or {}, expert=rater.is_expert)]
    context["total"] = rater.tasks_submitted + engine.tasks_within_reach(rater, study)
    context["token"] = leased.token
    context["expires_at"] = leased.expires_at
    context["submit_url"] = _url("submit", study, rater, token=leased.token)
    context["touch_url"] = _url("touch", study, rater, token=leased.token)
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
        "required": [name for name, _ in required_fields(form)],
        "prompt_html": render_markdown(comparison.prompt.text),
        "instructions_html": render_markdown(study.instructions),
        # A conversation's earlier turns, shown above the question (each side's own earlier replies
        # on its side); empty for a single-turn prompt.
        "conversation": earlier_turns(comparison.prompt, left, right, render_markdown)
        if is_conversation(comparison.prompt)
        else [],
        "turn": comparison.prompt.turn,
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
