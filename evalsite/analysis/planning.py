"""Plan a pairwise study before launch: precision, power, ratings, rater-hours and money.

Pure numpy/scipy, no Django: ``manage.py plan_study``, the API (``/api/v1/studies/<slug>/plan/``)
and the study page all call :func:`plan`.

The model. One model is compared with the teacher on ``prompts`` prompts, ``k`` ratings each.
A rating is a win (probability ``win_rate``), an equal verdict (``tie_rate``: tie or both bad) or a
loss. Ratings of the same prompt are correlated: prompt i has its own outcome probabilities
theta_i, and ``icc`` (rho) is the correlation between two ratings of the same prompt,
``rho = Var(theta_i) / (p (1 - p))`` for the outcome in question. Then, for any distribution of
theta_i (the design effect, ANALYSIS.md):

    Var(estimate) = p (1 - p) / (prompts * k) * (1 + (k - 1) * rho)

exactly, for the plain proportion over all ratings (the estimate the report shows). The half-width
is z_{0.975} times its square root. More prompts buy more precision than more ratings per prompt
once rho > 0: as k grows the variance falls only to ``p (1 - p) rho / prompts``.

Quantities (the report's):

- ``P(>= teacher)`` = (wins + ties + both bad) / n, the paper's headline; its half-width is
  ``win_rate_ci_halfwidth`` (one model against the teacher).
- the win rate with ties as half a win (Chatbot Arena's convention, what Bradley-Terry models):
  per-rating variance ``mu (1 - mu) - tie_rate / 4`` with ``mu = win_rate + tie_rate / 2``.
- Bradley-Terry differences (Elo-like points, 400 / ln 10 per logit): the sandwich variance
  ``A^+ B A^+`` of the strengths, A the expected information (``mu (1 - mu)`` per rating of a pair),
  B the variance of the score (per-rating variance times the design effect). Every non-teacher
  model is planned at the same ``win_rate`` against the teacher and at parity with the others;
  ratings of different comparisons are taken as independent.

:func:`simulate_estimates` draws whole studies from this model (prompts with Dirichlet-distributed
outcome probabilities, k ratings each) and is what the tests check the formulas against.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import gammaln

ELO_PER_LOGIT = 400.0 / math.log(10.0)
# Stated default for the within-prompt correlation when no pilot ratings exist: moderate
# clustering, typical of crowd preference ratings where some prompts favour one side.
DEFAULT_ICC = 0.1
PAIRINGS = ("teacher", "all")
MAX_MODELS = 500


@dataclass(frozen=True)
class Design:
    """Everything the planner needs. ``models`` counts the teacher (2 = one model vs the teacher)."""

    models: int = 2
    prompts: int = 100
    k: int = 3
    win_rate: float = 0.5  # P(the model wins) against the teacher
    tie_rate: float = 0.1  # P(tie or both bad)
    icc: float = DEFAULT_ICC  # within-prompt correlation of the outcome
    pairing: str = "teacher"  # each model vs the teacher, or "all" pairs
    cost_per_task: float = 0.15  # what a rater is paid per task (currency units)
    platform_fee: float = 1 / 3  # on top of pay: Prolific 33.3%, MTurk 20% (40% with >= 10 assignments)
    seconds_per_task: float = 45.0
    attention_check_rate: float = 0.1  # share of paid tasks that are attention checks
    difference: float = 0.05  # smallest difference from parity (win rate 0.5) the power refers to
    alpha: float = 0.05

    def problems(self) -> list[str]:
        """What is wrong with the inputs, in words; empty when the design can be planned."""
        out = []
        if int(self.models) != self.models or not 2 <= self.models <= MAX_MODELS:
            out.append(f"models must be a whole number from 2 (the teacher and one model) to {MAX_MODELS}.")
        if int(self.prompts) != self.prompts or self.prompts < 1:
            out.append("prompts must be a whole number, at least 1.")
        if int(self.k) != self.k or self.k < 1:
            out.append("k (ratings per comparison) must be a whole number, at least 1.")
        if not 0 <= self.win_rate <= 1:
            out.append("win rate must be between 0 and 1.")
        if not 0 <= self.tie_rate <= 1:
            out.append("tie rate must be between 0 and 1.")
        elif self.win_rate + self.tie_rate > 1 + 1e-12:
            out.append("win rate + tie rate must be at most 1 (the rest are losses).")
        if not 0 <= self.icc <= 1:
            out.append("icc (within-prompt correlation) must be between 0 and 1.")
        if self.pairing not in PAIRINGS:
            out.append(f"pairing must be one of {list(PAIRINGS)}.")
        if self.cost_per_task < 0 or self.platform_fee < 0:
            out.append("cost per task and platform fee must not be negative.")
        if self.seconds_per_task <= 0:
            out.append("seconds per task must be positive.")
        if not 0 <= self.attention_check_rate < 1:
            out.append("attention check rate must be at least 0 and below 1.")
        if not 0 < self.difference < 0.5:
            out.append("difference (for the power) must be between 0 and 0.5.")
        if not 0 < self.alpha < 1:
            out.append("alpha must be between 0 and 1.")
        return out

    def with_(self, **changes: Any) -> Design:
        """A copy with some fields changed (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


DESIGN_FIELDS = tuple(f.name for f in fields(Design))


def z_value(alpha: float = 0.05) -> float:
    return float(stats.norm.ppf(1 - alpha / 2))


def design_effect(k: float, icc: float) -> float:
    """Variance inflation of a mean over k correlated ratings per prompt: 1 + (k - 1) rho."""
    return 1.0 + (k - 1.0) * icc


def outcome_moments(win_rate: float, tie_rate: float) -> dict[str, float]:
    """Means and per-rating variances of P(>=) and of the win rate with ties as half."""
    p_geq = win_rate + tie_rate
    mu = win_rate + tie_rate / 2
    return {
        "p_geq": p_geq,
        "var_geq": p_geq * (1 - p_geq),
        "score": mu,
        "var_score": max(mu * (1 - mu) - tie_rate / 4, 0.0),
    }


def halfwidth(variance: float, prompts: float, k: float, icc: float, alpha: float = 0.05) -> float:
    """Predicted half-width of a (1 - alpha) interval for a proportion over prompts x k ratings."""
    return z_value(alpha) * math.sqrt(variance * design_effect(k, icc) / (prompts * k))


def prompts_for_halfwidth(variance: float, target: float, k: int, icc: float, alpha: float = 0.05) -> int:
    """Fewest prompts (k ratings each) for a half-width of at most ``target``."""
    need = z_value(alpha) ** 2 * variance * design_effect(k, icc) / (k * target**2)
    return max(1, math.ceil(need - 1e-9))


def k_for_halfwidth(
    variance: float, target: float, prompts: int, icc: float, alpha: float = 0.05, k_max: int = 50
) -> int | None:
    """Fewest ratings per comparison for ``target`` at a fixed number of prompts; None if no k <= k_max
    reaches it (with rho > 0 the half-width never falls below z sqrt(p (1 - p) rho / prompts))."""
    z2 = z_value(alpha) ** 2
    for k in range(1, k_max + 1):
        if z2 * variance * design_effect(k, icc) / (prompts * k) <= target**2 + 1e-15:
            return k
    return None


def votes_for_halfwidth(p: float, target: float, alpha: float = 0.05) -> int:
    """Independent votes for a half-width ``target`` at proportion ``p`` (p = 0.5, 0.05: 385)."""
    return prompts_for_halfwidth(p * (1 - p), target, 1, 0.0, alpha)


def votes_for_power(p0: float, p1: float, power: float = 0.8, alpha: float = 0.05) -> int:
    """Independent votes for a two-sided test of p0 to reject with ``power`` when the truth is p1
    (0.5 vs 0.55 at 80%: 783). The textbook one-sample formula with the null and alternative variances."""
    za, zb = z_value(alpha), float(stats.norm.ppf(power))
    n = (za * math.sqrt(p0 * (1 - p0)) + zb * math.sqrt(p1 * (1 - p1))) ** 2 / (p1 - p0) ** 2
    return math.ceil(n - 1e-9)


def power_of_test(difference: float, se_null: float, se_alt: float, alpha: float = 0.05) -> float:
    """Power of a two-sided z-test whose estimate has standard error se_null under the null and
    se_alt under an alternative ``difference`` away."""
    if se_alt <= 0:
        return 1.0
    za = z_value(alpha)
    d = abs(difference)
    return float(stats.norm.cdf((d - za * se_null) / se_alt) + stats.norm.cdf((-d - za * se_null) / se_alt))


def comparisons_per_prompt(models: int, pairing: str) -> int:
    return models * (models - 1) // 2 if pairing == "all" else models - 1


def bt_covariance(design: Design) -> np.ndarray:
    """Sandwich covariance of the Bradley-Terry strengths (model 0 is the teacher), in logits."""
    m, n = design.models, design.prompts * design.k
    deff = design_effect(design.k, design.icc)
    mom = outcome_moments(design.win_rate, design.tie_rate)
    mu = min(max(mom["score"], 1e-6), 1 - 1e-6)
    info = np.zeros((m, m))
    score_var = np.zeros((m, m))
    pairs = [(0, j) for j in range(1, m)]
    if design.pairing == "all":
        pairs += [(i, j) for i in range(1, m) for j in range(i + 1, m)]
    for i, j in pairs:
        d = np.zeros(m)
        d[i], d[j] = 1.0, -1.0
        if i == 0:  # model j against the teacher
            j_info, v = mu * (1 - mu), mom["var_score"]
        else:  # two non-teacher models, planned at parity with the same tie rate
            j_info, v = 0.25, max(0.25 - design.tie_rate / 4, 0.0)
        info += n * j_info * np.outer(d, d)
        score_var += n * v * deff * np.outer(d, d)
    a_inv = np.linalg.pinv(info)
    return a_inv @ score_var @ a_inv


def _bt_halfwidths(design: Design) -> dict[str, float | None]:
    cov = bt_covariance(design)
    z = z_value(design.alpha)
    vs_teacher = z * math.sqrt(max(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1], 0.0)) * ELO_PER_LOGIT
    between = None
    if design.models >= 3:
        between = z * math.sqrt(max(cov[1, 1] + cov[2, 2] - 2 * cov[1, 2], 0.0)) * ELO_PER_LOGIT
    return {"bt_vs_teacher_ci_halfwidth_elo": vs_teacher, "bt_between_models_ci_halfwidth_elo": between}


def costs(design: Design, ratings: int) -> dict[str, float]:
    """Paid tasks (ratings plus attention checks), rater-hours and money for ``ratings`` ratings."""
    tasks = math.ceil(ratings / (1 - design.attention_check_rate) - 1e-9)
    pay = tasks * design.cost_per_task
    fees = pay * design.platform_fee
    return {
        "ratings": int(ratings),
        "tasks": int(tasks),
        "rater_hours": tasks * design.seconds_per_task / 3600.0,
        "pay": pay,
        "platform_fees": fees,
        "cost": pay + fees,
    }


def plan(design: Design, target_halfwidth: float | None = None) -> dict[str, Any]:
    """The plan for ``design``: predicted half-widths, power, ratings and money; with a target
    half-width for P(>= teacher), the prompts (at k) and the k (at these prompts) that reach it.

    Raises ``ValueError`` listing every problem when the inputs are invalid.
    """
    problems = design.problems()
    if target_halfwidth is not None and not 0 < target_halfwidth < 1:
        problems.append("target half-width must be between 0 and 1 (e.g. 0.05 for ±5 points).")
    if problems:
        raise ValueError(" ".join(problems))
    d = design
    z = z_value(d.alpha)
    mom = outcome_moments(d.win_rate, d.tie_rate)
    deff = design_effect(d.k, d.icc)
    per_prompt = comparisons_per_prompt(d.models, d.pairing)
    ratings = d.prompts * d.k * per_prompt
    hw_geq = halfwidth(mom["var_geq"], d.prompts, d.k, d.icc, d.alpha)
    hw_score = halfwidth(mom["var_score"], d.prompts, d.k, d.icc, d.alpha)
    # Power: a two-sided test of parity (win rate with ties as half = 0.5) when the truth is
    # ``difference`` away, with the planned tie rate.
    var_null = 0.25 - d.tie_rate / 4
    mu1 = min(0.5 + d.difference, 1.0)
    var_alt = max(mu1 * (1 - mu1) - d.tie_rate / 4, 0.0)
    scale = deff / (d.prompts * d.k)
    power = power_of_test(d.difference, math.sqrt(var_null * scale), math.sqrt(var_alt * scale), d.alpha)
    zb = float(stats.norm.ppf(0.8))
    n_power = (z * math.sqrt(var_null) + zb * math.sqrt(var_alt)) ** 2 / d.difference**2 * deff / d.k
    out: dict[str, Any] = {
        "design": asdict(d),
        "quantity": "P(model rated >= teacher) = (wins + ties + both bad) / ratings, one model vs the teacher",
        "p_geq": mom["p_geq"],
        "win_rate_half_ties": mom["score"],
        "design_effect": deff,
        "effective_ratings_per_model": d.prompts * d.k / deff,
        "win_rate_ci_halfwidth": hw_geq,
        "win_rate_half_ties_ci_halfwidth": hw_score,
        "halfwidth_floor_any_k": z * math.sqrt(mom["var_geq"] * d.icc / d.prompts),
        **_bt_halfwidths(d),
        "power": {
            "test": "two-sided test of parity with the teacher (win rate with ties as half = 0.5)",
            "difference": d.difference,
            "power": power,
            "prompts_for_80_percent": max(1, math.ceil(n_power - 1e-9)),
        },
        "comparisons_per_prompt": per_prompt,
        **costs(d, ratings),
    }
    if target_halfwidth is not None:
        need = prompts_for_halfwidth(mom["var_geq"], target_halfwidth, d.k, d.icc, d.alpha)
        k_need = k_for_halfwidth(mom["var_geq"], target_halfwidth, d.prompts, d.icc, d.alpha)
        out["target_halfwidth"] = target_halfwidth
        out["prompts_needed"] = need
        out["k_needed"] = k_need
        out["at_prompts_needed"] = costs(d, need * d.k * per_prompt)
        out["at_k_needed"] = costs(d, d.prompts * k_need * per_prompt) if k_need is not None else None
    out["assumptions"] = assumptions(d)
    return out


def assumptions(design: Design) -> list[str]:
    return [
        f"within-prompt correlation {design.icc:g} (from a pilot when one exists; default {DEFAULT_ICC:g})",
        "every non-teacher model at the same win rate against the teacher; non-teacher models at parity",
        "ratings of different comparisons independent; every comparison gets its k ratings",
        "tie rate counts ties and both-bad verdicts (both are 'equal' in P(>=) and half wins in the win rate)",
        f"{design.attention_check_rate:.0%} of paid tasks are attention checks; pay per task plus the platform fee",
    ]


# --- pilot estimates ---------------------------------------------------------------------------


def icc_anova(values: np.ndarray, groups: np.ndarray) -> tuple[float | None, int]:
    """One-way ANOVA estimate of the intraclass correlation of ``values`` within ``groups``
    (unbalanced groups allowed), clipped to [0, 1]; ``(None, 0)`` when no group has two values.
    The second item is the number of groups with at least two values."""
    y = np.asarray(values, dtype=float)
    codes, _ = pd.factorize(np.asarray(groups), sort=False)
    g = int(codes.max()) + 1 if len(codes) else 0
    sizes = np.bincount(codes, minlength=g).astype(float)
    repeated = int((sizes >= 2).sum())
    n = len(y)
    if g < 2 or n <= g or repeated == 0:
        return None, repeated
    means = np.bincount(codes, weights=y, minlength=g) / sizes
    grand = y.mean()
    msb = float((sizes * (means - grand) ** 2).sum() / (g - 1))
    msw = float(((y - means[codes]) ** 2).sum() / (n - g))
    n0 = (n - (sizes**2).sum() / n) / (g - 1)
    denom = msb + (n0 - 1) * msw
    if denom <= 0:
        return 0.0, repeated
    return float(min(max((msb - msw) / denom, 0.0), 1.0)), repeated


def pilot_estimates(ratings: pd.DataFrame, teacher: str | None = None) -> dict[str, Any]:
    """Win rate, tie rate, within-prompt correlation and seconds per task from a study's ratings.

    ``ratings`` is a ratings table (:mod:`evalsite.analysis.schema`); crowd ratings only, without
    attention checks and flagged raters (as the report's win rates). The correlation is the ANOVA
    ICC of the P(>=) indicator within comparisons (each comparison is one prompt of one model pair),
    per model, pooled weighted by the comparisons rated at least twice.
    """
    from .schema import make_ratings, select_ratings, teacher_model
    from .winrates import outcomes_vs

    table = make_ratings(ratings)
    table, _ = select_ratings(table)
    table = table[~table["is_expert"]].reset_index(drop=True)
    teacher = teacher or teacher_model(table)
    seconds = pd.to_numeric(table["time_on_task_s"], errors="coerce").dropna()
    out: dict[str, Any] = {
        "teacher": teacher,
        "n_ratings": int(len(table)),
        "seconds_per_task": float(seconds.median()) if len(seconds) else None,
        "models": [],
        "win_rate": None,
        "tie_rate": None,
        "icc": None,
        "icc_comparisons": 0,
    }
    if teacher is None or table.empty:
        return out
    vs = outcomes_vs(table, teacher)
    if vs.empty:
        return out
    # The comparison of a row: its prompt (one comparison per prompt and model pair).
    vs = vs.assign(geq=vs["win"] + vs["tie"] + vs["both_bad"], score=vs["win"] + 0.5 * (vs["tie"] + vs["both_bad"]))
    weights, iccs = [], []
    for model, part in vs.groupby("model", sort=True):
        icc, repeated = icc_anova(part["geq"].to_numpy(), part["prompt_id"].to_numpy())
        icc_score, _ = icc_anova(part["score"].to_numpy(), part["prompt_id"].to_numpy())
        per_prompt = part.groupby("prompt_id").size()
        out["models"].append(
            {
                "model": str(model),
                "n_ratings": int(len(part)),
                "n_prompts": int(len(per_prompt)),
                "mean_k": float(per_prompt.mean()),
                "win_rate": float(part["win"].mean()),
                "tie_rate": float((part["tie"] + part["both_bad"]).mean()),
                "p_geq": float(part["geq"].mean()),
                "icc": icc,
                "icc_score": icc_score,
                "icc_comparisons": repeated,
            }
        )
        if icc is not None:
            weights.append(repeated)
            iccs.append(icc)
    out["win_rate"] = float(vs["win"].mean())
    out["tie_rate"] = float((vs["tie"] + vs["both_bad"]).mean())
    if weights:
        out["icc"] = float(np.average(iccs, weights=weights))
        out["icc_comparisons"] = int(sum(weights))
    return out


# --- simulation --------------------------------------------------------------------------------


def _outcome_table(k: int) -> np.ndarray:
    """Every (wins, ties) split of k ratings: an (m, 2) integer array."""
    return np.array([(w, t) for w in range(k + 1) for t in range(k + 1 - w)], dtype=np.int64)


def prompt_outcome_pmf(k: int, win_rate: float, tie_rate: float, icc: float) -> tuple[np.ndarray, np.ndarray]:
    """Distribution of one prompt's (wins, ties) among its k ratings: Dirichlet-multinomial with
    mean (win, tie, loss) and within-prompt correlation ``icc`` (concentration 1/icc - 1).
    Returns ``(outcomes (m, 2), probabilities (m,))``."""
    outcomes = _outcome_table(k)
    w, t = outcomes[:, 0], outcomes[:, 1]
    x = np.stack([w, t, k - w - t], axis=1).astype(float)
    p = np.array([win_rate, tie_rate, max(1.0 - win_rate - tie_rate, 0.0)])
    log_coef = gammaln(k + 1) - gammaln(x + 1).sum(axis=1)
    if icc >= 1.0:  # every prompt gives all its ratings the same verdict
        probs = np.zeros(len(outcomes))
        for j in range(3):
            probs[x[:, j] == k] += p[j]
        return outcomes, probs
    if icc <= 0.0:  # multinomial
        with np.errstate(divide="ignore"):
            logp = np.where(x > 0, x * np.log(np.where(p > 0, p, 1.0)), 0.0)
        logp = np.where((x > 0) & (p == 0), -np.inf, logp)
        probs = np.exp(log_coef + logp.sum(axis=1))
        return outcomes, probs / probs.sum()
    a = p * (1.0 / icc - 1.0)
    conc = a.sum()
    # Categories with zero mean never occur; the others: Gamma(x + a) / Gamma(a).
    terms = np.where(a > 0, gammaln(x + np.where(a > 0, a, 1.0)) - gammaln(np.where(a > 0, a, 1.0)), 0.0)
    impossible = ((x > 0) & (a == 0)).any(axis=1)
    logp = log_coef + gammaln(conc) - gammaln(k + conc) + terms.sum(axis=1)
    probs = np.where(impossible, 0.0, np.exp(logp))
    return outcomes, probs / probs.sum()


def simulate_totals(
    prompts: int,
    k: int,
    win_rate: float,
    tie_rate: float,
    icc: float,
    n_studies: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Total wins and ties of ``n_studies`` simulated studies (one model vs the teacher).

    Each prompt's k ratings follow :func:`prompt_outcome_pmf`; prompts are independent, so a
    study's prompts are one multinomial draw over the possible (wins, ties) splits: exact, and
    O(k^2) per study whatever the number of prompts."""
    outcomes, probs = prompt_outcome_pmf(k, win_rate, tie_rate, icc)
    counts = rng.multinomial(prompts, probs, size=n_studies)
    totals = counts @ outcomes
    return totals[:, 0], totals[:, 1]


def simulate_prompts(
    prompts: int,
    k: int,
    win_rate: float,
    tie_rate: float,
    icc: float,
    n_studies: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-prompt wins and ties, (n_studies, prompts) each, drawn prompt by prompt: theta_i from a
    Dirichlet (via Gamma draws), then k ratings. The slow, literal version of :func:`simulate_totals`."""
    p = np.array([win_rate, tie_rate, max(1.0 - win_rate - tie_rate, 0.0)])
    if icc <= 0:
        theta = np.broadcast_to(p, (n_studies, prompts, 3))
    elif icc >= 1:
        pick = rng.choice(3, size=(n_studies, prompts), p=p)
        theta = np.eye(3)[pick]
    else:
        g = rng.gamma(p * (1.0 / icc - 1.0), size=(n_studies, prompts, 3))
        total = g.sum(axis=-1, keepdims=True)
        theta = np.divide(g, total, out=np.broadcast_to(p, g.shape).copy(), where=total > 0)
    wins = rng.binomial(k, theta[..., 0])
    rest = 1.0 - theta[..., 0]
    tie_share = np.clip(np.divide(theta[..., 1], rest, out=np.zeros(wins.shape), where=rest > 1e-12), 0.0, 1.0)
    ties = rng.binomial(k - wins, tie_share)
    return wins, ties


def simulate_estimates(design: Design, n_studies: int = 1000, seed: int = 0) -> dict[str, float]:
    """Simulated spread (1.96 x the standard deviation across studies, as ``z`` times SD) of the
    P(>=) and half-tie win-rate estimates of one model vs the teacher, for checking a plan."""
    rng = np.random.default_rng(seed)
    n = design.prompts * design.k
    wins, ties = simulate_totals(design.prompts, design.k, design.win_rate, design.tie_rate, design.icc, n_studies, rng)
    z = z_value(design.alpha)
    return {
        "n_studies": n_studies,
        "win_rate_ci_halfwidth": float(z * np.std((wins + ties) / n, ddof=1)),
        "win_rate_half_ties_ci_halfwidth": float(z * np.std((wins + 0.5 * ties) / n, ddof=1)),
    }
