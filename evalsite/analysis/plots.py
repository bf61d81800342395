"""Report figures as standalone SVG strings (matplotlib, Agg backend; no files, no CDN).

Each ``*_svg`` function takes the corresponding part of :func:`report.build_report`'s dict and
returns an SVG document (an empty string when there is nothing to draw); ``*_figure`` returns the
matplotlib figure itself (the tests measure it). Colours are the Okabe-Ito palette (safe for the
common colour-vision deficiencies); legends sit outside the plotting area, so they never cover a
bar; every axis says its unit (the report page adds one sentence per figure on how to read it:
``evalsite.dashboard.views.PLOT_NOTES``, kept there so the web process need not import matplotlib).
Models whose rating does not exist (never lost, never won, separated, fit not converged) are left
out of the ranking figure, and the figure says which.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # before pyplot: servers and workers have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import PercentFormatter  # noqa: E402

_RC = {"font.size": 9, "svg.fonttype": "none", "axes.spines.top": False, "axes.spines.right": False}
# Okabe & Ito (2008), "Color Universal Design".
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
    "grey": "#999999",
}
OTHER_COLOR, STYLE_COLOR, FACT_COLOR = OKABE_ITO["blue"], OKABE_ITO["orange"], OKABE_ITO["green"]
OUTCOME_COLORS = {
    "p_win": OKABE_ITO["blue"],
    "p_tie": OKABE_ITO["sky_blue"],
    "p_both_bad": OKABE_ITO["grey"],
    "p_loss": OKABE_ITO["vermillion"],
}


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


def _legend_right(ax, **kwargs):
    """A legend outside the axes, to the right: it cannot cover data or the axis labels."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False, **kwargs)


def win_rates_figure(win_rates: dict):
    """Stacked win / tie / both-bad / loss bars per model vs the teacher, P(>=) interval marked."""
    rows = win_rates.get("overall") or []
    if not rows:
        return None
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(6.5, 0.9 + 0.45 * len(rows)))
        y = np.arange(len(rows))
        left = np.zeros(len(rows))
        for key, label in (("p_win", "win"), ("p_tie", "tie"), ("p_both_bad", "both bad"), ("p_loss", "loss")):
            vals = np.array([r[key] for r in rows])
            ax.barh(y, vals, left=left, color=OUTCOME_COLORS[key], label=label, height=0.6)
            left += vals
        geq = [r["p_geq"] for r in rows]
        ax.errorbar(
            geq,
            y,
            xerr=_err(geq, [r.get("p_geq_lo") for r in rows], [r.get("p_geq_hi") for r in rows]),
            fmt="o",
            color=OKABE_ITO["black"],
            ms=3,
            capsize=3,
            label="P(≥ teacher), 95% CI",
        )
        ax.axvline(0.5, color=OKABE_ITO["grey"], lw=0.8, ls=":")
        ax.set_yticks(y, [f"{r['model']} (n={r['n']})" for r in rows])
        ax.set_xlim(0, 1)
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_xlabel(f"share of crowd ratings against {win_rates.get('teacher')} (%)")
        _legend_right(ax, fontsize=7)
        return fig


def win_rates_svg(win_rates: dict) -> str:
    fig = win_rates_figure(win_rates)
    return "" if fig is None else _svg(fig)


def plotted_strength_rows(raw: dict) -> tuple[list[dict], list[dict]]:
    """(rows drawn in the ranking figure, rows left out because they have no rating)."""
    rows = raw.get("rows") or []
    shown = [r for r in rows if r.get("identified", True) and r.get("elo") is not None]
    return shown, [r for r in rows if r not in shown]


def strengths_figure(raw: dict, controlled: dict | None = None):
    """Bradley-Terry ratings (Elo-like) with intervals, raw beside style-controlled."""
    shown, left_out = plotted_strength_rows(raw)
    if not shown:
        return None
    models = [r["model"] for r in shown]
    series = [("raw", raw, OTHER_COLOR, "o")]
    styled = [r for r in (controlled or {}).get("rows") or [] if r.get("identified", True) and r.get("elo") is not None]
    if styled:
        series.append(("style-controlled", {"rows": styled}, STYLE_COLOR, "s"))
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(6.5, 1.0 + 0.45 * len(models)))
        for k, (label, result, color, marker) in enumerate(series):
            by_model = {r["model"]: r for r in result["rows"]}
            sel = [by_model[m] for m in models if m in by_model]
            y = np.array([models.index(r["model"]) for r in sel]) + (k - (len(series) - 1) / 2) * 0.25
            elo = [r["elo"] for r in sel]
            ax.errorbar(
                elo,
                y,
                xerr=_err(elo, [r.get("elo_lo") for r in sel], [r.get("elo_hi") for r in sel]),
                fmt=marker,
                color=color,
                capsize=3,
                ms=4,
                label=label,
            )
        ax.axvline(1000, color=OKABE_ITO["grey"], lw=0.8, ls=":")
        ax.set_yticks(np.arange(len(models)), models)
        ax.set_ylim(len(models) - 0.5, -0.5)
        ax.set_xlabel("rating (points: 1000 + 400·β / ln 10), 95% interval")
        _legend_right(ax, fontsize=7)
        if left_out:
            ax.set_title(
                "Not shown (no rating exists): "
                + "; ".join(f"{r['model']}: {r.get('note') or 'not identified'}" for r in left_out),
                loc="left",
                fontsize=7,
                wrap=True,
            )
        return fig


def strengths_svg(raw: dict, controlled: dict | None = None) -> str:
    fig = strengths_figure(raw, controlled)
    return "" if fig is None else _svg(fig)


def style_coefficients_figure(style_result: dict):
    """Style coefficients (log-odds per RMS unit of the normalised difference) with intervals."""
    coefs = style_result.get("coefficients") or []
    if not coefs:
        return None
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(6.0, 0.9 + 0.4 * len(coefs)))
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
        ax.axvline(0, color=OKABE_ITO["grey"], lw=0.8)
        ax.set_yticks(y, [c["feature"] for c in coefs])
        ax.set_ylim(len(coefs) - 0.5, -0.5)
        ax.set_xlabel("effect on log-odds of winning (per SD of the feature difference), 95% interval")
        if style_result.get("identified") is False:
            ax.set_title("Not identified with these data: see the warnings", loc="left", fontsize=7)
        return fig


def style_coefficients_svg(style_result: dict) -> str:
    fig = style_coefficients_figure(style_result)
    return "" if fig is None else _svg(fig)


def accuracy_vs_preference_figure(headline: dict):
    """The study's central picture: human "equal or better than the teacher" beside factual accuracy."""
    rows = [
        r for r in headline.get("per_model", []) if r.get("accuracy") is not None or r.get("p_geq_teacher") is not None
    ]
    if not rows:
        return None
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(6.5, 3.2))
        x = np.arange(len(rows))
        width = 0.38
        for offset, key, label, color, hatch in (
            (-width / 2, "p_geq_teacher", "crowd: rated ≥ teacher", OTHER_COLOR, None),
            (width / 2, "accuracy", "factually correct (contains the reference)", FACT_COLOR, "//"),
        ):
            vals = [np.nan if r.get(key) is None else r[key] for r in rows]
            err = _err(vals, [r.get(f"{key}_lo") for r in rows], [r.get(f"{key}_hi") for r in rows])
            ax.bar(
                x + offset,
                vals,
                width,
                color=color,
                label=label,
                yerr=np.nan_to_num(err),
                capsize=3,
                error_kw={"ecolor": OKABE_ITO["black"]},
                hatch=hatch,
                edgecolor="white",
            )
        ax.set_xticks(x, [r["model"] for r in rows])
        ax.set_ylim(0, 1)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_ylabel("share (%)")
        _legend_right(ax, fontsize=7)
        return fig


def accuracy_vs_preference_svg(headline: dict) -> str:
    fig = accuracy_vs_preference_figure(headline)
    return "" if fig is None else _svg(fig)


def figures(report: dict) -> dict:
    """Every figure of a report as a matplotlib figure (None when empty), keyed by name."""
    return {
        "win_rates": win_rates_figure(report.get("win_rates", {})),
        "strengths": strengths_figure(report.get("bradley_terry", {}), report.get("style")),
        "style": style_coefficients_figure(report.get("style", {})),
        "accuracy_vs_preference": accuracy_vs_preference_figure(report.get("headline", {})),
    }


def overlaps(fig) -> list[tuple[str, str]]:
    """Pairs of text or legend boxes of ``fig`` that overlap each other or a plotting area.

    Checked: the legend against the axes and the axis labels, tick labels against each other,
    titles against the axes. Empty when the figure is clean. (Used by the tests; closes nothing.)
    """
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    found = []
    for ax in fig.axes:
        area = ax.get_window_extent(renderer)
        boxes = {"x label": ax.xaxis.label, "y label": ax.yaxis.label}
        legend = ax.get_legend()
        if legend is not None:
            box = legend.get_window_extent(renderer)
            if box.overlaps(area):
                found.append(("legend", "axes"))
            for name, label in boxes.items():
                if label.get_text() and box.overlaps(label.get_window_extent(renderer)):
                    found.append(("legend", name))
        title = ax.title if ax.title.get_text() else ax._left_title
        if title.get_text() and title.get_window_extent(renderer).overlaps(area):
            found.append(("title", "axes"))
        for axis_name, ticks in (("x", ax.get_xticklabels()), ("y", ax.get_yticklabels())):
            extents = [t.get_window_extent(renderer) for t in ticks if t.get_text() and t.get_visible()]
            for k in range(len(extents) - 1):
                if extents[k].overlaps(extents[k + 1]):
                    found.append((f"{axis_name} tick {k}", f"{axis_name} tick {k + 1}"))
    return found


def all_plots(report: dict) -> dict[str, str]:
    """Every figure of a report, keyed by name."""
    return {
        "win_rates": win_rates_svg(report.get("win_rates", {})),
        "strengths": strengths_svg(report.get("bradley_terry", {}), report.get("style")),
        "style": style_coefficients_svg(report.get("style", {})),
        "accuracy_vs_preference": accuracy_vs_preference_svg(report.get("headline", {})),
    }
