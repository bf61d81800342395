"""Win / tie / loss of each model against the teacher, with prompt-clustered bootstrap intervals.

The paper's headline is P(model >= teacher) = (wins + ties) / n: how often raters rated the model
"equal or better". A both-bad verdict is an equal verdict too, so it counts in the numerator; it is
also reported on its own. ``win_rate`` is the Chatbot Arena convention (ties and both-bad count as
half a win), the quantity Bradley-Terry models.

Intervals resample prompts (:func:`intervals.cluster_bootstrap`, rounds in chunks). A model rated
on fewer than ``min_prompts`` prompts, or whose resamples all give one value (a 40-0 record), gets a
Wilson interval instead, marked in ``interval_method`` with the reason in ``warning``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .intervals import ALPHA, MIN_PROMPTS, cluster_bootstrap, proportion_interval, wilson_interval
from .schema import require_ratings, teacher_model

OUTCOMES = ("win", "tie", "both_bad", "loss")


def outcomes_vs(ratings: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Ratings that compare some model with ``reference``, recoded from that model's side.

    Returns columns ``model, prompt_id, category`` and one 0/1 column per outcome in
    :data:`OUTCOMES`.
    """
    a_is_ref = (ratings["model_a"] == reference).to_numpy()
    b_is_ref = (ratings["model_b"] == reference).to_numpy()
    rows = ratings.loc[a_is_ref ^ b_is_ref]
    model_side = np.where(rows["model_a"] == reference, "B", "A")
    other_side = np.where(model_side == "A", "B", "A")
    winner = rows["winner"].to_numpy()
    out = pd.DataFrame(
        {
            "model": np.where(model_side == "A", rows["model_a"], rows["model_b"]),
            "prompt_id": rows["prompt_id"].to_numpy(),
            "category": rows["category"].to_numpy(),
            "win": (winner == model_side).astype(float),
            "tie": (winner == "tie").astype(float),
            "both_bad": (winner == "both_bad").astype(float),
            "loss": (winner == other_side).astype(float),
        }
    )
    return out


def _summaries(
    table: pd.DataFrame, n_boot: int, rng: np.random.Generator, alpha: float, min_prompts: int = MIN_PROMPTS
) -> list[dict]:
    """Per-model summaries for one slice, with one shared prompt resampling for all models."""
    if table.empty:
        return []
    models = sorted(table["model"].unique())
    prompt_codes, prompts = pd.factorize(table["prompt_id"], sort=True)
    model_codes = pd.Categorical(table["model"], categories=models).codes
    # sums[p, m, k]: outcome k counts of model m on prompt p.
    sums = np.zeros((len(prompts), len(models), len(OUTCOMES)))
    np.add.at(sums, (prompt_codes, model_codes), table[list(OUTCOMES)].to_numpy())
    totals = sums.sum(axis=0)
    n_prompts = (sums.sum(axis=2) > 0).sum(axis=0)
    boot = None
    if n_boot > 0 and n_prompts.max() >= min_prompts:
        flat = cluster_bootstrap(sums.reshape(len(prompts), -1), n_boot, rng)
        boot = flat.reshape(n_boot, len(models), len(OUTCOMES))
    rows = []
    for m, model in enumerate(models):
        wins, ties, both_bad, losses = totals[m]
        n = totals[m].sum()
        row = {
            "model": model,
            "n": int(n),
            "n_prompts": int(n_prompts[m]),
            "wins": int(wins),
            "ties": int(ties),
            "both_bad": int(both_bad),
            "losses": int(losses),
            "p_win": wins / n,
            "p_tie": ties / n,
            "p_both_bad": both_bad / n,
            "p_loss": losses / n,
            "p_geq": (wins + ties + both_bad) / n,
            "win_rate": (wins + 0.5 * (ties + both_bad)) / n,
        }
        row["p_geq_wilson_lo"], row["p_geq_wilson_hi"] = wilson_interval(wins + ties + both_bad, n, alpha)
        if n_boot > 0:
            geq = half = None
            if boot is not None:
                b = boot[:, m]
                bn = b.sum(axis=1)
                with np.errstate(invalid="ignore", divide="ignore"):
                    geq = (b[:, 0] + b[:, 1] + b[:, 2]) / bn
                    half = (b[:, 0] + 0.5 * (b[:, 1] + b[:, 2])) / bn
            p_geq = proportion_interval(
                wins + ties + both_bad, n, int(n_prompts[m]), geq, min_prompts=min_prompts, alpha=alpha
            )
            win_rate = proportion_interval(
                wins + 0.5 * (ties + both_bad), n, int(n_prompts[m]), half, min_prompts=min_prompts, alpha=alpha
            )
            row.update(
                {
                    "p_geq_lo": p_geq["lo"],
                    "p_geq_hi": p_geq["hi"],
                    "win_rate_lo": win_rate["lo"],
                    "win_rate_hi": win_rate["hi"],
                    "interval_method": p_geq["method"],
                    "warning": p_geq["warning"] or win_rate["warning"],
                }
            )
        rows.append({k: (float(v) if isinstance(v, np.floating) else v) for k, v in row.items()})
    return rows


def win_rates_vs_teacher(
    ratings: pd.DataFrame,
    *,
    teacher: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = ALPHA,
    min_prompts: int = MIN_PROMPTS,
) -> dict:
    """Win/tie/both-bad/loss of each model against the teacher, overall and per category.

    Intervals: percentile bootstrap that resamples prompts (all ratings of a drawn prompt come
    along); Wilson where a model has fewer than ``min_prompts`` prompts or the bootstrap is
    degenerate (marked per row), plus a Wilson interval for P(>=) that ignores clustering, for
    comparison. Returns ``{"teacher": alias, "overall": [rows], "by_category": {category: [rows]}}``.
    """
    require_ratings(ratings, ("model_a", "model_b", "winner", "prompt_id", "category"), "win_rates_vs_teacher")
    rng = np.random.default_rng(seed)
    teacher = teacher or teacher_model(ratings)
    if teacher is None:
        return {"teacher": None, "overall": [], "by_category": {}}
    table = outcomes_vs(ratings, teacher)
    result = {
        "teacher": teacher,
        "min_prompts": min_prompts,
        "overall": _summaries(table, n_boot, rng, alpha, min_prompts),
        "by_category": {},
    }
    for category, part in table.groupby("category", sort=True):
        result["by_category"][str(category)] = _summaries(part, n_boot, rng, alpha, min_prompts)
    return result
