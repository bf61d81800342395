"""The REST API's crowd-platform endpoints, called by two thin actions on the study viewset
(``evalsite.api.views.StudyViewSet.platforms`` / ``platform_action``):

- ``GET /api/v1/studies/{slug}/platforms/``: per platform the platform study's id and state,
  places, submissions by status, money spent and committed, bonuses by state; and the audit log.
- ``POST /api/v1/studies/{slug}/platforms/{platform}/{op}/`` with ``op`` one of ``publish``,
  ``sync``, ``review``, ``bonuses``, ``pay-bonuses``, ``resolve-bonus``, ``add-places``, ``close``
  and a JSON body for the first, the fourth, the sixth and the seventh (the serializers below).

Each op is one action of :mod:`.actions` (owner only: 403 for a collaborator); refusals by the
rules are 400/409, a platform's refusal or silence is 502.
"""

from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotFound
from rest_framework.response import Response

from evalsite.studies.errors import ActionError
from evalsite.studies.models import Study

from . import actions
from .models import Bonus, Platform
from .panel import platform_panel

OPS = ("publish", "sync", "review", "bonuses", "pay-bonuses", "resolve-bonus", "add-places", "close")


class PublishSerializer(serializers.Serializer):
    # Optional (publishing a Prolific draft needs neither); missing, the action says what it needs.
    reward_cents = serializers.IntegerField(min_value=1, required=False, default=None,
                                            help_text="Per participant, cents/pence.")
    estimated_minutes = serializers.IntegerField(min_value=1, max_value=24 * 60, required=False, default=None)
    places = serializers.IntegerField(min_value=1, max_value=100_000, required=False, allow_null=True)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    token_env = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    sandbox = serializers.BooleanField(required=False, default=True, help_text="MTurk only.")
    lifetime_hours = serializers.IntegerField(min_value=1, max_value=24 * 365, required=False, default=7 * 24)
    auto_approve_days = serializers.IntegerField(min_value=0, max_value=30, required=False, default=3)


class BonusRowSerializer(serializers.Serializer):
    id = serializers.CharField(max_length=100, help_text="Submission / assignment id, or worker id.")
    amount = serializers.DecimalField(max_digits=8, decimal_places=2, min_value=0, help_text="e.g. 1.50")


class BonusesSerializer(serializers.Serializer):
    csv = serializers.CharField(required=False, max_length=1_000_000, help_text="Lines of id,amount.")
    rows = BonusRowSerializer(many=True, required=False)
    flat_cents = serializers.IntegerField(min_value=0, max_value=1_000_000, required=False, default=0)
    per_task_cents = serializers.IntegerField(min_value=0, max_value=1_000_000, required=False, default=0)
    label = serializers.CharField(max_length=60, required=False, default="bonus")
    reason = serializers.CharField(max_length=250, required=False, allow_blank=True, default="")


class PlacesSerializer(serializers.Serializer):
    total = serializers.IntegerField(min_value=1, max_value=100_000, required=False, allow_null=True)


class ResolveSerializer(serializers.Serializer):
    bonus = serializers.IntegerField(min_value=1)
    outcome = serializers.ChoiceField(choices=["paid", "resend", "cancel"])


class ActionFailed(APIException):
    default_detail = "The action was refused."
    default_code = "action_failed"

    def __init__(self, exc: ActionError):
        super().__init__(str(exc))
        self.status_code = exc.status_code


def summary(request, study: Study) -> Response:
    return Response(platform_panel(study, request.user))


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data if isinstance(data, dict) else {})
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def perform(request, study: Study, platform: str, op: str) -> Response:
    if platform not in Platform.values or op not in OPS:
        raise NotFound(f"No such platform action: prolific or mturk, and one of {', '.join(OPS)}.")
    user, data = request.user, request.data
    try:
        if op == "publish":
            v = _valid(PublishSerializer, data)
            entry = request.build_absolute_uri(reverse("rating:entry", kwargs={"slug": study.slug}))
            result = actions.publish(study, platform, user, entry_url=entry, **v)
            code = status.HTTP_201_CREATED
        elif op == "bonuses":
            v = _valid(BonusesSerializer, data)
            rows = None
            if v.get("csv"):
                rows = actions.parse_bonus_csv(v["csv"])
            elif v.get("rows"):
                rows = [(r["id"], int(r["amount"] * 100)) for r in v["rows"]]
            result = actions.add_bonuses(
                study, platform, user, rows=rows, flat_cents=v["flat_cents"], per_task_cents=v["per_task_cents"],
                label=v["label"], reason=v["reason"],
            )
            code = status.HTTP_201_CREATED
        elif op == "resolve-bonus":
            v = _valid(ResolveSerializer, data)
            bonus = Bonus.objects.select_related("link__study", "submission").filter(
                pk=v["bonus"], link__study=study, link__platform=platform
            ).first()
            if bonus is None:
                raise NotFound("No such bonus in this study on this platform.")
            result = actions.resolve_bonus(bonus, user, outcome=v["outcome"])
            code = status.HTTP_200_OK
        elif op == "add-places":
            v = _valid(PlacesSerializer, data)
            result = actions.add_places(study, platform, user, total=v.get("total"))
            code = status.HTTP_200_OK
        else:
            run = {"sync": actions.sync, "review": actions.review, "pay-bonuses": actions.pay_bonuses,
                   "close": actions.close}[op]
            result = run(study, platform, user)
            code = status.HTTP_200_OK
    except ActionError as exc:
        raise ActionFailed(exc) from exc
    return Response({"status": study.status, "detail": result.message, "result": result.detail}, status=code)
