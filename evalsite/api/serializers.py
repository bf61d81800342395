"""Serializers: what each API object looks like, and the validation a scripted write goes through.

Writes are limited to what a researcher scripts (studies and their models); everything the
workers and raters produce (responses, comparisons, ratings, jobs) is read-only here. Database
constraints are mirrored as field validation so a bad request gets a 400 with a message, not an
IntegrityError.
"""

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied

from evalsite.rating.models import Rating
from evalsite.studies.actions import check_design_editable
from evalsite.studies.models import Comparison, GenerationJob, LanguageModel, Prompt, Response, Study
from evalsite.studies.rating_form import rating_form_problems

from .permissions import can_change_study, visible_studies


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def storable_json(value, name: str):
    """PostgreSQL's jsonb cannot hold a NUL character; refuse it here rather than fail on save."""
    if _has_nul(value):
        raise serializers.ValidationError(f"{name} contains a NUL character (\\u0000); remove it.")
    return value


class VisibleStudyField(serializers.SlugRelatedField):
    """A study named by slug, chosen among the studies the requesting user can see."""

    def __init__(self, **kwargs):
        super().__init__(slug_field="slug", **kwargs)

    def get_queryset(self):
        request = self.context.get("request")
        return visible_studies(request.user if request else None)


class StudySerializer(serializers.ModelSerializer):
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True)
    shared_with = serializers.SlugRelatedField(
        slug_field="username",
        many=True,
        required=False,
        queryset=get_user_model().objects.filter(is_staff=True),
        help_text="Usernames of staff users who may read this study.",
    )
    status = serializers.CharField(read_only=True, help_text="Changed only through the launch/pause/close actions.")

    class Meta:
        model = Study
        fields = [
            "slug",
            "title",
            "public_title",
            "description",
            "instructions",
            "consent_text",
            "owner",
            "shared_with",
            "status",
            "pairing",
            "redundancy",
            "tasks_per_rater",
            "expert_redundancy",
            "expert_share",
            "lease_seconds",
            "attention_check_rate",
            "min_seconds_per_task",
            "max_attention_failures",
            "allocation",
            "target_halfwidth",
            "stop_when_precise",
            "stopped_reason",
            "tie_rule",
            "completion_code",
            "completion_url",
            "rating_form",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["stopped_reason", "created_at", "updated_at"]

    def validate_slug(self, value: str) -> str:
        # Rater links and pseudonyms are derived from the slug; renaming would split raters.
        if self.instance is not None and value != self.instance.slug:
            raise serializers.ValidationError("A study's slug cannot change once it is created.")
        return value

    def validate_rating_form(self, value):
        # The model's rules (Study.clean), early: a typo such as "correctnes" is a 400 naming the key.
        if problems := rating_form_problems(value):
            raise serializers.ValidationError(problems)
        return storable_json(value, "rating_form")


class LanguageModelSerializer(serializers.ModelSerializer):
    study = VisibleStudyField(help_text="Slug of the study this model belongs to.")

    class Meta:
        model = LanguageModel
        fields = ["id", *LanguageModel.CONFIG_FIELDS, "fingerprint", "created_at"]
        read_only_fields = ["fingerprint", "created_at"]
        # Ranges, stop-sequence and engine-option shapes come from the model's field validators.
        extra_kwargs = {"samples_per_prompt": {"min_value": 1}}

    def validate_stop(self, value):
        return storable_json(value, "stop")

    def validate_engine_options(self, value):
        return storable_json(value, "engine_options")

    def validate_study(self, study: Study) -> Study:
        if self.instance is not None and study.pk != self.instance.study_id:
            raise serializers.ValidationError(
                "A model cannot move to another study once created; add a new one there instead."
            )
        user = self.context["request"].user
        if not can_change_study(user, study):
            raise PermissionDenied("Only the study's owner can add or change its models.")
        return study

    def validate(self, attrs: dict) -> dict:
        # Checked on every write, not only when ``study`` is in the body: a PATCH of a live
        # study's model (its role, say) would change pairing and analysis mid-collection. The
        # action's own check, early, so the answer is a 400 naming the problem; the action
        # (views.perform_*) checks again under the study's lock.
        study = attrs.get("study") or (self.instance.study if self.instance is not None else None)
        if study is not None:
            check_design_editable(study, "models are")
        return attrs


class PromptSerializer(serializers.ModelSerializer):
    study = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    # A conversation: its fixed earlier turns, or the previous turn (by its id) each model answered itself.
    parent = serializers.SlugRelatedField(slug_field="source_id", read_only=True, allow_null=True)

    class Meta:
        model = Prompt
        fields = [
            "id", "study", "source_id", "text", "category", "reference_answers", "metadata", "position",
            "turn", "history", "parent",
        ]
        read_only_fields = fields


class ResponseSerializer(serializers.ModelSerializer):
    study = serializers.CharField(source="prompt.study.slug", read_only=True)
    prompt_source_id = serializers.CharField(source="prompt.source_id", read_only=True)
    model = serializers.CharField(source="model.alias", read_only=True)
    role = serializers.CharField(source="model.role", read_only=True)

    class Meta:
        model = Response
        fields = [
            "id",
            "study",
            "prompt",
            "prompt_source_id",
            "model",
            "role",
            "sample_index",
            "text",
            "prompt_tokens",
            "completion_tokens",
            "finish_reason",
            "latency_ms",
            "generation_params",
            "backend",
            "fingerprint",
            "error",
            "created_at",
        ]
        read_only_fields = fields


class ComparisonSerializer(serializers.ModelSerializer):
    study = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    model_a = serializers.CharField(source="response_a.model.alias", read_only=True)
    model_b = serializers.CharField(source="response_b.model.alias", read_only=True)

    class Meta:
        model = Comparison
        fields = [
            "id",
            "study",
            "prompt",
            "response_a",
            "response_b",
            "model_a",
            "model_b",
            "is_attention_check",
            "expected_winner",
            "n_live",
            "n_submitted",
            "created_at",
        ]
        read_only_fields = fields


@extend_schema_field({"type": "string", "enum": [*Rating.Correctness.values, ""]}, component_name="Correctness")
class CorrectnessField(serializers.CharField):
    """Documented inline so both sides share one enum without a settings override."""


class RatingSerializer(serializers.ModelSerializer):
    correct_a = CorrectnessField(read_only=True)
    correct_b = CorrectnessField(read_only=True)
    study = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    rater = serializers.CharField(source="rater.pseudonym", read_only=True, help_text="Pseudonymous rater id.")
    is_expert = serializers.BooleanField(source="rater.is_expert", read_only=True)
    left_side = serializers.CharField(
        source="assignment.left_side",
        read_only=True,
        help_text="Which stored response (A or B) the rater saw on the left.",
    )

    class Meta:
        model = Rating
        fields = [
            "id",
            "study",
            "comparison",
            "rater",
            "is_expert",
            "left_side",
            "winner",
            "strength",
            "style",
            "correct_a",
            "correct_b",
            "error_spans",
            "rationale",
            "server_seconds",
            "client_seconds",
            "attention_passed",
            "flagged",
            "created_at",
        ]
        read_only_fields = fields


class GenerationJobSerializer(serializers.ModelSerializer):
    study = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    model = serializers.CharField(source="model.alias", read_only=True)
    percent = serializers.FloatField(read_only=True)

    class Meta:
        model = GenerationJob
        fields = [
            "id",
            "study",
            "model",
            "status",
            "total",
            "done",
            "failed",
            "percent",
            "tokens_per_second",
            "eta_seconds",
            "last_error",
            "created_at",
            "started_at",
            "finished_at",
            "updated_at",
        ]
        read_only_fields = fields


class RowsUploadSerializer(serializers.Serializer):
    """Either a file (multipart) or a JSON list of row objects; a bare JSON list body works too."""

    file = serializers.FileField(required=False, help_text="CSV or JSONL file (.csv, .jsonl).")
    rows = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        allow_empty=False,
        help_text='JSON list of rows, e.g. [{"id": "p1", "text": "...", "category": "factual-qa"}].',
    )

    def validate(self, attrs):
        if bool(attrs.get("file")) == bool(attrs.get("rows")):
            raise serializers.ValidationError("Send exactly one of `file` (multipart) or `rows` (a JSON list).")
        return attrs


class ActionResultSerializer(serializers.Serializer):
    """What a study action answers: the study's status afterwards and a short summary."""

    status = serializers.CharField()
    detail = serializers.CharField()
    result = serializers.JSONField(required=False)


class ExpertInvitationSerializer(serializers.Serializer):
    """The body of ``invite-expert``: an optional label for the expert (shown to researchers only)."""

    label = serializers.CharField(required=False, allow_blank=True, max_length=100, default="")
