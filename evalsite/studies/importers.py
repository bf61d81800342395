"""Import prompts and imported models' responses from JSONL or CSV files.

All-or-nothing: the whole file is read, parsed and validated first, and only a file without a
single error is written, in one transaction. Every problem found (up to a cap) is reported in
one :class:`ImportFileError` whose message names the file and the line, so a researcher can fix
the file in one pass.

Prompt rows: ``id``, ``prompt`` (or ``text``), optional ``category``, ``reference_answers``
(a JSON list; in CSV also ``|``-separated) and ``metadata`` (a JSON object).
Response rows: ``id`` (the prompt's id), ``response`` (or ``text`` / ``output``), optional
``sample_index``.
"""

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from django.db import IntegrityError, transaction
from django.db.models import Max

from .lifecycle import prompts_editable
from .models import LanguageModel, Prompt, Response, Study

PROMPT_COLUMNS = {"id", "prompt", "text", "category", "reference_answers", "metadata"}
PROMPT_TEXT_COLUMNS = ("prompt", "text")
RESPONSE_COLUMNS = {"id", "response", "text", "output", "sample_index"}
RESPONSE_TEXT_COLUMNS = ("response", "text", "output")

Source = str | Path | IO[bytes]


@dataclass(frozen=True)
class ImportLimits:
    """Bounds on what one import may read; a bigger file is refused before anything is parsed."""

    max_bytes: int = 50 * 1024 * 1024
    max_rows: int = 100_000
    max_errors: int = 20


DEFAULT_LIMITS = ImportLimits()


class ImportFileError(ValueError):
    """Everything wrong with one file. ``str()`` lists the problems, one per line."""

    def __init__(self, filename: str, problems: list[tuple[int | None, str]] | None = None):
        self.filename = filename
        self.problems: list[tuple[int | None, str]] = list(problems or [])
        self.truncated = False
        super().__init__(filename)

    @property
    def messages(self) -> list[str]:
        """One ``"file: line N: problem"`` string per problem."""
        out = [
            f"{self.filename}: line {ln}: {msg}" if ln else f"{self.filename}: {msg}"
            for ln, msg in self.problems
        ]
        if self.truncated:
            out.append(f"{self.filename}: (stopped after {len(self.problems)} errors; fix these and retry)")
        return out

    def __str__(self) -> str:
        return "\n".join(self.messages)


class _Problems:
    """Collects problems up to a cap; raising :class:`_TooMany` stops parsing at the cap."""

    class TooMany(Exception):
        pass

    def __init__(self, filename: str, cap: int):
        self.error = ImportFileError(filename)
        self.cap = cap

    def add(self, line: int | None, message: str) -> None:
        if len(self.error.problems) >= self.cap:
            self.error.truncated = True
            raise self.TooMany
        self.error.problems.append((line, message))

    def raise_if_any(self) -> None:
        if self.error.problems:
            raise self.error


@dataclass
class _Row:
    line: int
    values: dict[str, Any]


# --- reading ------------------------------------------------------------------------------


def _read_bytes(source: Source, limits: ImportLimits) -> tuple[str, bytes]:
    """Return ``(display name, content)``, reading at most one byte past the size limit."""
    if isinstance(source, str | Path):
        path = Path(source)
        with path.open("rb") as fh:
            return path.name, fh.read(limits.max_bytes + 1)
    name = Path(getattr(source, "name", None) or "upload").name
    if hasattr(source, "seek"):
        source.seek(0)
    return name, source.read(limits.max_bytes + 1)


def _detect_format(name: str, text: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    return "jsonl" if text.lstrip().startswith("{") else "csv"


def _jsonl_rows(text: str, problems: _Problems) -> Iterator[_Row]:
    # Split on "\n" only: str.splitlines() also splits on U+2028, U+2029, U+0085 and other
    # characters that JSON allows unescaped inside strings, which would break valid rows apart.
    for line_no, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.add(line_no, f"broken JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(value, dict):
            problems.add(line_no, f"expected a JSON object, got {type(value).__name__}")
            continue
        yield _Row(line_no, value)


def _csv_rows(text: str, allowed: set[str], problems: _Problems) -> Iterator[_Row]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except csv.Error as exc:
        problems.add(1, f"unreadable CSV header ({exc})")
        return
    header = [h.strip() for h in header]
    if not _check_columns(set(header), allowed, 1, problems):
        return
    if len(set(header)) != len(header):
        problems.add(1, "a column name appears twice in the header")
        return
    start = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problems.add(start, f"unreadable CSV ({exc})")
            return
        line_no, start = start, reader.line_num + 1
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            problems.add(line_no, f"{len(cells)} fields, but the header has {len(header)} columns")
            continue
        yield _Row(line_no, dict(zip(header, cells, strict=True)))


def _check_columns(columns: set[str], allowed: set[str], line: int, problems: _Problems) -> bool:
    unknown = sorted(columns - allowed)
    if unknown:
        problems.add(
            line, f"unknown column(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(allowed))}"
        )
        return False
    return True


def _parse_file(source: Source, allowed: set[str], limits: ImportLimits, fmt: str | None):
    """Read, decode and split a file into rows; returns ``(name, digest, rows, problems)``."""
    name, data = _read_bytes(source, limits)
    problems = _Problems(name, limits.max_errors)
    rows: list[_Row] = []
    if len(data) > limits.max_bytes:
        limit = f"{limits.max_bytes:,}"
        problems.add(None, f"file is larger than the {limit}-byte limit; split it into smaller files")
        return name, "", rows, problems
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        problems.add(line, f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8")
        return name, "", rows, problems
    if not text.strip():
        problems.add(None, "file is empty")
        return name, "", rows, problems
    fmt = fmt or _detect_format(name, text)
    if fmt not in {"jsonl", "csv"}:
        raise ValueError(f"unknown format {fmt!r}: use 'jsonl' or 'csv'")
    try:
        rows_iter = _jsonl_rows(text, problems) if fmt == "jsonl" else _csv_rows(text, allowed, problems)
        for row in rows_iter:
            if len(rows) >= limits.max_rows:
                problems.add(row.line, f"more than {limits.max_rows:,} rows; split the file")
                break
            if fmt == "jsonl" and not _check_columns(set(row.values), allowed, row.line, problems):
                continue
            rows.append(row)
    except _Problems.TooMany:
        pass
    if not rows and not problems.error.problems:
        problems.add(None, "file has a header but no rows" if fmt == "csv" else "file is empty")
    return name, hashlib.sha256(data).hexdigest(), rows, problems


# --- field parsing ------------------------------------------------------------------------


def _has_nul(value: Any) -> bool:
    """True if a string anywhere in ``value`` (a JSON value; dict keys too) contains NUL."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return False


def _nul_free(row: _Row, what: str, value: Any, problems: _Problems) -> bool:
    """Report a NUL character in ``value``: PostgreSQL text and jsonb cannot store it."""
    if _has_nul(value):
        problems.add(row.line, f"{what} contains a NUL character (\\u0000); remove it")
        return False
    return True


def _text_field(row: _Row, columns: tuple[str, ...], what: str, problems: _Problems) -> str | None:
    present = [c for c in columns if c in row.values]
    if len(present) > 1:
        both = f"{present[0]!r} and {present[1]!r}"
        problems.add(row.line, f"both {both} given; use one of them for the {what}")
        return None
    if not present:
        problems.add(row.line, f"missing {what} (column {' or '.join(map(repr, columns))})")
        return None
    value = row.values[present[0]]
    if not isinstance(value, str):
        problems.add(row.line, f"{present[0]!r} must be text, got {type(value).__name__}")
        return None
    if not value.strip():
        problems.add(row.line, f"empty {what}")
        return None
    if not _nul_free(row, what, value, problems):
        return None
    return value


def _id_field(row: _Row, problems: _Problems) -> str | None:
    value = row.values.get("id")
    if isinstance(value, bool) or not isinstance(value, str | int):
        message = "missing id" if value is None else f"id must be text or a number, got {value!r}"
        problems.add(row.line, message)
        return None
    value = str(value).strip()
    if not value:
        problems.add(row.line, "empty id")
        return None
    if len(value) > 200:
        problems.add(row.line, "id is longer than 200 characters")
        return None
    if not _nul_free(row, "id", value, problems):
        return None
    return value


def _reference_answers(row: _Row, problems: _Problems) -> list[str] | None:
    value = row.values.get("reference_answers")
    if value is None:
        return []
    if isinstance(value, str):
        stripped = value.strip()
        if not stripped:
            return []
        if stripped.startswith("["):
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError as exc:
                problems.add(row.line, f"reference_answers is not a valid JSON list ({exc.msg})")
                return None
        else:
            # "a|b" in CSV: split, then checked like a JSON list (a NUL inside must not slip through).
            value = [part.strip() for part in stripped.split("|")]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.add(row.line, "reference_answers must be a list of strings")
        return None
    if not _nul_free(row, "reference_answers", value, problems):
        return None
    return [v for v in value if v.strip()]


def _metadata(row: _Row, problems: _Problems) -> dict | None:
    value = row.values.get("metadata")
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            problems.add(row.line, f"metadata is not valid JSON ({exc.msg})")
            return None
    if not isinstance(value, dict):
        problems.add(row.line, "metadata must be a JSON object")
        return None
    if not _nul_free(row, "metadata", value, problems):
        return None
    return value


def _category(row: _Row, problems: _Problems) -> str | None:
    value = row.values.get("category") or ""
    if not isinstance(value, str):
        problems.add(row.line, "category must be text")
        return None
    value = value.strip()
    if len(value) > 64:
        problems.add(row.line, "category is longer than 64 characters")
        return None
    if not _nul_free(row, "category", value, problems):
        return None
    return value


def _sample_index(row: _Row, problems: _Problems) -> int | None:
    value = row.values.get("sample_index", 0)
    if isinstance(value, str):
        value = value.strip() or "0"
        # ASCII digits only: str.isdigit() is also True for "²" (which int() rejects) and other
        # scripts' digits; more than 5 digits is out of range anyway (and int() caps the length).
        if not (value.isascii() and value.isdigit()) or len(value.lstrip("0")) > 5:
            message = f"sample_index must be a whole number from 0 to 32767, got {value!r}"
            problems.add(row.line, message)
            return None
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 32767:
        problems.add(row.line, f"sample_index must be a whole number from 0 to 32767, got {value!r}")
        return None
    return value


def _first_seen(seen: dict, key, line: int, label: str, problems: _Problems) -> bool:
    """Record ``key``; report a duplicate (naming the earlier line) and return False if seen."""
    if key in seen:
        problems.add(line, f"duplicate {label} (first on line {seen[key]})")
        return False
    seen[key] = line
    return True


# --- the two imports ----------------------------------------------------------------------


def _frozen_message(study: Study, what: str) -> str:
    return (
        f"study {study.slug!r} is {study.status}: its {what} cannot be edited while ratings refer to them "
        "(pause or reopen the study first)"
    )


def _conflict_error(name: str, what: str) -> ImportFileError:
    """A unique constraint fired at write time: a writer that does not take the study lock
    (an admin edit, another process) added the same rows after validation."""
    message = (
        f"some of these {what} were added to the study at the same time by another upload or edit; "
        "nothing was imported (retry to see which)"
    )
    return ImportFileError(name, [(None, message)])


def import_prompts(
    study: Study, source: Source, *, fmt: str | None = None, limits: ImportLimits = DEFAULT_LIMITS
) -> int:
    """Add the prompts in ``source`` (a path or a binary file) to ``study``; return how many.

    Raises :class:`ImportFileError` (nothing written) if anything in the file is wrong, if an id
    repeats in the file or already exists in the study, or if the study's prompts are frozen.
    """
    name, _digest, rows, problems = _parse_file(source, PROMPT_COLUMNS, limits, fmt)
    try:
        with transaction.atomic():
            # Lock the study *before* reading its existing ids and status: a concurrent upload of
            # the same ids (or a launch) waits here, and we then see what it committed.
            locked = Study.objects.select_for_update().get(pk=study.pk)
            parsed = _validate_prompts(locked, rows, problems)
            problems.raise_if_any()
            last = locked.prompts.aggregate(m=Max("position"))["m"]
            start = 0 if last is None else last + 1
            for offset, prompt in enumerate(parsed):
                prompt.position = start + offset
            Prompt.objects.bulk_create(parsed, batch_size=1000)
    except IntegrityError as exc:
        raise _conflict_error(name, "prompt ids") from exc
    return len(parsed)


def _validate_prompts(study: Study, rows: list[_Row], problems: _Problems) -> list[Prompt]:
    """Check every row against the (locked) study; return the prompts to write."""
    existing = set(study.prompts.values_list("source_id", flat=True))
    seen: dict[str, int] = {}
    parsed: list[Prompt] = []
    try:
        if not prompts_editable(study):
            problems.add(None, _frozen_message(study, "prompts"))
        for row in rows:
            source_id = _id_field(row, problems)
            text = _text_field(row, PROMPT_TEXT_COLUMNS, "prompt", problems)
            category = _category(row, problems)
            refs = _reference_answers(row, problems)
            metadata = _metadata(row, problems)
            if source_id is None:
                continue
            if source_id in existing:
                problems.add(row.line, f"id {source_id!r} already exists in study {study.slug!r}")
                continue
            if not _first_seen(seen, source_id, row.line, f"id {source_id!r}", problems):
                continue
            if None in (text, category, refs, metadata):
                continue
            parsed.append(
                Prompt(
                    study=study,
                    source_id=source_id,
                    text=text,
                    category=category,
                    reference_answers=refs,
                    metadata=metadata,
                )
            )
    except _Problems.TooMany:
        pass
    return parsed


def import_responses(
    model: LanguageModel, source: Source, *, fmt: str | None = None, limits: ImportLimits = DEFAULT_LIMITS
) -> int:
    """Add ``model``'s answers from ``source`` (a path or a binary file); return how many.

    Only for models whose backend is ``imported``. Each row names a prompt of the model's study
    by its ``id``. Raises :class:`ImportFileError` (nothing written) on any problem, including
    unknown prompt ids and answers that already exist.
    """
    name, digest, rows, problems = _parse_file(source, RESPONSE_COLUMNS, limits, fmt)
    try:
        with transaction.atomic():
            # As for prompts: lock the study before reading its prompts and existing answers, so
            # two concurrent uploads of the same answers are checked one after the other.
            locked = Study.objects.select_for_update().get(pk=model.study_id)
            parsed = _validate_responses(model, locked, name, digest, rows, problems)
            problems.raise_if_any()
            Response.objects.bulk_create(parsed, batch_size=1000)
    except IntegrityError as exc:
        raise _conflict_error(name, "answers") from exc
    return len(parsed)


def _validate_responses(
    model: LanguageModel, study: Study, name: str, digest: str, rows: list[_Row], problems: _Problems
) -> list[Response]:
    """Check every row against the (locked) study and the model's answers; return what to write."""
    prompt_ids = dict(study.prompts.values_list("source_id", "id"))
    existing = set(model.responses.values_list("prompt_id", "sample_index"))
    seen: dict[tuple[str, int], int] = {}
    parsed: list[Response] = []
    try:
        if model.backend != LanguageModel.Backend.IMPORTED:
            problems.add(
                None,
                f"model {model.alias!r} has backend {model.backend!r}; only 'imported' models take a file",
            )
        if not prompts_editable(study):
            problems.add(None, _frozen_message(study, "responses"))
        for row in rows:
            source_id = _id_field(row, problems)
            text = _text_field(row, RESPONSE_TEXT_COLUMNS, "response", problems)
            sample = _sample_index(row, problems)
            if source_id is None or sample is None:
                continue
            if source_id not in prompt_ids:
                message = f"unknown prompt id {source_id!r}: study {study.slug!r} has no such prompt"
                problems.add(row.line, message)
                continue
            if (prompt_ids[source_id], sample) in existing:
                message = f"model {model.alias!r} already has sample {sample} for prompt {source_id!r}"
                problems.add(row.line, message)
                continue
            label = f"response for prompt {source_id!r}, sample {sample}"
            if not _first_seen(seen, (source_id, sample), row.line, label, problems) or text is None:
                continue
            parsed.append(
                Response(
                    prompt_id=prompt_ids[source_id],
                    model=model,
                    sample_index=sample,
                    text=text,
                    backend=LanguageModel.Backend.IMPORTED,
                    fingerprint=digest,
                    generation_params={"imported_from": name, "line": row.line},
                )
            )
    except _Problems.TooMany:
        pass
    return parsed
