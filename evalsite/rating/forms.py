"""Parse a rating from the task page's form into a :class:`RatingInput`.

Field names are in screen terms (``left``/``right``): ``preference``, ``strength``,
``style_<side>_<aspect>``, ``correct_<side>``, ``error_spans`` (a JSON list of
``{"side", "start", "end"}``), ``rationale``, ``client_ms``. Questions the study's rating form
does not ask are ignored. Which answers are required is defined once, by :func:`required_fields`:
the page marks those inputs and checks them before submitting, and :func:`parse_rating` refuses a
submission without them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from evalsite import edge
from evalsite.studies.rating_form import DEFAULT_REQUIRED, QUESTIONS, asked_questions

from .assignment import RatingInput

SIDES = ("left", "right")
PREFERENCES = ("left", "right", "tie", "both_bad")
CORRECTNESS = ("correct", "error", "unsure")
MAX_SPANS = 50
MAX_RATIONALE = 5000
MAX_CLIENT_MS = 7 * 24 * 3600 * 1000  # a week: anything longer is a broken clock
MAX_SPAN_OFFSET = 10_000_000  # a character offset into an answer; no answer is that long
# QUESTIONS (what ``rating_form["required"]`` may name) is defined with the rest of the form's
# rules in evalsite.studies.rating_form.
FIELD_LABELS = {
    "preference": "which answer is better",
    "correct": "whether Answer {n} is correct",
    "strength": "how strong your preference is",
    "style": "the {aspect} score of Answer {n}",
    "rationale": "a short reason",
}


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


def required_questions(rating_form: dict, *, expert: bool = False) -> list[str]:
    """The questions a rater must answer: the form's ``required`` list, or the default.

    Default: the overall verdict, and correctness of each answer when the form asks it (the
    substance questions are what the study exists for). Experts always answer correctness: their
    verdicts are the truth the report scores the crowd against. A required question the form does
    not ask is ignored.
    """
    asked = asked_questions(rating_form)
    listed = list(rating_form.get("required", DEFAULT_REQUIRED))
    if expert:
        listed.append("correctness")
    return [q for q in QUESTIONS if q in listed and asked[q]]


def required_fields(rating_form: dict, *, expert: bool = False) -> list[tuple[str, str]]:
    """The input names that must carry an answer, each with how the page names it to the rater."""
    fields = []
    for question in required_questions(rating_form, expert=expert):
        if question == "correctness":
            fields += [(f"correct_{side}", FIELD_LABELS["correct"].format(n=n)) for n, side in enumerate(SIDES, 1)]
        elif question == "style":
            for n, side in enumerate(SIDES, 1):
                for aspect in rating_form.get("style_aspects", []):
                    label = FIELD_LABELS["style"].format(aspect=aspect.replace("_", " "), n=n)
                    fields.append((f"style_{side}_{aspect}", label))
        else:
            fields.append((question, FIELD_LABELS[question]))
    return fields


def parse_rating(data: Mapping, rating_form: dict, *, expert: bool = False) -> RatingInput:
    """Validate a submission against the study's rating form."""
    required = required_fields(rating_form, expert=expert)
    missing = [label for name, label in required if not str(data.get(name) or "").strip()]
    if missing:
        raise RatingFormError(f"Please answer {', '.join(missing)} before submitting.")
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
        millis = float(client_ms) if client_ms not in (None, "") else None
    except (TypeError, ValueError):
        millis = None
    # A broken browser clock is not the rater's fault: store nothing rather than refuse. Never
    # store a non-finite number (the API and the JSON export could not represent it).
    if millis is not None and math.isfinite(millis) and 0 <= millis <= MAX_CLIENT_MS:
        result.client_seconds = millis / 1000.0
    return result


def _spans(raw) -> list[tuple[str, int, int]]:
    if raw in (None, "", "[]"):
        return []
    unreadable = "The marked errors could not be read; please mark them again."
    try:
        # The edge rules: finite numbers, bounded depth, valid text (a deep or huge value is refused).
        items = edge.loads(raw, "error_spans") if isinstance(raw, str) else raw
    except ValueError:
        raise RatingFormError(unreadable) from None
    if not isinstance(items, list) or len(items) > MAX_SPANS:
        raise RatingFormError(f"Mark at most {MAX_SPANS} errors.")
    spans = []
    for item in items:
        try:
            side, start, end = item["side"], item["start"], item["end"]
        except (KeyError, TypeError):
            raise RatingFormError(unreadable) from None
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in (start, end)):
            raise RatingFormError(unreadable)
        if side not in SIDES or start < 0 or end <= start or end > MAX_SPAN_OFFSET:
            raise RatingFormError("A marked error is empty or on an unknown answer.")
        spans.append((side, start, end))
    return spans
