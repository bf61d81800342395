"""The whole study report as one JSON-serialisable dict.

Pure: takes the tidy tables (see :mod:`schema`) and returns plain data; the dashboard renders it,
the API serves it, a Celery task caches it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from . import agreement, bradley_terry, crowd_expert, factuality, judge, position, style, winrates
from .schema import make_ratings, make_responses, select_ratings, teacher_model

REPORT_VERSION = 1


def to_jsonable(value: Any) -> Any:
    """Recursively turn numpy scalars/arrays into Python values and NaN/inf into None."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return None if not math.isfinite(float(value)) else float(value)
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def _headline(fooled: dict, wins: dict, accuracy: dict, teacher: str | None) -> dict:
    """How often the crowd prefers or ties a wrong answer, per model and category, beside the
    human "equal or better" rate and factual accuracy: the study's central comparison."""
    acc = {row["model"]: row for row in accuracy.get("overall", [])}
    geq = {row["model"]: row for row in wins.get("overall", [])}
    models = sorted(set(fooled["by_wrong_model"]) | set(acc) | set(geq))
    per_model = []
    for model in models:
        f = fooled["by_wrong_model"].get(model, {})
        per_model.append(
            {
                "model": model,
                "is_teacher": model == teacher,
                "crowd_fooled": f.get("crowd"),
                "expert_fooled": f.get("expert"),
                "p_geq_teacher": geq.get(model, {}).get("p_geq"),
                "p_geq_teacher_lo": geq.get(model, {}).get("p_geq_lo"),
                "p_geq_teacher_hi": geq.get(model, {}).get("p_geq_hi"),
                "accuracy": acc.get(model, {}).get("accuracy"),
                "accuracy_lo": acc.get(model, {}).get("lo"),
                "accuracy_hi": acc.get(model, {}).get("hi"),
            }
        )
    per_category = [
        {"category": c, "crowd_fooled": v["crowd"], "expert_fooled": v["expert"], "gap": v["gap"]}
        for c, v in fooled["by_category"].items()
    ]
    overall = fooled["overall"]
    crowd = overall["crowd"]["estimate"]
    summary = None
    if crowd is not None and math.isfinite(crowd):
        summary = (
            f"Where exactly one answer is factually correct, crowd raters preferred or tied the wrong "
            f"answer in {crowd:.0%} of ratings"
        )
        expert = overall["expert"]["estimate"]
        summary += f" (experts: {expert:.0%})." if expert is not None and math.isfinite(expert) else "."
    return {"summary": summary, "overall": overall, "per_model": per_model, "per_category": per_category}


def build_report(
    ratings_df: pd.DataFrame,
    responses_df: pd.DataFrame | None = None,
    *,
    include_flagged: bool = False,
    include_attention: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
    judgments: pd.DataFrame | None = None,
) -> dict:
    """Every analysis of one study, as a JSON-serialisable dict.

    By default attention checks and flagged raters' ratings are excluded (counts under
    ``excluded``); preference statistics use crowd ratings, with experts reported beside them.
    ``judgments`` (optional) holds LLM-judge verdicts per comparison (see :mod:`judge`).
    """
    all_ratings = make_ratings(ratings_df)
    responses = make_responses(responses_df if responses_df is not None else [])
    analysed, excluded = select_ratings(
        all_ratings, include_flagged=include_flagged, include_attention=include_attention
    )
    crowd = analysed[~analysed["is_expert"]].reset_index(drop=True)
    experts = analysed[analysed["is_expert"]].reset_index(drop=True)
    teacher = teacher_model(analysed)
    models = sorted(set(analysed["model_a"]) | set(analysed["model_b"]))

    report: dict[str, Any] = {
        "version": REPORT_VERSION,
        "computed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": {
            "include_flagged": include_flagged,
            "include_attention": include_attention,
            "n_boot": n_boot,
            "seed": seed,
        },
        "counts": {
            "ratings_total": int(len(all_ratings)),
            "ratings_analysed": int(len(analysed)),
            "crowd_ratings": int(len(crowd)),
            "expert_ratings": int(len(experts)),
            "comparisons": int(analysed["comparison_id"].nunique()),
            "prompts": int(analysed["prompt_id"].nunique()),
            "raters": int(analysed["rater_id"].nunique()),
            "models": len(models),
            "responses": int(len(responses)),
        },
        "excluded": excluded,
        "teacher": teacher,
        "models": models,
    }
    report["win_rates"] = winrates.win_rates_vs_teacher(crowd, teacher=teacher, n_boot=n_boot, seed=seed)
    report["win_rates_expert"] = winrates.win_rates_vs_teacher(experts, teacher=teacher, n_boot=n_boot, seed=seed)
    # Strengths over the models the crowd actually compared: a model without crowd votes would
    # otherwise get a made-up rating of 1000 with a zero-width interval.
    report["bradley_terry"] = bradley_terry.bradley_terry(crowd, n_boot=n_boot, seed=seed)
    report["bradley_terry_position"] = bradley_terry.bradley_terry(crowd, position=True, n_boot=n_boot, seed=seed)
    report["style"] = style.style_controlled(crowd, n_boot=n_boot, seed=seed)
    report["position"] = position.left_win_share(crowd, n_boot=n_boot, seed=seed)
    # Long-form answers are judged by "answer contained" (the headline); exact match is for
    # short-answer prompts and reported beside it.
    report["factuality"] = factuality.accuracy_by_model(responses, method="contained")
    report["factuality_exact"] = factuality.accuracy_by_model(responses, method="exact")
    report["crowd_vs_expert"] = {
        "fooled": crowd_expert.fooled_rates(analysed, responses, n_boot=n_boot, seed=seed),
        "error_flags": crowd_expert.error_flag_rates(analysed, responses, n_boot=n_boot, seed=seed),
    }
    report["agreement"] = agreement.agreement_summary(analysed)
    report["rater_quality"] = agreement.rater_quality(analysed, all_ratings)
    if judgments is not None and len(judgments):
        truth = crowd_expert.comparison_truth(analysed, responses)
        report["judge"] = {
            "human": judge.judge_human_agreement(judgments, crowd),
            "expert": judge.judge_human_agreement(judgments, experts) if len(experts) else None,
            "factual": judge.judge_factual_agreement(judgments, truth),
        }
    report["headline"] = _headline(
        report["crowd_vs_expert"]["fooled"], report["win_rates"], report["factuality"], teacher
    )
    return to_jsonable(report)
