"""Streaming exports of a study's ratings: CSV, JSONL and preference pairs.

Large studies must export without timeouts or memory growth, so every export is a
``StreamingHttpResponse`` fed by ``values_list(...).iterator(chunk_size=…)``: on PostgreSQL that
is a server-side cursor, so the process holds one chunk of rows at a time whatever the study's
size. Rows are encoded a chunk at a time too (one ``bytes`` per chunk, not one per row), which
keeps the per-row Python overhead low enough to stay within reach of PostgreSQL's own COPY.

CSV cells are made safe to open in a spreadsheet: text starting with ``= + - @`` or a tab/CR gets
a leading ``'`` (OWASP's CSV-injection advice), quoting follows RFC 4180 (the csv module), and
the output is UTF-8, with an optional byte-order mark for Excel (``?bom=1``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

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

from .filters import RatingFilter
from .permissions import IsResearcher, visible_studies

CHUNK_ROWS = 2000
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Column:
    """One exported field: its name in the file, the ORM path it reads, and how it is encoded."""

    name: str
    path: str
    kind: str = "value"  # value | text | json | bool | datetime


RATING_COLUMNS: tuple[Column, ...] = (
    Column("rating_id", "id"),
    Column("study", "study__slug", "text"),
    Column("comparison_id", "comparison_id"),
    Column("prompt_id", "comparison__prompt__source_id", "text"),
    Column("prompt_category", "comparison__prompt__category", "text"),
    Column("prompt_text", "comparison__prompt__text", "text"),
    Column("response_a_id", "comparison__response_a_id"),
    Column("model_a", "comparison__response_a__model__alias", "text"),
    Column("role_a", "comparison__response_a__model__role", "text"),
    Column("response_b_id", "comparison__response_b_id"),
    Column("model_b", "comparison__response_b__model__alias", "text"),
    Column("role_b", "comparison__response_b__model__role", "text"),
    Column("left_side", "assignment__left_side", "text"),
    Column("winner", "winner", "text"),
    Column("strength", "strength"),
    Column("style", "style", "json"),
    Column("correct_a", "correct_a", "text"),
    Column("correct_b", "correct_b", "text"),
    Column("error_spans", "error_spans", "json"),
    Column("rationale", "rationale", "text"),
    Column("rater_id", "rater__pseudonym", "text"),
    Column("rater_platform", "rater__platform", "text"),
    Column("is_expert", "rater__is_expert", "bool"),
    Column("server_seconds", "server_seconds"),
    Column("client_seconds", "client_seconds"),
    Column("is_attention_check", "comparison__is_attention_check", "bool"),
    Column("expected_winner", "comparison__expected_winner", "text"),
    Column("attention_passed", "attention_passed", "bool"),
    Column("flagged", "flagged", "bool"),
    Column("created_at", "created_at", "datetime"),
)

PAIR_COLUMNS: tuple[Column, ...] = (
    Column("rating_id", "id"),
    Column("comparison_id", "comparison_id"),
    Column("prompt_id", "comparison__prompt__source_id"),
    Column("category", "comparison__prompt__category"),
    Column("prompt", "comparison__prompt__text"),
    Column("text_a", "comparison__response_a__text"),
    Column("text_b", "comparison__response_b__text"),
    Column("model_a", "comparison__response_a__model__alias"),
    Column("model_b", "comparison__response_b__model__alias"),
    Column("role_a", "comparison__response_a__model__role"),
    Column("role_b", "comparison__response_b__model__role"),
    Column("winner", "winner"),
    Column("strength", "strength"),
    Column("rater_id", "rater__pseudonym"),
    Column("is_expert", "rater__is_expert"),
    Column("is_attention_check", "comparison__is_attention_check"),
    Column("flagged", "flagged"),
)

TIE_WINNERS = (Rating.Winner.TIE, Rating.Winner.BOTH_BAD)


# --- encoding -------------------------------------------------------------------------------


def guard_formula(text: str) -> str:
    """Neutralise a cell a spreadsheet would run as a formula by prefixing a quote."""
    if text and text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


def _csv_row_encoder(columns: tuple[Column, ...]) -> Callable[[tuple], list]:
    """Build a function turning one ``values_list`` row into CSV cells.

    Only the columns that need work are touched, so numbers and enums cost nothing extra.
    """
    text_idx = [i for i, c in enumerate(columns) if c.kind == "text"]
    json_idx = [i for i, c in enumerate(columns) if c.kind == "json"]
    bool_idx = [i for i, c in enumerate(columns) if c.kind == "bool"]
    time_idx = [i for i, c in enumerate(columns) if c.kind == "datetime"]
    dumps = json.dumps
    prefixes = FORMULA_PREFIXES

    def encode(row: tuple) -> list:
        cells = list(row)
        for i in text_idx:
            value = cells[i]
            if value and value.startswith(prefixes):
                cells[i] = "'" + value
        for i in json_idx:
            cells[i] = dumps(cells[i], ensure_ascii=False)
        for i in bool_idx:
            value = cells[i]
            cells[i] = "" if value is None else ("true" if value else "false")
        for i in time_idx:
            value = cells[i]
            cells[i] = value.isoformat() if value is not None else ""
        return cells

    return encode


def _chunks(rows: Iterable[tuple], size: int = CHUNK_ROWS) -> Iterator[list[tuple]]:
    chunk: list[tuple] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def stream_csv(rows: Iterable[tuple], columns: tuple[Column, ...], bom: bool = False) -> Iterator[bytes]:
    """Yield the CSV file (header first) as UTF-8 byte chunks."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    encode = _csv_row_encoder(columns)
    writer.writerow([c.name for c in columns])
    head = buffer.getvalue()
    yield (("\ufeff" if bom else "") + head).encode("utf-8")
    for chunk in _chunks(rows):
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(map(encode, chunk))
        yield buffer.getvalue().encode("utf-8")


def _json_default(value):
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot export {type(value).__name__}")


def _jsonl_lines(objects: Iterable[dict]) -> Iterator[bytes]:
    dumps = json.dumps
    for chunk in _chunks(objects):
        lines = [dumps(obj, ensure_ascii=False, default=_json_default) for obj in chunk]
        yield ("\n".join(lines) + "\n").encode("utf-8")


def stream_jsonl(rows: Iterable[tuple], columns: tuple[Column, ...]) -> Iterator[bytes]:
    """Yield one JSON object per rating and line; JSON fields stay nested objects."""
    names = [c.name for c in columns]
    return _jsonl_lines(dict(zip(names, row, strict=True)) for row in rows)


def preference_pair(row: dict, mark_ties: bool) -> dict | None:
    """Turn one rating into a (prompt, chosen, rejected) record, or None to leave it out.

    Ties and both-bad verdicts carry no preference; with ``mark_ties`` they are kept with
    ``chosen``/``rejected`` in storage order (A, B) and ``label`` saying what they are.
    """
    winner = row["winner"]
    if winner in TIE_WINNERS and not mark_ties:
        return None
    b_wins = winner == Rating.Winner.B
    first, second = ("b", "a") if b_wins else ("a", "b")
    return {
        "prompt": row["prompt"],
        "chosen": row[f"text_{first}"],
        "rejected": row[f"text_{second}"],
        "label": "preference" if winner not in TIE_WINNERS else str(winner),
        "chosen_model": row[f"model_{first}"],
        "rejected_model": row[f"model_{second}"],
        "chosen_role": row[f"role_{first}"],
        "rejected_role": row[f"role_{second}"],
        "strength": row["strength"],
        "rating_id": row["rating_id"],
        "comparison_id": row["comparison_id"],
        "prompt_id": row["prompt_id"],
        "category": row["category"],
        "rater_id": row["rater_id"],
        "is_expert": row["is_expert"],
        "is_attention_check": row["is_attention_check"],
        "flagged": row["flagged"],
    }


def stream_preference_pairs(rows: Iterable[tuple], mark_ties: bool) -> Iterator[bytes]:
    names = [c.name for c in PAIR_COLUMNS]
    pairs = (preference_pair(dict(zip(names, row, strict=True)), mark_ties) for row in rows)
    return _jsonl_lines(p for p in pairs if p is not None)


def export_rows(queryset: QuerySet, columns: tuple[Column, ...]) -> Iterator[tuple]:
    """The rows of ``queryset`` as tuples in column order, through a server-side cursor."""
    return queryset.order_by("id").values_list(*(c.path for c in columns)).iterator(chunk_size=CHUNK_ROWS)


# --- views ----------------------------------------------------------------------------------


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


_BOM_PARAM = OpenApiParameter(
    "bom", OpenApiTypes.BOOL, description="Start with a UTF-8 byte-order mark (Excel)."
)
_TIES_PARAM = OpenApiParameter(
    "ties",
    OpenApiTypes.STR,
    enum=["exclude", "mark"],
    description="exclude (default): leave out ties and both-bad; mark: keep them with label tie/both_bad.",
)


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
        study = get_object_or_404(visible_studies(self.request.user), slug=self.kwargs["slug"])
        return study.slug, self.filter_queryset(Rating.objects.filter(study=study))

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
        chunks = stream_csv(export_rows(ratings, RATING_COLUMNS), RATING_COLUMNS, bom=bom)
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
        ties = request.query_params.get("ties", "exclude")
        if ties not in {"exclude", "mark"}:
            raise ValidationError({"ties": f"use exclude or mark, not {ties!r}"})
        study_slug, ratings = self.study_ratings()
        if ties == "exclude":
            ratings = ratings.exclude(winner__in=TIE_WINNERS)
        chunks = stream_preference_pairs(export_rows(ratings, PAIR_COLUMNS), mark_ties=ties == "mark")
        return self.streaming(
            chunks, "application/x-ndjson; charset=utf-8", f"{study_slug}-preference-pairs.jsonl"
        )
