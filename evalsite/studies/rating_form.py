"""What a study's rating form (``Study.rating_form``) may say, checked in one place.

The form is a small JSON object: which optional questions the rater page asks, and which answers
are required. The admin's form builder composes it from fields; the API accepts it as JSON; both
end in :func:`validate_rating_form` (through ``Study.clean`` and the serializer), so a typo such
as ``correctnes`` is refused with the known keys listed instead of silently dropping a question.

Keys (all optional; a missing question is not asked):

- ``strength`` (bool): a 5-point strength of preference;
- ``style_aspects`` (list of slugs): 1-5 style scores per answer, e.g. ``["fluent", "confident"]``;
- ``correctness`` (bool): correct / contains an error / can't tell, per answer;
- ``error_spans`` (bool): mark wrong words in an answer;
- ``rationale`` (bool): a short free-text reason;
- ``required`` (list of question keys, :data:`QUESTIONS`): the answers a rater must give; without
  it, the overall preference and (when asked) correctness. The overall preference is always asked.
"""

from __future__ import annotations

import difflib

from django.core.exceptions import ValidationError
from django.core.validators import validate_slug

# The questions a form can require, as named in ``rating_form["required"]`` (evalsite.rating.forms
# reads them from here).
QUESTIONS = ("preference", "correctness", "strength", "style", "rationale")
DEFAULT_REQUIRED = ("preference", "correctness")
FLAGS = ("strength", "correctness", "error_spans", "rationale")
KNOWN_KEYS = ("strength", "style_aspects", "correctness", "error_spans", "rationale", "required")
# Style aspects the rater page has its own wording for; others are shown by their name.
KNOWN_ASPECTS = {"fluent": "Fluent and well organized", "confident": "Sounds confident and authoritative"}
MAX_ASPECTS = 10
MAX_ASPECT_LENGTH = 40


def asked_questions(form: dict) -> dict[str, bool]:
    """Which of :data:`QUESTIONS` the form asks (the overall preference always)."""
    return {
        "preference": True,
        "correctness": bool(form.get("correctness")),
        "strength": bool(form.get("strength")),
        "style": bool(form.get("style_aspects")),
        "rationale": bool(form.get("rationale")),
    }


def aspect_problem(aspect) -> str | None:
    """Why ``aspect`` cannot name a style aspect, or None."""
    if not isinstance(aspect, str) or not aspect:
        return "a style aspect must be a non-empty name"
    if len(aspect) > MAX_ASPECT_LENGTH:
        return f"style aspect {aspect[:20]!r}… is longer than {MAX_ASPECT_LENGTH} characters"
    try:
        validate_slug(aspect)
    except ValidationError:
        return f"style aspect {aspect!r} must be a slug (letters, digits, '_' or '-', no spaces)"
    return None


def rating_form_problems(form) -> list[str]:
    """Everything wrong with ``form``, each as a sentence; empty when it is valid."""
    if not isinstance(form, dict):
        return ['The rating form must be a JSON object, e.g. {"strength": true, "correctness": true}.']
    problems = []
    unknown = [key for key in form if key not in KNOWN_KEYS]
    for key in unknown:
        close = difflib.get_close_matches(str(key), KNOWN_KEYS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(f"Unknown rating form key {key!r}{hint}. Known keys: {', '.join(KNOWN_KEYS)}.")
    for key in FLAGS:
        if key in form and not isinstance(form[key], bool):
            problems.append(f"{key!r} must be true or false, not {form[key]!r}.")
    aspects = form.get("style_aspects", [])
    if not isinstance(aspects, list):
        problems.append('"style_aspects" must be a list of names, e.g. ["fluent", "confident"].')
        aspects = []
    problems += [problem for aspect in aspects if (problem := aspect_problem(aspect))]
    if len(aspects) > MAX_ASPECTS:
        problems.append(f"At most {MAX_ASPECTS} style aspects.")
    duplicates = sorted({a for a in aspects if isinstance(a, str) and aspects.count(a) > 1})
    if duplicates:
        problems.append(f"Style aspect(s) listed twice: {', '.join(duplicates)}.")
    required = form.get("required", None)
    if required is not None:
        if not isinstance(required, list) or not all(isinstance(q, str) for q in required):
            problems.append(f'"required" must be a list of question names from: {", ".join(QUESTIONS)}.')
        else:
            for question in required:
                if question not in QUESTIONS:
                    problems.append(f"Unknown required question {question!r}. Questions: {', '.join(QUESTIONS)}.")
            if not problems:
                asked = asked_questions(form)
                for question in required:
                    if not asked[question]:
                        problems.append(
                            f"{question!r} is required but the form does not ask it: "
                            f'ask it, or remove it from "required".'
                        )
    return problems


def validate_rating_form(form) -> None:
    """Raise a :class:`ValidationError` listing every problem of ``form`` (see the module doc)."""
    problems = rating_form_problems(form)
    if problems:
        raise ValidationError(problems)


def canonical_rating_form(form: dict) -> dict:
    """``form`` with every key spelled out, as the rater page reads it: two forms that ask the same
    questions and require the same answers compare equal."""
    asked = asked_questions(form)
    listed = form.get("required", DEFAULT_REQUIRED)
    return {
        "strength": bool(form.get("strength")),
        "style_aspects": list(form.get("style_aspects") or []),
        "correctness": bool(form.get("correctness")),
        "error_spans": bool(form.get("error_spans")),
        "rationale": bool(form.get("rationale")),
        "required": ["preference", *(q for q in QUESTIONS if q != "preference" and q in listed and asked[q])],
    }


def frozen_note(status: str) -> str:
    """What the admin says above a live or closed study's (disabled) form builder."""
    if status == "closed":
        return "The rating form is frozen while the study is closed: the ratings collected refer to it."
    return (
        f"The rating form is frozen while the study is {status}: pause it to change the form "
        "(the ratings collected so far refer to it)."
    )
