"""Inter-rater agreement: Krippendorff's alpha, Fleiss' kappa, each rater against the majority.

Units are comparisons; A and B name fixed responses of a comparison (not screen sides), so two
raters who preferred the same answer agree whatever side each saw it on.
"""

from __future__ import annotations

import krippendorff
import numpy as np
import pandas as pd

PREFERENCE_CODES = ("A", "B", "tie", "both_bad")
VERDICT_CODES = ("correct", "error")


def value_counts_matrix(units: pd.Series, values: pd.Series, domain: tuple) -> np.ndarray:
    """(units x values) count matrix of how many raters gave each value to each unit."""
    ok = values.isin(domain).to_numpy()
    codes_u, _ = pd.factorize(units[ok])
    codes_v = pd.Categorical(values[ok], categories=list(domain)).codes
    counts = np.zeros((codes_u.max() + 1 if len(codes_u) else 0, len(domain)))
    np.add.at(counts, (codes_u, codes_v), 1.0)
    return counts


def krippendorff_alpha(counts: np.ndarray, level: str = "nominal") -> float | None:
    """Krippendorff's alpha from a value-count matrix; None when there is nothing to pair.

    Units rated by a single rater carry no pairable values, and a matrix with one value only
    has no disagreement to measure; both give None rather than an error.
    """
    pairable = counts[counts.sum(axis=1) >= 2]
    if len(pairable) == 0 or (pairable.sum(axis=0) > 0).sum() < 2:
        return None
    domain = list(range(counts.shape[1]))
    return float(krippendorff.alpha(value_counts=pairable, value_domain=domain, level_of_measurement=level))


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' kappa for a (subjects x categories) matrix where every subject has n raters.

    Subjects with a different number of ratings than the most common number are dropped (the
    statistic requires equal n); None when fewer than two subjects or raters remain.
    """
    counts = np.asarray(counts, dtype=float)
    totals = counts.sum(axis=1)
    if len(totals) == 0:
        return None
    n = np.bincount(totals.astype(int)).argmax()
    counts = counts[totals == n]
    if n < 2 or len(counts) < 2:
        return None
    p_category = counts.sum(axis=0) / counts.sum()
    p_subject = ((counts**2).sum(axis=1) - n) / (n * (n - 1))
    p_bar, p_e = p_subject.mean(), (p_category**2).sum()
    if p_e >= 1.0:
        return None
    return float((p_bar - p_e) / (1.0 - p_e))


def leave_one_out_agreement(
    ratings: pd.DataFrame, column: str = "winner", domain: tuple = PREFERENCE_CODES
) -> pd.DataFrame:
    """Per rating: whether it matches the majority of the *other* ratings of its comparison.

    Ratings whose comparison has no other rating, or whose leave-one-out vote is tied, get NaN.
    Returns columns ``rater_id, agrees``.
    """
    values = ratings[column]
    ok = values.isin(domain).to_numpy()
    codes_u, _ = pd.factorize(ratings["comparison_id"])
    codes_v = pd.Categorical(values, categories=list(domain)).codes
    counts = np.zeros((codes_u.max() + 1 if len(codes_u) else 0, len(domain)))
    np.add.at(counts, (codes_u[ok], codes_v[ok]), 1.0)
    others = counts[codes_u].copy()
    others[np.flatnonzero(ok), codes_v[ok]] -= 1.0
    top = others.max(axis=1)
    unique_top = (others == top[:, None]).sum(axis=1) == 1
    majority = others.argmax(axis=1)
    decided = ok & (top > 0) & unique_top
    agrees = np.where(decided, (majority == codes_v).astype(float), np.nan)
    return pd.DataFrame({"rater_id": ratings["rater_id"].to_numpy(), "agrees": agrees})


def rater_quality(ratings: pd.DataFrame, all_ratings: pd.DataFrame | None = None) -> list[dict]:
    """Per rater: ratings, expert flag, leave-one-out agreement, attention-check pass rate, time.

    ``all_ratings`` (including attention checks and flagged raters) feeds the attention-check
    pass rate and the flagged status; ``ratings`` (the analysed set) feeds agreement.
    """
    source = all_ratings if all_ratings is not None else ratings
    loo = leave_one_out_agreement(ratings)
    agreement = loo.groupby("rater_id")["agrees"].agg(["mean", "count"])
    checks = source[source["is_attention_check"] & source["expected_winner"].notna()]
    passed = (checks["winner"] == checks["expected_winner"]).groupby(checks["rater_id"]).agg(["mean", "count"])
    base = source.groupby("rater_id").agg(
        n_ratings=("rating_id", "size"),
        is_expert=("is_expert", "max"),
        flagged=("flagged", "max"),
        median_time_s=("time_on_task_s", "median"),
    )
    rows = []
    for rater, row in base.iterrows():

        def opt(frame: pd.DataFrame, col: str, rater=rater):
            if rater in frame.index and frame.loc[rater, "count"] > 0:
                return float(frame.loc[rater, col])
            return None

        med = row["median_time_s"]
        rows.append(
            {
                "rater_id": str(rater),
                "n_ratings": int(row["n_ratings"]),
                "is_expert": bool(row["is_expert"]),
                "flagged": bool(row["flagged"]),
                "majority_agreement": opt(agreement, "mean"),
                "n_agreement": int(agreement.loc[rater, "count"]) if rater in agreement.index else 0,
                "attention_pass_rate": opt(passed, "mean"),
                "n_attention": int(passed.loc[rater, "count"]) if rater in passed.index else 0,
                "median_time_s": None if pd.isna(med) else float(med),
            }
        )
    return rows


def agreement_summary(ratings: pd.DataFrame) -> dict:
    """Alpha and kappa for preference, strength and the correctness aspect; crowd and experts.

    Likert style aspects (columns ``aspect_<name>_a`` / ``aspect_<name>_b``, scores 1-5) get an
    ordinal alpha each under ``alpha_aspects``.
    """
    out: dict = {}
    groups = {
        "all": ratings,
        "crowd": ratings[~ratings["is_expert"]],
        "expert": ratings[ratings["is_expert"]],
    }
    for name, part in groups.items():
        pref = value_counts_matrix(part["comparison_id"], part["winner"], PREFERENCE_CODES)
        strength = value_counts_matrix(part["comparison_id"], part["strength"].astype(object), (1, 2, 3, 4, 5))
        long_units = pd.concat([part["comparison_id"] + "|a", part["comparison_id"] + "|b"], ignore_index=True)
        long_values = pd.concat([part["correct_a"], part["correct_b"]], ignore_index=True)
        verdict = value_counts_matrix(long_units, long_values, VERDICT_CODES)
        aspects = {}
        for column in sorted(c for c in part.columns if c.startswith("aspect_") and c.endswith("_a")):
            aspect = column[len("aspect_") : -len("_a")]
            values = pd.concat(
                [part[column], part.get(f"aspect_{aspect}_b", pd.Series(dtype=float))], ignore_index=True
            )
            units = pd.concat([part["comparison_id"] + "|a", part["comparison_id"] + "|b"], ignore_index=True)
            scores = pd.to_numeric(values, errors="coerce")
            aspects[aspect] = krippendorff_alpha(
                value_counts_matrix(units, scores.astype(object), (1, 2, 3, 4, 5)), "ordinal"
            )
        out[name] = {
            "alpha_aspects": aspects,
            "n_ratings": int(len(part)),
            "n_units_multi_rated": int((pref.sum(axis=1) >= 2).sum()),
            "alpha_preference": krippendorff_alpha(pref, "nominal"),
            "fleiss_kappa_preference": fleiss_kappa(pref),
            "alpha_strength": krippendorff_alpha(strength, "ordinal"),
            "alpha_correctness": krippendorff_alpha(verdict, "nominal"),
        }
    loo = leave_one_out_agreement(ratings)
    out["majority_agreement"] = None if loo["agrees"].notna().sum() == 0 else float(loo["agrees"].mean())
    return out
