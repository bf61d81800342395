"""Win / tie / loss of each model against the teacher, with prompt-clustered bootstrap intervals.

The paper's headline is P(model >= teacher) = (wins + ties) / n: how often raters rated the model
"equal or better". A both-bad verdict is an equal verdict too, so it counts in the numerator; it is
also reported on its own. ``win_rate`` is the Chatbot Arena convention (ties and both-bad count as
half a win), the quantity Bradley-Terry models.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .intervals import ALPHA, cluster_weights, percentile_interval, wilson_interval
from .schema import teacher_model

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


def _summaries(table: pd.DataFrame, n_boot: int, rng: np.random.Generator, alpha: float) -> list[dict]:
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
    if n_boot > 0:
        weights = cluster_weights(len(prompts), n_boot, rng)
        boot = (weights @ sums.reshape(len(prompts), -1)).reshape(n_boot, len(models), len(OUTCOMES))
    rows = []
    for m, model in enumerate(models):
        wins, ties, both_bad, losses = totals[m]
        n = totals[m].sum()
        row = {
            "model": model,
            "n": int(n),
            "n_prompts": int((sums[:, m].sum(axis=1) > 0).sum()),
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
            b = boot[:, m]
            bn = b.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                geq = (b[:, 0] + b[:, 1] + b[:, 2]) / bn
                half = (b[:, 0] + 0.5 * (b[:, 1] + b[:, 2])) / bn
            row["p_geq_lo"], row["p_geq_hi"] = (float(x) for x in percentile_interval(geq, alpha))
            row["win_rate_lo"], row["win_rate_hi"] = (float(x) for x in percentile_interval(half, alpha))
        rows.append({k: (float(v) if isinstance(v, np.floating) else v) for k, v in row.items()})
    return rows


def win_rates_vs_teacher(
    ratings: pd.DataFrame,
    *,
    teacher: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = ALPHA,
) -> dict:
    """Win/tie/both-bad/loss of each model against the teacher, overall and per category.

    Intervals: percentile bootstrap that resamples prompts (all ratings of a drawn prompt come
    along), plus a Wilson interval for P(>=) that ignores clustering, for comparison.
    Returns ``{"teacher": alias, "overall": [rows], "by_category": {category: [rows]}}``.
    """
    rng = np.random.default_rng(seed)
    teacher = teacher or teacher_model(ratings)
    if teacher is None:
        return {"teacher": None, "overall": [], "by_category": {}}
    table = outcomes_vs(ratings, teacher)
    result = {"teacher": teacher, "overall": _summaries(table, n_boot, rng, alpha), "by_category": {}}
    for category, part in table.groupby("category", sort=True):
        result["by_category"][str(category)] = _summaries(part, n_boot, rng, alpha)
    return result
