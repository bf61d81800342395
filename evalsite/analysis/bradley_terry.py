"""Bradley-Terry strengths from pairwise ratings, with bootstrap intervals fitted all at once.

P(i beats j) = sigma(beta_i - beta_j), ties and both-bad as half a win each. The likelihood depends
on the votes only through per-pair counts, so we aggregate once and fit on an (m*m)-row grouped
logistic problem. Bootstrap rounds differ only in their counts, so all rounds are one batched
Newton iteration: the Hessians of every round come out of a single matrix product and are
solved with one batched ``np.linalg.solve``. That is what makes 1,000 rounds on 1M votes take
well under a second.

Position correction adds one parameter gamma: P(left beats right) = sigma(beta_l - beta_r + gamma).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.special import expit

from .intervals import ALPHA, cluster_weights, percentile_interval

ELO_BASE = 1000.0
ELO_SCALE = 400.0 / math.log(10.0)
# A weak Gaussian prior (precision per parameter, in units of votes): keeps estimates finite when
# a model won or lost every comparison (no MLE exists then) and is negligible otherwise.
DEFAULT_L2 = 1e-4
# Above this many prompt x cell entries the clustered bootstrap uses a sparse product.
_DENSE_LIMIT = 20_000_000


def to_elo(beta: np.ndarray) -> np.ndarray:
    """Map strengths (natural-log odds scale, sum zero) to the Elo-like 1000 + 400*beta/ln 10."""
    return ELO_BASE + ELO_SCALE * np.asarray(beta)


def design_matrix(n_models: int, position: bool = False) -> np.ndarray:
    """Rows for every ordered (first, second) model pair: e_first - e_second (+1 for gamma)."""
    m = n_models
    first, second = np.divmod(np.arange(m * m), m)
    X = np.zeros((m * m, m + int(position)))
    X[np.arange(m * m), first] += 1.0
    X[np.arange(m * m), second] -= 1.0
    if position:
        X[first != second, m] = 1.0
    return X


def fit_grouped_logit(
    X: np.ndarray,
    wins: np.ndarray,
    trials: np.ndarray,
    *,
    null_direction: np.ndarray | None = None,
    l2: float = DEFAULT_L2,
    max_iter: int = 100,
    tol: float = 1e-9,
) -> np.ndarray:
    """Batched Newton for logistic regression on grouped counts.

    ``X`` is (K, d); ``wins`` and ``trials`` are (B, K) with possibly fractional wins. Returns the
    (B, d) maximisers of sum(wins*log p + (trials-wins)*log(1-p)) - l2/2*|coef|^2.
    ``null_direction`` (d,) is a direction the likelihood is flat along (adding a constant to all
    strengths); adding its outer product to the Hessian keeps every solve well conditioned without
    changing the solution, because the gradient has no component along it.
    """
    wins = np.atleast_2d(np.asarray(wins, dtype=float))
    trials = np.atleast_2d(np.asarray(trials, dtype=float))
    observed = trials.sum(axis=0) > 0
    X, wins, trials = X[observed], wins[:, observed], trials[:, observed]
    n_rounds, d = wins.shape[0], X.shape[1]
    outer = (X[:, :, None] * X[:, None, :]).reshape(len(X), d * d)
    fixed = l2 * np.eye(d)
    if null_direction is not None:
        u = null_direction / np.linalg.norm(null_direction)
        fixed = fixed + np.outer(u, u)
    coef = np.zeros((n_rounds, d))
    for _ in range(max_iter):
        p = expit(coef @ X.T)
        grad = (wins - trials * p) @ X - l2 * coef
        hess = ((trials * p * (1.0 - p)) @ outer).reshape(n_rounds, d, d) + fixed
        step = np.linalg.solve(hess, grad[:, :, None])[:, :, 0]
        # Damp huge first steps (far from the optimum Newton on a logistic likelihood can overshoot).
        biggest = np.abs(step).max(axis=1, keepdims=True)
        step *= np.minimum(1.0, 2.0 / np.maximum(biggest, 1e-300))
        coef += step
        if biggest.max() < tol:
            break
    return coef


def _pair_cells(first: np.ndarray, second: np.ndarray, score: np.ndarray, n_models: int) -> np.ndarray:
    """Cell index per vote: (first, second) pair x outcome (0 first wins, 1 tie, 2 second wins)."""
    outcome = np.where(score == 1.0, 0, np.where(score == 0.0, 2, 1))
    return (first * n_models + second) * 3 + outcome


def _cells_to_counts(cell_counts: np.ndarray, n_models: int) -> tuple[np.ndarray, np.ndarray]:
    """(B, 3*m*m) cell counts -> (B, m*m) wins of the first model (ties half) and trials."""
    c = cell_counts.reshape(cell_counts.shape[0], n_models * n_models, 3)
    return c[:, :, 0] + 0.5 * c[:, :, 1], c.sum(axis=2)


def fit_from_cells(cell_counts: np.ndarray, n_models: int, *, position: bool = False, l2: float = DEFAULT_L2):
    """Fit every row of a (B, 3*m*m) cell-count matrix; returns (B, m[+1]) coefficients, Σβ=0."""
    wins, trials = _cells_to_counts(np.atleast_2d(cell_counts), n_models)
    X = design_matrix(n_models, position)
    null = np.r_[np.ones(n_models), np.zeros(int(position))]
    coef = fit_grouped_logit(X, wins, trials, null_direction=null, l2=l2)
    coef[:, :n_models] -= coef[:, :n_models].mean(axis=1, keepdims=True)
    return coef


def vote_arrays(
    ratings: pd.DataFrame, models: list[str], *, position: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first, second, score-of-first) arrays for the votes whose models are both in ``models``.

    Without position the first model is model A; with position it is the one shown on the left.
    """
    index = {m: i for i, m in enumerate(models)}
    a = ratings["model_a"].map(index)
    b = ratings["model_b"].map(index)
    ok = (a.notna() & b.notna() & (a != b)).to_numpy()
    a = a.to_numpy()[ok].astype(np.int64)
    b = b.to_numpy()[ok].astype(np.int64)
    winner = ratings["winner"].to_numpy()[ok]
    score_a = np.where(winner == "A", 1.0, np.where(winner == "B", 0.0, 0.5))
    if not position:
        return a, b, score_a
    a_left = ratings["left_side"].to_numpy()[ok] == "A"
    first = np.where(a_left, a, b)
    second = np.where(a_left, b, a)
    score = np.where(a_left, score_a, 1.0 - score_a)
    return first, second, score


def bootstrap_cells(
    cells: np.ndarray,
    n_cells: int,
    *,
    n_boot: int,
    rng: np.random.Generator,
    clusters: np.ndarray | None = None,
) -> np.ndarray:
    """Bootstrap cell counts, (n_boot, n_cells).

    Without clusters: one multinomial draw of the vote total over the observed cell frequencies
    per round, equivalent to resampling votes. With clusters (prompt ids): resample clusters
    and add up their cell counts, one matrix product for all rounds.
    """
    counts = np.bincount(cells, minlength=n_cells).astype(float)
    # Work on the observed cells only (with pairs ordered, more than half the grid is empty).
    observed = np.flatnonzero(counts)
    out = np.zeros((n_boot, n_cells))
    if clusters is None:
        total = int(counts.sum())
        out[:, observed] = rng.multinomial(total, counts[observed] / total, size=n_boot)
        return out
    codes, labels = pd.factorize(np.asarray(clusters))
    compact = np.searchsorted(observed, cells)
    per_cluster = sparse.csr_matrix(
        (np.ones(len(cells), dtype=np.float32), (codes, compact)), shape=(len(labels), len(observed))
    )  # duplicate (cluster, cell) entries are summed
    # float32 is exact for integer counts below 2**24 and halves the cost of the product.
    weights = cluster_weights(len(labels), n_boot, rng, dtype=np.float32)
    if len(labels) * len(observed) <= _DENSE_LIMIT:
        out[:, observed] = weights @ per_cluster.toarray()
    else:
        out[:, observed] = np.asarray((per_cluster.T @ weights.T).T)
    return out


def bradley_terry(
    ratings: pd.DataFrame,
    *,
    models: list[str] | None = None,
    position: bool = False,
    n_boot: int = 1000,
    bootstrap: str = "prompt",
    seed: int = 0,
    alpha: float = ALPHA,
    l2: float = DEFAULT_L2,
) -> dict:
    """Bradley-Terry strengths of all models, on the Elo-like scale, with bootstrap intervals.

    ``bootstrap`` is ``"prompt"`` (resample prompts: honest when a prompt appears in many pairs),
    ``"votes"`` (multinomial on pair counts) or ``"none"``. With ``position=True`` the fit has a
    left-side term and the strengths are position-corrected; ``gamma`` is reported with its
    interval (gamma > 0: the left side is favoured).
    """
    if models is None:
        models = sorted(set(ratings["model_a"]) | set(ratings["model_b"]))
    m = len(models)
    first, second, score = vote_arrays(ratings, models, position=position)
    n_cells = 3 * m * m
    result: dict = {
        "models": list(models),
        "n_votes": int(len(first)),
        "position_corrected": position,
        "bootstrap": bootstrap if n_boot > 0 else "none",
        "n_boot": n_boot,
    }
    if len(first) == 0 or m < 2:
        result.update({"beta": [], "elo": [], "rows": []})
        return result
    cells = _pair_cells(first, second, score, m)
    point = fit_from_cells(np.bincount(cells, minlength=n_cells)[None].astype(float), m, position=position, l2=l2)[0]
    boot = None
    if n_boot > 0 and bootstrap != "none":
        rng = np.random.default_rng(seed)
        clusters = None
        if bootstrap == "prompt":
            keep = _kept_mask(ratings, models)
            clusters = ratings["prompt_id"].to_numpy()[keep]
        elif bootstrap != "votes":
            raise ValueError(f"bootstrap must be 'prompt', 'votes' or 'none', not {bootstrap!r}")
        boot = fit_from_cells(
            bootstrap_cells(cells, n_cells, n_boot=n_boot, rng=rng, clusters=clusters),
            m,
            position=position,
            l2=l2,
        )
    elo = to_elo(point[:m])
    rows = []
    for i, model in enumerate(models):
        row = {
            "model": model,
            "beta": float(point[i]),
            "elo": float(elo[i]),
            "n_votes": int(((first == i) | (second == i)).sum()),
        }
        if boot is not None:
            lo, hi = percentile_interval(to_elo(boot[:, i]), alpha)
            row.update({"elo_lo": float(lo), "elo_hi": float(hi), "elo_se": float(ELO_SCALE * boot[:, i].std())})
            blo, bhi = percentile_interval(boot[:, i], alpha)
            row.update({"beta_lo": float(blo), "beta_hi": float(bhi)})
        rows.append(row)
    rows.sort(key=lambda r: -r["elo"])
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    result.update({"beta": point[:m].tolist(), "elo": elo.tolist(), "rows": rows})
    if position:
        result["gamma"] = float(point[m])
        result["p_left_at_equal_strength"] = float(expit(point[m]))
        if boot is not None:
            lo, hi = percentile_interval(boot[:, m], alpha)
            result["gamma_lo"], result["gamma_hi"] = float(lo), float(hi)
    return result


def _kept_mask(ratings: pd.DataFrame, models: list[str]) -> np.ndarray:
    """The rows :func:`vote_arrays` keeps, so cluster labels line up with votes."""
    known = set(models)
    a = ratings["model_a"].isin(known).to_numpy()
    b = ratings["model_b"].isin(known).to_numpy()
    return a & b & (ratings["model_a"] != ratings["model_b"]).to_numpy()
