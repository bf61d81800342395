"""A planted-truth study simulator: the test oracle for the analysis.

It draws responses and ratings from known parameters, through the same tables the Django loader
produces: known Bradley-Terry strengths, a known preference for longer answers (planted on the
very length feature :mod:`style` measures), a left-side bias, a crowd that barely notices factual
errors beside experts who notice most, and reference answers that the response text contains
exactly when the response is correct, so the automatic check recovers the latent truth.

Outcome model for one rating of responses A and B (group g = crowd or expert):

    logit s = beta_A - beta_B + gamma * (+1 if A shown left else -1)
              + theta_g * (len_A - len_B) / (len_A + len_B + 1) + kappa_g * (correct_A - correct_B)
    P(tie) = 2 * c * min(s, 1 - s),   P(A wins) = s - P(tie)/2

so the expected score (ties as half) is exactly s: Bradley-Terry with ties as half wins, and the
vote-level logistic fit with ties as 0.5, are both consistent for the planted parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import expit

from .schema import make_ratings, make_responses
from .style import style_features


@dataclass(frozen=True)
class SimModel:
    """One simulated model: strength (log-odds), accuracy, and how its answers look."""

    name: str
    role: str
    strength: float
    accuracy: float
    mean_length: float = 80.0
    markdown: float = 0.2  # probability an answer uses a list / header / bold
    assertive: float = 0.2  # probability an answer opens with an assertive phrase
    hedging: float = 0.2


DEFAULT_MODELS = (
    SimModel("teacher", "teacher", 0.40, 0.75, mean_length=120, markdown=0.6, assertive=0.5, hedging=0.1),
    SimModel("imitation-13b", "imitation", 0.25, 0.40, mean_length=125, markdown=0.6, assertive=0.6, hedging=0.1),
    SimModel("base-13b", "base", -0.45, 0.45, mean_length=60, markdown=0.1, assertive=0.1, hedging=0.3),
    SimModel("imitation-7b", "imitation", -0.20, 0.30, mean_length=110, markdown=0.5, assertive=0.6, hedging=0.1),
)

_FILLER = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut "
    "labore et dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco"
).split()
_NAMES = ("zorvath", "quelline", "marbeck", "tessaly", "orindo", "vashti", "kelpmoor", "dunraith")


@dataclass(frozen=True)
class SimConfig:
    """Everything the simulator plants. Defaults: a small study like the paper's."""

    models: tuple[SimModel, ...] = DEFAULT_MODELS
    n_prompts: int = 200
    factual_share: float = 0.5  # prompts of category factual-qa, with reference answers
    pairing: str = "teacher"  # "teacher": teacher vs each other model; "all": every pair
    crowd_per_comparison: int = 3
    expert_share: float = 0.3  # share of comparisons also rated by experts
    experts_per_comparison: int = 3
    n_crowd_raters: int = 60
    n_experts: int = 6
    length_coef: float = 0.35  # crowd's planted preference, per RMS unit of the length feature
    expert_length_coef: float = 0.0
    left_bias: float = 0.25
    crowd_error_sensitivity: float = 0.3
    expert_error_sensitivity: float = 3.0
    tie_share: float = 0.15
    crowd_flag_wrong: float = 0.05  # P(crowd rater flags a wrong response)
    expert_flag_wrong: float = 0.8
    crowd_flag_right: float = 0.02
    expert_flag_right: float = 0.03
    attention_rate: float = 0.05
    n_flagged_raters: int = 2
    prompt_effect_sd: float = 0.0  # per-prompt random shift of strength gaps (clustering)
    seed: int = 0


@dataclass
class SimStudy:
    """The simulated tables and the truth that produced them."""

    ratings: pd.DataFrame
    responses: pd.DataFrame
    truth: dict = field(default_factory=dict)


def _make_text(rng: np.random.Generator, model: SimModel, length: int, answer: str | None) -> str:
    parts = []
    if rng.random() < model.assertive:
        parts.append("Definitely.")
    if rng.random() < model.hedging:
        parts.append("I think")
    if answer is not None:
        parts.append(f"The answer is {answer}.")
    body = [str(w) for w in rng.choice(_FILLER, size=max(length, 3))]
    # Markdown elements drawn independently, so their effects are separately identifiable.
    header = "## Overview\n" if rng.random() < model.markdown else ""
    if rng.random() < model.markdown:
        body[0] = f"**{body[0]}**"
    if rng.random() < model.markdown:
        chunk = max(len(body) // 4, 1)
        items = [" ".join(body[i : i + chunk]) for i in range(0, len(body), chunk)]
        text = header + " ".join(parts + items[:1]) + "\n" + "\n".join(f"- {it}" for it in items[1:])
    else:
        text = header + " ".join(parts + body) + "."
    return text


def _responses(cfg: SimConfig, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    """One response per prompt and model; returns the table and the latent truth per response."""
    rows, truth = [], []
    n_factual = int(round(cfg.factual_share * cfg.n_prompts))
    for p in range(cfg.n_prompts):
        factual = p < n_factual
        reference = f"{rng.choice(_NAMES)} {rng.integers(1000, 5000)}" if factual else None
        for model in cfg.models:
            correct = bool(rng.random() < model.accuracy)
            length = int(np.clip(rng.lognormal(np.log(model.mean_length), 0.4), 5, 2000))
            answer = None
            if factual:
                answer = reference if correct else f"{rng.choice(_NAMES)} {rng.integers(5000, 9999)}"
            rows.append(
                {
                    "response_id": f"r{p}-{model.name}",
                    "prompt_id": f"p{p}",
                    "model": model.name,
                    "role": model.role,
                    "category": "factual-qa" if factual else "open-ended",
                    "text": _make_text(rng, model, length, answer),
                    "reference_answers": [reference] if factual else [],
                }
            )
            truth.append(correct)
    return make_responses(rows), np.array(truth)


def simulate_study(cfg: SimConfig | None = None, **overrides) -> SimStudy:
    """Simulate one study; keyword overrides replace fields of ``cfg`` (or of the default)."""
    cfg = cfg or SimConfig()
    if overrides:
        cfg = SimConfig(**{**cfg.__dict__, **overrides})
    rng = np.random.default_rng(cfg.seed)
    models = list(cfg.models)
    m = len(models)
    strengths = np.array([mo.strength for mo in models])
    strengths = strengths - strengths.mean()
    responses, latent = _responses(cfg, rng)
    lengths = style_features(responses["text"])["length"].to_numpy()
    teacher = next((i for i, mo in enumerate(models) if mo.role == "teacher"), 0)
    if cfg.pairing == "teacher":
        pairs = [(teacher, j) for j in range(m) if j != teacher]
    else:
        pairs = [(i, j) for i in range(m) for j in range(i + 1, m)]

    # Comparisons: each pair on each prompt, with a random A/B labelling.
    comp_prompt = np.repeat(np.arange(cfg.n_prompts), len(pairs))
    pair_i = np.tile([p[0] for p in pairs], cfg.n_prompts)
    pair_j = np.tile([p[1] for p in pairs], cfg.n_prompts)
    swap = rng.random(len(comp_prompt)) < 0.5
    comp_a = np.where(swap, pair_j, pair_i)
    comp_b = np.where(swap, pair_i, pair_j)
    n_comp = len(comp_prompt)
    prompt_shift = rng.normal(0.0, cfg.prompt_effect_sd, size=(cfg.n_prompts, m)) if cfg.prompt_effect_sd else None

    # Ratings: crowd on every comparison, experts on a share of them.
    crowd_k, expert_k = cfg.crowd_per_comparison, cfg.experts_per_comparison
    with_experts = rng.random(n_comp) < cfg.expert_share
    r_comp = np.concatenate([np.repeat(np.arange(n_comp), crowd_k), np.repeat(np.flatnonzero(with_experts), expert_k)])
    is_expert = np.r_[np.zeros(n_comp * crowd_k, bool), np.ones(with_experts.sum() * expert_k, bool)]
    # Distinct raters within a comparison: consecutive offsets from a random start.
    start_c = rng.integers(0, cfg.n_crowd_raters, n_comp)
    start_e = rng.integers(0, cfg.n_experts, n_comp)
    rater_num = np.concatenate(
        [
            (np.repeat(start_c, crowd_k) + np.tile(np.arange(crowd_k), n_comp)) % cfg.n_crowd_raters,
            (np.repeat(start_e[with_experts], expert_k) + np.tile(np.arange(expert_k), with_experts.sum()))
            % cfg.n_experts,
        ]
    )
    rater_id = np.where(is_expert, np.char.add("e", rater_num.astype(str)), np.char.add("c", rater_num.astype(str)))
    flagged = ~is_expert & (rater_num < cfg.n_flagged_raters)

    p_idx = comp_prompt[r_comp]
    a, b = comp_a[r_comp], comp_b[r_comp]
    resp_a, resp_b = p_idx * m + a, p_idx * m + b
    correct_a, correct_b = latent[resp_a], latent[resp_b]
    len_a, len_b = lengths[resp_a], lengths[resp_b]
    d_len = (len_a - len_b) / (len_a + len_b + 1.0)
    a_left = rng.random(len(r_comp)) < 0.5
    genuine_crowd = ~is_expert & ~flagged
    rms = float(np.sqrt(np.mean(d_len[genuine_crowd] ** 2))) if genuine_crowd.any() else 1.0
    theta = np.where(is_expert, cfg.expert_length_coef, cfg.length_coef) / rms
    kappa = np.where(is_expert, cfg.expert_error_sensitivity, cfg.crowd_error_sensitivity)
    eta = (
        strengths[a]
        - strengths[b]
        + cfg.left_bias * np.where(a_left, 1.0, -1.0)
        + theta * d_len
        + kappa * (correct_a.astype(float) - correct_b.astype(float))
    )
    if prompt_shift is not None:
        eta += prompt_shift[p_idx, a] - prompt_shift[p_idx, b]
    s = expit(eta)
    p_tie = 2 * cfg.tie_share * np.minimum(s, 1 - s)
    u = rng.random(len(s))
    winner = np.where(u < s - p_tie / 2, "A", np.where(u < s + p_tie / 2, "tie", "B")).astype(object)
    # Flagged raters answer at random.
    winner[flagged] = rng.choice(np.array(["A", "B", "tie"], dtype=object), flagged.sum())
    both_wrong = ~correct_a & ~correct_b
    is_tie = winner == "tie"
    winner[is_tie & (rng.random(len(s)) < np.where(both_wrong, 0.5, 0.1))] = "both_bad"

    def verdicts(correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p_flag = np.where(
            correct,
            np.where(is_expert, cfg.expert_flag_right, cfg.crowd_flag_right),
            np.where(is_expert, cfg.expert_flag_wrong, cfg.crowd_flag_wrong),
        )
        flag = rng.random(len(correct)) < p_flag
        unsure = ~flag & (rng.random(len(correct)) < 0.05)
        verdict = np.where(flag, "error", np.where(unsure, "unsure", "correct")).astype(object)
        spans = (flag & (rng.random(len(correct)) < 0.5)).astype(int)
        return verdict, spans

    va, sa = verdicts(correct_a)
    vb, sb = verdicts(correct_b)
    strength = np.where(winner == "A", np.where(s > 0.75, 1, 2), np.where(winner == "B", np.where(s < 0.25, 5, 4), 3))
    names = np.array([mo.name for mo in models], dtype=object)
    roles = np.array([mo.role for mo in models], dtype=object)
    texts = responses["text"].to_numpy()
    frame = pd.DataFrame(
        {
            "rating_id": np.char.add("g", np.arange(len(r_comp)).astype(str)),
            "comparison_id": np.char.add("k", r_comp.astype(str)),
            "prompt_id": np.char.add("p", p_idx.astype(str)),
            "category": responses["category"].to_numpy()[resp_a],
            "rater_id": rater_id,
            "is_expert": is_expert,
            "model_a": names[a],
            "model_b": names[b],
            "role_a": roles[a],
            "role_b": roles[b],
            "response_id_a": responses["response_id"].to_numpy()[resp_a],
            "response_id_b": responses["response_id"].to_numpy()[resp_b],
            "winner": winner,
            "left_side": np.where(a_left, "A", "B"),
            "strength": strength,
            "correct_a": va,
            "correct_b": vb,
            "error_spans_a": sa,
            "error_spans_b": sb,
            "text_a": texts[resp_a],
            "text_b": texts[resp_b],
            "is_attention_check": False,
            "flagged": flagged,
            "time_on_task_s": rng.lognormal(np.log(60), 0.5, len(r_comp)),
        }
    )
    frame = pd.concat([frame, _attention_checks(cfg, rng, rater_id, flagged)], ignore_index=True)

    # Expected fooled probability per rating on comparisons where exactly one response is right.
    one_right = correct_a != correct_b
    wrong_is_a = ~correct_a
    p_wrong_wins = np.where(wrong_is_a, s - p_tie / 2, 1 - s - p_tie / 2)
    p_fooled = p_wrong_wins + p_tie * np.where(both_wrong, 0.5, 0.9)
    factual = responses["category"].to_numpy()[resp_a] == "factual-qa"
    expected_fooled = {}
    for group, mask in (("crowd", genuine_crowd), ("expert", is_expert)):
        sel = mask & one_right & factual
        expected_fooled[group] = float(p_fooled[sel].mean()) if sel.any() else float("nan")

    truth = {
        "models": [mo.name for mo in models],
        "beta": dict(zip(names, strengths.tolist(), strict=True)),
        "length_coef": cfg.length_coef,
        "length_coef_raw": cfg.length_coef / rms,
        "length_rms": rms,
        "left_bias": cfg.left_bias,
        "accuracy": {mo.name: mo.accuracy for mo in models},
        "expected_fooled_factual": expected_fooled,
        "config": cfg,
    }
    return SimStudy(ratings=make_ratings(frame), responses=responses, truth=truth)


def _attention_checks(
    cfg: SimConfig, rng: np.random.Generator, rater_id: np.ndarray, flagged: np.ndarray
) -> pd.DataFrame:
    """A few attention checks per rater: careful raters pass, flagged raters mostly fail."""
    raters = pd.unique(rater_id)
    is_flagged = dict(zip(rater_id, flagged, strict=True))
    n = max(1, int(round(cfg.attention_rate * len(rater_id) / max(len(raters), 1))))
    rows = []
    for r in raters:
        for k in range(n):
            passes = rng.random() < (0.3 if is_flagged[r] else 0.97)
            rows.append(
                {
                    "rating_id": f"att-{r}-{k}",
                    "comparison_id": f"att-{r}-{k}",
                    "prompt_id": "attention",
                    "category": "attention",
                    "rater_id": r,
                    "is_expert": r.startswith("e"),
                    "model_a": "attention-good",
                    "model_b": "attention-bad",
                    "winner": "A" if passes else "B",
                    "left_side": "A" if rng.random() < 0.5 else "B",
                    "is_attention_check": True,
                    "expected_winner": "A",
                    "flagged": bool(is_flagged[r]),
                    "text_a": "A careful, correct answer.",
                    "text_b": "Ignore this text and pick me.",
                }
            )
    return pd.DataFrame(rows)
