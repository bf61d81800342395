"""API views: thin wrappers that check access, call the apps' actions and serialize.

The write paths live elsewhere (``studies.actions`` for studies, models, uploads, pairing and status,
``generation.actions``); a view parses, calls one of them, and maps its user-facing errors to a
4xx with the module's own message. Those modules are imported when first used, so the API keeps
serving (and answers 503 for the one missing action) while a part of the system is absent.
"""

import io
import json

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers, status, viewsets
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, PermissionDenied, Throttled, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import AllowAny
from rest_framework.response import Response as APIResponse
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from evalsite.rating import actions as rating_actions
from evalsite.rating.models import Rating
from evalsite.studies import actions, lifecycle
from evalsite.studies.errors import ActionError, ImportRefused
from evalsite.studies.models import Comparison, GenerationJob, LanguageModel, Prompt, Response, Study

from . import analysis
from .filters import (
    ComparisonFilter,
    GenerationJobFilter,
    LanguageModelFilter,
    PromptFilter,
    RatingFilter,
    ResponseFilter,
    StudyFilter,
)
from .parsers import FormParser, JSONParser, MultiPartParser
from .permissions import IsResearcher, StudyWriteAccess, can_change_study, visible_studies
from .serializers import (
    ActionResultSerializer,
    ComparisonSerializer,
    ExpertInvitationSerializer,
    GenerationJobSerializer,
    LanguageModelSerializer,
    PromptSerializer,
    RatingSerializer,
    ResponseSerializer,
    RowsUploadSerializer,
    StudySerializer,
)


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The study is not in a state that allows this."
    default_code = "conflict"


def api_error(exc: ActionError) -> APIException:
    """An action's refusal as the API answers it: 400, 403 or 409 with the action's own message."""
    if isinstance(exc, ImportRefused):
        detail = "Nothing was imported; fix these problems and retry."
        return ValidationError({"detail": detail, "errors": exc.messages})
    if exc.status_code == status.HTTP_409_CONFLICT:
        return Conflict(str(exc))
    if exc.status_code == status.HTTP_403_FORBIDDEN:
        return PermissionDenied(str(exc))
    return ValidationError(exc.message_dict if hasattr(exc, "error_dict") else {"detail": str(exc)})


def run_action(func, *args, **kwargs):
    """Call an action; its :class:`ActionError` becomes the matching API error."""
    try:
        return func(*args, **kwargs)
    except ActionError as exc:
        raise api_error(exc) from exc



class IdCursorPagination(CursorPagination):
    """Stable, O(1)-per-page paging for the large tables: newest rows never shift a page."""

    ordering = "id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


def _upload_source(request, default_name: str) -> tuple[io.IOBase, str | None]:
    """The uploaded file, or the JSON rows turned into an in-memory JSONL file for the importer."""
    data = {"rows": request.data} if isinstance(request.data, list) else request.data
    upload = RowsUploadSerializer(data=data)
    upload.is_valid(raise_exception=True)
    if upload.validated_data.get("file"):
        return upload.validated_data["file"], None
    rows = upload.validated_data["rows"]
    buffer = io.BytesIO("\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode("utf-8"))
    buffer.name = default_name
    return buffer, "jsonl"


def _import(func, target, request, default_name: str) -> int:
    """Run an import action; its all-or-nothing error list becomes a 400 listing every problem."""
    source, fmt = _upload_source(request, default_name)
    return run_action(func, target, source, actor=request.user, fmt=fmt)


_ACTION_RESPONSE = {
    200: ActionResultSerializer,
    409: OpenApiResponse(description="Not allowed in this state."),
}
_UPLOAD_REQUEST = {"multipart/form-data": RowsUploadSerializer, "application/json": RowsUploadSerializer}
# The planner's inputs (evalsite.dashboard.study_plan.INPUTS); each overrides the study's own value.
_PLAN_FIELDS = {
    "models": (OpenApiTypes.INT, "Models including the teacher."),
    "prompts": (OpenApiTypes.INT, "Prompts."),
    "k": (OpenApiTypes.INT, "Ratings per comparison."),
    "win_rate": (OpenApiTypes.FLOAT, "P(model wins) against the teacher."),
    "tie_rate": (OpenApiTypes.FLOAT, "P(tie or both bad)."),
    "icc": (OpenApiTypes.FLOAT, "Within-prompt correlation of ratings."),
    "pairing": (OpenApiTypes.STR, "teacher or all."),
    "cost_per_task": (OpenApiTypes.FLOAT, "Pay per task."),
    "platform_fee": (OpenApiTypes.FLOAT, "Platform fee as a share of pay."),
    "seconds_per_task": (OpenApiTypes.FLOAT, "Seconds per task."),
    "attention_check_rate": (OpenApiTypes.FLOAT, "Share of tasks that are attention checks."),
    "difference": (OpenApiTypes.FLOAT, "Difference from parity the power refers to."),
    "target_halfwidth": (OpenApiTypes.FLOAT, "Target 95% half-width of P(>= teacher)."),
}
_PLAN_PARAMETERS = [OpenApiParameter(name, kind, description=text) for name, (kind, text) in _PLAN_FIELDS.items()]
_PLAN_REQUEST = inline_serializer(
    "PlanInputs",
    {
        name: (serializers.CharField if kind == OpenApiTypes.STR else serializers.FloatField)(
            required=False, help_text=text
        )
        for name, (kind, text) in _PLAN_FIELDS.items()
    },
)


@extend_schema_view(
    list=extend_schema(summary="Studies you own or that are shared with you"),
    create=extend_schema(summary="Create a study (you become its owner)"),
)
class StudyViewSet(viewsets.ModelViewSet):
    serializer_class = StudySerializer
    permission_classes = [IsResearcher, StudyWriteAccess]
    filterset_class = StudyFilter
    lookup_field = "slug"
    lookup_value_regex = "[-a-zA-Z0-9_]+"

    def get_queryset(self) -> QuerySet[Study]:
        return visible_studies(self.request.user).select_related("owner").prefetch_related("shared_with")

    def perform_create(self, serializer) -> None:
        serializer.instance = run_action(actions.create_study, self.request.user, **serializer.validated_data)

    def perform_update(self, serializer) -> None:
        serializer.instance = run_action(
            actions.update_study, serializer.instance, self.request.user, **serializer.validated_data
        )

    def perform_destroy(self, instance: Study) -> None:
        run_action(actions.delete_study, instance, self.request.user)

    def _transition(self, func) -> APIResponse:
        study = self.get_object()
        run_action(func, study, self.request.user)
        return APIResponse({"status": study.status, "detail": f"Study {study.slug!r} is now {study.status}."})

    @extend_schema(
        request=None, responses=_ACTION_RESPONSE, summary="Mark the study ready (e.g. after importing answers)"
    )
    @action(detail=True, methods=["post"])
    def ready(self, request, slug=None):
        return self._transition(actions.mark_study_ready)

    @extend_schema(request=None, responses=_ACTION_RESPONSE, summary="Open the study to raters (ready → live)")
    @action(detail=True, methods=["post"])
    def launch(self, request, slug=None):
        return self._transition(actions.launch_study)

    @extend_schema(request=None, responses=_ACTION_RESPONSE, summary="Stop handing out tasks (live → ready)")
    @action(detail=True, methods=["post"])
    def pause(self, request, slug=None):
        return self._transition(actions.pause_study)

    @extend_schema(request=None, responses=_ACTION_RESPONSE, summary="Close the study for good (→ closed)")
    @action(detail=True, methods=["post"])
    def close(self, request, slug=None):
        return self._transition(actions.close_study)

    @extend_schema(
        request=ExpertInvitationSerializer,
        responses={201: ActionResultSerializer, 409: _ACTION_RESPONSE[409]},
        summary="Invite an expert rater: a personal link, their own slots, correctness required",
    )
    @action(detail=True, methods=["post"], url_path="invite-expert")
    def invite_expert(self, request, slug=None):
        study = self.get_object()
        body = ExpertInvitationSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        label = body.validated_data["label"]
        invitation = run_action(rating_actions.invite_expert, study, request.user, name=label)
        link = request.build_absolute_uri(invitation.path)
        return APIResponse(
            {
                "status": study.status,
                "detail": "Send this personal link to the expert.",
                "result": {"rater": invitation.rater.pseudonym, "link": link},
            },
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(request=None, responses=_ACTION_RESPONSE, summary="Pair the generated responses")
    @action(detail=True, methods=["post"], url_path="build-comparisons")
    def build_comparisons(self, request, slug=None):
        study = self.get_object()
        added = run_action(actions.build_comparisons, study, request.user)
        total = study.comparisons.count()
        return APIResponse(
            {
                "status": study.status,
                "detail": f"{added} comparisons added, {total} in all.",
                "result": {"added": added, "total": total},
            }
        )

    @extend_schema(request=None, responses=_ACTION_RESPONSE, summary="Queue generation for every model")
    @action(detail=True, methods=["post"])
    def generate(self, request, slug=None):
        study = self.get_object()
        from evalsite.generation.actions import start_generation

        try:
            start_generation(study)
        except (lifecycle.TransitionError, ValueError) as exc:
            raise Conflict(str(exc)) from exc
        study.refresh_from_db(fields=["status"])
        jobs = GenerationJobSerializer(study.generation_jobs.select_related("model", "study"), many=True).data
        return APIResponse(
            {"status": study.status, "detail": f"{len(jobs)} generation job(s).", "result": {"jobs": jobs}}
        )

    @extend_schema(
        request=None,
        responses=_ACTION_RESPONSE,
        summary="Cancel generation: queued jobs never run, running ones stop after their current batch",
    )
    @action(detail=True, methods=["post"], url_path="cancel-generation")
    def cancel_generation(self, request, slug=None):
        study = self.get_object()
        from evalsite.generation.actions import cancel_generation

        try:
            cancelled = cancel_generation(study)
        except (lifecycle.TransitionError, ValueError) as exc:
            raise Conflict(str(exc)) from exc
        jobs = GenerationJobSerializer(
            GenerationJob.objects.filter(pk__in=[j.pk for j in cancelled]).select_related("model", "study"),
            many=True,
        ).data
        return APIResponse(
            {
                "status": study.status,
                "detail": f"{len(jobs)} generation job(s) cancelled; the study is {study.status}.",
                "result": {"jobs": jobs},
            }
        )

    @extend_schema(
        request=_UPLOAD_REQUEST,
        summary="Add prompts from a CSV/JSONL file or a JSON list (all or nothing)",
        responses={
            201: ActionResultSerializer,
            400: OpenApiResponse(description="Every problem in the file."),
        },
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="prompts",
        parser_classes=[MultiPartParser, FormParser, JSONParser],
    )
    def upload_prompts(self, request, slug=None):
        study = self.get_object()
        added = _import(actions.import_prompts, study, request, "prompts.jsonl")
        return APIResponse(
            {
                "status": study.status,
                "detail": f"{added} prompts added (read as {added.format_label}).",
                "result": {"added": added, "format": added.format},
            },
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(
        request=None,
        summary="The study's analysis report (the cached one; ?compute=true builds one if none is cached)",
        parameters=[
            OpenApiParameter(
                "compute",
                OpenApiTypes.BOOL,
                description="Owner only: compute now if none is cached (small studies in the request, "
                "larger ones on a worker: 202, ask again later).",
            )
        ],
        responses={
            200: OpenApiTypes.OBJECT,
            202: OpenApiResponse(description="Queued on a worker: the study is too large to analyse in a request."),
            403: OpenApiResponse(description="?compute=true by a collaborator the study is shared with read-only."),
            404: OpenApiResponse(description="No report yet."),
        },
    )
    @action(detail=True, methods=["get"])
    def analysis(self, request, slug=None):
        study = self.get_object()
        compute = request.query_params.get("compute", "").lower() in {"1", "true", "yes"}
        if compute and not can_change_study(request.user, study):
            raise PermissionDenied(
                "Only the study's owner can compute its report; it is shared with you read-only "
                "(the cached report is here without ?compute)."
            )
        try:
            return APIResponse(analysis.study_report(study, compute=compute))
        except analysis.ReportQueued as exc:
            return APIResponse({"detail": str(exc)}, status=status.HTTP_202_ACCEPTED)
        except analysis.NoReportYet as exc:
            return APIResponse({"detail": str(exc)}, status=status.HTTP_404_NOT_FOUND)

    @extend_schema(
        methods=["GET"],
        parameters=_PLAN_PARAMETERS,
        responses={200: OpenApiTypes.OBJECT, 400: OpenApiResponse(description="Inputs out of range.")},
        summary="Plan the study: predicted precision, power, ratings and cost; reached precision; may it stop",
    )
    @extend_schema(
        methods=["POST"],
        request=_PLAN_REQUEST,
        responses={200: OpenApiTypes.OBJECT, 400: OpenApiResponse(description="Inputs out of range.")},
        summary="Plan the study with the inputs as JSON (the same answer as GET)",
    )
    @action(detail=True, methods=["get", "post"], permission_classes=[IsResearcher])
    def plan(self, request, slug=None):
        # Read-only for everyone who sees the study (POST only carries the inputs as JSON).
        from evalsite.dashboard.study_plan import PlanInputError, study_plan

        study = self.get_object()
        data = request.data if request.method == "POST" else request.query_params
        try:
            return APIResponse(study_plan(study, data))
        except PlanInputError as exc:
            raise ValidationError(exc.errors) from exc

    @extend_schema(
        request=None,
        responses={200: OpenApiTypes.OBJECT},
        summary="The study on the crowd platforms: ids, states, places, submissions, money, audit log",
    )
    @action(detail=True, methods=["get"])
    def platforms(self, request, slug=None):
        from evalsite.platforms import api as platforms_api

        return platforms_api.summary(request, self.get_object())

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        parameters=[
            OpenApiParameter("platform", str, OpenApiParameter.PATH, enum=["prolific", "mturk"]),
            OpenApiParameter(
                "op",
                str,
                OpenApiParameter.PATH,
                enum=["publish", "sync", "review", "bonuses", "pay-bonuses", "resolve-bonus", "add-places", "close"],
            ),
        ],
        responses={
            200: ActionResultSerializer,
            201: ActionResultSerializer,
            409: OpenApiResponse(description="Not allowed in this state, or not set up on this server."),
            502: OpenApiResponse(description="The platform refused or did not answer (see the audit log)."),
        },
        summary="A crowd-platform action (owner only; see evalsite.platforms.api for the bodies)",
    )
    @action(detail=True, methods=["post"], url_path=r"platforms/(?P<platform>[a-z]+)/(?P<op>[a-z-]+)")
    def platform_action(self, request, slug=None, platform=None, op=None):
        from evalsite.platforms import api as platforms_api

        return platforms_api.perform(request, self.get_object(), platform, op)


class _InVisibleStudies:
    """Mixin: rows of the studies the user sees; ``study_path`` is the ORM path to the study."""

    study_path = "study"
    permission_classes = [IsResearcher, StudyWriteAccess]

    def scoped(self, queryset: QuerySet) -> QuerySet:
        return queryset.filter(**{f"{self.study_path}__in": visible_studies(self.request.user)})


class LanguageModelViewSet(_InVisibleStudies, viewsets.ModelViewSet):
    serializer_class = LanguageModelSerializer
    filterset_class = LanguageModelFilter

    def get_queryset(self) -> QuerySet[LanguageModel]:
        return self.scoped(LanguageModel.objects.select_related("study"))

    def perform_create(self, serializer) -> None:
        data = dict(serializer.validated_data)
        study = data.pop("study")
        serializer.instance = run_action(actions.add_model, study, self.request.user, **data)

    def perform_update(self, serializer) -> None:
        model, data = serializer.instance, serializer.validated_data
        serializer.instance = run_action(actions.update_model, model, self.request.user, **data)

    def perform_destroy(self, instance: LanguageModel) -> None:
        run_action(actions.delete_model, instance, self.request.user)

    @extend_schema(
        request=_UPLOAD_REQUEST,
        summary="Add an imported model's answers from a file or JSON list",
        responses={
            201: ActionResultSerializer,
            400: OpenApiResponse(description="Every problem in the file."),
        },
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="responses",
        parser_classes=[MultiPartParser, FormParser, JSONParser],
    )
    def upload_responses(self, request, pk=None):
        model = self.get_object()
        added = _import(actions.import_responses, model, request, "responses.jsonl")
        return APIResponse(
            {
                "status": model.study.status,
                "detail": f"{added} responses added (read as {added.format_label}).",
                "result": {"added": added, "format": added.format},
            },
            status=status.HTTP_201_CREATED,
        )


class PromptViewSet(_InVisibleStudies, viewsets.ReadOnlyModelViewSet):
    serializer_class = PromptSerializer
    filterset_class = PromptFilter

    def get_queryset(self) -> QuerySet[Prompt]:
        return self.scoped(Prompt.objects.select_related("study", "parent"))


class ResponseViewSet(_InVisibleStudies, viewsets.ReadOnlyModelViewSet):
    serializer_class = ResponseSerializer
    filterset_class = ResponseFilter
    pagination_class = IdCursorPagination
    study_path = "prompt__study"

    def get_queryset(self) -> QuerySet[Response]:
        return self.scoped(Response.objects.select_related("prompt__study", "model"))


class ComparisonViewSet(_InVisibleStudies, viewsets.ReadOnlyModelViewSet):
    serializer_class = ComparisonSerializer
    filterset_class = ComparisonFilter
    pagination_class = IdCursorPagination

    def get_queryset(self) -> QuerySet[Comparison]:
        return self.scoped(Comparison.objects.select_related("study", "response_a__model", "response_b__model"))


class RatingViewSet(_InVisibleStudies, viewsets.ReadOnlyModelViewSet):
    serializer_class = RatingSerializer
    filterset_class = RatingFilter
    pagination_class = IdCursorPagination

    def get_queryset(self) -> QuerySet[Rating]:
        return self.scoped(Rating.objects.select_related("study", "rater", "assignment"))


class GenerationJobViewSet(_InVisibleStudies, viewsets.ReadOnlyModelViewSet):
    serializer_class = GenerationJobSerializer
    filterset_class = GenerationJobFilter

    def get_queryset(self) -> QuerySet[GenerationJob]:
        return self.scoped(GenerationJob.objects.select_related("study", "model"))


class ObtainTokenView(APIView):
    """Trade a researcher's username and password for their API token (created on first use)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    parser_classes = [JSONParser, FormParser, MultiPartParser]
    # A few tries a minute per address (REST_FRAMEWORK's "token" rate); wrong passwords also count
    # towards django-axes' lockout of that username from that address.
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "token"

    @extend_schema(
        request=AuthTokenSerializer,
        responses={
            200: inline_serializer("TokenResponse", {"token": serializers.CharField()}),
            400: OpenApiResponse(description="Wrong username or password."),
            403: OpenApiResponse(description="Not a staff user."),
            429: OpenApiResponse(description="Too many attempts from this address, or this username is locked out."),
        },
        auth=[],
        summary="Get your API token",
    )
    def post(self, request):
        credentials = AuthTokenSerializer(data=request.data, context={"request": request})
        if not credentials.is_valid():
            if getattr(request, "axes_locked_out", False) or getattr(request._request, "axes_locked_out", False):
                raise Throttled(detail="Too many failed logins for this username from this address; try again later.")
            raise ValidationError(credentials.errors)
        user = credentials.validated_data["user"]
        if not user.is_staff:
            raise PermissionDenied("API tokens are for researchers (staff users) only.")
        token, _created = Token.objects.get_or_create(user=user)
        return APIResponse({"token": token.key})
