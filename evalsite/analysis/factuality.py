"""Automatic factuality against reference answers, as Natural Questions / SQuAD evaluation does.

Both sides are normalised (lowercase, punctuation and the articles a/an/the removed, whitespace
collapsed). A long-form response is *correct* if some normalised reference occurs in it as a
whole-token run ("answer contained"); a short answer is an *exact match* if it equals one.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable

import pandas as pd

from .intervals import ALPHA, wilson_interval

_PUNCT = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD/NQ normalisation: lowercase, drop punctuation, drop articles, collapse whitespace."""
    text = (text or "").lower().translate(_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _normalized_references(references: Iterable[str] | None) -> list[str]:
    return [r for r in (normalize_answer(x) for x in (references or [])) if r]


def exact_match(answer: str, references: Iterable[str] | None) -> bool | None:
    """True if the normalised answer equals a normalised reference; None when there is none."""
    refs = _normalized_references(references)
    if not refs:
        return None
    return normalize_answer(answer) in refs


def answer_contained(response: str, references: Iterable[str] | None) -> bool | None:
    """True if some normalised reference occurs in the normalised response at token boundaries.

    Token boundaries matter: the reference "1990" must not match inside "19905". None when the
    prompt has no usable reference.
    """
    refs = _normalized_references(references)
    if not refs:
        return None
    padded = f" {normalize_answer(response)} "
    return any(f" {r} " in padded for r in refs)


def check_responses(responses: pd.DataFrame, method: str = "contained") -> pd.Series:
    """Per response: True/False by the chosen check, or None where its prompt has no reference."""
    check = {"contained": answer_contained, "exact": exact_match}.get(method)
    if check is None:
        raise ValueError(f"method must be 'contained' or 'exact', not {method!r}")
    values = [check(t, r) for t, r in zip(responses["text"], responses["reference_answers"], strict=True)]
    return pd.Series(values, index=responses.index, dtype=object)


def _accuracy_rows(table: pd.DataFrame, alpha: float) -> list[dict]:
    rows = []
    for model, part in table.groupby("model", sort=True):
        n = len(part)
        k = int(part["correct"].sum())
        lo, hi = wilson_interval(k, n, alpha)
        rows.append({"model": str(model), "n": n, "correct": k, "accuracy": k / n, "lo": lo, "hi": hi})
    return rows


def accuracy_by_model(responses: pd.DataFrame, *, method: str = "contained", alpha: float = ALPHA) -> dict:
    """Accuracy per model, overall and per category, over responses whose prompt has references.

    Responses are one per prompt and model, so they are independent given the model and a
    Wilson interval fits. Returns ``{"method", "n_checked", "overall": [...], "by_category": {...}}``.
    """
    verdict = check_responses(responses, method)
    checked = responses.loc[verdict.notna(), ["model", "category"]].copy()
    checked["correct"] = verdict[verdict.notna()].astype(bool).to_numpy()
    result = {
        "method": method,
        "n_checked": int(len(checked)),
        "overall": _accuracy_rows(checked, alpha),
        "by_category": {},
    }
    for category, part in checked.groupby("category", sort=True):
        result["by_category"][str(category)] = _accuracy_rows(part, alpha)
    return result


def response_truth(responses: pd.DataFrame, method: str = "contained") -> dict[tuple[str, str] | str, bool]:
    """Map response_id and (prompt_id, model) -> correct, for responses whose prompt has references.

    Ratings that carry response ids are matched by id (exact when a model has several samples per
    prompt); otherwise by prompt and model.
    """
    verdict = check_responses(responses, method)
    known = verdict.notna().to_numpy()
    values = verdict[known].astype(bool).tolist()
    keys = zip(responses["prompt_id"].to_numpy()[known], responses["model"].to_numpy()[known], strict=True)
    truth: dict[tuple[str, str] | str, bool] = dict(zip(keys, values, strict=True))
    truth.update(zip(responses["response_id"].to_numpy()[known], values, strict=True))
    return truth
