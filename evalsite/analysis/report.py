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

from . import agreement, bradley_terry, crowd_expert, factuality, finding, judge, position, style, winrates
from .intervals import METHOD_BOOTSTRAP, METHOD_SANDWICH, METHOD_WILSON, MIN_PROMPTS
from .schema import make_ratings, make_responses, select_ratings, teacher_model

REPORT_VERSION = 2


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
            "Where exactly one answer is factually correct, crowd raters preferred or tied the wrong answer in "
            f"{_rate(overall['crowd'])}"
        )
        expert = overall["expert"]
        if expert["estimate"] is not None and math.isfinite(expert["estimate"]):
            summary += f"; experts, scored against a truth independent of them, in {_rate(expert)}."
        else:
            summary += "."
    return {"summary": summary, "overall": overall, "per_model": per_model, "per_category": per_category}


def _rate(rate: dict) -> str:
    """E.g. "25% [8, 52] of 12 ratings on 12 prompts" (with "Wilson" when the interval is Wilson's)."""
    text = f"{rate['estimate']:.0%}"
    lo, hi = rate.get("lo"), rate.get("hi")
    if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
        text += f" [{100 * lo:.0f}, {100 * hi:.0f}]"
        if rate.get("method") == METHOD_WILSON:
            text += " (Wilson: too few prompts to resample)"
    n = int(rate.get("n") or 0)
    prompts = int(rate.get("n_prompts") or 0)
    return text + f" of {n} rating{'' if n == 1 else 's'} on {prompts} prompt{'' if prompts == 1 else 's'}"


def _fit_or_note(fit, ratings: pd.DataFrame, **kwargs) -> dict:
    """Run a strength fit, or say why there is none (no votes between two models yet)."""
    try:
        return fit(ratings, **kwargs)
    except ValueError as exc:
        if len(ratings):
            raise
        return {"rows": [], "coefficients": [], "n_votes": 0, "warnings": [], "note": str(exc)}


def build_report(
    ratings_df: pd.DataFrame,
    responses_df: pd.DataFrame | None = None,
    *,
    include_flagged: bool = False,
    include_attention: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
    judgments: pd.DataFrame | None = None,
    min_prompts: int = MIN_PROMPTS,
) -> dict:
    """Every analysis of one study, as a JSON-serialisable dict.

    By default attention checks and flagged raters' ratings are excluded (counts under
    ``excluded``); preference statistics use crowd ratings, with experts reported beside them.
    ``judgments`` (optional) holds LLM-judge verdicts per comparison (see :mod:`judge`).
    No clustered interval comes from fewer than ``min_prompts`` prompts (see :mod:`intervals`);
    ``finding`` is the study's result in one sentence (:mod:`finding`).
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
            "min_prompts": min_prompts,
        },
        "intervals": {
            "level": 0.95,
            "proportions": f"{METHOD_BOOTSTRAP}, {n_boot} rounds; {METHOD_WILSON} below {min_prompts} prompts "
            "or when every resample gives the same value (marked)",
            "strengths": f"{METHOD_BOOTSTRAP}, {n_boot} rounds (percentile), beside a {METHOD_SANDWICH} "
            "(Wald); none below {min_prompts} prompts".replace("{min_prompts}", str(min_prompts)),
            "style": f"{METHOD_BOOTSTRAP}, {n_boot} rounds (each vote weighted by how often its prompt was drawn), "
            f"beside a {METHOD_SANDWICH}",
            "accuracy": "Wilson (one answer per prompt and model: independent)",
            "min_prompts": min_prompts,
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
    common = {"n_boot": n_boot, "seed": seed, "min_prompts": min_prompts}
    report["win_rates"] = winrates.win_rates_vs_teacher(crowd, teacher=teacher, **common)
    report["win_rates_expert"] = winrates.win_rates_vs_teacher(experts, teacher=teacher, **common)
    # Strengths over the models the crowd actually compared: a model without crowd votes would
    # otherwise get a made-up rating of 1000 with a zero-width interval.
    report["bradley_terry"] = _fit_or_note(bradley_terry.bradley_terry, crowd, **common)
    report["bradley_terry_position"] = _fit_or_note(bradley_terry.bradley_terry, crowd, position=True, **common)
    report["style"] = _fit_or_note(style.style_controlled, crowd, **common)
    report["position"] = position.left_win_share(crowd, **common)
    # Long-form answers are judged by "answer contained" (the headline); exact match is for
    # short-answer prompts and reported beside it.
    report["factuality"] = factuality.accuracy_by_model(responses, method="contained")
    report["factuality_exact"] = factuality.accuracy_by_model(responses, method="exact")
    report["crowd_vs_expert"] = {
        "fooled": crowd_expert.fooled_rates(analysed, responses, **common),
        "error_flags": crowd_expert.error_flag_rates(analysed, responses, **common),
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
    report["finding"] = finding.one_sentence_finding(
        crowd, report["win_rates"], report["factuality"], min_prompts=min_prompts
    )
    return to_jsonable(report)
