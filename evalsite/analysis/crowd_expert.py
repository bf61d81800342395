"""Crowd versus expert: how often raters prefer (or tie) a factually wrong answer over a right one.

A response's truth comes from the automatic reference check where its prompt has references,
otherwise from the majority of expert (staff) verdicts on it. On comparisons where exactly one
response is correct, a rating is *fooled* if it prefers the wrong one or calls it a tie
("both bad" is not fooled: the rater saw a problem). The error-flag rate is the share of ratings
of a wrong response that flag it (aspect verdict "error" or an error span).

The truth an expert is scored against is always independent of that expert: on prompts with
references it is the reference check; elsewhere it is the majority of the *other* experts'
verdicts (leave one expert out), so an expert is never scored against their own label. An expert
rating whose comparison has no other expert verdict (or a tied one) is not scored; the result
counts them. Every rate is given overall and split by truth source (``by_source``: "reference"
and "expert"), each with its ratings, comparisons and prompts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .factuality import response_truth
from .intervals import (
    ALPHA,
    MIN_PROMPTS,
    cluster_bootstrap,
    cluster_sums,
    clustered_ratio,
    percentile_interval,
    too_few_prompts,
)
from .schema import require_ratings

GROUPS = {"crowd": False, "expert": True}


def flags_error(verdict: pd.Series, spans: pd.Series) -> np.ndarray:
    """Whether a rater marked a response as containing an error."""
    return (verdict.to_numpy(dtype=object) == "error") | (spans.to_numpy() > 0)


def _expert_votes(ratings: pd.DataFrame, side: str) -> np.ndarray:
    """Per rating: +1 if an expert says the response on ``side`` is correct, -1 wrong, 0 otherwise
    (crowd ratings: 0)."""
    says_error = flags_error(ratings[f"correct_{side}"], ratings[f"error_spans_{side}"])
    says_correct = (ratings[f"correct_{side}"].to_numpy(dtype=object) == "correct") & ~says_error
    vote = says_correct.astype(int) - says_error.astype(int)
    return np.where(ratings["is_expert"].to_numpy(dtype=bool), vote, 0)


def _expert_majority(ratings: pd.DataFrame, side: str) -> pd.Series:
    """Per comparison: True (correct) / False (wrong) by expert majority; ties and no votes absent."""
    vote = pd.Series(_expert_votes(ratings, side), index=ratings.index)
    total = vote.groupby(ratings["comparison_id"]).sum()
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


def rating_truth(ratings: pd.DataFrame, responses: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per rating: the truth of A and B it is scored against, and its source.

    Columns ``truth_a``, ``truth_b`` (True / False / None) and ``source_a``, ``source_b``
    ("reference", "expert" or "none"), aligned with ``ratings``' rows. Crowd ratings get the
    comparison's truth; an expert rating on an expert-decided side gets the majority of the
    other experts' verdicts (its own removed), None when they do not decide.
    """
    truth = comparison_truth(ratings, responses).set_index("comparison_id")
    comparison = ratings["comparison_id"].to_numpy()
    is_expert = ratings["is_expert"].to_numpy(dtype=bool)
    out = pd.DataFrame(index=ratings.index)
    for side in ("a", "b"):
        t = truth[f"truth_{side}"].reindex(comparison).to_numpy(dtype=object)
        source = truth[f"source_{side}"].reindex(comparison).to_numpy(dtype=object)
        vote = _expert_votes(ratings, side)
        total = pd.Series(vote).groupby(comparison).transform("sum").to_numpy()
        others = total - vote
        loo = np.where(others > 0, True, np.where(others < 0, False, None)).astype(object)
        own = is_expert & (source == "expert")
        t = np.where(own, loo, t)
        out[f"truth_{side}"] = [None if v is None or (isinstance(v, float) and np.isnan(v)) else bool(v) for v in t]
        out[f"source_{side}"] = source
    return out


def _group_rates(
    rows: pd.DataFrame,
    hit: np.ndarray,
    n_boot: int,
    rng: np.random.Generator,
    alpha: float,
    min_prompts: int = MIN_PROMPTS,
) -> dict:
    """Crowd rate, expert rate and their difference, with one shared prompt resampling."""
    out: dict = {}
    columns = []
    for name, is_expert in GROUPS.items():
        in_group = (rows["is_expert"].to_numpy() == is_expert).astype(float)
        columns += [hit * in_group, in_group]
        out[name] = clustered_ratio(
            hit * in_group,
            in_group,
            rows["prompt_id"].to_numpy(),
            n_boot=n_boot,
            rng=rng,
            alpha=alpha,
            min_prompts=min_prompts,
        )
        out[name]["n_comparisons"] = int(rows.loc[in_group > 0, "comparison_id"].nunique())
    crowd, expert = out["crowd"]["estimate"], out["expert"]["estimate"]
    gap = {"estimate": crowd - expert, "lo": float("nan"), "hi": float("nan"), "warning": None}
    enough = min(out["crowd"]["n_prompts"], out["expert"]["n_prompts"]) >= min_prompts
    if n_boot > 0 and len(rows) and out["crowd"]["n"] > 0 and out["expert"]["n"] > 0:
        if enough:
            sums, _ = cluster_sums(np.column_stack(columns), rows["prompt_id"].to_numpy())
            boot = cluster_bootstrap(sums, n_boot, rng)
            with np.errstate(invalid="ignore", divide="ignore"):
                diff = boot[:, 0] / boot[:, 1] - boot[:, 2] / boot[:, 3]
            gap["lo"], gap["hi"] = (float(x) for x in percentile_interval(diff, alpha))
        else:
            fewest = min(out["crowd"]["n_prompts"], out["expert"]["n_prompts"])
            gap["warning"] = too_few_prompts(fewest, min_prompts) + ": no interval"
    out["gap"] = gap
    return out


def _by_source(
    rows: pd.DataFrame, hit: np.ndarray, n_boot: int, rng: np.random.Generator, alpha: float, min_prompts: int
) -> dict:
    out = {}
    for source in ("reference", "expert"):
        part = (rows["source"] == source).to_numpy()
        sub = rows.loc[part].reset_index(drop=True)
        rates = _group_rates(sub, hit[part], n_boot, rng, alpha, min_prompts)
        rates["n_ratings"] = int(part.sum())
        rates["n_comparisons"] = int(sub["comparison_id"].nunique())
        rates["n_prompts"] = int(sub["prompt_id"].nunique())
        out[source] = rates
    return out


def _check(ratings: pd.DataFrame, where: str) -> None:
    require_ratings(
        ratings,
        ("comparison_id", "prompt_id", "model_a", "model_b", "winner", "is_expert"),
        where,
        nullable=("correct_a", "correct_b", "error_spans_a", "error_spans_b"),
    )


def fooled_rates(
    ratings: pd.DataFrame,
    responses: pd.DataFrame | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = ALPHA,
    min_prompts: int = MIN_PROMPTS,
) -> dict:
    """Fooled rates (crowd, expert, gap) overall, by truth source, per wrong model and per category.

    Only ratings whose (independent) truth has exactly one response correct count. Intervals
    resample prompts; ``expert_ratings_unscored`` counts expert ratings on expert-decided
    comparisons that no other expert decides.
    """
    _check(ratings, "fooled_rates")
    rng = np.random.default_rng(seed)
    ratings = ratings.reset_index(drop=True)
    truth = rating_truth(ratings, responses)
    decided = truth["truth_a"].notna() & truth["truth_b"].notna()
    one_right = decided & (truth["truth_a"] != truth["truth_b"])
    rows = ratings.loc[one_right.to_numpy()].copy()
    t = truth.loc[one_right.to_numpy()]
    rows["wrong_side"] = np.where(t["truth_a"].astype(bool), "B", "A")
    rows["wrong_model"] = np.where(rows["wrong_side"] == "A", rows["model_a"], rows["model_b"])
    rows["source"] = np.where((t["source_a"] == "reference") & (t["source_b"] == "reference"), "reference", "expert")
    rows = rows.reset_index(drop=True)
    winner = rows["winner"].to_numpy()
    fooled = ((winner == rows["wrong_side"].to_numpy()) | (winner == "tie")).astype(float)
    # Comparisons by the source of their (crowd-side, i.e. full-majority) truth.
    comps = comparison_truth(ratings, responses)
    comp_decided = comps["truth_a"].notna() & comps["truth_b"].notna() & (comps["truth_a"] != comps["truth_b"])
    comps = comps[comp_decided]
    comp_source = np.where(
        (comps["source_a"] == "reference") & (comps["source_b"] == "reference"), "reference", "expert"
    )
    expert_on_expert_truth = (
        ratings["is_expert"].to_numpy(bool)
        & ((truth["source_a"] == "expert") | (truth["source_b"] == "expert")).to_numpy()
    )
    result = {
        "n_comparisons": int(len(comps)),
        "truth_sources": {k: int(v) for k, v in pd.Series(comp_source).value_counts().sort_index().items()},
        "expert_ratings_unscored": int((expert_on_expert_truth & ~decided.to_numpy()).sum()),
        "overall": _group_rates(rows, fooled, n_boot, rng, alpha, min_prompts),
        "by_source": _by_source(rows, fooled, n_boot, rng, alpha, min_prompts),
        "by_wrong_model": {},
        "by_category": {},
    }
    for key, column in (("by_wrong_model", "wrong_model"), ("by_category", "category")):
        for value, part in rows.groupby(column, sort=True):
            idx = part.index.to_numpy()
            result[key][str(value)] = _group_rates(part, fooled[idx], n_boot, rng, alpha, min_prompts)
    return result


def error_flag_rates(
    ratings: pd.DataFrame,
    responses: pd.DataFrame | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = ALPHA,
    min_prompts: int = MIN_PROMPTS,
) -> dict:
    """Share of ratings of a wrong response that flag an error (and of a right one: false flags).

    Against the same independent truth as :func:`fooled_rates`, overall and by truth source.
    """
    _check(ratings, "error_flag_rates")
    rng = np.random.default_rng(seed)
    ratings = ratings.reset_index(drop=True)
    truth = rating_truth(ratings, responses)
    parts = []
    for side in ("a", "b"):
        parts.append(
            pd.DataFrame(
                {
                    "prompt_id": ratings["prompt_id"].to_numpy(),
                    "comparison_id": ratings["comparison_id"].to_numpy(),
                    "is_expert": ratings["is_expert"].to_numpy(),
                    "model": ratings[f"model_{side}"].to_numpy(),
                    "truth": truth[f"truth_{side}"].to_numpy(dtype=object),
                    "source": truth[f"source_{side}"].to_numpy(dtype=object),
                    "flagged": flags_error(ratings[f"correct_{side}"], ratings[f"error_spans_{side}"]).astype(float),
                }
            )
        )
    long = pd.concat(parts, ignore_index=True)
    long = long[pd.notna(long["truth"])].reset_index(drop=True)
    wrong = long[~long["truth"].astype(bool)].reset_index(drop=True)
    right = long[long["truth"].astype(bool)].reset_index(drop=True)
    result = {
        "wrong_responses": _group_rates(wrong, wrong["flagged"].to_numpy(), n_boot, rng, alpha, min_prompts),
        "correct_responses": _group_rates(right, right["flagged"].to_numpy(), n_boot, rng, alpha, min_prompts),
        "by_source": _by_source(wrong, wrong["flagged"].to_numpy(), n_boot, rng, alpha, min_prompts),
        "by_model": {},
    }
    for model, part in wrong.groupby("model", sort=True):
        part = part.reset_index(drop=True)
        result["by_model"][str(model)] = _group_rates(part, part["flagged"].to_numpy(), n_boot, rng, alpha, min_prompts)
    return result
