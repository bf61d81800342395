"""Turn a study in the database into the tidy tables of :mod:`evalsite.analysis.schema`.

The only place where the analysis meets the ORM. It reads with ``values()`` (no model instances)
and maps each response's text once, so a study with many ratings loads in one pass.
"""

from __future__ import annotations

import pandas as pd

from evalsite.analysis.schema import make_ratings, make_responses
from evalsite.dashboard.models import JudgeVerdict
from evalsite.rating.models import Rating
from evalsite.studies.models import Response, Study

UNCATEGORIZED = "uncategorized"


def load_responses(study: Study) -> pd.DataFrame:
    """One row per prompt and model: the first sample (``sample_index`` 0), generated without error
    and with text, as raters compare it; without the attention-check model's deliberately wrong answers."""
    # Only the answers that take part in comparisons (the rule of evalsite.studies.pairing): a failed
    # generation (error set, empty text) would count as a wrong answer in the factuality accuracy,
    # extra samples would count as independent answers (the Wilson interval assumes one per prompt
    # and model) and would collide on response_truth's (prompt, model) key.
    # The hidden attention-check model's answers are wrong on purpose; they would distort accuracy.
    rows = (
        Response.objects.filter(prompt__study=study, sample_index=0, error="")
        .exclude(text="")
        .exclude(model__role="attention")
        .values(
            "id", "prompt_id", "model__alias", "model__role", "prompt__category", "text", "prompt__reference_answers",
            "prompt__turn",
        )
    )
    return make_responses(
        {
            "response_id": r["id"],
            "prompt_id": r["prompt_id"],
            "model": r["model__alias"],
            "role": r["model__role"],
            "category": r["prompt__category"] or UNCATEGORIZED,
            "text": r["text"],
            "reference_answers": r["prompt__reference_answers"] or [],
            "turn": r["prompt__turn"],  # which turn of a conversation (1 for a single-turn prompt)
        }
        for r in rows.iterator()
        if r["text"].strip()  # whitespace-only answers cannot be judged (nor are they paired)
    )


def _span_counts(spans) -> tuple[int, int]:
    """Error spans per side; spans refer to the comparison's stored A/B."""
    a = b = 0
    for span in spans or []:
        side = span.get("response") if isinstance(span, dict) else None
        a += side == "A"
        b += side == "B"
    return a, b


def load_ratings(study: Study, texts: dict[int, str] | None = None) -> pd.DataFrame:
    """One row per submitted rating, attention checks and flagged raters included (marked).

    ``flagged`` is true when the rating itself was flagged or its rater is blocked; the analysis
    excludes both by default and reports how many it left out.
    """
    if texts is None:
        texts = dict(Response.objects.filter(prompt__study=study).values_list("id", "text"))
    rows = Rating.objects.filter(study=study).values(
        "id",
        "comparison_id",
        "comparison__prompt_id",
        "comparison__prompt__category",
        "comparison__prompt__turn",
        "comparison__is_attention_check",
        "comparison__expected_winner",
        "comparison__response_a_id",
        "comparison__response_b_id",
        "comparison__response_a__model__alias",
        "comparison__response_b__model__alias",
        "comparison__response_a__model__role",
        "comparison__response_b__model__role",
        "rater_id",
        "rater__is_expert",
        "rater__blocked",
        "assignment__left_side",
        "winner",
        "strength",
        "correct_a",
        "correct_b",
        "error_spans",
        "flagged",
        "server_seconds",
        "client_seconds",
        "style",
    )
    aspects = list((study.rating_form or {}).get("style_aspects") or [])

    def row(r: dict) -> dict:
        spans_a, spans_b = _span_counts(r["error_spans"])
        response_a, response_b = r["comparison__response_a_id"], r["comparison__response_b_id"]
        seconds = r["client_seconds"] if r["client_seconds"] is not None else r["server_seconds"]
        return {
            "rating_id": r["id"],
            "comparison_id": r["comparison_id"],
            "prompt_id": r["comparison__prompt_id"],
            "category": r["comparison__prompt__category"] or UNCATEGORIZED,
            "turn": r["comparison__prompt__turn"],
            "rater_id": r["rater_id"],
            "is_expert": r["rater__is_expert"],
            "model_a": r["comparison__response_a__model__alias"],
            "model_b": r["comparison__response_b__model__alias"],
            "role_a": r["comparison__response_a__model__role"],
            "role_b": r["comparison__response_b__model__role"],
            "response_id_a": str(response_a),
            "response_id_b": str(response_b),
            "winner": r["winner"],
            "left_side": r["assignment__left_side"],
            "strength": r["strength"],
            "correct_a": r["correct_a"] or None,
            "correct_b": r["correct_b"] or None,
            "error_spans_a": spans_a,
            "error_spans_b": spans_b,
            "text_a": texts.get(response_a, ""),
            "text_b": texts.get(response_b, ""),
            "is_attention_check": r["comparison__is_attention_check"],
            "expected_winner": r["comparison__expected_winner"] or None,
            "flagged": bool(r["flagged"] or r["rater__blocked"]),
            "time_on_task_s": seconds,
            # Likert style aspects, e.g. aspect_fluent_a; style is {"A": {"fluent": 4, ...}, "B": {...}}.
            **{
                f"aspect_{aspect}_{side.lower()}": ((r["style"] or {}).get(side) or {}).get(aspect)
                for aspect in aspects
                for side in ("A", "B")
            },
        }

    return make_ratings(row(r) for r in rows.iterator())


def load_frames(study: Study) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ratings, responses) of a study, ready for :func:`evalsite.analysis.report.build_report`."""
    responses = load_responses(study)
    # Attention checks need their texts too (for the style features when they are included).
    texts = dict(Response.objects.filter(prompt__study=study).values_list("id", "text"))
    return load_ratings(study, texts), responses


def load_judgments(study: Study) -> pd.DataFrame | None:
    """Both-order verdicts of the study's judge with the most verdicts, one row per comparison.

    Comparisons missing an order or with an unparsed verdict are left out. None when no judge ran.
    """
    rows = list(
        JudgeVerdict.objects.filter(comparison__study=study)
        .exclude(verdict="")
        .values("comparison_id", "judge_id", "order", "verdict")
    )
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    judge = frame["judge_id"].value_counts().idxmax()
    wide = frame[frame["judge_id"] == judge].pivot_table(
        index="comparison_id", columns="order", values="verdict", aggfunc="last"
    )
    if not {"AB", "BA"} <= set(wide.columns):
        return None
    wide = wide.dropna(subset=["AB", "BA"])
    return pd.DataFrame(
        {
            "comparison_id": wide.index.astype(str),
            "verdict_ab": wide["AB"].to_numpy(),
            "verdict_ba": wide["BA"].to_numpy(),
        }
    )
