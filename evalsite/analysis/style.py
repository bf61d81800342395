"""Style features of answers and the style-controlled Bradley-Terry fit (Chatbot Arena, 2024).

A rater's vote may be swayed by how an answer looks: length, Markdown lists/headers/bold, and
whether it hedges or asserts. Per vote we take each feature's normalised difference
(a - b) / (a + b + 1), scale it, and fit one logistic regression on
[model indicator difference, style differences, left-side indicator]. The model coefficients are
strengths with style held fixed; the style coefficients say how much each feature sways raters.

The fit is at vote level (the features are continuous). Its intervals resample **prompts**, like
every other interval of the report: a round draws prompts with replacement and weights each vote by
how often its prompt was drawn; all rounds in a chunk are refitted together with matrix products
(see :func:`bootstrap_weighted_logit`). Beside them, cluster-robust (sandwich) standard errors
clustered by prompt. (Poisson weights per vote, ``bootstrap="votes"``, ignore that ratings of one
prompt are correlated: with prompt effects their standard errors were 0.61-0.67 of the true spread.)

With few votes per parameter, or style features that nearly determine which model answered
(variance inflation > 10), the style-controlled strengths are not identified: the result says so
(``identified``, ``warnings``) instead of reporting a rating of -526.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy.special import expit

from .bradley_terry import DEFAULT_L2, ELO_SCALE, ConvergenceWarning, solve_batched, to_elo
from .intervals import (
    ALPHA,
    CHUNK_ENTRIES,
    METHOD_BOOTSTRAP,
    METHOD_POISSON,
    METHOD_SANDWICH,
    MIN_PROMPTS,
    cluster_weights,
    percentile_interval,
    poisson_weights,
    sandwich_covariance,
    too_few_prompts,
    wald_interval,
)
from .schema import SchemaError, model_codes, require_ratings
from .separation import STATUS_TEXT, separation

FEATURES = ("length", "list_items", "headers", "bold", "hedging", "assertive")
# Identification rules of thumb: at least this many votes per fitted parameter, and a variance
# inflation factor (a model coefficient's variance with the style terms / without them) below this.
MIN_VOTES_PER_PARAMETER = 10
MAX_VIF = 10.0

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
    # One hash pass over both columns gives each rating's text codes (no string re-indexing).
    codes, texts = pd.factorize(pd.concat([ratings["text_a"], ratings["text_b"]], ignore_index=True))
    table = style_features(texts)[features].to_numpy()
    n = len(ratings)
    a, b = table[codes[:n]], table[codes[n:]]
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
    return_info: bool = False,
):
    """Batched Newton for a weighted logistic regression with fractional outcomes (ties = 0.5).

    ``X`` (n, d) and ``y`` (n,) are shared; ``weights`` (B, n) hold one weight vector per round.
    Returns (B, d) (and ``{"converged": (B,) bool, "iterations": int}`` with ``return_info``);
    singular systems (``l2=0`` on separated data) take pseudo-inverse steps. Every Hessian is a
    product (weights * p(1-p)) @ [x x^T per vote], so all rounds cost one matrix multiplication
    per vote chunk and iteration.
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
    converged = np.zeros(n_rounds, dtype=bool)
    iterations = 0
    for _ in range(max_iter):
        iterations += 1
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
        step = solve_batched(hess, grad)
        biggest = np.abs(step).max(axis=1, keepdims=True)
        step *= np.minimum(1.0, 2.0 / np.maximum(biggest, 1e-300))
        coef += step
        converged = biggest[:, 0] < tol
        if converged.all():
            break
    if return_info:
        return coef, {"converged": converged, "iterations": iterations}
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
    inverse = np.linalg.pinv(hess)
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
    _, a, b = model_codes(ratings, models)
    keep = (a >= 0) & (b >= 0) & (a != b)
    rows = ratings.loc[keep]
    a, b = a[keep], b[keep]
    features = list(features)
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


def _information(X: np.ndarray, coef: np.ndarray, l2: float, null: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Fisher information at ``coef`` plus the prior, its inverse with the null direction fixed)."""
    p = expit(X @ coef)
    info = (X * (p * (1.0 - p))[:, None]).T @ X + l2 * np.eye(X.shape[1])
    u = null / np.linalg.norm(null)
    return info, np.linalg.pinv(info + np.outer(u, u))


def variance_inflation(info: np.ndarray, n_models: int) -> np.ndarray:
    """Per model coefficient: its variance with the style terms / its variance from the model
    terms alone, at the same vote weights (the variance inflation factor of a GLM).

    Large values mean the style features nearly determine which model answered: the data cannot
    tell a model's strength from its style.
    """
    m = n_models
    u = np.r_[np.ones(m), np.zeros(info.shape[0] - m)] / np.sqrt(m)
    full = np.diag(np.linalg.pinv(info + np.outer(u, u)))[:m]
    um = np.ones(m) / np.sqrt(m)
    alone = np.diag(np.linalg.pinv(info[:m, :m] + np.outer(um, um)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(alone > 0, full / alone, np.inf)


def cluster_robust_cov(
    X: np.ndarray, y: np.ndarray, coef: np.ndarray, clusters: np.ndarray, bread: np.ndarray
) -> np.ndarray:
    """Cluster-robust covariance of the vote-level fit: per-prompt sums of x (y - p)."""
    residual = y - expit(X @ coef)
    codes, labels = pd.factorize(np.asarray(clusters))
    scores = np.zeros((len(labels), X.shape[1]))
    np.add.at(scores, codes, X * residual[:, None])
    return sandwich_covariance(bread, scores)


def _prompt_weights(codes: np.ndarray, n_clusters: int, rounds: int, rng: np.random.Generator) -> np.ndarray:
    """(rounds, votes) float32 weights: how often each vote's prompt was drawn in each round."""
    return cluster_weights(n_clusters, rounds, rng, dtype=np.float32)[:, codes]


def style_controlled(
    ratings: pd.DataFrame,
    *,
    models: list[str] | None = None,
    features: Iterable[str] = FEATURES,
    position: bool = True,
    n_boot: int = 1000,
    bootstrap: str = "prompt",
    seed: int = 0,
    alpha: float = ALPHA,
    l2: float = DEFAULT_L2,
    round_chunk: int | None = None,
    min_prompts: int = MIN_PROMPTS,
    sandwich: bool = True,
) -> dict:
    """Style-controlled strengths and style coefficients, with prompt-clustered intervals.

    ``coef`` of a feature is the change in log-odds of winning per one RMS unit of its normalised
    difference; ``coef_raw`` per unit of the raw (a-b)/(a+b+1) difference. With ``position``
    a left-side term (+1 when A was shown left) is fitted too.

    ``bootstrap``: ``"prompt"`` (resample prompts; the default), ``"votes"`` (Poisson weight per
    vote, ignores prompt clustering; kept for comparison) or ``"none"``. ``sandwich`` adds
    cluster-robust standard errors by prompt (``elo_se_sandwich``, ``se_sandwich``, Wald
    intervals). No interval from fewer than ``min_prompts`` prompts. Models that never lost or
    never won (:mod:`separation`) are left out of the fit and flagged; ``identified`` is False,
    with the reason in ``warnings``, when there are fewer than 10 votes per parameter or a
    model's variance inflation exceeds 10.
    """
    if bootstrap not in ("prompt", "votes", "none"):
        raise ValueError(f"bootstrap must be 'prompt', 'votes' or 'none', not {bootstrap!r}")
    features = list(features)
    columns = ("model_a", "model_b", "winner", "prompt_id", "text_a", "text_b") + (("left_side",) if position else ())
    require_ratings(ratings, columns, "style_controlled")
    models, a_codes, b_codes = model_codes(ratings, models)
    ok = (a_codes >= 0) & (b_codes >= 0) & (a_codes != b_codes)
    if len(models) < 2 or not ok.any():
        raise SchemaError(
            "style_controlled: no vote between two different models in columns 'model_a' / 'model_b' "
            f"({len(ratings)} rating row(s)); nothing to fit"
        )
    winner = ratings["winner"].to_numpy()[ok]
    sep = separation(
        a_codes[ok], b_codes[ok], np.where(winner == "A", 1.0, np.where(winner == "B", 0.0, 0.5)), len(models)
    )
    core = [models[i] for i in sep["core"]]
    method = {"prompt": METHOD_BOOTSTRAP, "votes": METHOD_POISSON, "none": None}[bootstrap] if n_boot > 0 else None
    result: dict = {
        "models": list(models),
        "n_votes": 0,
        "n_boot": n_boot,
        "bootstrap": bootstrap if n_boot > 0 else "none",
        "interval_method": method,
        "sandwich_method": METHOD_SANDWICH if sandwich else None,
        "features": [],
        "dropped_features": [],
        "separated": bool(sep["separated"]),
        "converged": True,
        "identified": True,
        "warnings": [],
    }
    warnings_: list[str] = result["warnings"]
    if sep["separated"]:
        flagged = [f"{models[i]} ({STATUS_TEXT[st]})" for i, st in enumerate(sep["status"]) if st != "ok"]
        warnings_.append("separation: not identified for " + ", ".join(flagged))
    m = len(core)
    status = dict(zip(models, sep["status"], strict=True))
    if m < 2:
        result.update({"identified": False, "rows": _unrated_rows(models, status), "coefficients": []})
        warnings_.append("no two models can be compared")
        return result
    X, y, names, scale, keep = style_design(ratings, core, features, position)
    prompts = ratings["prompt_id"].to_numpy()[keep]
    n = len(y)
    n_prompts = int(pd.unique(prompts).size)
    n_params = (m - 1) + len(names) + int(position)
    result.update(
        {
            "n_votes": int(n),
            "n_prompts": n_prompts,
            "n_parameters": n_params,
            "features": names,
            "dropped_features": [f for f in features if f not in names],
        }
    )
    null = np.r_[np.ones(m), np.zeros(X.shape[1] - m)]
    point_all, info = fit_weighted_logit(X, y, np.ones((1, n)), null_direction=null, l2=l2, return_info=True)
    point = point_all[0]
    if not info["converged"][0] or not np.isfinite(point).all():
        result["converged"] = False
        result["identified"] = False
        warnings_.append(f"the fit did not converge in {info['iterations']} Newton steps")
        warnings.warn(f"style_controlled: {warnings_[-1]}", ConvergenceWarning, stacklevel=2)
    information, bread = _information(X, point, l2, null)
    vif = variance_inflation(information, m)
    if n < MIN_VOTES_PER_PARAMETER * n_params:
        result["identified"] = False
        warnings_.append(
            f"not identified: {n} votes for {n_params} parameters "
            f"(at least {MIN_VOTES_PER_PARAMETER * n_params} needed, {MIN_VOTES_PER_PARAMETER} per parameter)"
        )
    inflated = [(model, v) for model, v in zip(core, vif, strict=True) if not v <= MAX_VIF]
    if inflated:
        result["identified"] = False
        warnings_.append(
            "not identified: style features nearly determine which model answered (variance inflation "
            + ", ".join(f"{model} {v:.0f}" for model, v in inflated)
            + f"; above {MAX_VIF:.0f})"
        )
    enough = n_prompts >= min_prompts
    if not enough and (n_boot > 0 or sandwich):
        warnings_.append(too_few_prompts(n_prompts, min_prompts) + ": no intervals")
    result["too_few_prompts"] = not enough

    boot = None
    if enough and n_boot > 0 and bootstrap != "none":
        rng = np.random.default_rng(seed)
        # Keep each chunk's weights and products to a few hundred MB.
        chunk = round_chunk or max(1, min(n_boot, CHUNK_ENTRIES // max(n, 1)))
        codes, labels = pd.factorize(prompts)
        parts = []
        for lo in range(0, n_boot, chunk):
            rounds = min(chunk, n_boot - lo)
            if bootstrap == "prompt":
                w = _prompt_weights(codes, len(labels), rounds, rng)
            else:
                w = poisson_weights(n, rounds, rng)
            parts.append(bootstrap_weighted_logit(X, y, w, point, null_direction=null, l2=l2))
        boot = np.vstack(parts)
    se = None
    if enough and sandwich and result["converged"]:
        se = np.sqrt(np.clip(np.diag(cluster_robust_cov(X, y, point, prompts, bread)), 0.0, None))
    point[:m] -= point[:m].mean()
    if boot is not None:
        boot[:, :m] -= boot[:, :m].mean(axis=1, keepdims=True)

    rows = []
    for i, model in enumerate(core):
        row = {
            "model": model,
            "status": "ok",
            "identified": result["identified"],
            "vif": float(vif[i]) if np.isfinite(vif[i]) else None,
            "beta": float(point[i]),
            "elo": float(to_elo(point[i])),
        }
        if not result["identified"]:
            row["note"] = next(w for w in warnings_ if w.startswith(("not identified", "the fit did not")))
        elif not enough:
            row["warning"] = too_few_prompts(n_prompts, min_prompts)
        if boot is not None:
            lo, hi = percentile_interval(to_elo(boot[:, i]), alpha)
            row.update({"elo_lo": float(lo), "elo_hi": float(hi), "elo_se": float(ELO_SCALE * boot[:, i].std())})
        if se is not None:
            lo, hi = wald_interval(point[i], se[i], alpha)
            row.update(
                {
                    "elo_se_sandwich": float(ELO_SCALE * se[i]),
                    "elo_sandwich_lo": float(to_elo(lo)),
                    "elo_sandwich_hi": float(to_elo(hi)),
                }
            )
        rows.append(row)
    rows.sort(key=lambda r: -r["elo"])
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    rows += _unrated_rows([x for x in models if x not in core], status)

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
        if se is not None:
            lo, hi = wald_interval(point[j], se[j], alpha)
            entry.update({"se_sandwich": float(se[j]), "sandwich_lo": float(lo), "sandwich_hi": float(hi)})
        coefficients.append(entry)
    beta_full = dict(zip(core, point[:m].tolist(), strict=True))
    result.update(
        {"rows": rows, "coefficients": coefficients, "beta": [beta_full.get(x, float("nan")) for x in models]}
    )
    return result


def _unrated_rows(models: list[str], status: dict[str, str]) -> list[dict]:
    return [
        {
            "model": model,
            "status": status[model],
            "identified": False,
            "beta": None,
            "elo": None,
            "rank": None,
            "note": STATUS_TEXT.get(status[model], status[model]),
        }
        for model in models
    ]
