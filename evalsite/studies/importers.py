"""Import prompts and imported models' responses from JSONL or CSV files.

All-or-nothing: the whole file is read, parsed and validated first, and only a file without a
single error is written, in one transaction. Every problem found (up to a cap) is reported in
one :class:`ImportFileError` whose message names the file and the line, so a researcher can fix
the file in one pass.

Prompt rows: ``id``, ``prompt`` (or ``text``), optional ``category``, ``reference_answers``
(a JSON list; in CSV also ``|``-separated) and ``metadata`` (a JSON object).
Response rows: ``id`` (the prompt's id), ``response`` (or ``text`` / ``output``), optional
``sample_index``.

Conversations: a prompt row may add ``history`` (the earlier turns, a JSON list of ``{role,
content}``) or ``parent`` (the id of the previous turn, which each model answers itself; see
:mod:`.conversations`). The field's formats (MT-bench, Arena-Hard, AlpacaEval, ShareGPT, OpenAI
``messages``, as JSONL, CSV or Parquet) are recognised by :mod:`.formats` and turned into these
rows first; the result says which format was read.
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

from evalsite import edge

from . import formats
from .conversations import history_problem, user_turns
from .lifecycle import prompts_editable
from .models import LanguageModel, Prompt, Response, Study

PROMPT_COLUMNS = {"id", "prompt", "text", "category", "reference_answers", "metadata", "history", "parent"}
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


class ImportResult(int):
    """How many rows an import added (an ``int``), and which format it read the file as."""

    format: str = "evalsite"
    format_label: str = "evalsite"

    def __new__(cls, count: int, fmt: formats.Format | None = None):
        result = super().__new__(cls, count)
        if fmt is not None:
            result.format, result.format_label = fmt.key, fmt.label
        return result


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
    from_csv: bool = False  # its columns are the header's (line 1)


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
            value = edge.decode(line, "this line")  # NaN, huge numbers, deep nesting: refused
        except json.JSONDecodeError as exc:
            problems.add(line_no, f"broken JSON ({exc.msg} at column {exc.colno})")
            continue
        except edge.EdgeError as exc:
            problems.add(line_no, str(exc))
            continue
        if not isinstance(value, dict):
            problems.add(line_no, f"expected a JSON object, got {type(value).__name__}")
            continue
        yield _Row(line_no, value)


def _csv_rows(text: str, allowed: set[str] | None, problems: _Problems) -> Iterator[_Row]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except csv.Error as exc:
        problems.add(1, f"unreadable CSV header ({exc})")
        return
    header = [h.strip() for h in header]
    if allowed is not None and not _check_columns(set(header), allowed, 1, problems):
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
        yield _Row(line_no, dict(zip(header, cells, strict=True)), from_csv=True)


def _check_columns(columns: set[str], allowed: set[str], line: int, problems: _Problems) -> bool:
    unknown = sorted(columns - allowed)
    if unknown:
        problems.add(
            line, f"unknown column(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(allowed))}"
        )
        return False
    return True


def _parse_file(source: Source, allowed: set[str] | None, limits: ImportLimits, fmt: str | None):
    """Read, decode and split a file into rows; returns ``(name, digest, rows, problems)``.

    ``allowed`` None leaves the columns unchecked (the format is detected afterwards)."""
    name, data = _read_bytes(source, limits)
    problems = _Problems(name, limits.max_errors)
    rows: list[_Row] = []
    if len(data) > limits.max_bytes:
        limit = f"{limits.max_bytes:,}"
        problems.add(None, f"file is larger than the {limit}-byte limit; split it into smaller files")
        return name, "", rows, problems
    if fmt == "parquet" or (fmt is None and (Path(name).suffix.lower() == ".parquet" or data[:4] == b"PAR1")):
        _parquet_rows(data, rows, problems, limits)
        return name, hashlib.sha256(data).hexdigest(), rows, problems
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
        raise ValueError(f"unknown format {fmt!r}: use 'jsonl', 'csv' or 'parquet'")
    try:
        rows_iter = _jsonl_rows(text, problems) if fmt == "jsonl" else _csv_rows(text, allowed, problems)
        for row in rows_iter:
            if len(rows) >= limits.max_rows:
                problems.add(row.line, f"more than {limits.max_rows:,} rows; split the file")
                break
            if not _within_edge_rules(row, problems):
                continue
            if fmt == "jsonl" and allowed is not None and not _check_columns(
                set(row.values), allowed, row.line, problems
            ):
                continue
            rows.append(row)
    except _Problems.TooMany:
        pass
    if not rows and not problems.error.problems:
        problems.add(None, "file has a header but no rows" if fmt == "csv" else "file is empty")
    return name, hashlib.sha256(data).hexdigest(), rows, problems


def _parquet_rows(data: bytes, rows: list[_Row], problems: _Problems, limits: ImportLimits) -> None:
    """A Parquet file (e.g. a ``datasets`` split saved with ``to_parquet``): row N is "line" N.

    Columns a row leaves empty (null) count as absent, so rows of a ragged dataset look like
    the JSON objects they were made from."""
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        problems.add(None, "reading Parquet needs pyarrow (pip install pyarrow)")
        return
    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 -- pyarrow raises many kinds for a broken file
        problems.add(None, f"not a readable Parquet file ({exc})")
        return
    if table.num_rows > limits.max_rows:
        problems.add(None, f"more than {limits.max_rows:,} rows; split the file")
        return
    if table.num_rows == 0:
        problems.add(None, "file has no rows")
        return
    for n, values in enumerate(table.to_pylist(), start=1):
        row = _Row(n, {k: v for k, v in values.items() if v is not None})
        if _within_edge_rules(row, problems):
            rows.append(row)


def _within_edge_rules(row: _Row, problems: _Problems) -> bool:
    """Report a value no column may hold (:mod:`evalsite.edge`: NUL, a lone surrogate, a number
    that is not finite or too large, deep nesting), naming its column; False if there was one."""
    try:
        edge.check_fields(row.values)
    except edge.EdgeError as exc:
        problems.add(row.line, str(exc))
        return False
    return True


def _read_format(
    rows: list[_Row], kind: tuple[formats.Format, ...], allowed: set[str], problems: _Problems
) -> tuple[formats.Format | None, list[_Row], str]:
    """Detect the file's format and turn its rows into evalsite's own (see :mod:`.formats`).

    Returns ``(format, rows, model name in the file)``; evalsite's own rows get their columns
    checked here (a CSV's once, against its header on line 1)."""
    found: formats.Format | None = None
    out: list[_Row] = []
    model_name = ""
    try:
        found = formats.detect([(r.line, r.values) for r in rows], kind, problems.add)
        if found is None:
            return None, [], ""
        if found.convert is None:
            if rows and rows[0].from_csv:  # one header for every row: checked once, on line 1
                return found, rows if _check_columns(set(rows[0].values), allowed, 1, problems) else [], ""
            return found, [r for r in rows if _check_columns(set(r.values), allowed, r.line, problems)], ""
        model_name = formats.check_one_model([(r.line, r.values) for r in rows], found, problems.add)
        for row in rows:
            for values in found.convert(row.values, lambda message, line=row.line: problems.add(line, message)):
                out.append(_Row(row.line, values))
    except _Problems.TooMany:
        pass
    return found, out, model_name


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
                value = edge.loads(stripped, "reference_answers")
            except json.JSONDecodeError as exc:
                problems.add(row.line, f"reference_answers is not a valid JSON list ({exc.msg})")
                return None
            except edge.EdgeError as exc:
                problems.add(row.line, str(exc))
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
            value = edge.loads(value, "metadata")
        except json.JSONDecodeError as exc:
            problems.add(row.line, f"metadata is not valid JSON ({exc.msg})")
            return None
        except edge.EdgeError as exc:
            problems.add(row.line, str(exc))
            return None
    if not isinstance(value, dict):
        problems.add(row.line, "metadata must be a JSON object")
        return None
    if not _nul_free(row, "metadata", value, problems):
        return None
    return value


def _history(row: _Row, problems: _Problems) -> list[dict] | None:
    """The earlier turns of a conversation (``history``: a JSON list of ``{role, content}``)."""
    value = row.values.get("history")
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = edge.loads(value, "history")
        except json.JSONDecodeError as exc:
            problems.add(row.line, f"history is not valid JSON ({exc.msg})")
            return None
        except edge.EdgeError as exc:
            problems.add(row.line, str(exc))
            return None
    if problem := history_problem(value):
        problems.add(row.line, problem)
        return None
    if not _nul_free(row, "history", value, problems):
        return None
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _parent(row: _Row, study: Study, turns: dict[str, int], problems: _Problems) -> tuple[str, int] | None:
    """``(previous turn's id, its turn)`` when the row names one in ``parent``; ``()`` when it names none.

    The previous turn is an earlier row of the file or a prompt already in the study."""
    value = row.values.get("parent")
    if value is None or value == "":
        return ()
    if isinstance(value, bool) or not isinstance(value, str | int):
        problems.add(row.line, f"parent must be the id of the previous turn, got {value!r}")
        return None
    value = str(value).strip()
    if value in turns:
        return value, turns[value]
    stored = study.prompts.filter(source_id=value).values_list("turn", flat=True).first()
    if stored is None:
        problems.add(
            row.line, f"parent {value!r} is neither an earlier row of this file nor a prompt of study {study.slug!r}"
        )
        return None
    return value, stored


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
    name, _digest, rows, problems = _parse_file(source, None, limits, fmt)
    found, rows, _model_name = _read_format(rows, formats.PROMPT_FORMATS, PROMPT_COLUMNS, problems)
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
            _link_turns(locked, parsed)
    except IntegrityError as exc:
        raise _conflict_error(name, "prompt ids") from exc
    return ImportResult(len(parsed), found)


def _link_turns(study: Study, parsed: list[Prompt]) -> None:
    """Point each new later turn at its previous turn (written in the same file or already stored)."""
    children = [p for p in parsed if getattr(p, "parent_source_id", "")]
    if not children:
        return
    wanted = {p.parent_source_id for p in children}
    ids = dict(study.prompts.filter(source_id__in=wanted).values_list("source_id", "pk"))
    for prompt in children:
        prompt.parent_id = ids[prompt.parent_source_id]
    Prompt.objects.bulk_update(children, ["parent"], batch_size=1000)


def _validate_prompts(study: Study, rows: list[_Row], problems: _Problems) -> list[Prompt]:
    """Check every row against the (locked) study; return the prompts to write."""
    existing = set(study.prompts.values_list("source_id", flat=True))
    seen: dict[str, int] = {}
    parsed: list[Prompt] = []
    turns: dict[str, int] = {}  # id -> turn, of this file's prompts so far (later turns name earlier ones)
    try:
        if not prompts_editable(study):
            problems.add(None, _frozen_message(study, "prompts"))
        for row in rows:
            source_id = _id_field(row, problems)
            text = _text_field(row, PROMPT_TEXT_COLUMNS, "prompt", problems)
            category = _category(row, problems)
            refs = _reference_answers(row, problems)
            metadata = _metadata(row, problems)
            history = _history(row, problems)
            parent = _parent(row, study, turns, problems)
            if source_id is None:
                continue
            if source_id in existing:
                problems.add(row.line, f"id {source_id!r} already exists in study {study.slug!r}")
                continue
            if not _first_seen(seen, source_id, row.line, f"id {source_id!r}", problems):
                continue
            if None in (text, category, refs, metadata, history, parent):
                continue
            if parent and history:
                message = "a later turn (with parent) takes its history from its parent; leave history out"
                problems.add(row.line, message)
                continue
            parent_id, parent_turn = parent or ("", 0)
            prompt = Prompt(
                study=study,
                source_id=source_id,
                text=text,
                category=category,
                reference_answers=refs,
                metadata=metadata,
                history=history,
                turn=parent_turn + 1 if parent_id else user_turns(history) + 1,
            )
            prompt.parent_source_id = parent_id
            turns[source_id] = prompt.turn
            parsed.append(prompt)
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
    name, digest, rows, problems = _parse_file(source, None, limits, fmt)
    found, rows, model_name = _read_format(rows, formats.ANSWER_FORMATS, RESPONSE_COLUMNS, problems)
    try:
        with transaction.atomic():
            # As for prompts: lock the study before reading its prompts and existing answers, so
            # two concurrent uploads of the same answers are checked one after the other.
            locked = Study.objects.select_for_update().get(pk=model.study_id)
            rows = _match_conversations(model, locked, rows, problems)
            parsed = _validate_responses(model, locked, name, digest, rows, problems)
            _check_earlier_turns(model, locked, parsed, problems)
            problems.raise_if_any()
            if found is not None and found.convert is not None:
                for response in parsed:
                    response.generation_params["format"] = found.key
                    if model_name:
                        response.generation_params["model_in_file"] = model_name
            Response.objects.bulk_create(parsed, batch_size=1000)
    except IntegrityError as exc:
        raise _conflict_error(name, "answers") from exc
    return ImportResult(len(parsed), found)


def _prompt_conversations(study: Study) -> tuple[dict[str, str], dict[str, list[tuple[str, list[str]]]]]:
    """Keys of the conversations the study's prompts end: ``(exact, loose)``.

    ``exact`` maps :func:`.formats.conversation_key` of a prompt without a previous turn (fixed
    history + text) to its id; ``loose`` maps :func:`.formats.placeholder_key` (assistant texts
    blanked) to ``[(id, ids of its earlier turns)]``, which also finds a later turn of a chain."""
    prompts = {p["id"]: p for p in study.prompts.values("id", "source_id", "text", "history", "parent_id")}
    exact: dict[str, str] = {}
    loose: dict[str, list[tuple[str, list[str]]]] = {}
    for prompt in prompts.values():
        earlier, current = [], prompt
        while current["parent_id"] and current["parent_id"] in prompts and len(earlier) < 1000:
            current = prompts[current["parent_id"]]
            earlier.append(current)
        earlier.reverse()
        messages = list((earlier[0] if earlier else prompt)["history"] or [])
        for turn in earlier:
            messages += [{"role": "user", "content": turn["text"]}, {"role": "assistant", "content": None}]
        messages.append({"role": "user", "content": prompt["text"]})
        if not earlier:
            exact.setdefault(formats.conversation_key(messages), prompt["source_id"])
        loose.setdefault(formats.placeholder_key(messages), []).append(
            (prompt["source_id"], [t["source_id"] for t in earlier])
        )
    return exact, loose


def _match_conversations(model: LanguageModel, study: Study, rows: list[_Row], problems: _Problems) -> list[_Row]:
    """Give answers without an id the id of the prompt whose conversation they answer.

    An answer to a later turn of a chain (its earlier assistant turns are the model's own) also
    gives the model's answers to the earlier turns, unless the file or the study already has
    them (then they must say the same)."""
    if not any("_match" in r.values for r in rows):
        return rows
    exact, loose = _prompt_conversations(study)
    stored = {
        (sid, sample): text
        for sid, sample, text in model.responses.filter(error="").values_list(
            "prompt__source_id", "sample_index", "text"
        )
    }
    out: list[_Row] = []
    implied: list[_Row] = []
    try:
        for row in rows:
            match = row.values.get("_match")
            if match is None:
                out.append(row)
                continue
            values = {k: v for k, v in row.values.items() if k != "_match"}
            earlier: list[str] = []
            if "id" not in values:
                found = exact.get(formats.conversation_key(match))
                if found is None:
                    candidates = loose.get(formats.placeholder_key(match), [])
                    if len(candidates) == 1:
                        found, earlier = candidates[0]
                if found is None:
                    first = next((m["content"] for m in match if m["role"] == "user"), "")
                    problems.add(
                        row.line,
                        f"no prompt of study {study.slug!r} has this conversation (first user turn: "
                        f"{first[:60]!r}); import the prompts first, or give the prompt's id",
                    )
                    continue
                values["id"] = found
            out.append(_Row(row.line, values, row.from_csv))
            own = [m["content"] for m in match if m["role"] == "assistant"][-len(earlier):] if earlier else []
            sample = values.get("sample_index", 0)
            for sid, text in zip(earlier, own, strict=False):
                implied.append(_Row(row.line, {"id": sid, "response": text, "sample_index": sample}))
        given = {(str(r.values.get("id")), r.values.get("sample_index", 0)): r for r in out}
        for row in implied:
            key = (row.values["id"], row.values["sample_index"])
            text = row.values["response"]
            before = given.get(key)
            if before is not None:
                previous = next((before.values[c] for c in RESPONSE_TEXT_COLUMNS if c in before.values), None)
            else:
                previous = stored.get(key)
            if previous is None:
                given[key] = row
                out.append(row)
            elif previous != text:
                where = f"line {before.line}" if before else "the answer already stored"
                problems.add(
                    row.line,
                    f"this conversation's answer to the earlier turn {key[0]!r} differs from {where}; "
                    "each turn of a model has one answer",
                )
    except _Problems.TooMany:
        pass
    return out


def _check_earlier_turns(model: LanguageModel, study: Study, parsed: list[Response], problems: _Problems) -> None:
    """An answer to a later turn needs the same model's answer to the turn before (same sample):
    the rater sees that answer above, and the later answer was written after it."""
    parents = dict(study.prompts.filter(parent__isnull=False).values_list("id", "parent_id"))
    if not parents:
        return
    have = {(r.prompt_id, r.sample_index) for r in parsed}
    have |= set(model.responses.filter(error="").exclude(text="").values_list("prompt_id", "sample_index"))
    names = dict(study.prompts.values_list("id", "source_id"))
    try:
        for response in parsed:
            parent = parents.get(response.prompt_id)
            if parent is not None and (parent, response.sample_index) not in have:
                problems.add(
                    response.generation_params.get("line"),
                    f"answer to {names[response.prompt_id]!r} (a later turn) but none to its previous turn "
                    f"{names[parent]!r}, sample {response.sample_index}: import the earlier turn's answer too",
                )
    except _Problems.TooMany:
        pass


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
