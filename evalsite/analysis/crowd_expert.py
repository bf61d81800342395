"""Crowd versus expert: how often raters prefer (or tie) a factually wrong answer over a right one.

A response's truth comes from the automatic reference check where its prompt has references,
otherwise from the majority of expert (staff) verdicts on it. On comparisons where exactly one
response is correct, a rating is *fooled* if it prefers the wrong one or calls it a tie
("both bad" is not fooled: the rater saw a problem). The error-flag rate is the share of ratings
of a wrong response that flag it (aspect verdict "error" or an error span).

When truth comes from experts, the experts' own rates are partly circular; the result says how
many comparisons each truth source decided so the reader can tell.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .factuality import response_truth
from .intervals import ALPHA, cluster_sums, cluster_weights, clustered_ratio, percentile_interval

GROUPS = {"crowd": False, "expert": True}


def flags_error(verdict: pd.Series, spans: pd.Series) -> np.ndarray:
    """Whether a rater marked a response as containing an error."""
    return (verdict.to_numpy(dtype=object) == "error") | (spans.to_numpy() > 0)


def _expert_majority(ratings: pd.DataFrame, side: str) -> pd.Series:
    """Per comparison: True (correct) / False (wrong) by expert majority; ties and no votes absent."""
    experts = ratings[ratings["is_expert"]]
    if experts.empty:
        return pd.Series(dtype=object)
    says_error = flags_error(experts[f"correct_{side}"], experts[f"error_spans_{side}"])
    says_correct = (experts[f"correct_{side}"].to_numpy(dtype=object) == "correct") & ~says_error
    vote = pd.Series(says_correct.astype(int) - says_error.astype(int), index=experts.index)
    total = vote.groupby(experts["comparison_id"]).sum()
    total = total[total != 0]
    return total > 0


def comparison_truth(ratings: pd.DataFrame, responses: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per comparison: truth of A and B (True/False/None) and where each came from."""
    comps = ratings.drop_duplicates("comparison_id")[
        ["comparison_id", "prompt_id", "category", "model_a", "model_b", "response_id_a", "response_id_b"]
    ].set_index("comparison_id")
    by_reference = response_truth(responses) if responses is not None and len(responses) else {}
    for side in ("a", "b"):
        ref = [
            by_reference.get(str(r)) if r is not None and not pd.isna(r) else by_reference.get((p, m))
            for p, m, r in zip(comps["prompt_id"], comps[f"model_{side}"], comps[f"response_id_{side}"], strict=True)
        ]
        ref = pd.Series(ref, index=comps.index, dtype=object)
        expert = _expert_majority(ratings, side).reindex(comps.index)
        truth = ref.where(ref.notna(), expert.astype(object))
        comps[f"truth_{side}"] = truth.where(truth.notna(), None)
        comps[f"source_{side}"] = np.where(ref.notna(), "reference", np.where(expert.notna(), "expert", "none"))
    return comps.drop(columns=["response_id_a", "response_id_b"]).reset_index()


def _group_rates(rows: pd.DataFrame, hit: np.ndarray, n_boot: int, rng: np.random.Generator, alpha: float) -> dict:
    """Crowd rate, expert rate and their difference, with one shared prompt resampling."""
    out: dict = {}
    columns = []
    for name, is_expert in GROUPS.items():
        in_group = (rows["is_expert"].to_numpy() == is_expert).astype(float)
        columns += [hit * in_group, in_group]
        out[name] = clustered_ratio(
            hit * in_group, in_group, rows["prompt_id"].to_numpy(), n_boot=n_boot, rng=rng, alpha=alpha
        )
        out[name]["n_comparisons"] = int(rows.loc[in_group > 0, "comparison_id"].nunique())
    crowd, expert = out["crowd"]["estimate"], out["expert"]["estimate"]
    gap = {"estimate": crowd - expert, "lo": float("nan"), "hi": float("nan")}
    if n_boot > 0 and len(rows) and out["crowd"]["n"] > 0 and out["expert"]["n"] > 0:
        sums, _ = cluster_sums(np.column_stack(columns), rows["prompt_id"].to_numpy())
        boot = cluster_weights(len(sums), n_boot, rng) @ sums
        with np.errstate(invalid="ignore", divide="ignore"):
            diff = boot[:, 0] / boot[:, 1] - boot[:, 2] / boot[:, 3]
        gap["lo"], gap["hi"] = (float(x) for x in percentile_interval(diff, alpha))
    out["gap"] = gap
    return out


def fooled_rates(
    ratings: pd.DataFrame,
    responses: pd.DataFrame | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = ALPHA,
) -> dict:
    """Fooled rates (crowd, expert, gap) overall, per wrong model and per category.

    Only comparisons where exactly one response is known correct count. Intervals resample
    prompts.
    """
    rng = np.random.default_rng(seed)
    truth = comparison_truth(ratings, responses)
    decided = truth["truth_a"].notna() & truth["truth_b"].notna()
    one_right = truth[decided & (truth["truth_a"] != truth["truth_b"])].copy()
    one_right["wrong_side"] = np.where(one_right["truth_a"].astype(bool), "B", "A")
    one_right["wrong_model"] = np.where(one_right["wrong_side"] == "A", one_right["model_a"], one_right["model_b"])
    one_right["source"] = np.where(
        (one_right["source_a"] == "reference") & (one_right["source_b"] == "reference"), "reference", "expert"
    )
    rows = ratings.merge(one_right[["comparison_id", "wrong_side", "wrong_model", "source"]], on="comparison_id")
    winner = rows["winner"].to_numpy()
    fooled = ((winner == rows["wrong_side"].to_numpy()) | (winner == "tie")).astype(float)
    result = {
        "n_comparisons": int(len(one_right)),
        "truth_sources": {k: int(v) for k, v in one_right["source"].value_counts().items()},
        "overall": _group_rates(rows, fooled, n_boot, rng, alpha),
        "by_wrong_model": {},
        "by_category": {},
    }
    for key, column in (("by_wrong_model", "wrong_model"), ("by_category", "category")):
        for value, part in rows.groupby(column, sort=True):
            result[key][str(value)] = _group_rates(part, fooled[part.index.to_numpy()], n_boot, rng, alpha)
    return result


def error_flag_rates(
    ratings: pd.DataFrame,
    responses: pd.DataFrame | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = ALPHA,
) -> dict:
    """Share of ratings of a wrong response that flag an error (and of a right one: false flags)."""
    rng = np.random.default_rng(seed)
    truth = comparison_truth(ratings, responses).set_index("comparison_id")
    parts = []
    for side in ("a", "b"):
        t = truth[f"truth_{side}"].reindex(ratings["comparison_id"]).to_numpy()
        parts.append(
            pd.DataFrame(
                {
                    "prompt_id": ratings["prompt_id"].to_numpy(),
                    "comparison_id": ratings["comparison_id"].to_numpy(),
                    "is_expert": ratings["is_expert"].to_numpy(),
                    "model": ratings[f"model_{side}"].to_numpy(),
                    "truth": t,
                    "flagged": flags_error(ratings[f"correct_{side}"], ratings[f"error_spans_{side}"]).astype(float),
                }
            )
        )
    long = pd.concat(parts, ignore_index=True)
    long = long[pd.notna(long["truth"])].reset_index(drop=True)
    wrong = long[~long["truth"].astype(bool)].reset_index(drop=True)
    right = long[long["truth"].astype(bool)].reset_index(drop=True)
    result = {
        "wrong_responses": _group_rates(wrong, wrong["flagged"].to_numpy(), n_boot, rng, alpha),
        "correct_responses": _group_rates(right, right["flagged"].to_numpy(), n_boot, rng, alpha),
        "by_model": {},
    }
    for model, part in wrong.groupby("model", sort=True):
        part = part.reset_index(drop=True)
        result["by_model"][str(model)] = _group_rates(part, part["flagged"].to_numpy(), n_boot, rng, alpha)
    return result
