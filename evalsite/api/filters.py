"""Query-string filters (django-filter) for the list endpoints and the exports.

Every filter defaults to "include everything": ratings of flagged raters and attention checks are
in a list or export unless the caller asks ``?flagged=false`` / ``?attention_check=false``. That
keeps exports complete and makes exclusion an explicit, documented choice of the analysis.
"""

from datetime import UTC

import django_filters as df
from django import forms
from django.db.models import Q, QuerySet
from django_filters.fields import IsoDateTimeField, RangeField
from django_filters.widgets import DateRangeWidget

from evalsite.rating.models import Rating
from evalsite.studies.models import Comparison, GenerationJob, LanguageModel, Prompt, Response, Study

ROLE_CHOICES = LanguageModel.Role.choices


class UTCDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time, normalised to UTC.

    PostgreSQL refuses UTC offsets beyond ±15:59 that ISO 8601 allows, so the offset is applied
    here; a moment outside the calendar after that is the caller's error, not a server error.
    """

    def to_python(self, value):
        value = super().to_python(value)
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError as exc:
            raise forms.ValidationError("This date-time is out of range.", code="invalid") from exc


class UTCDateTimeRangeField(RangeField):
    widget = DateRangeWidget

    def __init__(self, *args, **kwargs):
        super().__init__((UTCDateTimeField(), UTCDateTimeField()), *args, **kwargs)


class UTCDateTimeFromToRangeFilter(df.IsoDateTimeFromToRangeFilter):
    """``<name>_after`` / ``<name>_before`` in ISO 8601, any UTC offset."""

    field_class = UTCDateTimeRangeField


class StudyFilter(df.FilterSet):
    status = df.MultipleChoiceFilter(choices=Study.Status.choices, help_text="One or more statuses.")

    class Meta:
        model = Study
        fields = ["status"]


class LanguageModelFilter(df.FilterSet):
    study = df.CharFilter(field_name="study__slug", help_text="Study slug.")
    role = df.MultipleChoiceFilter(choices=ROLE_CHOICES)
    backend = df.MultipleChoiceFilter(choices=LanguageModel.Backend.choices)

    class Meta:
        model = LanguageModel
        fields = ["study", "role", "backend"]


class PromptFilter(df.FilterSet):
    study = df.CharFilter(field_name="study__slug", help_text="Study slug.")
    category = df.CharFilter(help_text="Prompt category, e.g. factual-qa.")

    class Meta:
        model = Prompt
        fields = ["study", "category"]


class ResponseFilter(df.FilterSet):
    study = df.CharFilter(field_name="prompt__study__slug", help_text="Study slug.")
    model = df.CharFilter(field_name="model__alias", help_text="Model alias.")
    role = df.MultipleChoiceFilter(field_name="model__role", choices=ROLE_CHOICES)
    category = df.CharFilter(field_name="prompt__category", help_text="Prompt category.")
    failed = df.BooleanFilter(method="filter_failed", help_text="Only responses whose generation failed (or not).")

    class Meta:
        model = Response
        fields = ["study", "model", "role", "category", "failed"]

    def filter_failed(self, queryset: QuerySet, name: str, value: bool | None) -> QuerySet:
        if value is None:
            return queryset
        return queryset.exclude(error="") if value else queryset.filter(error="")


def _either_side(prefix: str, lookup: str, value) -> Q:
    """Match a comparison whose response A or response B satisfies ``lookup``."""
    return Q(**{f"{prefix}response_a__{lookup}": value}) | Q(**{f"{prefix}response_b__{lookup}": value})


class ComparisonFilter(df.FilterSet):
    study = df.CharFilter(field_name="study__slug", help_text="Study slug.")
    model = df.CharFilter(method="filter_model", help_text="Model alias on either side.")
    role = df.ChoiceFilter(choices=ROLE_CHOICES, method="filter_role", help_text="Model role on either side.")
    category = df.CharFilter(field_name="prompt__category", help_text="Prompt category.")
    attention_check = df.BooleanFilter(field_name="is_attention_check")

    class Meta:
        model = Comparison
        fields = ["study", "model", "role", "category", "attention_check"]

    def filter_model(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(_either_side("", "model__alias", value))

    def filter_role(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(_either_side("", "model__role", value))


class RatingFilter(df.FilterSet):
    """Shared by ``/ratings/`` and every export, so a list and its export always agree."""

    study = df.CharFilter(field_name="study__slug", help_text="Study slug.")
    model = df.CharFilter(method="filter_model", help_text="Model alias on either side of the comparison.")
    role = df.ChoiceFilter(choices=ROLE_CHOICES, method="filter_role", help_text="Model role on either side.")
    category = df.CharFilter(field_name="comparison__prompt__category", help_text="Prompt category.")
    rater = df.CharFilter(field_name="rater__pseudonym", help_text="Rater pseudonym (the exported rater_id).")
    created = UTCDateTimeFromToRangeFilter(
        field_name="created_at", help_text="created_after / created_before, ISO 8601 date-times."
    )
    winner = df.MultipleChoiceFilter(choices=Rating.Winner.choices)
    flagged = df.BooleanFilter(help_text="true: only flagged ratings; false: leave them out; absent: both.")
    attention_check = df.BooleanFilter(
        field_name="comparison__is_attention_check",
        help_text="true: only attention checks; false: leave them out; absent: both.",
    )
    rater_blocked = df.BooleanFilter(field_name="rater__blocked", help_text="Filter on the rater being blocked.")
    expert = df.BooleanFilter(field_name="rater__is_expert", help_text="Staff expert raters only (or none).")

    class Meta:
        model = Rating
        fields = [
            "study",
            "model",
            "role",
            "category",
            "rater",
            "created",
            "winner",
            "flagged",
            "attention_check",
            "rater_blocked",
            "expert",
        ]

    def filter_model(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(_either_side("comparison__", "model__alias", value))

    def filter_role(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(_either_side("comparison__", "model__role", value))


class GenerationJobFilter(df.FilterSet):
    study = df.CharFilter(field_name="study__slug", help_text="Study slug.")
    model = df.CharFilter(field_name="model__alias", help_text="Model alias.")
    status = df.MultipleChoiceFilter(choices=GenerationJob.Status.choices)

    class Meta:
        model = GenerationJob
        fields = ["study", "model", "status"]
