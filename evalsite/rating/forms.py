"""Parse a rating from the task page's form or the JSON endpoint into a :class:`RatingInput`.

Both carry the same field names, in screen terms (``left``/``right``): ``preference``,
``strength``, ``style_<side>_<aspect>``, ``correct_<side>``, ``error_spans`` (a JSON list of
``{"side", "start", "end"}``), ``rationale``, ``client_ms``. Only ``preference`` is required;
questions the study's rating form does not ask are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from .assignment import RatingInput

SIDES = ("left", "right")
PREFERENCES = ("left", "right", "tie", "both_bad")
CORRECTNESS = ("correct", "error", "unsure")
MAX_SPANS = 50
MAX_RATIONALE = 5000


class RatingFormError(ValueError):
    """The submission is incomplete or malformed; the message tells the rater what to fix."""


def _int(value, name: str, low: int, high: int) -> int | None:
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise RatingFormError(f"{name} must be a whole number from {low} to {high}.") from None
    if not low <= number <= high:
        raise RatingFormError(f"{name} must be from {low} to {high}.")
    return number


def parse_rating(data: Mapping, rating_form: dict) -> RatingInput:
    """Validate a submission against the study's rating form."""
    preference = data.get("preference")
    if preference not in PREFERENCES:
        raise RatingFormError("Please choose which answer is better (or tie / both bad) before submitting.")
    result = RatingInput(preference=preference)
    if rating_form.get("strength"):
        result.strength = _int(data.get("strength"), "Strength", 1, 5)
    for side in SIDES:
        scores = {}
        for aspect in rating_form.get("style_aspects", []):
            score = _int(data.get(f"style_{side}_{aspect}"), f"The {aspect} score", 1, 5)
            if score is not None:
                scores[aspect] = score
        if scores:
            result.style[side] = scores
        if rating_form.get("correctness"):
            verdict = data.get(f"correct_{side}") or ""
            if verdict and verdict not in CORRECTNESS:
                raise RatingFormError("Correctness must be correct, error or can't tell.")
            if verdict:
                result.correct[side] = verdict
    if rating_form.get("error_spans"):
        result.error_spans = _spans(data.get("error_spans"))
    if rating_form.get("rationale"):
        result.rationale = str(data.get("rationale") or "")[:MAX_RATIONALE].strip()
    client_ms = data.get("client_ms")
    try:
        result.client_seconds = float(client_ms) / 1000.0 if client_ms not in (None, "") else None
    except (TypeError, ValueError):
        result.client_seconds = None  # a broken browser clock is not the rater's fault
    return result


def _spans(raw) -> list[tuple[str, int, int]]:
    if raw in (None, "", "[]"):
        return []
    try:
        items = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        raise RatingFormError("The marked errors could not be read; please mark them again.") from None
    if not isinstance(items, list) or len(items) > MAX_SPANS:
        raise RatingFormError(f"Mark at most {MAX_SPANS} errors.")
    spans = []
    for item in items:
        try:
            side, start, end = item["side"], int(item["start"]), int(item["end"])
        except (KeyError, TypeError, ValueError):
            raise RatingFormError("The marked errors could not be read; please mark them again.") from None
        if side not in SIDES or start < 0 or end <= start:
            raise RatingFormError("A marked error is empty or on an unknown answer.")
        spans.append((side, start, end))
    return spans
