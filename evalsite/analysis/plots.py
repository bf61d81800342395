"""Report figures as standalone SVG strings (matplotlib, Agg backend; no files, no CDN).

Each function takes the corresponding part of :func:`report.build_report`'s dict and returns an
SVG document (an empty string when there is nothing to draw).
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # before pyplot: servers and workers have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

_RC = {"font.size": 9, "svg.fonttype": "none", "axes.spines.top": False, "axes.spines.right": False}
TEACHER_COLOR, OTHER_COLOR, STYLE_COLOR, FACT_COLOR = "#555555", "#3b6ea5", "#d08c2c", "#3a8f5b"


def _svg(fig) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buffer.getvalue()
    # Drop the XML prolog and DOCTYPE so the SVG can be inlined in HTML.
    return text[text.index("<svg") :]


def _err(values, lo, hi) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    lo = np.asarray([v if x is None else x for v, x in zip(values, lo, strict=True)], dtype=float)
    hi = np.asarray([v if x is None else x for v, x in zip(values, hi, strict=True)], dtype=float)
    return np.vstack([np.clip(values - lo, 0, None), np.clip(hi - values, 0, None)])


def win_rates_svg(win_rates: dict) -> str:
    """Stacked win / tie / both-bad / loss bars per model vs the teacher, P(>=) interval marked."""
    rows = win_rates.get("overall") or []
    if not rows:
        return ""
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(6.5, 0.5 + 0.45 * len(rows)))
        y = np.arange(len(rows))
        left = np.zeros(len(rows))
        for key, label, color in (
            ("p_win", "win", "#3b6ea5"),
            ("p_tie", "tie", "#9bbbd9"),
            ("p_both_bad", "both bad", "#cccccc"),
            ("p_loss", "loss", "#d9a09b"),
        ):
            vals = np.array([r[key] for r in rows])
            ax.barh(y, vals, left=left, color=color, label=label, height=0.6)
            left += vals
        geq = [r["p_geq"] for r in rows]
        ax.errorbar(
            geq,
            y,
            xerr=_err(geq, [r.get("p_geq_lo") for r in rows], [r.get("p_geq_hi") for r in rows]),
            fmt="o",
            color="black",
            ms=3,
            capsize=3,
            label="P(≥ teacher), 95% CI",
        )
        ax.axvline(0.5, color="#888888", lw=0.8, ls=":")
        ax.set_yticks(y, [r["model"] for r in rows])
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"share of ratings against {win_rates.get('teacher')}")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=5, frameon=False, fontsize=7)
        return _svg(fig)


def strengths_svg(raw: dict, controlled: dict | None = None) -> str:
    """Bradley-Terry ratings (Elo-like) with intervals, raw beside style-controlled."""
    rows = raw.get("rows") or []
    if not rows:
        return ""
    models = [r["model"] for r in rows]
    series = [("raw", raw, OTHER_COLOR)]
    if controlled and controlled.get("rows"):
        series.append(("style-controlled", controlled, STYLE_COLOR))
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(6.5, 0.6 + 0.45 * len(models)))
        for k, (label, result, color) in enumerate(series):
            by_model = {r["model"]: r for r in result["rows"]}
            sel = [by_model[m] for m in models if m in by_model]
            y = np.array([models.index(r["model"]) for r in sel]) + (k - (len(series) - 1) / 2) * 0.25
            elo = [r["elo"] for r in sel]
            ax.errorbar(
                elo,
                y,
                xerr=_err(elo, [r.get("elo_lo") for r in sel], [r.get("elo_hi") for r in sel]),
                fmt="o",
                color=color,
                capsize=3,
                ms=4,
                label=label,
            )
        ax.axvline(1000, color="#888888", lw=0.8, ls=":")
        ax.set_yticks(np.arange(len(models)), models)
        ax.invert_yaxis()
        ax.set_xlabel("rating (1000 + 400·β / ln 10), 95% bootstrap interval")
        ax.legend(frameon=False, fontsize=7)
        return _svg(fig)


def style_coefficients_svg(style_result: dict) -> str:
    """Style coefficients (log-odds per RMS unit of the normalised difference) with intervals."""
    coefs = style_result.get("coefficients") or []
    if not coefs:
        return ""
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(6.0, 0.5 + 0.4 * len(coefs)))
        y = np.arange(len(coefs))
        vals = [c["coef"] for c in coefs]
        ax.errorbar(
            vals,
            y,
            xerr=_err(vals, [c.get("lo") for c in coefs], [c.get("hi") for c in coefs]),
            fmt="o",
            color=STYLE_COLOR,
            capsize=3,
            ms=4,
        )
        ax.axvline(0, color="#888888", lw=0.8)
        ax.set_yticks(y, [c["feature"] for c in coefs])
        ax.invert_yaxis()
        ax.set_xlabel("effect on log-odds of winning (per SD), 95% interval")
        return _svg(fig)


def accuracy_vs_preference_svg(headline: dict) -> str:
    """The study's central picture: human "equal or better than the teacher" beside factual accuracy."""
    rows = [
        r for r in headline.get("per_model", []) if r.get("accuracy") is not None or r.get("p_geq_teacher") is not None
    ]
    if not rows:
        return ""
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(6.5, 3.2))
        x = np.arange(len(rows))
        width = 0.38
        for offset, key, label, color in (
            (-width / 2, "p_geq_teacher", "crowd: rated ≥ teacher", OTHER_COLOR),
            (width / 2, "accuracy", "factual accuracy (references)", FACT_COLOR),
        ):
            vals = [np.nan if r.get(key) is None else r[key] for r in rows]
            err = _err(vals, [r.get(f"{key}_lo") for r in rows], [r.get(f"{key}_hi") for r in rows])
            ax.bar(x + offset, vals, width, color=color, label=label, yerr=np.nan_to_num(err), capsize=3)
        ax.set_xticks(x, [r["model"] for r in rows], rotation=15)
        ax.set_ylim(0, 1)
        ax.set_ylabel("share")
        ax.legend(frameon=False, fontsize=7, loc="upper right")
        return _svg(fig)


def all_plots(report: dict) -> dict[str, str]:
    """Every figure of a report, keyed by name."""
    return {
        "win_rates": win_rates_svg(report.get("win_rates", {})),
        "strengths": strengths_svg(report.get("bradley_terry", {}), report.get("style")),
        "style": style_coefficients_svg(report.get("style", {})),
        "accuracy_vs_preference": accuracy_vs_preference_svg(report.get("headline", {})),
    }
