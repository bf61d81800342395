"""The study page's crowd-platform buttons (each posts here, calls one action, redirects back) and
Prolific's webhook.

The buttons are only for the study's owner: anyone else gets a 404, as for the page's other
buttons. The webhook needs ``EVALSITE_PROLIFIC_WEBHOOK_SECRET`` (the workspace's hook secret) and
answers 404 without it; a request whose signature does not match is refused (403).
"""

from __future__ import annotations

import json
import os

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from evalsite.studies.access import can_change_study, visible_studies
from evalsite.studies.models import Study

from . import actions
from .models import Bonus, Platform
from .prolific import verify_signature

MAX_WEBHOOK_BYTES = 64 * 1024
MAX_CSV_BYTES = 1024 * 1024


def _owned(request: HttpRequest, slug: str) -> Study:
    study = get_object_or_404(Study, slug=slug)
    if not visible_studies(request.user).filter(pk=study.pk).exists() or not can_change_study(request.user, study):
        raise Http404("No such study.")
    return study


def _back(study: Study) -> HttpResponse:
    return redirect(reverse("studies:home", kwargs={"slug": study.slug}) + "#platforms")


def _int(request: HttpRequest, name: str, default: int | None = None, *, cents: bool = False) -> int | None:
    """A form number; ``cents``: the field is in currency units ("1.50") and becomes cents."""
    raw = request.POST.get(name, "").strip()
    if not raw:
        return default
    try:
        return round(float(raw) * 100) if cents else int(raw)
    except ValueError as exc:
        raise ValidationError(f"{name.replace('_', ' ')}: {raw!r} is not a number.") from exc


def _csv_text(request: HttpRequest) -> str | None:
    upload = request.FILES.get("csv_file")
    if upload is not None:
        if upload.size > MAX_CSV_BYTES:
            raise ValidationError("The bonus file is larger than 1 MB.")
        try:
            return upload.read().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ValidationError("The bonus file is not UTF-8 text.") from exc
    text = request.POST.get("csv", "").strip()
    return text or None


@staff_member_required
@require_POST
def action(request: HttpRequest, slug: str, platform: str, op: str) -> HttpResponse:
    """One platform button: publish, sync, review, bonuses, pay, places, close."""
    study = _owned(request, slug)
    if platform not in Platform.values:
        raise Http404("No such platform.")
    user = request.user

    def publish():
        entry = request.build_absolute_uri(reverse("rating:entry", kwargs={"slug": study.slug}))
        return actions.publish(
            study, platform, user, entry_url=entry,
            reward_cents=_int(request, "reward", cents=True), estimated_minutes=_int(request, "estimated_minutes"),
            places=_int(request, "places"), description=request.POST.get("description", "")[:2000],
            token_env=request.POST.get("token_env", "").strip(), sandbox=request.POST.get("production") != "1",
            lifetime_hours=_int(request, "lifetime_hours", 7 * 24) or 7 * 24,
        )

    def bonuses():
        text = _csv_text(request)
        label = request.POST.get("label", "").strip() or "bonus"
        reason = request.POST.get("reason", "")
        if text is not None:
            return actions.add_bonuses(study, platform, user, rows=actions.parse_bonus_csv(text), label=label,
                                       reason=reason)
        return actions.add_bonuses(
            study, platform, user, flat_cents=_int(request, "flat", 0, cents=True) or 0,
            per_task_cents=_int(request, "per_task", 0, cents=True) or 0, label=label, reason=reason,
        )

    ops = {
        "publish": publish,
        "sync": lambda: actions.sync(study, platform, user),
        "review": lambda: actions.review(study, platform, user),
        "bonuses": bonuses,
        "pay-bonuses": lambda: actions.pay_bonuses(study, platform, user),
        "add-places": lambda: actions.add_places(study, platform, user, total=_int(request, "total")),
        "close": lambda: actions.close(study, platform, user),
    }
    if op not in ops:
        raise Http404("No such action.")
    try:
        result = ops[op]()
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, result.message)
    return _back(study)


@staff_member_required
@require_POST
def resolve(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    """The researcher's answer on an unconfirmed or refused bonus: paid, resend or cancel."""
    study = _owned(request, slug)
    bonus = get_object_or_404(Bonus.objects.select_related("link__study", "submission"), pk=pk, link__study=study)
    try:
        result = actions.resolve_bonus(bonus, request.user, outcome=request.POST.get("outcome", ""))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, result.message)
    return _back(study)


@csrf_exempt
@require_POST
def prolific_webhook(request: HttpRequest) -> HttpResponse:
    """Prolific's ``submission.status.change`` hook: reclaim the lease of who returned or timed out."""
    secret = os.environ.get("EVALSITE_PROLIFIC_WEBHOOK_SECRET", "")
    if not secret:
        raise Http404("Webhooks are not set up on this server.")
    body = request.body[: MAX_WEBHOOK_BYTES + 1]
    if len(body) > MAX_WEBHOOK_BYTES:
        return JsonResponse({"detail": "Body too large."}, status=413)
    timestamp = request.headers.get("X-Prolific-Request-Timestamp", "")
    signature = request.headers.get("X-Prolific-Request-Signature", "")
    if not verify_signature(secret, timestamp, body, signature):
        return JsonResponse({"detail": "Bad signature."}, status=403)
    try:
        payload = json.loads(body)
    except ValueError:
        return JsonResponse({"detail": "Not JSON."}, status=400)
    if not isinstance(payload, dict):
        return JsonResponse({"detail": "Expected a JSON object."}, status=400)
    return JsonResponse({"result": actions.handle_prolific_event(payload)})
