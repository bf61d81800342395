"""Separation in pairwise data: when a Bradley-Terry rating does not exist.

The maximum-likelihood Bradley-Terry strengths are finite exactly when, for every split of the
models into two groups, some model of each group scored (won, or tied: a tie is half a win)
against some model of the other (Zermelo 1929; Ford 1957). In graph terms: draw an arrow i -> j
whenever i scored against j; the strengths exist iff this graph is strongly connected. A model
that never lost (or never won) breaks it, and so does a group of models that never lost to the
rest. The likelihood then keeps increasing as those strengths go to infinity; what a fitted
number shows is the prior, not the data.

:func:`separation` finds the strongly connected components and what each model's record says:

``ok``            in the *core*: the largest component, whose ratings relative to each other exist;
``never_lost``    a model outside the core that never lost to a model outside its group: its
                  rating is only bounded from below;
``never_won``     the mirror image: bounded from above;
``separated``     any other model outside the core (its rating against the core is not identified);
``no_votes``      a model without a single vote.

:func:`record_bound` turns a one-sided record (k of k votes won) into a one-sided 95% bound on
the rating against the model's opponents (a Clopper-Pearson bound on the average win probability).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

from .intervals import ALPHA

STATUS_TEXT = {
    "ok": "",
    "never_lost": "never lost",
    "never_won": "never won",
    "separated": "separated from the rest: not identified",
    "no_votes": "no votes",
}


def separation(first: np.ndarray, second: np.ndarray, score: np.ndarray, n_models: int) -> dict:
    """Components of the "scored against" graph and each model's status.

    ``first``/``second`` are model codes per vote and ``score`` the first model's score (1 win,
    0.5 tie, 0 loss). Returns ``separated`` (bool), ``status`` (per model), ``core`` (model codes
    of the identified group), ``components`` (component label per model) and ``connected``
    (whether the comparison graph is connected at all, ignoring direction).
    """
    first = np.asarray(first, dtype=np.int64)
    second = np.asarray(second, dtype=np.int64)
    score = np.asarray(score, dtype=float)
    m = n_models
    votes = np.bincount(np.r_[first, second], minlength=m) if len(first) else np.zeros(m, dtype=np.int64)
    # i -> j: i scored against j (a win or a tie); j -> i: j scored against i (a loss or a tie).
    rows = np.r_[first[score > 0], second[score < 1]]
    cols = np.r_[second[score > 0], first[score < 1]]
    graph = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(m, m))
    n_strong, labels = csgraph.connected_components(graph, directed=True, connection="strong")
    n_weak, _ = csgraph.connected_components(graph, directed=True, connection="weak")
    rated = votes > 0
    status = ["ok"] * m
    for i in np.flatnonzero(~rated):
        status[i] = "no_votes"
    # Components among the models that have votes.
    comp_sizes = np.bincount(labels[rated], minlength=n_strong)
    if n_strong - int((~rated).sum()) <= 1:
        core = np.flatnonzero(rated)
        return {
            "separated": False,
            "status": status,
            "core": core.tolist(),
            "components": labels.tolist(),
            "connected": n_weak - int((~rated).sum()) <= 1,
        }
    core_label = int(np.argmax(comp_sizes)) if comp_sizes.max() >= 2 else -1
    # Which components receive or send arrows from/to other components.
    src_label, dst_label = labels[rows], labels[cols]
    across = src_label != dst_label
    gets_scored_on = np.zeros(n_strong, dtype=bool)  # some outsider scored against it
    scores_on_others = np.zeros(n_strong, dtype=bool)
    gets_scored_on[dst_label[across]] = True
    scores_on_others[src_label[across]] = True
    for i in np.flatnonzero(rated):
        c = labels[i]
        if c == core_label:
            continue
        if not gets_scored_on[c] and scores_on_others[c]:
            status[i] = "never_lost" if comp_sizes[c] == 1 else "separated"
        elif gets_scored_on[c] and not scores_on_others[c]:
            status[i] = "never_won" if comp_sizes[c] == 1 else "separated"
        else:
            status[i] = "separated"
    core = np.flatnonzero(labels == core_label) if core_label >= 0 else np.zeros(0, dtype=np.int64)
    return {
        "separated": True,
        "status": status,
        "core": core.tolist(),
        "components": labels.tolist(),
        "connected": n_weak - int((~rated).sum()) <= 1,
    }


def record_bound(n_votes: int, alpha: float = ALPHA) -> float:
    """One-sided bound, in log-odds, on the advantage of a model that won all ``n_votes`` votes.

    With k of k won, the Clopper-Pearson lower bound on the win probability at level alpha/2 (the
    lower end of a two-sided 95% interval) is (alpha/2)^(1/k); its logit is the smallest
    advantage over the (vote-weighted average) opponent the record is consistent with.
    A 40-0 record: p >= 0.912, at least 2.34 log-odds, 406 rating points.
    """
    if n_votes <= 0:
        return float("nan")
    p = (alpha / 2) ** (1.0 / n_votes)
    return math.log(p / (1.0 - p))
