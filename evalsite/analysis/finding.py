"""The study's finding in one sentence, computed, with its numbers, intervals and caveats.

"Crowd raters rated imitation as good as or better than teacher in 46% [30, 66] of 28 ratings
(28 prompts), while its answers were factually correct in 31% [14, 56] of 16 reference questions
against the teacher's 100% [81, 100]."

The model is the imitation model (role ``imitation``) with the most crowd ratings against the
teacher, or the most-rated other model when no model has that role. Below ``min_prompts`` rated
prompts the sentence says "not enough ratings yet (n of N prompts)" instead of a number; with a
small sample it adds a caveat. The factual half uses the lenient "answer contained" check (the
one the report's headline uses), over the prompts with reference answers.
"""

from __future__ import annotations

import math

import pandas as pd

from .intervals import METHOD_WILSON, MIN_PROMPTS

# Below this many prompts (or reference questions) the finding carries a small-sample caveat.
SMALL_PROMPTS = 30
SMALL_REFERENCES = 20


def _pct(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:.0f}%"


def _interval(lo: float | None, hi: float | None) -> str:
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return ""
    return f" [{100 * lo:.0f}, {100 * hi:.0f}]"


def pick_model(crowd: pd.DataFrame, teacher: str, rows: list[dict]) -> str | None:
    """The model the finding is about: the most-rated imitation model, else the most-rated one."""
    if not rows:
        return None
    roles = pd.concat(
        [
            crowd[["model_a", "role_a"]].set_axis(["model", "role"], axis=1),
            crowd[["model_b", "role_b"]].set_axis(["model", "role"], axis=1),
        ]
    ).drop_duplicates("model")
    role = dict(zip(roles["model"], roles["role"], strict=True))
    ranked = sorted(rows, key=lambda r: (role.get(r["model"]) != "imitation", -r["n"], r["model"]))
    return ranked[0]["model"]


def one_sentence_finding(
    crowd: pd.DataFrame,
    win_rates: dict,
    accuracy: dict,
    *,
    min_prompts: int = MIN_PROMPTS,
) -> dict:
    """The finding: a sentence plus the numbers behind it (``status`` says which sentence).

    ``win_rates`` is :func:`winrates.win_rates_vs_teacher`'s result on crowd ratings and
    ``accuracy`` :func:`factuality.accuracy_by_model`'s. Status: ``ok``, ``not_enough`` (fewer
    than ``min_prompts`` prompts), ``no_teacher`` or ``no_ratings``.
    """
    teacher = win_rates.get("teacher")
    out: dict = {"status": None, "teacher": teacher, "model": None, "min_prompts": min_prompts, "caveat": None}
    if teacher is None:
        out.update(
            status="no_teacher",
            sentence="No finding yet: the study has no model with the role teacher to compare against.",
        )
        return out
    rows = win_rates.get("overall") or []
    model = pick_model(crowd, teacher, rows)
    if model is None:
        out.update(
            status="no_ratings",
            sentence=f"Not enough ratings yet (0 of {min_prompts} prompts): no crowd rating compares a model "
            f"with {teacher}.",
        )
        return out
    row = next(r for r in rows if r["model"] == model)
    acc = {r["model"]: r for r in (accuracy.get("overall") or [])}
    mine, theirs = acc.get(model), acc.get(teacher)
    out.update(
        {
            "model": model,
            "n_ratings": row["n"],
            "n_prompts": row["n_prompts"],
            "wins": row["wins"],
            "ties": row["ties"],
            "both_bad": row["both_bad"],
            "losses": row["losses"],
            "p_geq": row["p_geq"],
            "p_geq_lo": row.get("p_geq_lo"),
            "p_geq_hi": row.get("p_geq_hi"),
            "interval_method": row.get("interval_method"),
            "accuracy_method": accuracy.get("method"),
            "accuracy": mine,
            "teacher_accuracy": theirs,
        }
    )
    if row["n_prompts"] < min_prompts:
        out.update(
            status="not_enough",
            sentence=f"Not enough ratings yet ({row['n_prompts']} of {min_prompts} prompts): crowd raters have "
            f"compared {model} with {teacher} on {row['n_prompts']} prompt{'' if row['n_prompts'] == 1 else 's'} "
            f"({row['n']} rating{'' if row['n'] == 1 else 's'}); the finding needs at least {min_prompts}.",
        )
        return out
    sentence = (
        f"Crowd raters rated {model} as good as or better than {teacher} in "
        f"{_pct(row['p_geq'])}{_interval(row.get('p_geq_lo'), row.get('p_geq_hi'))} of {row['n']} ratings "
        f"({row['n_prompts']} prompts)"
    )
    if mine and theirs:
        sentence += (
            f", while its answers were factually correct in {_pct(mine['accuracy'])}"
            f"{_interval(mine['lo'], mine['hi'])} of {mine['n']} reference questions against the "
            f"teacher's {_pct(theirs['accuracy'])}{_interval(theirs['lo'], theirs['hi'])}."
        )
    else:
        sentence += "; no reference answers check its facts yet."
    small = []
    if row["n_prompts"] < SMALL_PROMPTS:
        small.append(f"{row['n_prompts']} prompts")
    if mine and mine["n"] < SMALL_REFERENCES:
        small.append(f"{mine['n']} reference questions")
    if row.get("interval_method") == METHOD_WILSON:
        small.append("a Wilson interval that treats ratings as independent")
    if small:
        out["caveat"] = f"A small sample ({', '.join(small)}): read the intervals, not the point estimates."
        sentence += " " + out["caveat"]
    out.update(status="ok", sentence=sentence)
    return out
