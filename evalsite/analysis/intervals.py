"""Confidence intervals and the resampling weights the bootstraps share.

Every bootstrap here is expressed as a matrix of weights (rounds x units), so that a statistic
that is a sum over units becomes one matrix product for all rounds at once. The prompt-clustered
bootstrap draws its rounds in chunks (:func:`cluster_bootstrap`), so its memory is bounded by the
chunk, not by rounds x prompts.

Small samples are stated, not hidden: a clustered interval needs at least ``min_prompts``
prompts (:data:`MIN_PROMPTS` by default). Below that, or when every resample gives the same value
(an all-wins record), a proportion falls back to a Wilson interval marked as such, and any other
statistic gets no interval, with a warning that says why.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse, stats

ALPHA = 0.05
# Fewest prompts (clusters) from which a prompt-clustered interval is reported. With fewer, the
# bootstrap's spread says more about which prompts happened to be drawn than about the truth.
MIN_PROMPTS = 10
# Entries (rounds x clusters) of one chunk of bootstrap weights: 8M float32 = 32 MB (plus the
# int draws it is built from), whatever the number of prompts and rounds.
CHUNK_ENTRIES = 8_000_000

METHOD_BOOTSTRAP = "prompt-clustered bootstrap"
METHOD_VOTES = "vote bootstrap (ignores prompts)"
METHOD_POISSON = "Poisson bootstrap per vote (ignores prompts)"
METHOD_SANDWICH = "cluster-robust sandwich (by prompt)"
METHOD_WILSON = "Wilson (ratings treated as independent)"


def too_few_prompts(n_prompts: int, min_prompts: int = MIN_PROMPTS) -> str:
    """The warning a cell shows instead of an interval."""
    return f"too few prompts (n = {int(n_prompts)}; at least {int(min_prompts)} needed for an interval)"


def wilson_interval(successes: float, n: float, alpha: float = ALPHA) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (nan, nan) when n is 0."""
    if n <= 0:
        return (float("nan"), float("nan"))
    z = stats.norm.ppf(1 - alpha / 2)
    p = successes / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def percentile_interval(samples: np.ndarray, alpha: float = ALPHA, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval along ``axis`` (rounds), ignoring rounds that gave NaN."""
    lo = np.nanquantile(samples, alpha / 2, axis=axis)
    hi = np.nanquantile(samples, 1 - alpha / 2, axis=axis)
    return lo, hi


def cluster_weights(n_clusters: int, n_boot: int, rng: np.random.Generator, dtype: type = np.float64) -> np.ndarray:
    """How often each cluster is drawn in each bootstrap round: an (n_boot, n_clusters) count matrix.

    Drawing n_clusters clusters with replacement per round; built with one bincount instead of
    a loop over rounds.
    """
    if n_clusters == 0:
        return np.zeros((n_boot, 0), dtype=dtype)
    draws = rng.integers(0, n_clusters, size=(n_boot, n_clusters))
    draws += (np.arange(n_boot) * n_clusters)[:, None]
    counts = np.bincount(draws.ravel(), minlength=n_boot * n_clusters)
    return counts.reshape(n_boot, n_clusters).astype(dtype)


def cluster_bootstrap(
    sums,
    n_boot: int,
    rng: np.random.Generator,
    *,
    chunk_entries: int = CHUNK_ENTRIES,
) -> np.ndarray:
    """Bootstrap totals of per-cluster sums: (n_boot, k) from ``sums`` (n_clusters, k).

    ``sums`` is a dense array or a scipy sparse matrix (e.g. prompts x pair cells). Each round
    draws n_clusters clusters with replacement and adds up their rows. Rounds are drawn
    ``chunk_entries // n_clusters`` at a time, so the weights never exceed one chunk: 1,000
    rounds over a million prompts need about 100 MB, not the 4 GB of all weights at once.
    """
    n_clusters = sums.shape[0]
    k = sums.shape[1]
    out = np.zeros((n_boot, k))
    if n_boot <= 0 or n_clusters == 0:
        return out
    dense = not sparse.issparse(sums)
    if dense:
        sums = np.asarray(sums, dtype=np.float64)
    else:
        sums = sparse.csr_matrix(sums, dtype=np.float32)
        transposed = sums.T.tocsr()
    chunk = max(1, min(n_boot, chunk_entries // max(n_clusters, 1)))
    for lo in range(0, n_boot, chunk):
        rounds = min(chunk, n_boot - lo)
        if dense:
            out[lo : lo + rounds] = cluster_weights(n_clusters, rounds, rng) @ sums
        else:
            weights = cluster_weights(n_clusters, rounds, rng, dtype=np.float32)
            out[lo : lo + rounds] = np.asarray(transposed @ weights.T).T
    return out


def wald_interval(estimate: np.ndarray, se: np.ndarray, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """estimate -/+ z * se."""
    z = stats.norm.ppf(1 - alpha / 2)
    return estimate - z * se, estimate + z * se


def sandwich_covariance(bread_inverse: np.ndarray, cluster_scores: np.ndarray) -> np.ndarray:
    """Cluster-robust covariance H^-1 (G/(G-1) sum_c s_c s_c^T) H^-1.

    ``cluster_scores`` (G, d) holds each cluster's summed score (gradient of its log-likelihood
    contribution at the estimate); ``bread_inverse`` is the inverse Hessian (d, d). The G/(G-1)
    factor is the usual small-sample correction (CR1 without the parameter-count term, as
    Stata's and Chatbot Arena's clustered errors use).
    """
    g = cluster_scores.shape[0]
    meat = cluster_scores.T @ cluster_scores
    if g > 1:
        meat *= g / (g - 1)
    return bread_inverse @ meat @ bread_inverse.T


def proportion_interval(
    successes: float,
    n: float,
    n_prompts: int,
    boot_ratios: np.ndarray | None,
    *,
    min_prompts: int = MIN_PROMPTS,
    alpha: float = ALPHA,
) -> dict:
    """The interval of a proportion: prompt-clustered bootstrap when honest, else Wilson, marked.

    Returns ``lo, hi, method, warning``. Wilson is used when there are fewer than ``min_prompts``
    prompts (with one prompt the bootstrap draws that prompt every time: zero width), or when
    every bootstrap round gives the same value (a 40-0 record). A Wilson interval treats ratings
    as independent, so it is marked, and the warning says why it was used.
    """
    if n <= 0:
        return {"lo": float("nan"), "hi": float("nan"), "method": None, "warning": "no ratings"}
    if boot_ratios is not None and n_prompts >= min_prompts:
        lo, hi = percentile_interval(np.asarray(boot_ratios, dtype=float), alpha)
        if np.isfinite(lo) and np.isfinite(hi) and hi - lo > 1e-12:
            return {"lo": float(lo), "hi": float(hi), "method": METHOD_BOOTSTRAP, "warning": None}
        reason = "every resample gives the same value"
    elif n_prompts < min_prompts:
        reason = too_few_prompts(n_prompts, min_prompts)
    else:  # no rounds asked for: no interval
        return {"lo": float("nan"), "hi": float("nan"), "method": None, "warning": None}
    wlo, whi = wilson_interval(successes, n, alpha)
    return {"lo": wlo, "hi": whi, "method": METHOD_WILSON, "warning": f"{reason}: Wilson interval"}


def _poisson_table(resolution_bits: int = 16) -> np.ndarray:
    """Inverse CDF of Poisson(1) sampled on a 2**bits grid: uniform integers -> Poisson draws."""
    size = 1 << resolution_bits
    edges = stats.poisson.cdf(np.arange(40), 1.0) * size
    return np.searchsorted(edges, np.arange(size) + 0.5, side="right").astype(np.float32)


_POISSON_TABLE = _poisson_table()


def poisson_weights(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Poisson(1) weights per unit and round, (n_boot, n) float32: the bootstrap that needs no
    fixed sample size.

    Drawn by table lookup on 16-bit uniform integers, about five times faster than
    ``rng.poisson``; the probabilities are exact to 1/65536, far below bootstrap noise.
    """
    return _POISSON_TABLE[rng.integers(0, len(_POISSON_TABLE), size=(n_boot, n), dtype=np.uint16)]


def cluster_sums(values: pd.DataFrame | np.ndarray, clusters: pd.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum rows of ``values`` per cluster; returns (sums (n_clusters, k), cluster labels)."""
    codes, labels = pd.factorize(np.asarray(clusters), sort=True)
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    sums = np.zeros((len(labels), arr.shape[1]))
    np.add.at(sums, codes, arr)
    return sums, np.asarray(labels)


def clustered_ratio(
    numerator: np.ndarray,
    denominator: np.ndarray,
    clusters: np.ndarray | pd.Series,
    *,
    n_boot: int,
    rng: np.random.Generator,
    alpha: float = ALPHA,
    min_prompts: int = MIN_PROMPTS,
) -> dict:
    """A proportion (ratio of sums of 0/1 values, e.g. a rate) with a cluster bootstrap interval.

    ``numerator`` and ``denominator`` are per-row values; the interval resamples whole clusters
    (prompts), which is what makes it honest when rows within a cluster are correlated. With
    fewer than ``min_prompts`` clusters, or a degenerate bootstrap, the interval is Wilson's and
    says so (``method``, ``warning``); ``n`` counts rows, ``n_prompts`` clusters.
    """
    num = np.asarray(numerator, dtype=float)
    den = np.asarray(denominator, dtype=float)
    total = den.sum()
    estimate = float(num.sum() / total) if total > 0 else float("nan")
    out = {"estimate": estimate, "lo": float("nan"), "hi": float("nan"), "n": float(total), "n_prompts": 0}
    if total <= 0:
        out.update({"method": None, "warning": "no ratings"})
        return out
    sums, _ = cluster_sums(np.column_stack([num, den]), clusters)
    sums = sums[sums[:, 1] > 0]
    out["n_prompts"] = int(len(sums))
    if n_boot <= 0:  # no intervals asked for
        out.update({"method": None, "warning": None})
        return out
    ratios = None
    if len(sums) >= min_prompts:
        boot = cluster_bootstrap(sums, n_boot, rng)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratios = boot[:, 0] / boot[:, 1]
    out.update(proportion_interval(num.sum(), total, len(sums), ratios, min_prompts=min_prompts, alpha=alpha))
    return out
