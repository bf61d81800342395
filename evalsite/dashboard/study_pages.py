"""The researcher's study home (``/studies/<slug>/``) and the site's front door (``/``).

The home page says where the study stands and what to do next, offers the lifecycle steps as
buttons (each one an action: :mod:`evalsite.studies.actions`, :mod:`evalsite.generation.actions`,
:mod:`evalsite.rating.actions`), shows live progress and why prompts were left out of
comparisons, and hands out the links ready to paste into Prolific or MTurk, the plain link and
expert invitations. Views stay thin: read, call an action, redirect with a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from evalsite.generation.actions import GenerationSetupError, cancel_generation, start_generation
from evalsite.platforms.panel import platform_panel
from evalsite.rating.actions import invitation_path, invite_expert
from evalsite.rating.models import Rater
from evalsite.studies import actions
from evalsite.studies.access import can_change_study, visible_studies
from evalsite.studies.lifecycle import TransitionError
from evalsite.studies.models import LanguageModel, Response, Study
from evalsite.studies.pairing import explain_skips

from .study_plan import plan_panel
from .views import study_progress

S = Study.Status
# The placeholders Prolific replaces in a study URL (its documented names).
PROLIFIC_QUERY = "PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
MTURK_XML = """<ExternalQuestion xmlns="http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2006-07-14/ExternalQuestion.xsd">
  <ExternalURL>{url}</ExternalURL>
  <FrameHeight>0</FrameHeight>
</ExternalQuestion>"""


def home(request: HttpRequest) -> HttpResponse:
    """``/``: staff go to their studies; anyone else learns what this site is."""
    if request.user.is_authenticated and request.user.is_staff:
        return redirect("studies:index")
    return render(request, "dashboard/about.html")


@staff_member_required
def index(request: HttpRequest) -> HttpResponse:
    """The studies this researcher may see, each with its status and next step."""
    studies = visible_studies(request.user).order_by("-created_at")
    rows = [{"study": s, "next": next_step(s).title} for s in studies]
    return render(request, "dashboard/studies.html", {"rows": rows})


@dataclass
class Step:
    title: str
    detail: str
    action: str = ""  # the form action of the button that does it, if this page has one
    link: str = ""  # or where to do it


def next_step(study: Study) -> Step:
    """What the researcher should do next, in the order a study is built."""
    change = reverse("admin:studies_study_change", args=[study.pk])
    if not study.prompts.exists():
        upload = reverse("admin:studies_study_upload", args=[study.pk])
        return Step("Import prompts", "Upload a JSONL or CSV file of prompts (the Koala test set imports as it is).",
                    link=upload)
    models = list(LanguageModel.real.filter(study=study))
    if not models:
        return Step("Add models", "Add the teacher and the models to compare with it (generated or imported).",
                    link=change)
    if study.status == S.GENERATING:
        return Step("Wait for the answers", "Generation is running; progress is below. You can cancel it.")
    if study.status == S.LIVE:
        return Step("Share the links", "The study is live: paste a link below into your platform and watch progress.")
    if study.status == S.CLOSED:
        return Step("Read the report", "The study is closed. Reopen it for more ratings if you need them.")
    answered = Response.objects.filter(prompt__study=study, model__in=models, sample_index=0, error="").exclude(text="")
    if len(set(answered.values_list("model_id", flat=True))) < len(models) and not study.comparisons.exists():
        return Step("Get the answers", "Some models have no answers yet: generate them, or upload answer files.",
                    action="generate")
    if not study.comparisons.filter(is_attention_check=False).exists():
        return Step("Build comparisons", "Pair the answers on each prompt (each model against the teacher).",
                    action="build")
    if not study.completion_code:
        return Step("Set a completion code", "Raters get this code at the end; Prolific and MTurk need it.",
                    link=change)
    return Step("Launch", "Open the study to raters. You can pause it at any time.", action="launch")


def _study(request: HttpRequest, slug: str) -> Study:
    study = get_object_or_404(Study, slug=slug)
    if not visible_studies(request.user).filter(pk=study.pk).exists():
        raise Http404("No such study.")
    return study


def links(request: HttpRequest, study: Study) -> dict:
    """The URLs a researcher pastes into a crowd platform, absolute."""
    entry = request.build_absolute_uri(reverse("rating:entry", kwargs={"slug": study.slug}))
    return {
        "plain": entry,
        "prolific": f"{entry}?{PROLIFIC_QUERY}",
        "mturk_xml": MTURK_XML.format(url=entry),
        "mturk_preview": f"{entry}?{urlencode({'assignmentId': 'ASSIGNMENT_ID_NOT_AVAILABLE'})}",
    }


@staff_member_required
def study_home(request: HttpRequest, slug: str) -> HttpResponse:
    study = _study(request, slug)
    experts = [
        {
            "rater": r,
            "label": r.platform_data.get("label", "") or r.pseudonym[:8],
            "link": request.build_absolute_uri(invitation_path(r)),
        }
        for r in Rater.objects.filter(study=study, platform=Rater.Platform.EXPERT).order_by("created_at")
    ]
    context = {
        "study": study,
        "step": next_step(study),
        "can_change": can_change_study(request.user, study),
        "progress": study_progress(study),
        "skips": explain_skips(study) if LanguageModel.real.filter(study=study).exists() else [],
        "links": links(request, study),
        "experts": experts,
        "platforms": platform_panel(study, request.user),
        "plan": plan_panel(study, request.GET),
        "S": S,
    }
    return render(request, "dashboard/study_home.html", context)


def _do(request: HttpRequest, study: Study, work, done: str) -> HttpResponse:
    try:
        result = work()
    except (ValidationError, GenerationSetupError, TransitionError) as exc:
        text = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        messages.error(request, text)
    else:
        messages.success(request, done.format(result=result))
    return redirect("studies:home", slug=study.slug)


def _changeable(request: HttpRequest, slug: str) -> Study:
    study = _study(request, slug)
    if not can_change_study(request.user, study):
        raise Http404("No such study.")  # shared read-only: the buttons are not theirs to press
    return study


@staff_member_required
@require_POST
def step(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    """One lifecycle button: build, generate, cancel, launch, pause, close."""
    study = _changeable(request, slug)
    user = request.user

    def launch():
        if study.status == S.DRAFT:
            actions.mark_study_ready(study, user)
        return actions.launch_study(study, user)

    def build():
        added = actions.build_comparisons(study, user)
        skipped = explain_skips(study)
        return f"{added} comparisons added" + (f"; left out: {'; '.join(skipped)}" if skipped else "")

    steps = {
        "build": (build, "{result}."),
        "generate": (lambda: len(start_generation(study)), "Generation started ({result} jobs)."),
        "cancel": (lambda: len(cancel_generation(study)), "Generation cancelled ({result} jobs stopped)."),
        "launch": (launch, "The study is live."),
        "pause": (lambda: actions.pause_study(study, user), "The study is paused: raters get no new tasks."),
        "close": (lambda: actions.close_study(study, user), "The study is closed."),
    }
    if name not in steps:
        raise Http404("No such step.")
    work, done = steps[name]
    return _do(request, study, work, done)


@staff_member_required
@require_POST
def invite(request: HttpRequest, slug: str) -> HttpResponse:
    """Invite an expert: a personal link appears in the list on the study page."""
    study = _changeable(request, slug)
    label = request.POST.get("label", "")[:100]
    return _do(
        request,
        study,
        lambda: invite_expert(study, request.user, name=label),
        "Expert invited: copy their personal link from the list below and send it to them.",
    )
