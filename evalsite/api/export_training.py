"""Exports for training and for other tools: TRL preference pairs and MT-bench-style judgments.

TRL's DPO / reward trainers take ``prompt``, ``chosen`` and ``rejected``: in the conversational
format each is a list of ``{"role", "content"}`` messages, in the standard format each is text.
One row per rating (attention checks left out; the ratings list's filters apply, e.g.
``flagged=false``). Ties and both-bad verdicts carry no preference: the study's ``tie_rule``
decides (an export's ``ties=`` overrides it): ``exclude`` (the default rule) leaves them out,
``mark`` keeps them with ``chosen``/``rejected`` in storage order (the teacher,
else the earlier model, first) and ``label`` saying ``tie`` or ``both_bad``.

A conversation's earlier turns go into ``prompt``. For a later turn of a chain (MT-bench's second
turn) the two models were asked different conversations (each its own first answer), so
``prompt`` is the part both share and ``chosen`` / ``rejected`` carry each model's own earlier
replies before its answer, which is how TRL reads a pair whose conversations part ways (its
implicit-prompt extraction takes the longest common prefix).

The MT-bench-style judgment export has FastChat's human-judgment fields (``question_id``,
``model_a``, ``model_b``, ``winner``, ``judge``, ``turn``, ``conversation_a``, ``conversation_b``),
so crowd verdicts can be compared with LLM-judge verdicts by the same scripts.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator

from django.http import FileResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer

from evalsite.rating.models import Rating
from evalsite.studies.models import Prompt, Response, Study

from .export import JSONLRenderer, _PassthroughRenderer, _StudyExport, tie_rule
from .export_formats import TIE_WINNERS, Column, _jsonl_lines, export_rows

TRAINING_COLUMNS: tuple[Column, ...] = (
    Column("rating_id", "id"),
    Column("comparison_id", "comparison_id"),
    Column("prompt_pk", "comparison__prompt_id"),
    Column("prompt_id", "comparison__prompt__source_id"),
    Column("category", "comparison__prompt__category"),
    Column("turn", "comparison__prompt__turn"),
    Column("text_a", "comparison__response_a__text"),
    Column("text_b", "comparison__response_b__text"),
    Column("model_a", "comparison__response_a__model__alias"),
    Column("model_b", "comparison__response_b__model__alias"),
    Column("model_a_id", "comparison__response_a__model_id"),
    Column("model_b_id", "comparison__response_b__model_id"),
    Column("sample_a", "comparison__response_a__sample_index"),
    Column("sample_b", "comparison__response_b__sample_index"),
    Column("winner", "winner"),
    Column("strength", "strength"),
    Column("rater_id", "rater__pseudonym"),
    Column("is_expert", "rater__is_expert"),
    Column("created_at", "created_at"),
)
NAMES = [c.name for c in TRAINING_COLUMNS]


class Conversations:
    """A study's prompts and the answers its later turns were asked with, loaded once per export."""

    def __init__(self, study: Study):
        self.prompts = {
            p["id"]: p for p in Prompt.objects.filter(study=study).values("id", "text", "history", "parent_id")
        }
        parents = {p["parent_id"] for p in self.prompts.values() if p["parent_id"]}
        rows = Response.objects.filter(prompt_id__in=parents, error="").values_list(
            "prompt_id", "model_id", "sample_index", "text"
        )
        self.answers = {(p, m, s): text for p, m, s, text in rows}

    def messages(self, prompt_id: int, model_id: int, sample: int) -> list[dict]:
        """The conversation a model was asked, up to and including the prompt's user turn."""
        chain, current = [], self.prompts[prompt_id]
        while current["parent_id"] and len(chain) < 1000:
            current = self.prompts[current["parent_id"]]
            chain.append(current)
        chain.reverse()
        root = chain[0] if chain else self.prompts[prompt_id]
        out = [{"role": m["role"], "content": m["content"]} for m in root["history"] or []]
        for earlier in chain:
            out.append({"role": "user", "content": earlier["text"]})
            out.append({"role": "assistant", "content": self.answers.get((earlier["id"], model_id, sample), "")})
        out.append({"role": "user", "content": self.prompts[prompt_id]["text"]})
        return out

    def pair(self, row: dict) -> tuple[list[dict], list[dict], list[dict]]:
        """``(shared prefix, rest of A's conversation, rest of B's)``; the rests are empty unless
        the models were asked different conversations (their own earlier replies)."""
        conv_a = self.messages(row["prompt_pk"], row["model_a_id"], row["sample_a"])
        conv_b = self.messages(row["prompt_pk"], row["model_b_id"], row["sample_b"])
        n = 0
        while n < min(len(conv_a), len(conv_b)) and conv_a[n] == conv_b[n]:
            n += 1
        if n == len(conv_a) == len(conv_b):
            return conv_a, [], []
        # Part ways at the first differing message; the prompt must end with the user turn before it.
        while n > 0 and conv_a[n - 1]["role"] != "user":
            n -= 1
        return conv_a[:n], conv_a[n:], conv_b[n:]


def as_text(messages: list[dict]) -> str:
    """A conversation as plain text for TRL's standard format: ``User:`` / ``Assistant:`` turns."""
    names = {"system": "System", "user": "User", "assistant": "Assistant"}
    return "\n\n".join(f"{names[m['role']]}: {m['content']}" for m in messages)


def trl_pair(row: dict, conversations: Conversations, *, mark_ties: bool, conversational: bool) -> dict | None:
    """One rating as a TRL preference row, or None (a tie when ties are excluded)."""
    winner = row["winner"]
    if winner in TIE_WINNERS and not mark_ties:
        return None
    prefix, rest_a, rest_b = conversations.pair(row)
    sides = {
        "a": [*rest_a, {"role": "assistant", "content": row["text_a"]}],
        "b": [*rest_b, {"role": "assistant", "content": row["text_b"]}],
    }
    first, second = ("b", "a") if winner == Rating.Winner.B else ("a", "b")
    if conversational:
        prompt, chosen, rejected = prefix, sides[first], sides[second]
    elif len(prefix) == 1 and not (rest_a or rest_b):  # a single-turn prompt: plain texts
        prompt, chosen, rejected = prefix[0]["content"], row[f"text_{first}"], row[f"text_{second}"]
    else:  # a conversation written out; the answers continue after "Assistant:"
        prompt = as_text(prefix) + "\n\nAssistant:"
        chosen, rejected = (" " + as_text(sides[s]).removeprefix("Assistant: ") for s in (first, second))
    return {
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "label": "preference" if winner not in TIE_WINNERS else str(winner),
        "chosen_model": row[f"model_{first}"],
        "rejected_model": row[f"model_{second}"],
        "strength": row["strength"],
        "rating_id": row["rating_id"],
        "comparison_id": row["comparison_id"],
        "prompt_id": row["prompt_id"],
        "category": row["category"],
        "turn": row["turn"],
        "rater_id": row["rater_id"],
        "is_expert": row["is_expert"],
    }


def _dicts(rows: Iterable[tuple]) -> Iterator[dict]:
    for row in rows:
        yield dict(zip(NAMES, row, strict=True))


def trl_pairs(study: Study, ratings, *, mark_ties: bool, conversational: bool) -> Iterator[dict]:
    conversations = Conversations(study)
    ratings = ratings.filter(comparison__is_attention_check=False)
    if not mark_ties:
        ratings = ratings.exclude(winner__in=TIE_WINNERS)
    for row in _dicts(export_rows(ratings, TRAINING_COLUMNS)):
        pair = trl_pair(row, conversations, mark_ties=mark_ties, conversational=conversational)
        if pair is not None:
            yield pair


def stream_trl_jsonl(pairs: Iterable[dict]) -> Iterator[bytes]:
    return _jsonl_lines(pairs)


def _parquet_schema(conversational: bool):
    import pyarrow as pa

    message = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    text = message if conversational else pa.string()
    return pa.schema(
        [
            ("prompt", text),
            ("chosen", text),
            ("rejected", text),
            ("label", pa.string()),
            ("chosen_model", pa.string()),
            ("rejected_model", pa.string()),
            ("strength", pa.int64()),
            ("rating_id", pa.int64()),
            ("comparison_id", pa.int64()),
            ("prompt_id", pa.string()),
            ("category", pa.string()),
            ("turn", pa.int64()),
            ("rater_id", pa.string()),
            ("is_expert", pa.bool_()),
        ]
    )


def write_trl_parquet(pairs: Iterable[dict], conversational: bool, chunk_rows: int = 2000):
    """The pairs as a Parquet file (a temporary file, written a row group at a time), rewound."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _parquet_schema(conversational)
    out = tempfile.TemporaryFile()  # noqa: SIM115 -- handed to the response, which closes it
    with pq.ParquetWriter(out, schema) as writer:
        chunk: list[dict] = []
        for pair in pairs:
            chunk.append(pair)
            if len(chunk) >= chunk_rows:
                writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
                chunk = []
        writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
    out.seek(0)
    return out


MT_BENCH_WINNER = {"A": "model_a", "B": "model_b", "tie": "tie", "both_bad": "tie (bothbad)"}


def _question_id(value: str):
    return int(value) if value.isdigit() else value


def mt_bench_judgments(study: Study, ratings) -> Iterator[dict]:
    """Ratings as FastChat's MT-bench human judgments (one row per rating, attention checks left out).

    ``question_id`` is the conversation's first turn's id (a number when it is one), ``turn`` the
    judged turn, and each conversation runs up to that turn's answer."""
    conversations = Conversations(study)
    roots: dict[int, str] = {}
    for pk, source_id, parent_id in Prompt.objects.filter(study=study).values_list("id", "source_id", "parent_id"):
        roots[pk] = source_id if parent_id is None else ""
    parents = {p["id"]: p["parent_id"] for p in conversations.prompts.values()}
    ratings = ratings.filter(comparison__is_attention_check=False)
    for row in _dicts(export_rows(ratings, TRAINING_COLUMNS)):
        root = row["prompt_pk"]
        while parents.get(root):
            root = parents[root]
        conv_a = conversations.messages(row["prompt_pk"], row["model_a_id"], row["sample_a"])
        conv_b = conversations.messages(row["prompt_pk"], row["model_b_id"], row["sample_b"])
        yield {
            "question_id": _question_id(roots.get(root) or row["prompt_id"]),
            "model_a": row["model_a"],
            "model_b": row["model_b"],
            "winner": MT_BENCH_WINNER[row["winner"]],
            "judge": f"{'expert' if row['is_expert'] else 'crowd'}_{row['rater_id']}",
            "turn": row["turn"],
            "conversation_a": [*conv_a, {"role": "assistant", "content": row["text_a"]}],
            "conversation_b": [*conv_b, {"role": "assistant", "content": row["text_b"]}],
            "tstamp": row["created_at"].timestamp() if row["created_at"] else None,
            "rating_id": row["rating_id"],
            "category": row["category"],
        }


def stream_json_lines(rows: Iterable[dict]) -> Iterator[bytes]:
    return _jsonl_lines(rows)


# --- the endpoints ------------------------------------------------------------------------------


class ParquetRenderer(_PassthroughRenderer):
    media_type = "application/vnd.apache.parquet"
    format = "parquet"


_TRL_PARAMS = [
    OpenApiParameter(
        "ties",
        OpenApiTypes.STR,
        enum=["exclude", "mark"],
        description="exclude: leave out ties and both-bad; mark: keep them, in storage order, with label. "
        "Default: the study's tie_rule.",
    ),
    OpenApiParameter(
        "prompt_format",
        OpenApiTypes.STR,
        enum=["messages", "text"],
        description="messages (default): TRL's conversational format; text: its standard format.",
    ),
]


class _TrainingExport(_StudyExport):
    def options_from(self, request) -> tuple[bool, bool]:
        ties = tie_rule(request, self.study())
        prompt_format = request.query_params.get("prompt_format", "messages")
        if prompt_format not in {"messages", "text"}:
            raise ValidationError({"prompt_format": f"use messages or text, not {prompt_format!r}"})
        return ties == "mark", prompt_format == "messages"

    def study_and_ratings(self):
        slug, ratings = self.study_ratings()
        return Study.objects.get(slug=slug), ratings


class TRLPairsJSONLExport(_TrainingExport):
    renderer_classes = [JSONRenderer, JSONLRenderer]

    @extend_schema(
        operation_id="studies_trl_pairs_jsonl",
        summary="Preference pairs in TRL's DPO / reward format (prompt, chosen, rejected), JSON Lines",
        parameters=_TRL_PARAMS,
        responses={(200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.BINARY), 404: None},
    )
    def get(self, request, slug: str) -> StreamingHttpResponse:
        mark_ties, conversational = self.options_from(request)
        study, ratings = self.study_and_ratings()
        pairs = trl_pairs(study, ratings, mark_ties=mark_ties, conversational=conversational)
        return self.streaming(stream_trl_jsonl(pairs), "application/x-ndjson; charset=utf-8", f"{slug}-trl-pairs.jsonl")


class TRLPairsParquetExport(_TrainingExport):
    renderer_classes = [JSONRenderer, ParquetRenderer]

    @extend_schema(
        operation_id="studies_trl_pairs_parquet",
        summary="Preference pairs in TRL's DPO / reward format (prompt, chosen, rejected), Parquet",
        parameters=_TRL_PARAMS,
        responses={(200, "application/vnd.apache.parquet"): OpenApiResponse(OpenApiTypes.BINARY), 404: None},
    )
    def get(self, request, slug: str) -> FileResponse:
        mark_ties, conversational = self.options_from(request)
        study, ratings = self.study_and_ratings()
        pairs = trl_pairs(study, ratings, mark_ties=mark_ties, conversational=conversational)
        response = FileResponse(
            write_trl_parquet(pairs, conversational),
            as_attachment=True,
            filename=f"{slug}-trl-pairs.parquet",
            content_type="application/vnd.apache.parquet",
        )
        response["Cache-Control"] = "no-store"
        return response


class MTBenchJudgmentsExport(_StudyExport):
    renderer_classes = [JSONRenderer, JSONLRenderer]

    @extend_schema(
        operation_id="studies_mt_bench_judgments_jsonl",
        summary="Ratings as MT-bench human judgments (FastChat's fields), to compare with LLM judges",
        responses={(200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.BINARY), 404: None},
    )
    def get(self, request, slug: str) -> StreamingHttpResponse:
        study_slug, ratings = self.study_ratings()
        rows = mt_bench_judgments(Study.objects.get(slug=study_slug), ratings)
        return self.streaming(
            stream_json_lines(rows), "application/x-ndjson; charset=utf-8", f"{study_slug}-mt-bench-judgments.jsonl"
        )
