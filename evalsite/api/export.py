"""Streaming export endpoints: a study's ratings as CSV or JSON Lines, and preference pairs.

Large studies must export without timeouts or memory growth: every export is a
``StreamingHttpResponse`` over a server-side cursor (see :mod:`.export_formats` for what a row
holds and how it is encoded). The filters are the ``/ratings/`` list's own (:class:`RatingFilter`),
so a list and its export always agree.
"""

import json
from collections.abc import Iterator

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import BaseRenderer, JSONRenderer

from evalsite.rating.models import Rating

from .export_formats import (
    PAIR_COLUMNS,
    RATING_COLUMNS,
    TIE_WINNERS,
    csv_rows,
    export_rows,
    stream_csv,
    stream_jsonl,
    stream_preference_pairs,
)
from .filters import RatingFilter
from .permissions import IsResearcher, visible_studies


class _PassthroughRenderer(BaseRenderer):
    """Lets content negotiation accept the export's media type; errors are still JSON text."""

    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, bytes):
            return data
        return json.dumps(data, ensure_ascii=False).encode("utf-8")


class CSVRenderer(_PassthroughRenderer):
    media_type = "text/csv"
    format = "csv"


class JSONLRenderer(_PassthroughRenderer):
    media_type = "application/x-ndjson"
    format = "jsonl"


class ExportSchema(AutoSchema):
    """Document the rating filters on the export endpoints although they are not list views."""

    def get_filter_backends(self):
        return getattr(self.view, "filter_backends", [])


_BOM_PARAM = OpenApiParameter("bom", OpenApiTypes.BOOL, description="Start with a UTF-8 byte-order mark (Excel).")
_TIES_PARAM = OpenApiParameter(
    "ties",
    OpenApiTypes.STR,
    enum=["exclude", "mark"],
    description="exclude: leave out ties and both-bad; mark: keep them with label tie/both_bad. "
    "Default: the study's tie_rule.",
)


def tie_rule(request, study) -> str:
    """The export's ``ties=`` when given (checked), else the study's own rule."""
    ties = request.query_params.get("ties")
    if ties is None:
        return study.tie_rule
    if ties not in {"exclude", "mark"}:
        raise ValidationError({"ties": f"use exclude or mark, not {ties!r}"})
    return ties


def _flag(request, name: str) -> bool:
    raw = request.query_params.get(name, "")
    if raw.lower() in {"", "0", "false", "no"}:
        return False
    if raw.lower() in {"1", "true", "yes"}:
        return True
    raise ValidationError({name: f"use true or false, not {raw!r}"})


class _StudyExport(generics.GenericAPIView):
    """Common part: the study (by slug, among those the user sees) and its filtered ratings."""

    permission_classes = [IsResearcher]
    filter_backends = [DjangoFilterBackend]
    filterset_class = RatingFilter
    pagination_class = None
    schema = ExportSchema()
    suffix = ""

    def get_queryset(self) -> QuerySet:
        return Rating.objects.all()

    def study_ratings(self) -> tuple[str, QuerySet]:
        study = self.study()
        return study.slug, self.filter_queryset(Rating.objects.filter(study=study))

    def study(self):
        return get_object_or_404(visible_studies(self.request.user), slug=self.kwargs["slug"])

    def streaming(self, chunks: Iterator[bytes], content_type: str, filename: str) -> StreamingHttpResponse:
        response = StreamingHttpResponse(chunks, content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        response["Cache-Control"] = "no-store"
        return response


class RatingsCSVExport(_StudyExport):
    renderer_classes = [JSONRenderer, CSVRenderer]

    @extend_schema(
        operation_id="studies_ratings_csv",
        summary="Export the study's ratings as CSV (streamed, one row per rating)",
        parameters=[_BOM_PARAM],
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY),
            404: OpenApiResponse(description="No such study, or not visible to you."),
        },
    )
    def get(self, request, slug: str) -> StreamingHttpResponse:
        bom = _flag(request, "bom")
        study_slug, ratings = self.study_ratings()
        chunks = stream_csv(csv_rows(ratings, RATING_COLUMNS), RATING_COLUMNS, bom=bom)
        return self.streaming(chunks, "text/csv; charset=utf-8", f"{study_slug}-ratings.csv")


class RatingsJSONLExport(_StudyExport):
    renderer_classes = [JSONRenderer, JSONLRenderer]

    @extend_schema(
        operation_id="studies_ratings_jsonl",
        summary="Export the study's ratings as JSON Lines (streamed, one object per rating)",
        responses={
            (200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.BINARY),
            404: OpenApiResponse(description="No such study, or not visible to you."),
        },
    )
    def get(self, request, slug: str) -> StreamingHttpResponse:
        study_slug, ratings = self.study_ratings()
        chunks = stream_jsonl(export_rows(ratings, RATING_COLUMNS), RATING_COLUMNS)
        return self.streaming(chunks, "application/x-ndjson; charset=utf-8", f"{study_slug}-ratings.jsonl")


class PreferencePairsExport(_StudyExport):
    renderer_classes = [JSONRenderer, JSONLRenderer]

    @extend_schema(
        operation_id="studies_preference_pairs_jsonl",
        summary="Export (prompt, chosen, rejected) pairs for DPO / reward-model training (JSON Lines)",
        parameters=[_TIES_PARAM],
        responses={
            (200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.BINARY),
            404: OpenApiResponse(description="No such study, or not visible to you."),
        },
    )
    def get(self, request, slug: str) -> StreamingHttpResponse:
        ties = tie_rule(request, self.study())
        study_slug, ratings = self.study_ratings()
        if ties == "exclude":
            ratings = ratings.exclude(winner__in=TIE_WINNERS)
        chunks = stream_preference_pairs(export_rows(ratings, PAIR_COLUMNS), mark_ties=ties == "mark")
        return self.streaming(chunks, "application/x-ndjson; charset=utf-8", f"{study_slug}-preference-pairs.jsonl")
