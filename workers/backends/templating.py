"""Turning a chat prompt into token ids the same way for every local engine.

vLLM and transformers get identical input ids from here, so their greedy answers can be compared
token for token (and a prompt's length is checked against the context before any engine sees it).
"""

from __future__ import annotations

from typing import Any

from .base import ChatPrompt


def encode_chat(tokenizer: Any, prompt: ChatPrompt) -> list[int]:
    """Token ids of ``prompt`` through the tokenizer's chat template (plain text when it has none)."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(prompt.messages(), add_generation_prompt=True, tokenize=False)
    elif not prompt.history:
        text = (prompt.system + "\n\n" if prompt.system else "") + prompt.text
    else:  # a conversation without a chat template: plain "User:" / "Assistant:" turns
        names = {"user": "User", "assistant": "Assistant"}
        parts = [
            m["content"] if m["role"] == "system" else f"{names[m['role']]}: {m['content']}"
            for m in prompt.messages()
        ]
        text = "\n\n".join(parts) + "\n\nAssistant:"
    # The template already writes any BOS token it wants; adding special tokens again would double it.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Cut ``text`` before the first stop string; says whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
