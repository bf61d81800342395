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


def fleiss_kappa_details(counts: np.ndarray) -> dict:
    """Fleiss' kappa, generalised to items with unequal numbers of raters, with its counts.

    The generalisation (Fleiss, Levin & Paik 2003; Gwet 2014, "Fleiss' generalized kappa"): an
    item rated by r_i >= 2 raters contributes its observed agreement
    sum_k r_ik (r_ik - 1) / (r_i (r_i - 1)); chance agreement is sum_k pi_k^2 with pi_k the mean
    over those items of r_ik / r_i. With equal numbers of raters this is Fleiss' (1971) kappa.
    Items rated once carry no agreement and are left out; the result says how many items were
    used (``n_items``) of how many (``n_items_total``) and the range of raters per item.
    ``kappa`` is None when fewer than two items are usable or chance agreement is 1.
    """
    counts = np.asarray(counts, dtype=float)
    totals = counts.sum(axis=1) if counts.size else np.zeros(0)
    usable = totals >= 2
    out = {
        "kappa": None,
        "n_items": int(usable.sum()),
        "n_items_total": int(len(totals)),
        "raters_min": int(totals[usable].min()) if usable.any() else None,
        "raters_max": int(totals[usable].max()) if usable.any() else None,
    }
    if usable.sum() < 2:
        return out
    c, r = counts[usable], totals[usable]
    p_item = (c * (c - 1)).sum(axis=1) / (r * (r - 1))
    pi = (c / r[:, None]).mean(axis=0)
    p_bar, p_e = p_item.mean(), (pi**2).sum()
    if p_e >= 1.0:
        return out
    out["kappa"] = float((p_bar - p_e) / (1.0 - p_e))
    return out


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' kappa of a (subjects x categories) count matrix; unequal rater counts allowed.

    See :func:`fleiss_kappa_details` (which also says how many items it used).
    """
    return fleiss_kappa_details(counts)["kappa"]


def pairable_units(counts: np.ndarray) -> int:
    """Units with at least two values: the ones Krippendorff's alpha can use."""
    return int((np.asarray(counts).sum(axis=1) >= 2).sum()) if np.size(counts) else 0


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
    ordinal alpha each under ``alpha_aspects``. Every figure carries its n: ``n`` maps each
    statistic to the number of units (comparisons, or responses for correctness and aspects) it
    used, and ``fleiss_kappa_items`` says how many items kappa used out of how many, with the
    range of raters per item.
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
        aspects, aspects_n = {}, {}
        for column in sorted(c for c in part.columns if c.startswith("aspect_") and c.endswith("_a")):
            aspect = column[len("aspect_") : -len("_a")]
            values = pd.concat(
                [part[column], part.get(f"aspect_{aspect}_b", pd.Series(dtype=float))], ignore_index=True
            )
            units = pd.concat([part["comparison_id"] + "|a", part["comparison_id"] + "|b"], ignore_index=True)
            scores = pd.to_numeric(values, errors="coerce")
            matrix = value_counts_matrix(units, scores.astype(object), (1, 2, 3, 4, 5))
            aspects[aspect] = krippendorff_alpha(matrix, "ordinal")
            aspects_n[aspect] = pairable_units(matrix)
        kappa = fleiss_kappa_details(pref)
        out[name] = {
            "alpha_aspects": aspects,
            "n_ratings": int(len(part)),
            "n_units_multi_rated": pairable_units(pref),
            "alpha_preference": krippendorff_alpha(pref, "nominal"),
            "fleiss_kappa_preference": kappa["kappa"],
            "fleiss_kappa_items": {k: v for k, v in kappa.items() if k != "kappa"},
            "alpha_strength": krippendorff_alpha(strength, "ordinal"),
            "alpha_correctness": krippendorff_alpha(verdict, "nominal"),
            "n": {
                "alpha_preference": pairable_units(pref),
                "fleiss_kappa_preference": kappa["n_items"],
                "alpha_strength": pairable_units(strength),
                "alpha_correctness": pairable_units(verdict),
                "alpha_aspects": aspects_n,
            },
        }
    loo = leave_one_out_agreement(ratings)
    decided = int(loo["agrees"].notna().sum())
    out["majority_agreement"] = None if decided == 0 else float(loo["agrees"].mean())
    out["majority_agreement_n"] = decided
    return out
