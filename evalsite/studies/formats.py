"""The file formats the importers recognise, and how each becomes evalsite's own rows.

Researchers arrive with the field's formats; :func:`detect` looks at each row's keys and names the
one format the whole file is in (or says which line fits none, or more than one). Each format's
``convert`` turns one row into rows of evalsite's own shape (``id``, ``prompt``, ``history``,
``parent``, … for prompts; ``id``, ``response``, ``sample_index`` for answers), which the importer
then checks exactly like a file written in that shape, so every format keeps the all-or-nothing,
line-numbered errors.

Prompts: evalsite's own rows; OpenAI chat ``messages``; ShareGPT ``conversations``
(``from``/``value``); MT-bench questions (``question_id``, ``category``, ``turns``, optional
``reference``; each turn becomes a prompt whose ``parent`` is the turn before, answered by each
model itself); Arena-Hard (``question_id`` + ``turns`` of ``{"content"}``, or ``uid`` +
``prompt``); Alpaca / AlpacaEval (``instruction``, optional ``input``, ``output``, ``dataset``,
``generator``).

Answers: evalsite's own rows; MT-bench / Arena-Hard model answers and MT-bench reference answers
(``question_id``, ``model_id``, ``choices[i].turns``: turn k answers the question's k-th turn,
choice i is sample i); Arena-Hard v2 answers (``uid``, ``model``, ``messages``); AlpacaEval outputs
(``instruction``, ``output``, ``generator``); OpenAI ``messages`` ending in the assistant turn.
Rows without an id (AlpacaEval, ShareGPT, ``messages``) get one derived from their conversation,
and answers without an id find their prompt by the conversation they answer.

Pure Python: no database access, so the imported backend can read answer files with it too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from evalsite import edge

Report = Callable[[str], None]

# ShareGPT speakers (several dumps use different names) and OpenAI roles, to evalsite's three.
SPEAKERS = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "chatgpt": "assistant",
    "assistant": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "model": "assistant",
    "system": "system",
}
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def turn_id(question_id: Any, turn: int) -> str:
    """The prompt id of a multi-turn question's ``turn``: ``81`` for turn 1, ``81:turn2`` after."""
    return str(question_id) if turn == 1 else f"{question_id}:turn{turn}"


def conversation_key(messages: list[dict]) -> str:
    """A stable hash of a conversation (roles and texts); ``None`` contents stand for a model's own turn."""
    canonical = [[m.get("role"), m.get("content")] for m in messages]
    return hashlib.sha256(json.dumps(canonical, ensure_ascii=False).encode("utf-8")).hexdigest()


def placeholder_key(messages: list[dict]) -> str:
    """:func:`conversation_key` with every assistant text blanked: matches a conversation whose
    assistant turns are each model's own (a prompt chain) whatever those answers say."""
    return conversation_key([{**m, "content": None} if m.get("role") == "assistant" else m for m in messages])


def derived_id(prefix: str, messages: list[dict]) -> str:
    """An id for a row that has none, from its conversation (the same file imports to the same ids)."""
    return f"{prefix}-{conversation_key(messages)[:12]}"


# --- small readers ----------------------------------------------------------------------------------


def _json_if_text(value: Any) -> Any:
    """CSV cells hold lists as JSON text: decode a cell that looks like a JSON list or object."""
    if isinstance(value, str) and value.strip()[:1] in {"[", "{"}:
        try:
            return edge.loads(value, "a cell")  # NaN, huge numbers, deep nesting: left as text, refused later
        except ValueError:
            return value
    return value


def _text(value: Any) -> str | None:
    """A turn's text: a string, ``{"content": …}`` (Arena-Hard), ``{"answer": …}`` (Arena-Hard v2)
    or OpenAI content parts (``[{"type": "text", "text": …}]``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in ("content", "answer", "text", "value"):
            if key in value:
                return _text(value[key])
        return None
    if isinstance(value, list) and value and all(isinstance(p, dict) and p.get("type") == "text" for p in value):
        texts = [p.get("text") for p in value]
        return "\n".join(texts) if all(isinstance(t, str) for t in texts) else None
    return None


def _question_id(values: dict, keys: tuple[str, ...], report: Report) -> str | int | None:
    for key in keys:
        if key in values:
            value = values[key]
            if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
                report(f"{key} must be text or a number, got {value!r}")
                return None
            return value
    report(f"missing {' or '.join(keys)}")
    return None


def _turn_texts(values: dict, report: Report, key: str = "turns") -> list[str] | None:
    turns = _json_if_text(values.get(key))
    if not isinstance(turns, list) or not turns:
        report(f"{key} must be a non-empty list of the user's turns")
        return None
    texts = [_text(t) for t in turns]
    if any(t is None for t in texts):
        report(f"{key} must hold text (or {{\"content\": text}}) for every turn")
        return None
    return texts


def _messages(values: dict, key: str, report: Report) -> list[dict] | None:
    """``messages`` / ``conversations`` as ``[{"role", "content"}]`` (roles mapped to evalsite's)."""
    raw = _json_if_text(values.get(key))
    if not isinstance(raw, list) or not raw:
        report(f"{key} must be a non-empty list of turns")
        return None
    out = []
    for n, message in enumerate(raw, start=1):
        if not isinstance(message, dict):
            report(f"{key}[{n}] must be an object")
            return None
        if key == "conversations":
            speaker, content = message.get("from"), message.get("value")
            role = SPEAKERS.get(str(speaker).lower()) if isinstance(speaker, str) else None
            if role is None:
                report(f"{key}[{n}] is from {speaker!r}; expected human, gpt or system")
                return None
        else:
            role, content = ROLES.get(message.get("role")), message.get("content")
            if role is None:
                report(f"{key}[{n}] has role {message.get('role')!r}; expected system, user or assistant")
                return None
        text = _text(content)
        if text is None:
            report(f"{key}[{n}] ({role}) has no text content")
            return None
        out.append({"role": role, "content": text})
    return out


def _split(messages: list[dict], key: str, report: Report) -> tuple[list[dict], str, str | None] | None:
    """``(history, last user text, the dataset's answer or None)`` of a prompt conversation.

    A conversation ending in an assistant turn is the question plus the dataset's own answer: the
    answer is kept aside (in the prompt's metadata) and the compared answers replace it.
    """
    answer = None
    if messages[-1]["role"] == "assistant":
        answer = messages[-1]["content"]
        messages = messages[:-1]
    if not messages or messages[-1]["role"] != "user":
        report(f"{key} must end with a user turn (optionally followed by the assistant's answer)")
        return None
    return messages[:-1], messages[-1]["content"], answer


def _common(values: dict, out: dict, *, category: tuple[str, ...] = ("category",)) -> dict:
    """Copy the optional fields evalsite keeps (category, reference answers, metadata)."""
    for key in category:
        if values.get(key) not in (None, ""):
            out["category"] = values[key]
            break
    if "reference_answers" in values:
        out["reference_answers"] = values["reference_answers"]
    if "metadata" in values:
        out["metadata"] = values["metadata"]
    return out


def _add_metadata(row: dict, extra: dict) -> None:
    """Merge what a dataset carries beside the prompt into its metadata (the row's own keys win);
    metadata that is not an object is left as it is, for the importer to report."""
    if not extra:
        return
    metadata = _json_if_text(row.get("metadata", {}))
    if isinstance(metadata, dict):
        row["metadata"] = {**extra, **metadata}


# --- prompt formats ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Format:
    key: str
    label: str
    looks_for: str
    matches: Callable[[dict], bool]
    convert: Callable[[dict, Report], list[dict]] | None = None  # None: evalsite's own rows
    model_key: str = ""  # the column naming the model that wrote the answers (one model per file)

    def __str__(self) -> str:
        return self.label


def _turn_items_are_objects(values: dict) -> bool:
    turns = _json_if_text(values.get("turns"))
    return isinstance(turns, list) and bool(turns) and all(isinstance(t, dict) for t in turns)


def _mtbench_questions(values: dict, report: Report, prefix_keys=("question_id",)) -> list[dict]:
    qid = _question_id(values, prefix_keys, report)
    texts = _turn_texts(values, report)
    reference = _json_if_text(values.get("reference"))
    if reference is not None and (
        not isinstance(reference, list) or not all(isinstance(r, str) or r is None for r in reference)
    ):
        report("reference must be a list with one reference answer (text) per turn")
        return []
    if qid is None or texts is None:
        return []
    rows = []
    for k, text in enumerate(texts, start=1):
        row = _common(values, {"id": turn_id(qid, k), "prompt": text})
        row.pop("reference_answers", None)
        if reference and k <= len(reference) and reference[k - 1] and reference[k - 1].strip():
            row["reference_answers"] = [reference[k - 1]]
        if k > 1:
            row["parent"] = turn_id(qid, k - 1)
        rows.append(row)
    return rows


def _arena_hard_questions(values: dict, report: Report) -> list[dict]:
    extra = {k: values[k] for k in ("cluster", "subcategory") if values.get(k) not in (None, "")}
    if "prompt" in values:
        qid = _question_id(values, ("uid", "question_id"), report)
        if qid is None:
            return []
        rows = [_common(values, {"id": str(qid), "prompt": values["prompt"]})]
    else:
        rows = _mtbench_questions(values, report, ("question_id", "uid"))
    for row in rows:
        _add_metadata(row, extra)
    return rows


def _chat_prompt(values: dict, report: Report, key: str, prefix: str) -> list[dict]:
    messages = _messages(values, key, report)
    if messages is None:
        return []
    split = _split(messages, key, report)
    if split is None:
        return []
    history, text, answer = split
    row_id = values.get("id")
    if row_id in (None, ""):
        row_id = derived_id(prefix, [*history, {"role": "user", "content": text}])
    row = _common(values, {"id": row_id, "prompt": text})
    if history:
        row["history"] = history
    if answer is not None:
        _add_metadata(row, {"dataset_answer": answer})
    return [row]


def alpaca_text(values: dict) -> str | None:
    """Alpaca's prompt: the instruction, then the input (if any) after a blank line."""
    instruction, extra = values.get("instruction"), values.get("input")
    if not isinstance(instruction, str):
        return None
    if isinstance(extra, str) and extra.strip():
        return f"{instruction}\n\n{extra}"
    return instruction


def _alpaca_prompt(values: dict, report: Report) -> list[dict]:
    text = alpaca_text(values)
    if text is None:
        report("instruction must be text")
        return []
    if values.get("input") not in (None, "") and not isinstance(values.get("input"), str):
        report("input must be text")
        return []
    row_id = values.get("id")
    if row_id in (None, ""):
        row_id = derived_id("alpaca", [{"role": "user", "content": text}])
    row = _common(values, {"id": row_id, "prompt": text}, category=("category", "dataset"))
    names = {"output": "dataset_answer", "generator": "generator"}
    _add_metadata(row, {names[k]: values[k] for k in names if isinstance(values.get(k), str) and values[k]})
    return [row]


OUR_PROMPT_COLUMNS = {"id", "prompt", "text", "category", "reference_answers", "metadata", "history", "parent"}


def _our_prompt_row(v: dict) -> bool:
    """evalsite's own prompt row: a text column (and not Arena-Hard's uid + prompt), or only our columns."""
    keys = set(v)
    return (bool({"prompt", "text"} & keys) and not ({"uid", "turns"} & keys)) or keys <= OUR_PROMPT_COLUMNS


PROMPT_FORMATS: tuple[Format, ...] = (
    Format(
        "evalsite",
        "evalsite prompts",
        "id + prompt or text",
        _our_prompt_row,
    ),
    Format(
        "openai-messages",
        "OpenAI chat messages",
        "messages",
        lambda v: "messages" in v and not ({"conversations", "instruction", "turns"} & set(v)),
        lambda v, r: _chat_prompt(v, r, "messages", "chat"),
    ),
    Format(
        "sharegpt",
        "ShareGPT conversations",
        "conversations with from/value",
        lambda v: "conversations" in v and not ({"messages", "instruction", "turns"} & set(v)),
        lambda v, r: _chat_prompt(v, r, "conversations", "sharegpt"),
    ),
    Format(
        "mt-bench",
        "MT-bench questions",
        "question_id, category, turns (texts), optional reference",
        lambda v: "question_id" in v and "turns" in v and "choices" not in v and "cluster" not in v
        and not _turn_items_are_objects(v),
        _mtbench_questions,
    ),
    Format(
        "arena-hard",
        "Arena-Hard questions",
        "question_id + turns of {content}, or uid + prompt",
        lambda v: ("uid" in v and "prompt" in v and "messages" not in v)
        or ("question_id" in v and "turns" in v and "choices" not in v
            and (_turn_items_are_objects(v) or "cluster" in v)),
        _arena_hard_questions,
    ),
    Format(
        "alpaca",
        "Alpaca / AlpacaEval instructions",
        "instruction, optional input, output, dataset",
        lambda v: "instruction" in v and not ({"messages", "conversations", "turns", "prompt"} & set(v)),
        _alpaca_prompt,
    ),
)


# --- answer formats ---------------------------------------------------------------------------------


def _mtbench_answers(values: dict, report: Report) -> list[dict]:
    """MT-bench / Arena-Hard model answers (and MT-bench reference answers): ``choices[i].turns``."""
    qid = _question_id(values, ("question_id", "uid"), report)
    choices = _json_if_text(values.get("choices"))
    if not isinstance(choices, list) or not choices:
        report("choices must be a non-empty list of {index, turns}")
        return []
    if qid is None:
        return []
    rows = []
    for i, choice in enumerate(choices):
        if not isinstance(choice, dict):
            report(f"choices[{i}] must be an object with turns")
            return []
        sample = choice.get("index", i)
        if isinstance(sample, bool) or not isinstance(sample, int):
            report(f"choices[{i}].index must be a whole number")
            return []
        texts = _turn_texts(choice, lambda m, i=i: report(f"choices[{i}]: {m}"))
        if texts is None:
            return []
        rows += [
            {"id": turn_id(qid, k), "response": text, "sample_index": sample, "_turn": k}
            for k, text in enumerate(texts, start=1)
        ]
    return rows


mt_bench_answer_rows = _mtbench_answers  # public: the imported backend reads these files too


def _arena_hard_v2_answers(values: dict, report: Report) -> list[dict]:
    qid = _question_id(values, ("uid",), report)
    messages = _messages(values, "messages", report)
    if qid is None or messages is None:
        return []
    if messages[-1]["role"] != "assistant":
        report("messages must end with the assistant's answer")
        return []
    return [{"id": str(qid), "response": messages[-1]["content"]}]


def _alpaca_eval_answers(values: dict, report: Report) -> list[dict]:
    text = alpaca_text(values)
    output = values.get("output")
    if text is None:
        report("instruction must be text")
        return []
    if not isinstance(output, str):
        report("output must be text")
        return []
    row = {"response": output, "_match": [{"role": "user", "content": text}]}
    if values.get("id") not in (None, ""):
        row["id"] = values["id"]
    if "sample_index" in values:
        row["sample_index"] = values["sample_index"]
    return [row]


def _messages_answers(values: dict, report: Report) -> list[dict]:
    messages = _messages(values, "messages", report)
    if messages is None:
        return []
    if messages[-1]["role"] != "assistant":
        report("messages must end with the assistant turn being imported")
        return []
    if len(messages) < 2 or messages[-2]["role"] != "user":
        report("the assistant turn must follow a user turn")
        return []
    row = {"response": messages[-1]["content"], "_match": messages[:-1]}
    if values.get("id") not in (None, ""):
        row["id"] = values["id"]
    if "sample_index" in values:
        row["sample_index"] = values["sample_index"]
    return [row]


OUR_ANSWER_COLUMNS = {"id", "response", "text", "output", "sample_index"}


def _our_answer_row(v: dict) -> bool:
    """evalsite's own answer row: an answer column and none of another format's, or only our columns."""
    keys = set(v)
    has_text = bool({"response", "text", "output"} & keys) and not ({"instruction", "messages", "choices"} & keys)
    return has_text or keys <= OUR_ANSWER_COLUMNS


ANSWER_FORMATS: tuple[Format, ...] = (
    Format(
        "evalsite",
        "evalsite answers",
        "id + response, text or output",
        _our_answer_row,
    ),
    Format(
        "mt-bench-answers",
        "MT-bench / Arena-Hard model answers",
        "question_id, model_id, choices[].turns",
        lambda v: ("question_id" in v or "uid" in v) and "choices" in v,
        _mtbench_answers,
        model_key="model_id",
    ),
    Format(
        "arena-hard-v2-answers",
        "Arena-Hard v2 answers",
        "uid, model, messages",
        lambda v: "uid" in v and "messages" in v and "choices" not in v,
        _arena_hard_v2_answers,
        model_key="model",
    ),
    Format(
        "alpaca-eval-outputs",
        "AlpacaEval outputs",
        "instruction, output, generator",
        lambda v: "instruction" in v and "output" in v and "messages" not in v,
        _alpaca_eval_answers,
        model_key="generator",
    ),
    Format(
        "openai-messages",
        "OpenAI chat messages",
        "messages ending in the assistant turn",
        lambda v: "messages" in v and "uid" not in v and "instruction" not in v,
        _messages_answers,
    ),
)


def describe(formats: tuple[Format, ...]) -> str:
    return "; ".join(f"{f.label} ({f.looks_for})" for f in formats)


def detect(rows: list[tuple[int, dict]], formats: tuple[Format, ...], add: Callable[[int, str], None]):
    """The format of a file's rows: the first row that fits exactly one format decides it.

    Reports (and leaves out) each row that fits several formats or another format than the file's,
    and each row of another format's file that fits none; in a file of evalsite's own rows, a row
    that fits no format is kept so that its own checks name what is wrong (an unknown column).
    Returns None, with the first line that fits none named beside the formats looked for, when no
    row fits exactly one format.
    """
    chosen, chosen_line = None, None
    for line, values in rows:
        fits = [f for f in formats if f.matches(values)]
        if len(fits) == 1:
            chosen, chosen_line = fits[0], line
            break
    if chosen is None:
        for line, values in rows:
            fits = [f for f in formats if f.matches(values)]
            if len(fits) > 1:
                both = " and ".join(f.label for f in fits)
                add(line, f"ambiguous row: it fits {both}, so the file's format is unclear; remove the other "
                          f"format's columns (formats looked for: {describe(formats)}; {_columns(values)})")
            else:
                add(line, f"this row is in none of the formats looked for: {describe(formats)}; {_columns(values)}")
            return None
        return None
    for line, values in rows:
        fits = [f for f in formats if f.matches(values)]
        if fits == [chosen] or (not fits and chosen.convert is None):
            continue
        if not fits:
            add(line, f"not a row of {chosen.label} ({chosen.looks_for}) as line {chosen_line} is, nor of any other "
                      f"format looked for; {_columns(values)}")
        elif len(fits) > 1:
            both = " and ".join(f.label for f in fits)
            add(line, f"ambiguous row: it fits {both}; remove the other format's columns ({_columns(values)})")
        else:
            add(line, f"this row is {fits[0].label}, but line {chosen_line} is {chosen.label}: use one format per file")
    return chosen


def _columns(values: dict) -> str:
    return f"its columns: {', '.join(sorted(map(str, values))) or 'none'}"


def check_one_model(rows: list[tuple[int, dict]], fmt: Format, add: Callable[[int, str], None]) -> str:
    """The model a file's answers are from (``model_id`` / ``generator`` / ``model``): one per file."""
    if not fmt.model_key:
        return ""
    first: tuple[int, str] | None = None
    for line, values in rows:
        name = values.get(fmt.model_key)
        if name in (None, ""):
            continue
        if first is None:
            first = (line, str(name))
        elif str(name) != first[1]:
            add(
                line,
                f"{fmt.model_key} {name!r} differs from {first[1]!r} on line {first[0]}: a file holds one model's "
                "answers; import each model's answers into its own model",
            )
            return first[1]
    return first[1] if first else ""
