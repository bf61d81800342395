"""LLM-as-judge: combine verdicts from both presentation orders and compare them with humans.

The judge sees each pair twice: (A, B) and (B, A). A verdict counts only when both orders agree
on the same *response*; otherwise it is a tie (MT-Bench's rule), which cancels the judge's own
position bias.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

JUDGE_VERDICTS = ("A", "B", "tie")
_SWAP = {"A": "B", "B": "A", "tie": "tie", "both_bad": "both_bad"}


def combine_orders(verdict_ab: str, verdict_ba: str) -> str:
    """Combine the verdict with A shown first and the verdict with B shown first.

    Both verdicts are in the judge's own terms: "A" means the answer it was shown first. So in
    the swapped call "A" means response B.
    """
    for v in (verdict_ab, verdict_ba):
        if v not in JUDGE_VERDICTS:
            raise ValueError(f"judge verdict must be one of {JUDGE_VERDICTS}, not {v!r}")
    second = _SWAP[verdict_ba]
    return verdict_ab if verdict_ab == second else "tie"


def combine_orders_array(verdict_ab: np.ndarray | pd.Series, verdict_ba: np.ndarray | pd.Series) -> np.ndarray:
    """Vectorised :func:`combine_orders`."""
    ab = np.asarray(verdict_ab, dtype=object)
    ba = pd.Series(np.asarray(verdict_ba, dtype=object)).map(_SWAP).to_numpy(dtype=object)
    return np.where(ab == ba, ab, "tie")


def human_majority(ratings: pd.DataFrame) -> pd.Series:
    """Per comparison: the majority of human verdicts ("A", "B" or "tie"; both-bad and split votes
    count as tie)."""
    score = ratings["winner"].map({"A": 1, "B": -1}).fillna(0)
    total = score.groupby(ratings["comparison_id"]).sum()
    return pd.Series(np.where(total > 0, "A", np.where(total < 0, "B", "tie")), index=total.index)


def judge_human_agreement(judgments: pd.DataFrame, ratings: pd.DataFrame) -> dict:
    """Agreement of the judge with the human majority per comparison.

    ``judgments`` has ``comparison_id`` and either ``verdict`` (already combined) or
    ``verdict_ab`` and ``verdict_ba``. Reports agreement with ties excluded (both decisive) and
    with ties included (three-way match), and the judge's own order-consistency rate.
    """
    j = judgments.copy()
    j["comparison_id"] = j["comparison_id"].astype(str)
    result: dict = {}
    if "verdict" not in j:
        j["verdict"] = combine_orders_array(j["verdict_ab"], j["verdict_ba"])
        decisive = j["verdict_ab"].isin(("A", "B")) | j["verdict_ba"].isin(("A", "B"))
        consistent = j["verdict_ab"].to_numpy() == pd.Series(j["verdict_ba"]).map(_SWAP).to_numpy()
        result["order_consistency"] = float(consistent[decisive.to_numpy()].mean()) if decisive.any() else None
    majority = human_majority(ratings)
    merged = j.merge(majority.rename("human").rename_axis("comparison_id").reset_index(), on="comparison_id")
    both_decisive = merged["verdict"].isin(("A", "B")) & merged["human"].isin(("A", "B"))
    result.update(
        {
            "n_compared": int(len(merged)),
            "n_both_decisive": int(both_decisive.sum()),
            "agreement_ties_excluded": float(
                (merged.loc[both_decisive, "verdict"] == merged.loc[both_decisive, "human"]).mean()
            )
            if both_decisive.any()
            else None,
            "agreement_ties_included": float((merged["verdict"] == merged["human"]).mean()) if len(merged) else None,
        }
    )
    return result


def judge_factual_agreement(judgments: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """How often the judge picks the correct response where exactly one is correct.

    ``truth`` is :func:`crowd_expert.comparison_truth`'s table. A tie counts as not picking it.
    """
    j = judgments.copy()
    j["comparison_id"] = j["comparison_id"].astype(str)
    if "verdict" not in j:
        j["verdict"] = combine_orders_array(j["verdict_ab"], j["verdict_ba"])
    decided = truth["truth_a"].notna() & truth["truth_b"].notna() & (truth["truth_a"] != truth["truth_b"])
    t = truth.loc[decided, ["comparison_id"]].copy()
    t["right_side"] = np.where(truth.loc[decided, "truth_a"].astype(bool), "A", "B")
    merged = j.merge(t, on="comparison_id")
    n = len(merged)
    return {"n": n, "picks_correct": float((merged["verdict"] == merged["right_side"]).mean()) if n else None}
