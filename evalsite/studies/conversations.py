"""Conversations as prompts: what a model is asked, and what a rater sees above the two answers.

A :class:`~.models.Prompt` is the last user turn (``text``). The turns before it come from:

- ``history``: fixed earlier turns stored with the prompt (system, user and assistant turns of a
  ShareGPT dialogue or an OpenAI ``messages`` list). Every model gets the same history.
- ``parent``: the previous turn of the same conversation (MT-bench). Each model gets its *own*
  answer to the parent as the assistant turn before ``text`` (same sample index), so the
  second turn is answered conditioned on the model's first answer. Generation runs the turns in
  order (:func:`evalsite.generation.jobs.missing_items` sorts by ``turn``).

A root prompt may have a history; a prompt with a parent has none of its own (its chain's root
holds it). Pairing, the lease engine and the analysis see ordinary prompts: each turn is one
prompt with its own comparisons, and ``turn`` says which turn it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

ROLES = ("system", "user", "assistant")


class MissingEarlierAnswer(LookupError):
    """A model has no usable answer to an earlier turn, so a later turn cannot be asked yet."""


def chain(prompt) -> list:
    """The prompt's earlier turns with a parent link, oldest first (the prompt itself excluded)."""
    out = []
    current = prompt.parent if prompt.parent_id else None
    while current is not None:
        out.append(current)
        current = current.parent if current.parent_id else None
        if len(out) > 1000:  # a cycle written around the importer: stop rather than loop forever
            break
    out.reverse()
    return out


def root_history(prompt, ancestors: list | None = None) -> list[dict]:
    """The fixed history the conversation starts with (the chain root's ``history``)."""
    ancestors = chain(prompt) if ancestors is None else ancestors
    root = ancestors[0] if ancestors else prompt
    return [dict(m) for m in (root.history or [])]


def own_answers(model_id: int, prompts: Iterable, sample_index: int = 0) -> dict[int, str]:
    """``{prompt_id: text}`` of ``model_id``'s usable answers (no error, some text) to ``prompts``."""
    from .models import Response

    ids = [p.pk for p in prompts]
    if not ids:
        return {}
    rows = Response.objects.filter(model_id=model_id, prompt_id__in=ids, sample_index=sample_index, error="")
    return {pid: text for pid, text in rows.values_list("prompt_id", "text") if text.strip()}


def history_for(prompt, model_id: int, sample_index: int = 0) -> list[dict]:
    """The messages a model is given before ``prompt.text``: the fixed history, then per earlier
    turn its user text and this model's own answer. Raises :class:`MissingEarlierAnswer`."""
    ancestors = chain(prompt)
    messages = root_history(prompt, ancestors)
    answers = own_answers(model_id, ancestors, sample_index)
    for earlier in ancestors:
        if earlier.pk not in answers:
            raise MissingEarlierAnswer(
                f"No answer to turn {earlier.turn} ({earlier.source_id!r}) yet; it is answered first, "
                f"then this turn (generate again once it has one)."
            )
        messages.append({"role": "user", "content": earlier.text})
        messages.append({"role": "assistant", "content": answers[earlier.pk]})
    return messages


def is_conversation(prompt) -> bool:
    return bool(prompt.parent_id or prompt.history)


@dataclass
class Turn:
    """One earlier turn on the rater page: shared by both sides, or (``split``) each side's own."""

    role: str
    label: str
    html: str = ""
    split: bool = False
    left_html: str = ""
    right_html: str = ""
    open: bool = True


def earlier_turns(prompt, left, right, render) -> list[Turn]:
    """The conversation before ``prompt.text`` as the rater page shows it above the two answers.

    ``left`` / ``right`` are the shown responses; an earlier turn answered by each model itself
    is split into "Answer 1's earlier reply" and "Answer 2's earlier reply" (the same sides as the
    answers below). A side without such an answer (an attention check's hidden model) shows the
    other side's. ``render`` turns Markdown into safe HTML. Older exchanges start folded; the last
    exchange before the question stays open.
    """
    ancestors = chain(prompt)
    turns: list[Turn] = []
    labels = {"system": "Instructions to the assistant", "user": "User", "assistant": "Assistant"}
    for message in root_history(prompt, ancestors):
        role = message.get("role", "user")
        label = labels.get(role, role.capitalize())
        turns.append(Turn(role=role, label=label, html=render(message.get("content", ""))))
    if ancestors:
        left_answers = own_answers(left.model_id, ancestors, left.sample_index)
        right_answers = own_answers(right.model_id, ancestors, right.sample_index)
        for earlier in ancestors:
            turns.append(Turn(role="user", label="User", html=render(earlier.text)))
            mine, theirs = left_answers.get(earlier.pk), right_answers.get(earlier.pk)
            mine, theirs = mine if mine is not None else theirs, theirs if theirs is not None else mine
            turns.append(
                Turn(
                    role="assistant",
                    label="Earlier replies",
                    split=True,
                    left_html=render(mine or ""),
                    right_html=render(theirs or ""),
                )
            )
    # Fold everything before the last user turn of the history (the exchange the question follows).
    last_user = max((i for i, t in enumerate(turns) if t.role == "user"), default=0)
    for i, turn in enumerate(turns):
        turn.open = i >= last_user or turn.role == "system"
    return turns


# --- checking a history written in a file ---------------------------------------------------------


def history_problem(history) -> str | None:
    """Why ``history`` is not a valid list of earlier turns, or None.

    Turns are ``{"role", "content"}`` objects: an optional system turn first, then user and
    assistant turns alternating from a user turn and ending with an assistant turn (the prompt's
    text is the next user turn).
    """
    if not isinstance(history, list):
        return "history must be a JSON list of {role, content} turns"
    roles = []
    for n, message in enumerate(history, start=1):
        if not isinstance(message, dict) or set(message) - {"role", "content", "name"}:
            return f"history turn {n} must be an object with role and content"
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            return f"history turn {n} has role {role!r}; use system, user or assistant"
        if not isinstance(content, str) or not content.strip():
            return f"history turn {n} ({role}) has no text"
        roles.append(role)
    if "system" in roles[1:]:
        return "a system turn may only come first in the history"
    talk = roles[1:] if roles[:1] == ["system"] else roles
    for n, role in enumerate(talk):
        if role != ("user" if n % 2 == 0 else "assistant"):
            return "history turns must alternate user, assistant, user, … starting with a user turn"
    if talk and talk[-1] != "assistant":
        return "history must end with an assistant turn (the prompt's text is the next user turn)"
    return None


def user_turns(history: list[dict]) -> int:
    return sum(1 for m in history if m.get("role") == "user")
