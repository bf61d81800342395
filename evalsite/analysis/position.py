"""Position bias: how often the response shown on the left wins.

Corrected strengths come from :func:`bradley_terry.bradley_terry` with ``position=True``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .intervals import ALPHA, MIN_PROMPTS, clustered_ratio, wilson_interval
from .schema import require_ratings


def left_win_share(
    ratings: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0, alpha: float = ALPHA, min_prompts: int = MIN_PROMPTS
) -> dict:
    """Share of decisive (non-tie, non-both-bad) ratings won by the left side.

    0.5 means no position bias. Two intervals: Wilson (ratings independent) and a prompt-clustered
    bootstrap (Wilson, marked, with fewer than ``min_prompts`` prompts).
    """
    require_ratings(ratings, ("winner", "left_side", "prompt_id"), "left_win_share")
    winner = ratings["winner"].to_numpy()
    decisive = np.isin(winner, ("A", "B"))
    left_won = (winner == ratings["left_side"].to_numpy()) & decisive
    n, k = int(decisive.sum()), int(left_won.sum())
    wlo, whi = wilson_interval(k, n, alpha)
    boot = clustered_ratio(
        left_won.astype(float),
        decisive.astype(float),
        ratings["prompt_id"].to_numpy(),
        n_boot=n_boot,
        rng=np.random.default_rng(seed),
        alpha=alpha,
        min_prompts=min_prompts,
    )
    return {
        "n_decisive": n,
        "left_wins": k,
        "share": boot["estimate"],
        "lo": boot["lo"],
        "hi": boot["hi"],
        "n_prompts": boot["n_prompts"],
        "interval_method": boot["method"],
        "warning": boot["warning"],
        "wilson_lo": wlo,
        "wilson_hi": whi,
    }
