"""A study's plan and where it stands: :mod:`evalsite.analysis.planning` and
:mod:`evalsite.analysis.stopping` fed from the database.

One entry point, :func:`study_plan`, for the study page's "Plan" section, the API
(``GET/POST /api/v1/studies/<slug>/plan/``) and ``manage.py plan_study --study SLUG``. The design
comes from the study (models, pairing, prompts with comparisons, k, attention-check rate); the
win rate, tie rate, within-prompt correlation and seconds per task from its crowd ratings when it
has some (a pilot), stated defaults otherwise; anything the researcher gives overrides both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import pandas as pd

from evalsite.analysis.planning import (
    DEFAULT_ICC,
    PAIRINGS,
    Design,
    comparisons_per_prompt,
    costs,
    pilot_estimates,
    plan,
    z_value,
)
from evalsite.analysis.report import to_jsonable
from evalsite.analysis.schema import make_ratings, select_ratings
from evalsite.analysis.stopping import stopping_status
from evalsite.rating.models import Rating
from evalsite.studies.models import Comparison, LanguageModel, Study

INT_INPUTS = {"models": (2, 200), "prompts": (1, 10_000_000), "k": (1, 1000)}
FLOAT_INPUTS = {
    "win_rate": (0.0, 1.0),
    "tie_rate": (0.0, 1.0),
    "icc": (0.0, 1.0),
    "cost_per_task": (0.0, 1e6),
    "platform_fee": (0.0, 10.0),
    "seconds_per_task": (0.01, 1e6),
    "attention_check_rate": (0.0, 0.99),
    "difference": (0.001, 0.499),
    "target_halfwidth": (0.0001, 0.999),
}
INPUTS = (*INT_INPUTS, *FLOAT_INPUTS, "pairing")
# A pilot's correlation is used once this many comparisons have two or more ratings.
MIN_PILOT_COMPARISONS = 10


class PlanInputError(ValueError):
    """Inputs the planner cannot use; ``errors`` maps each field to what is wrong with it."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def parse_inputs(data: Mapping | None) -> dict[str, Any]:
    """The planner inputs present in ``data`` (a form, query string or JSON object), checked.

    Blank values are ignored; anything else that is not a number in range raises
    :class:`PlanInputError` naming every bad field.
    """
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise PlanInputError({"detail": "Send the inputs as an object (JSON) or as form fields."})
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name in INPUTS:
        raw = data.get(name)
        if isinstance(raw, list | tuple):  # a QueryDict's getlist-like value
            raw = raw[-1] if raw else None
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            continue
        if name == "pairing":
            if raw not in PAIRINGS:
                errors[name] = f"must be one of {list(PAIRINGS)}."
            else:
                values[name] = raw
            continue
        try:
            if isinstance(raw, bool):
                raise ValueError
            number = float(raw)
        except (TypeError, ValueError, OverflowError):
            errors[name] = "must be a number."
            continue
        bounds = INT_INPUTS.get(name) or FLOAT_INPUTS[name]
        if not math.isfinite(number) or not bounds[0] <= number <= bounds[1]:
            errors[name] = f"must be between {bounds[0]:g} and {bounds[1]:g}."
            continue
        if name in INT_INPUTS:
            if number != int(number):
                errors[name] = "must be a whole number."
                continue
            number = int(number)
        values[name] = number
    if errors:
        raise PlanInputError(errors)
    return values


def load_plan_ratings(study: Study) -> pd.DataFrame:
    """Every rating of the study as :func:`evalsite.dashboard.loader.load_ratings` gives it
    (flags included), without the answer texts: the planner reads no style features."""
    from .loader import load_ratings

    return load_ratings(study, texts={})


def study_design(study: Study, ratings=None) -> tuple[Design, dict[str, str], dict[str, Any] | None]:
    """The study's design as the planner sees it, where each input came from, and the pilot."""
    models = LanguageModel.real.filter(study=study).count()
    compared = Comparison.objects.filter(study=study, is_attention_check=False).values("prompt_id").distinct().count()
    prompts = compared or study.prompts.count()
    design = Design(
        models=max(models, 2),
        prompts=max(prompts, 1),
        k=study.redundancy,
        pairing="all" if study.pairing == Study.Pairing.ALL_PAIRS else "teacher",
        attention_check_rate=min(study.attention_check_rate, 0.99),
    )
    sources = {
        "models": "study" if models >= 2 else "default (the study has fewer than 2 models)",
        "prompts": "study: prompts with comparisons" if compared else "study: prompts (no comparisons yet)",
        "k": "study: redundancy",
        "pairing": "study",
        "attention_check_rate": "study",
    }
    for name in ("win_rate", "tie_rate", "icc", "cost_per_task", "platform_fee", "seconds_per_task", "difference"):
        sources[name] = "default"
    sources["icc"] = f"default ({DEFAULT_ICC:g}: no pilot ratings)"
    pilot = None
    if ratings is not None and len(ratings):
        pilot = pilot_estimates(ratings)
        n = pilot["n_ratings"]
        if pilot["win_rate"] is not None:
            design = design.with_(win_rate=pilot["win_rate"], tie_rate=pilot["tie_rate"])
            sources["win_rate"] = sources["tie_rate"] = f"pilot: {n} crowd ratings"
        if pilot["icc"] is not None and pilot["icc_comparisons"] >= MIN_PILOT_COMPARISONS:
            design = design.with_(icc=pilot["icc"])
            sources["icc"] = f"pilot: {pilot['icc_comparisons']} comparisons rated twice or more"
        elif pilot["icc"] is not None:
            sources["icc"] = (
                f"default ({DEFAULT_ICC:g}): only {pilot['icc_comparisons']} comparisons rated twice or more"
            )
        if pilot["seconds_per_task"]:
            design = design.with_(seconds_per_task=pilot["seconds_per_task"])
            sources["seconds_per_task"] = f"pilot: median of {n} ratings"
    return design, sources, pilot


def _usable_crowd_ratings(ratings: pd.DataFrame) -> int:
    """Crowd ratings the report analyses (no attention checks, no flagged or blocked raters)."""
    if ratings is None or not len(ratings):
        return 0
    usable, _ = select_ratings(make_ratings(ratings))
    return int((~usable["is_expert"]).sum())


def _sequence_se(design: Design) -> float:
    """The standard error the confidence sequence is tuned for: the study's final one at parity
    without ties, from the design alone (never from the ratings, so the sequence stays valid)."""
    d = design.with_(win_rate=0.5, tie_rate=0.0, icc=DEFAULT_ICC)
    return math.sqrt(0.25 * (1 + (d.k - 1) * d.icc) / (d.prompts * d.k))


def study_plan(study: Study, data: Mapping | None = None, ratings=None) -> dict[str, Any]:
    """The plan of ``study`` with the inputs in ``data`` overriding the study's, and where the
    study stands: reached precision per model, what is left to do and cost, whether it may stop."""
    values = parse_inputs(data)
    target = values.pop("target_halfwidth", None)
    if target is None and study.target_halfwidth:
        target = study.target_halfwidth  # the study's own target, unless the form asks another
    if ratings is None:
        ratings = load_plan_ratings(study)
    design, sources, pilot = study_design(study, ratings)
    # The confidence sequence is tuned from the study's own settings, never from the ratings or
    # from what is typed into the form, so looking at it cannot change it.
    sequence_se = _sequence_se(design)
    design = design.with_(**values)
    for name in values:
        sources[name] = "given"
    try:
        result = plan(design, target)
    except ValueError as exc:
        raise PlanInputError({"detail": str(exc)}) from exc
    status = stopping_status(ratings, target_halfwidth=target, planned_se=sequence_se)
    done = _usable_crowd_ratings(ratings)
    per_prompt = comparisons_per_prompt(design.models, design.pairing)
    planned_ratings = result["ratings"]
    z = z_value(design.alpha)
    progress: dict[str, Any] = {
        "crowd_ratings_done": done,
        "planned_ratings": planned_ratings,
        "to_finish": costs(design, max(planned_ratings - done, 0)),
        "models": [
            {
                "model": row["model"],
                "reached_halfwidth": row["p_geq_halfwidth"],
                "planned_halfwidth": result["win_rate_ci_halfwidth"],
                "n_ratings": row["n_ratings"],
            }
            for row in status["models"]
        ],
    }
    if target is not None:
        if result["k_needed"] is not None:
            needed = design.prompts * per_prompt * result["k_needed"]
            progress["to_target"] = {
                "how": f"k = {result['k_needed']} ratings per comparison on the {design.prompts} prompts",
                **costs(design, max(needed - done, 0)),
            }
        else:
            needed = result["prompts_needed"] * per_prompt * design.k
            progress["to_target"] = {
                "how": (
                    f"{result['prompts_needed']} prompts at k = {design.k}: no k reaches ±{target:g} on "
                    f"{design.prompts} prompts"
                ),
                **costs(design, max(needed - done, 0)),
            }
    if study.status == Study.Status.CLOSED and study.stopped_reason:
        progress["why_stopped"] = study.stopped_reason
    elif study.status == Study.Status.CLOSED:
        progress["why_stopped"] = (
            "Closed by the researcher. " + status["reason"]
            if status["may_stop"]
            else "Closed by the researcher before the stopping rule was met."
        )
    out = {
        **result,
        "study": study.slug,
        "sources": sources,
        "pilot": pilot,
        "status": status,
        "progress": progress,
        "sequence_standard_error": sequence_se,
        "z": z,
    }
    out["design"] = asdict(design)
    return to_jsonable(out)


# The study page shows the plan without asking up to this many ratings; above, on request.
PAGE_AUTO_LIMIT = 50_000
PAGE_FIELDS = (
    ("target_halfwidth", "Target half-width of P(≥ teacher)", "0.001"),
    ("prompts", "Prompts", "1"),
    ("k", "Ratings per comparison (k)", "1"),
    ("win_rate", "Win rate vs the teacher", "0.01"),
    ("tie_rate", "Tie rate (ties and both bad)", "0.01"),
    ("icc", "Within-prompt correlation", "0.01"),
    ("cost_per_task", "Pay per task", "0.01"),
    ("platform_fee", "Platform fee (share of pay)", "0.001"),
    ("seconds_per_task", "Seconds per task", "1"),
)


def plan_panel(study: Study, query: Mapping) -> dict[str, Any]:
    """What the study page's "Plan" section shows: the form's fields, the plan, or why there is none."""
    asked = any(name in query for name in (*INPUTS, "plan"))
    panel: dict[str, Any] = {"asked": asked, "errors": {}, "result": None, "fields": []}
    if not asked and Rating.objects.filter(study=study).count() > PAGE_AUTO_LIMIT:
        panel["deferred"] = True
        return panel
    try:
        result = study_plan(study, query)
    except PlanInputError as exc:
        panel["errors"] = exc.errors
        result = study_plan(study, {})
    panel["result"] = result
    design = result["design"]
    for name, label, step in PAGE_FIELDS:
        value = query.get(name) if name in panel["errors"] else None
        if value is None:
            value = result.get("target_halfwidth") if name == "target_halfwidth" else design.get(name)
        if isinstance(value, float):
            value = f"{value:.4g}"
        panel["fields"].append(
            {
                "name": name,
                "label": label,
                "step": step,
                "value": "" if value is None else value,
                "source": result["sources"].get(name, ""),
                "error": panel["errors"].get(name, ""),
            }
        )
    points = lambda x: None if x is None else round(100 * x, 1)  # noqa: E731
    panel["points"] = {
        "p_geq": points(result["win_rate_ci_halfwidth"]),
        "half_ties": points(result["win_rate_half_ties_ci_halfwidth"]),
        "target": points(result.get("target_halfwidth")),
        "power": round(100 * result["power"]["power"]),
        "difference": points(result["power"]["difference"]),
    }
    panel["reached"] = [
        {**row, "reached": points(row["reached_halfwidth"]), "planned": points(row["planned_halfwidth"])}
        for row in result["progress"]["models"]
    ]
    statuses = {row["model"]: row for row in result["status"]["models"]}
    for row in panel["reached"]:
        row["status"] = statuses[row["model"]]["status"]
        row["cs_lo"] = statuses[row["model"]]["p_geq_cs_lo"]
        row["cs_hi"] = statuses[row["model"]]["p_geq_cs_hi"]
    return panel


def close_if_rule_met(study: Study, ratings=None) -> str | None:
    """Close a live ``study`` when its stopping rule is met; the reason it closed, else None.

    The rule is the study page's (:func:`evalsite.analysis.stopping.stopping_status`): every model
    is at ``study.target_halfwidth`` (when set) or answered (its anytime-valid confidence sequence
    excludes parity), with at least ``MIN_PROMPTS`` prompts rated each, and every non-teacher model
    has been rated. The lease engine calls this after submits (``assignment.maybe_stop``) for a
    study with ``stop_when_precise``; it closes through :func:`evalsite.studies.actions.close_study`.
    """
    from evalsite.studies.actions import ActionError, close_study

    if ratings is None:
        ratings = load_plan_ratings(study)
    design, _, _ = study_design(study)
    status = stopping_status(ratings, target_halfwidth=study.target_halfwidth, planned_se=_sequence_se(design))
    expected = LanguageModel.real.filter(study=study).exclude(role=LanguageModel.Role.TEACHER).count()
    if not status["may_stop"] or len(status["models"]) < expected:
        return None
    done = _usable_crowd_ratings(ratings)
    reason = f"After {done} crowd ratings: {status['reason'].removeprefix('The study may stop. ')}"
    try:
        close_study(study, None, reason=reason)
    except ActionError:
        return None  # paused or closed meanwhile
    return reason
