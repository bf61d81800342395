"""Style features of answers and the style-controlled Bradley-Terry fit (Chatbot Arena, 2024).

A rater's vote may be swayed by how an answer looks: length, Markdown lists/headers/bold, and
whether it hedges or asserts. Per vote we take each feature's normalised difference
(a - b) / (a + b + 1), scale it, and fit one logistic regression on
[model indicator difference, style differences, left-side indicator]. The model coefficients are
strengths with style held fixed; the style coefficients say how much each feature sways raters.

The fit is at vote level (the features are continuous), so bootstrap rounds use Poisson weights;
all rounds in a chunk are refitted together with matrix products (see
:func:`bootstrap_weighted_logit`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy.special import expit

from .bradley_terry import DEFAULT_L2, ELO_SCALE, to_elo
from .intervals import ALPHA, percentile_interval, poisson_weights

FEATURES = ("length", "list_items", "headers", "bold", "hedging", "assertive")

TOKEN_RE = r"\w+|[^\w\s]"
LIST_ITEM_RE = r"(?m)^[ \t]*(?:[-*+\u2022]|\d{1,3}[.)])[ \t]+\S"
HEADER_RE = r"(?m)^[ \t]*#{1,6}[ \t]+\S"
BOLD_RE = r"\*\*[^*\n]+?\*\*|__[^_\n]+?__"
# Phrase lists after Hosking et al. (2023): hedges signal uncertainty, assertions confidence.
HEDGING_PHRASES = (
    "i think",
    "i believe",
    "i'm not sure",
    "i am not sure",
    "not certain",
    "might",
    "may be",
    "perhaps",
    "possibly",
    "it is possible",
    "it's possible",
    "could be",
    "probably",
    "likely",
    "it seems",
    "appears to",
    "as far as i know",
    "to my knowledge",
)
ASSERTIVE_PHRASES = (
    "definitely",
    "certainly",
    "clearly",
    "undoubtedly",
    "without a doubt",
    "of course",
    "absolutely",
    "obviously",
    "surely",
    "in fact",
    "it is a fact",
    "always",
    "never",
    "without question",
    "there is no doubt",
)


def _phrase_pattern(phrases: Iterable[str]) -> str:
    # Longest first so "it is possible" is not also counted as a shorter overlapping phrase.
    ordered = sorted(phrases, key=len, reverse=True)
    return r"\b(?:" + "|".join(p.replace(" ", r"\s+").replace("'", "['\u2019]") for p in ordered) + r")\b"


HEDGING_RE = _phrase_pattern(HEDGING_PHRASES)
ASSERTIVE_RE = _phrase_pattern(ASSERTIVE_PHRASES)


def style_features(texts: Iterable[str]) -> pd.DataFrame:
    """Counts per text: tokens, list items, headers, bold spans, hedging and assertive phrases."""
    s = pd.Series(list(texts), dtype=object).fillna("").astype(str)
    lower = s.str.lower()
    return pd.DataFrame(
        {
            "length": s.str.count(TOKEN_RE),
            "list_items": s.str.count(LIST_ITEM_RE),
            "headers": s.str.count(HEADER_RE),
            "bold": s.str.count(BOLD_RE),
            "hedging": lower.str.count(HEDGING_RE),
            "assertive": lower.str.count(ASSERTIVE_RE),
        }
    ).astype(float)


def pair_features(ratings: pd.DataFrame, features: Iterable[str] = FEATURES) -> pd.DataFrame:
    """Per rating, (a - b) / (a + b + 1) for each style feature of its two response texts.

    Features are computed once per distinct text (many ratings share a response).
    """
    features = list(features)
    texts = pd.unique(pd.concat([ratings["text_a"], ratings["text_b"]], ignore_index=True))
    table = style_features(texts)[features]
    table.index = texts
    a = table.reindex(ratings["text_a"].to_numpy()).to_numpy()
    b = table.reindex(ratings["text_b"].to_numpy()).to_numpy()
    return pd.DataFrame((a - b) / (a + b + 1.0), columns=features, index=ratings.index)


def feature_scale(diffs: np.ndarray) -> np.ndarray:
    """Root mean square of each column.

    Not centred on purpose: the difference is antisymmetric in A and B, and centring would make
    the fit depend on which response happens to be labelled A.
    """
    return np.sqrt(np.mean(np.square(diffs), axis=0))


def fit_weighted_logit(
    X: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    *,
    null_direction: np.ndarray | None = None,
    l2: float = DEFAULT_L2,
    start: np.ndarray | None = None,
    max_iter: int = 50,
    tol: float = 1e-8,
    vote_chunk: int = 20_000,
) -> np.ndarray:
    """Batched Newton for a weighted logistic regression with fractional outcomes (ties = 0.5).

    ``X`` (n, d) and ``y`` (n,) are shared; ``weights`` (B, n) hold one weight vector per round.
    Returns (B, d). Every Hessian is a product (weights * p(1-p)) @ [x x^T per vote], so all
    rounds cost one matrix multiplication per vote chunk and iteration.
    """
    weights = np.atleast_2d(weights)
    n_rounds, d = weights.shape[0], X.shape[1]
    fixed = l2 * np.eye(d)
    if null_direction is not None:
        u = null_direction / np.linalg.norm(null_direction)
        fixed = fixed + np.outer(u, u)
    coef = np.zeros((n_rounds, d)) if start is None else np.array(np.broadcast_to(start, (n_rounds, d)))
    # Few rounds (the full-data fit): X^T diag(w) X per round is one BLAS product and needs no
    # (n x d^2) outer-product matrix. Many rounds: one product for all rounds' Hessians.
    per_round = n_rounds <= 4
    for _ in range(max_iter):
        grad = -l2 * coef
        hess = np.broadcast_to(fixed, (n_rounds, d, d)).copy()
        for lo in range(0, len(X), vote_chunk):
            Xc = X[lo : lo + vote_chunk]
            p = expit(coef @ Xc.T)
            wc = weights[:, lo : lo + vote_chunk]
            grad += (wc * (y[lo : lo + vote_chunk] - p)) @ Xc
            curvature = wc * p * (1.0 - p)
            if per_round:
                for b in range(n_rounds):
                    hess[b] += (Xc * curvature[b][:, None]).T @ Xc
            else:
                outer = (Xc[:, :, None] * Xc[:, None, :]).reshape(len(Xc), d * d)
                hess += (curvature @ outer).reshape(n_rounds, d, d)
        step = np.linalg.solve(hess, grad[:, :, None])[:, :, 0]
        biggest = np.abs(step).max(axis=1, keepdims=True)
        step *= np.minimum(1.0, 2.0 / np.maximum(biggest, 1e-300))
        coef += step
        if biggest.max() < tol:
            break
    return coef


def _weighted_gradient(
    X32: np.ndarray, y: np.ndarray, weights: np.ndarray, coef: np.ndarray, l2: float, vote_chunk: int
) -> np.ndarray:
    """Gradient of every round's log-likelihood at its own coefficients.

    The (rounds x votes) intermediates dominate the cost, so they are float32 and updated in
    place; each chunk's sum is accumulated in float64. Float32 rounding moves a step by
    ~1e-9, far below the 1e-5 stopping tolerance.
    """
    grad = -l2 * coef
    coef32 = coef.astype(np.float32)
    for lo in range(0, len(X32), vote_chunk):
        Xc = X32[lo : lo + vote_chunk]
        r = expit(coef32 @ Xc.T)
        np.subtract(y[lo : lo + vote_chunk], r, out=r)
        r *= weights[:, lo : lo + vote_chunk]
        grad += (r @ Xc).astype(np.float64)
    return grad


def bootstrap_weighted_logit(
    X: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    point: np.ndarray,
    *,
    null_direction: np.ndarray | None = None,
    l2: float = DEFAULT_L2,
    tol: float = 1e-5,
    max_iter: int = 30,
    vote_chunk: int = 20_000,
) -> np.ndarray:
    """Refit every bootstrap round exactly, cheaply: Newton steps with the full-data Hessian.

    A resample's Hessian differs from the full data's by O(1/sqrt(n)), so iterating
    beta += H^-1 g_b(beta) from the full-data fit converges to each round's own maximum
    (a chord/quasi-Newton method) in a few steps, and a step costs O(n d) per round instead of
    the O(n d^2) of forming the round's Hessian. Rounds that have not converged after
    ``max_iter`` steps (tiny or degenerate resamples) finish with full Newton.
    """
    weights = np.atleast_2d(weights)
    n_rounds, d = weights.shape[0], X.shape[1]
    p = expit(X @ point)
    hess = (X * (p * (1.0 - p))[:, None]).T @ X + l2 * np.eye(d)
    if null_direction is not None:
        u = null_direction / np.linalg.norm(null_direction)
        hess += np.outer(u, u)
    # Rounds have about n total weight, like the full data, so one inverse serves all of them.
    inverse = np.linalg.inv(hess)
    coef = np.tile(point, (n_rounds, 1))
    X32, y32, w32 = X.astype(np.float32), y.astype(np.float32), weights.astype(np.float32, copy=False)
    active = np.arange(n_rounds)
    for _ in range(max_iter):
        step = _weighted_gradient(X32, y32, w32[active], coef[active], l2, vote_chunk) @ inverse.T
        coef[active] += step
        active = active[np.abs(step).max(axis=1) >= tol]
        if active.size == 0:
            break
    if active.size:
        coef[active] = fit_weighted_logit(
            X,
            y,
            weights[active],
            null_direction=null_direction,
            l2=l2,
            start=coef[active],
            tol=tol,
            vote_chunk=vote_chunk,
        )
    return coef


def style_design(
    ratings: pd.DataFrame,
    models: list[str],
    features: Iterable[str] = FEATURES,
    position: bool = True,
) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray, np.ndarray]:
    """Vote-level design: returns (X, y, feature names kept, feature scales, kept-row mask).

    Features that never differ between the two sides are dropped (they carry no information
    and would make the fit singular).
    """
    index = {m: i for i, m in enumerate(models)}
    a = ratings["model_a"].map(index)
    b = ratings["model_b"].map(index)
    keep = (a.notna() & b.notna() & (a != b)).to_numpy()
    rows = ratings.loc[keep]
    a = a.to_numpy()[keep].astype(np.int64)
    b = b.to_numpy()[keep].astype(np.int64)
    n, m = len(rows), len(models)
    diffs = pair_features(rows, features).to_numpy()
    scale = feature_scale(diffs) if n else np.zeros(diffs.shape[1])
    used = scale > 0
    names = [f for f, u in zip(features, used, strict=True) if u]
    X = np.zeros((n, m + len(names) + int(position)))
    X[np.arange(n), a] += 1.0
    X[np.arange(n), b] -= 1.0
    X[:, m : m + len(names)] = diffs[:, used] / scale[used]
    if position:
        X[:, -1] = np.where(rows["left_side"].to_numpy() == "A", 1.0, -1.0)
    winner = rows["winner"].to_numpy()
    y = np.where(winner == "A", 1.0, np.where(winner == "B", 0.0, 0.5))
    return X, y, names, scale[used], keep


def style_controlled(
    ratings: pd.DataFrame,
    *,
    models: list[str] | None = None,
    features: Iterable[str] = FEATURES,
    position: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = ALPHA,
    l2: float = DEFAULT_L2,
    round_chunk: int | None = None,
) -> dict:
    """Style-controlled strengths and style coefficients, with Poisson-bootstrap intervals.

    ``coef`` of a feature is the change in log-odds of winning per one RMS unit of its normalised
    difference; ``coef_raw`` per unit of the raw (a-b)/(a+b+1) difference. With ``position``
    a left-side term (+1 when A was shown left) is fitted too.
    """
    features = list(features)
    if models is None:
        models = sorted(set(ratings["model_a"]) | set(ratings["model_b"]))
    m = len(models)
    X, y, names, scale, _ = style_design(ratings, models, features, position)
    result: dict = {
        "models": list(models),
        "n_votes": int(len(y)),
        "n_boot": n_boot,
        "features": names,
        "dropped_features": [f for f in features if f not in names],
    }
    if len(y) == 0 or m < 2:
        result.update({"rows": [], "coefficients": []})
        return result
    null = np.r_[np.ones(m), np.zeros(X.shape[1] - m)]
    point = fit_weighted_logit(X, y, np.ones((1, len(y))), null_direction=null, l2=l2)[0]
    boot = None
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        # Keep each chunk's weights and products to a few hundred MB.
        chunk = round_chunk or max(1, min(n_boot, 10_000_000 // max(len(y), 1)))
        parts = []
        for lo in range(0, n_boot, chunk):
            rounds = min(chunk, n_boot - lo)
            w = poisson_weights(len(y), rounds, rng)
            parts.append(bootstrap_weighted_logit(X, y, w, point, null_direction=null, l2=l2))
        boot = np.vstack(parts)
    point[:m] -= point[:m].mean()
    if boot is not None:
        boot[:, :m] -= boot[:, :m].mean(axis=1, keepdims=True)

    rows = []
    for i, model in enumerate(models):
        row = {"model": model, "beta": float(point[i]), "elo": float(to_elo(point[i]))}
        if boot is not None:
            lo, hi = percentile_interval(to_elo(boot[:, i]), alpha)
            row.update({"elo_lo": float(lo), "elo_hi": float(hi), "elo_se": float(ELO_SCALE * boot[:, i].std())})
        rows.append(row)
    rows.sort(key=lambda r: -r["elo"])
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank

    coefficients = []
    names_all = names + (["left_side"] if position else [])
    scales = list(scale) + ([1.0] if position else [])
    for k, (name, sc) in enumerate(zip(names_all, scales, strict=True)):
        j = m + k
        entry = {
            "feature": name,
            "coef": float(point[j]),
            "coef_raw": float(point[j] / sc),
            "scale": float(sc),
        }
        if boot is not None:
            lo, hi = percentile_interval(boot[:, j], alpha)
            entry.update(
                {
                    "lo": float(lo),
                    "hi": float(hi),
                    "se": float(boot[:, j].std()),
                    "raw_lo": float(lo / sc),
                    "raw_hi": float(hi / sc),
                }
            )
        coefficients.append(entry)
    result.update({"rows": rows, "coefficients": coefficients, "beta": point[:m].tolist()})
    return result
