"""What an export row holds and how it is written: CSV (database-rendered cells) and JSON Lines.

Rows come from ``values_list(...).iterator(chunk_size=…)``: on PostgreSQL a server-side cursor,
so memory holds one chunk whatever the study's size, and they are encoded a chunk at a time (one
``bytes`` per chunk, not per row).

For CSV, PostgreSQL renders every cell as text (numbers, booleans, ISO 8601 times, JSON) and
applies the spreadsheet formula guard, so Python only quotes: the rows go straight from the
cursor into ``csv.writer``. That keeps the export within reach of PostgreSQL's own COPY. The
guard prefixes ``'`` to text starting with ``= + - @`` or a tab/CR (OWASP's CSV-injection advice);
quoting follows RFC 4180 (the csv module); the output is UTF-8 with an optional byte-order mark.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from django.db import connections, transaction
from django.db.models import Case, F, Func, QuerySet, TextField, Value, When
from django.db.models.functions import Cast, Coalesce, Concat

from evalsite.rating.models import Rating

CHUNK_ROWS = 2000


@dataclass(frozen=True)
class Column:
    """One exported field: its name in the file, the ORM path it reads, and how it is encoded."""

    name: str
    path: str
    # value: a number; text: free text (formula-guarded, quoted); enum: a fixed vocabulary from the
    # model's choices (never needs quoting or guarding); json; bool; datetime.
    kind: str = "value"


RATING_COLUMNS: tuple[Column, ...] = (
    Column("rating_id", "id"),
    Column("study", "study__slug", "text"),
    Column("comparison_id", "comparison_id"),
    Column("prompt_id", "comparison__prompt__source_id", "text"),
    Column("prompt_category", "comparison__prompt__category", "text"),
    Column("prompt_text", "comparison__prompt__text", "text"),
    Column("turn", "comparison__prompt__turn"),
    Column("response_a_id", "comparison__response_a_id"),
    Column("model_a", "comparison__response_a__model__alias", "text"),
    Column("role_a", "comparison__response_a__model__role", "enum"),
    Column("response_b_id", "comparison__response_b_id"),
    Column("model_b", "comparison__response_b__model__alias", "text"),
    Column("role_b", "comparison__response_b__model__role", "enum"),
    Column("left_side", "assignment__left_side", "enum"),
    # Adaptive allocation: P(this comparison's model pair was drawn) at lease time; empty = uniform.
    Column("selection_probability", "assignment__selection_probability"),
    Column("winner", "winner", "enum"),
    Column("strength", "strength"),
    Column("style", "style", "json"),
    Column("correct_a", "correct_a", "enum"),
    Column("correct_b", "correct_b", "enum"),
    Column("error_spans", "error_spans", "json"),
    Column("rationale", "rationale", "text"),
    Column("rater_id", "rater__pseudonym", "text"),
    Column("rater_platform", "rater__platform", "enum"),
    Column("is_expert", "rater__is_expert", "bool"),
    Column("server_seconds", "server_seconds"),
    Column("client_seconds", "client_seconds"),
    Column("is_attention_check", "comparison__is_attention_check", "bool"),
    Column("expected_winner", "comparison__expected_winner", "enum"),
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
    Column("turn", "comparison__prompt__turn"),
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


# --- CSV: cells rendered by the database ------------------------------------------------------

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# The same characters as a regular expression (real tab and CR characters, not escapes).
_FORMULA_START = "^[-=+@\t\r]"


def guard_formula(text: str) -> str:
    """Neutralise a cell a spreadsheet would run as a formula by prefixing a quote."""
    if text and text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


class IsoDateTime(Func):
    """A timestamp as ISO 8601 text (``2026-01-31T12:00:00.123456+00:00``)."""

    output_field = TextField()

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="(to_json(%(expressions)s) #>> '{}')", **extra)

    def as_sqlite(self, compiler, connection, **extra):
        # SQLite keeps aware datetimes as UTC text with a space: make it the same ISO form.
        return self.as_sql(compiler, connection, template="(replace(%(expressions)s, ' ', 'T') || '+00:00')", **extra)


def csv_cell(column: Column):
    """The SQL expression rendering ``column`` as the CSV cell's text (NULL for an empty cell)."""
    field = F(column.path)
    if column.kind == "text":
        return Case(
            When(**{f"{column.path}__regex": _FORMULA_START}, then=Concat(Value("'"), field)),
            default=field,
            output_field=TextField(),
        )
    if column.kind == "bool":
        return Case(
            When(**{column.path: True}, then=Value("true")),
            When(**{column.path: False}, then=Value("false")),
            default=None,
            output_field=TextField(),
        )
    if column.kind == "datetime":
        return IsoDateTime(field)
    return Cast(field, TextField())


class CsvQuoted(Func):
    """RFC 4180 quoting of a text cell: in double quotes, inner quotes doubled; NULL stays NULL."""

    template = """('"' || replace(%(expressions)s, '"', '""') || '"')"""
    output_field = TextField()


class CsvRecord(Func):
    """One CSV record (without line end): the cells joined by commas, NULL cells left empty."""

    arg_joiner = " || ',' || "
    template = "(%(expressions)s)"
    output_field = TextField()

    def __init__(self, *cells):
        super().__init__(*(Coalesce(cell, Value("")) for cell in cells))


def csv_record(columns: tuple[Column, ...]) -> CsvRecord:
    """The SQL expression rendering a whole CSV record. Text and JSON cells are always quoted."""
    return CsvRecord(*(CsvQuoted(csv_cell(c)) if c.kind in {"text", "json"} else csv_cell(c) for c in columns))


def csv_rows(queryset: QuerySet, columns: tuple[Column, ...]) -> Iterator[str]:
    """``queryset``'s rows as finished CSV records, through a server-side cursor."""
    records = queryset.order_by("id").annotate(csv_record=csv_record(columns))
    return streamed(records.values_list("csv_record", flat=True))


def streamed(values: QuerySet) -> Iterator:
    """Iterate ``values`` through a server-side cursor, ``CHUNK_ROWS`` rows per round trip.

    On PostgreSQL the cursor is read inside a transaction. Outside one, Django declares it
    WITH HOLD, and PostgreSQL then computes and stores the whole result before the first row
    leaves; inside, rows flow as they are fetched, so the database and this process work at the
    same time, and the export reads one consistent snapshot. ``cursor_tuple_fraction = 1``
    plans for reading every row (hash joins) rather than for a fast first page. Other databases
    (the SQLite demo) just iterate: a transaction there would hold a write lock against raters.
    """
    connection = connections[values.db]
    if connection.vendor != "postgresql":
        yield from values.iterator(chunk_size=CHUNK_ROWS)
        return
    with transaction.atomic(using=values.db):
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL cursor_tuple_fraction = 1.0")
        yield from values.iterator(chunk_size=CHUNK_ROWS)


def _chunks(rows: Iterable, size: int = CHUNK_ROWS) -> Iterator[list]:
    rows = iter(rows)
    while chunk := list(itertools.islice(rows, size)):
        yield chunk


def stream_csv(records: Iterable[str], columns: tuple[Column, ...], bom: bool = False) -> Iterator[bytes]:
    """Yield the CSV file (header first) as UTF-8 byte chunks; ``records`` come from :func:`csv_rows`."""
    header = io.StringIO()
    csv.writer(header, lineterminator="\r\n").writerow([c.name for c in columns])
    yield (("\ufeff" if bom else "") + header.getvalue()).encode("utf-8")
    for chunk in _chunks(records):
        chunk.append("")  # so the join ends the last record too
        yield "\r\n".join(chunk).encode("utf-8")


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
        "turn": row["turn"],
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
    """The rows of ``queryset`` as Python values in column order, through a server-side cursor."""
    return streamed(queryset.order_by("id").values_list(*(c.path for c in columns)))
