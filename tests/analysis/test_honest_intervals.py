"""Issue 13: intervals a reviewer would accept.

Style-controlled intervals calibrated under prompt clustering (planted truth over 100 studies),
sandwich errors beside the bootstrap, small samples stated, separation and non-convergence flagged,
inputs refused before any fit, the clustered bootstrap in bounded memory, the finding in one sentence.
"""

import tracemalloc

import numpy as np
import pandas as pd
import pytest

from evalsite.analysis import bradley_terry as bt_module
from evalsite.analysis import style as style_module
from evalsite.analysis.bradley_terry import ConvergenceWarning, bradley_terry
from evalsite.analysis.finding import one_sentence_finding
from evalsite.analysis.intervals import METHOD_WILSON, cluster_bootstrap
from evalsite.analysis.plots import OKABE_ITO, figures, overlaps, plotted_strength_rows, strengths_figure
from evalsite.analysis.report import build_report
from evalsite.analysis.schema import SchemaError, make_ratings, select_ratings
from evalsite.analysis.simulate import simulate_study
from evalsite.analysis.style import style_controlled
from evalsite.analysis.winrates import win_rates_vs_teacher

ELO = 400 / np.log(10)


def _ratings(spec):
    """(model_a, model_b, winner, prompt) tuples -> ratings (teacher "t"; texts vary in length)."""
    rows = [
        {
            "rating_id": k,
            "comparison_id": k,
            "prompt_id": p,
            "rater_id": f"r{k}",
            "model_a": a,
            "model_b": b,
            "winner": w,
            "left_side": "A" if k % 2 else "B",
            "role_a": "teacher" if a == "t" else "imitation",
            "role_b": "teacher" if b == "t" else "imitation",
            "text_a": "word " * (k % 5 + 1),
            "text_b": "word " * (k % 3 + 1),
        }
        for k, (a, b, w, p) in enumerate(spec)
    ]
    return make_ratings(rows)


def _crowd(sim):
    analysed, _ = select_ratings(sim.ratings)
    return analysed[~analysed["is_expert"]]


# --- 1. Style-controlled intervals resample prompts: calibrated under prompt clustering -----------


@pytest.mark.slow
def test_style_controlled_standard_errors_match_the_spread_over_100_studies():
    """Planted truth with prompt effects: the mean bootstrap SE is 0.85-1.15 of the true spread.

    Each prompt shifts every model's strength (sd 0.8): the three crowd ratings of a comparison, and
    the six comparisons of a prompt, are correlated. The prompt bootstrap and the sandwich see it;
    the per-vote Poisson bootstrap (kept for comparison) does not and is too narrow. ~40 s.
    """
    estimates, boot_se, sandwich_se, vote_se = [], [], [], []
    for seed in range(100):
        sim = simulate_study(
            seed=5000 + seed,
            n_prompts=40,
            pairing="all",
            expert_share=0.0,
            prompt_effect_sd=0.8,
            attention_rate=0.0,
            n_flagged_raters=0,
            crowd_error_sensitivity=0.0,
            factual_share=0.0,
            length_coef=0.4,
            left_bias=0.3,
        )
        crowd = _crowd(sim)
        res = style_controlled(crowd, n_boot=100, seed=seed)
        assert res["interval_method"] == "prompt-clustered bootstrap" and res["identified"]
        rows = sorted(res["rows"], key=lambda r: r["model"])
        estimates.append([ELO * r["beta"] for r in rows])
        boot_se.append([r["elo_se"] for r in rows])
        sandwich_se.append([r["elo_se_sandwich"] for r in rows])
        if seed < 25:  # the per-vote bootstrap's SE is stable across studies: 25 suffice
            votes = style_controlled(crowd, n_boot=100, seed=seed, bootstrap="votes", sandwich=False)
            vote_se.append([r["elo_se"] for r in sorted(votes["rows"], key=lambda r: r["model"])])
    spread = np.array(estimates).std(axis=0, ddof=1).mean()
    ratios = {
        "prompt bootstrap": np.mean(boot_se) / spread,
        "sandwich": np.mean(sandwich_se) / spread,
        "per-vote bootstrap": np.mean(vote_se) / spread,
    }
    print("mean SE / spread of estimates over 100 studies:", {k: round(float(v), 3) for k, v in ratios.items()})
    assert 0.85 <= ratios["prompt bootstrap"] <= 1.15
    assert 0.85 <= ratios["sandwich"] <= 1.15
    assert ratios["per-vote bootstrap"] < 0.85  # what the report used to show


def test_report_says_which_resampling_each_interval_uses(study):
    res = style_controlled(_crowd(study), n_boot=50)
    assert res["bootstrap"] == "prompt" and res["interval_method"] == "prompt-clustered bootstrap"
    assert res["sandwich_method"] == "cluster-robust sandwich (by prompt)"
    votes = style_controlled(_crowd(study), n_boot=20, bootstrap="votes", sandwich=False)
    assert "ignores prompts" in votes["interval_method"]


def test_sandwich_and_bootstrap_agree(study):
    """Cluster-robust (sandwich) SEs beside the prompt bootstrap's: within 20% for every model."""
    crowd = _crowd(study)
    for res in (bradley_terry(crowd, n_boot=500, seed=3), style_controlled(crowd, n_boot=300, seed=3)):
        rated = [r for r in res["rows"] if r["identified"]]
        assert len(rated) == 4
        for row in rated:
            assert 0.8 < row["elo_se_sandwich"] / row["elo_se"] < 1.25, row
            assert row["elo_sandwich_lo"] < row["elo"] < row["elo_sandwich_hi"]
    coefs = style_controlled(crowd, n_boot=300, seed=3)["coefficients"]
    for c in coefs:
        assert 0.8 < c["se_sandwich"] / c["se"] < 1.25, c


# --- 2. Small samples are stated, not hidden ------------------------------------------------------


def test_one_prompt_gives_no_clustered_interval():
    rng = np.random.default_rng(0)
    one = _ratings([("t", "s", rng.choice(["A", "B", "tie"]), "p0") for _ in range(300)])
    row = win_rates_vs_teacher(one, n_boot=200)["overall"][0]
    assert row["interval_method"] == METHOD_WILSON
    assert row["warning"].startswith("too few prompts (n = 1")
    assert row["p_geq_hi"] - row["p_geq_lo"] > 0.05  # Wilson's width, not [0.55, 0.55]
    for fit in (bradley_terry(one, n_boot=200), style_controlled(one, n_boot=50)):
        assert fit["too_few_prompts"] and any(w.startswith("too few prompts (n = 1") for w in fit["warnings"])
        for r in fit["rows"]:
            assert "elo_lo" not in r and "elo_sandwich_lo" not in r
            assert r["warning"].startswith("too few prompts (n = 1")


def test_min_prompts_is_configurable():
    ratings = _ratings([("t", "s", "A" if k % 3 else "B", f"p{k % 6}") for k in range(60)])
    assert win_rates_vs_teacher(ratings, n_boot=100)["overall"][0]["interval_method"] == METHOD_WILSON
    row = win_rates_vs_teacher(ratings, n_boot=100, min_prompts=5)["overall"][0]
    assert row["interval_method"] == "prompt-clustered bootstrap" and row["warning"] is None


def test_all_wins_record_and_single_rating_are_bounds_not_zero_width_intervals():
    forty = _ratings([("t", "s", "A", f"p{k}") for k in range(40)])
    row = win_rates_vs_teacher(forty, n_boot=200)["overall"][0]
    assert row["p_geq"] == 0.0 and row["interval_method"] == METHOD_WILSON
    assert "every resample gives the same value" in row["warning"] and row["p_geq_hi"] > 0.05
    res = bradley_terry(forty, n_boot=200)
    rows = {r["model"]: r for r in res["rows"]}
    assert rows["t"]["elo"] is None and rows["t"]["bound"] == "lower" and rows["t"]["elo_bound"] > 1150
    assert rows["s"]["elo"] is None and rows["s"]["bound"] == "upper"
    single = bradley_terry(_ratings([("t", "s", "A", "p0")]), n_boot=200)
    assert all(r["elo"] is None and not r["identified"] for r in single["rows"])


# --- Separation and convergence -------------------------------------------------------------------


def _separated():
    """a never lost, d never won; b, c, e form the identified core."""
    spec = [("a", "b", "A", f"p{k}") for k in range(20)]
    spec += [("b", "c", "A", f"q{k}") for k in range(20)] + [("c", "b", "A", f"r{k}") for k in range(20)]
    spec += [("d", "c", "B", f"s{k}") for k in range(20)]
    spec += [("c", "e", "A", f"u{k}") for k in range(10)] + [("e", "c", "A", f"v{k}") for k in range(10)]
    return _ratings(spec)


@pytest.mark.parametrize("l2", [0.0, 1e-4])
def test_separated_models_are_flagged_and_left_out_of_the_ranking_plot(l2):
    ratings = _separated()
    res = bradley_terry(ratings, n_boot=100, l2=l2)  # l2=0: no LinAlgError
    status = {r["model"]: r["status"] for r in res["rows"]}
    assert status == {"a": "never_lost", "b": "ok", "c": "ok", "d": "never_won", "e": "ok"}
    assert res["separated"] and "no finite rating exists for a (never lost), d (never won)" in res["warnings"][0]
    assert all(np.isfinite(r["elo"]) for r in res["rows"] if r["identified"])
    assert [r["rank"] for r in res["rows"] if r["identified"]] == [1, 2, 3]
    shown, left_out = plotted_strength_rows(res)
    assert {r["model"] for r in left_out} == {"a", "d"}
    fig = strengths_figure(res)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [r["model"] for r in shown]
    title = fig.axes[0]._left_title.get_text()
    assert title.startswith("Not shown (no rating exists)") and "a: won all 20" in title
    assert overlaps(fig) == []
    styled = style_controlled(ratings, n_boot=20, l2=l2)
    assert {r["model"]: r["status"] for r in styled["rows"]}["a"] == "never_lost"
    assert {r["model"] for r in styled["rows"] if r["elo"] is not None} == {"b", "c", "e"}


def test_a_fit_that_does_not_converge_warns_and_is_not_ranked(study, monkeypatch):
    crowd = _crowd(study)
    grouped, weighted = bt_module.fit_grouped_logit, style_module.fit_weighted_logit
    monkeypatch.setattr(bt_module, "fit_grouped_logit", lambda *a, **k: grouped(*a, **{**k, "max_iter": 1}))
    monkeypatch.setattr(style_module, "fit_weighted_logit", lambda *a, **k: weighted(*a, **{**k, "max_iter": 1}))
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        res = bradley_terry(crowd, n_boot=0)
    assert not res["converged"] and all(not r["identified"] and r["elo"] is None for r in res["rows"])
    assert plotted_strength_rows(res)[0] == []
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        styled = style_controlled(crowd, n_boot=0)
    assert not styled["converged"] and not styled["identified"]


# --- 3. Input validation --------------------------------------------------------------------------


@pytest.mark.parametrize("column", ["rating_id", "comparison_id", "prompt_id", "rater_id", "model_a", "model_b"])
@pytest.mark.parametrize("missing", [None, np.nan, ""])
def test_null_ids_are_refused_naming_the_column(column, missing):
    row = {
        "rating_id": 1,
        "comparison_id": 1,
        "prompt_id": 1,
        "rater_id": "r",
        "model_a": "x",
        "model_b": "y",
        "winner": "A",
        "left_side": "A",
    }
    with pytest.raises(ValueError, match=f"column '{column}'"):
        make_ratings([row, {**row, "rating_id": 2, column: missing}])


def test_fits_refuse_bad_tables_before_fitting(study):
    crowd = _crowd(study).copy()
    crowd.loc[crowd.index[3], "prompt_id"] = None  # a table that did not come through make_ratings
    for fit in (bradley_terry, style_controlled, win_rates_vs_teacher):
        with pytest.raises(SchemaError, match="column 'prompt_id'"):
            fit(crowd)
    with pytest.raises(ValueError, match=r"model\(s\) \['nobody'\] do not occur in columns 'model_a' / 'model_b'"):
        bradley_terry(_crowd(study), models=["teacher", "nobody"])
    empty = make_ratings([])
    for fit in (bradley_terry, style_controlled):
        with pytest.raises(ValueError, match="'model_a' / 'model_b'"):
            fit(empty)
    with pytest.raises(ValueError, match="lacks column"):
        bradley_terry(_crowd(study).drop(columns=["prompt_id"]))


# --- 6. The clustered bootstrap in bounded memory -------------------------------------------------


def test_clustered_bootstrap_draws_in_chunks_with_bounded_memory():
    n_clusters, rounds = 200_000, 100
    sums = np.ones((n_clusters, 1))
    tracemalloc.start()
    try:
        boot = cluster_bootstrap(sums, rounds, np.random.default_rng(0), chunk_entries=1_000_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Every round draws exactly n_clusters clusters, whichever chunk it is in.
    assert np.all(boot[:, 0] == n_clusters)
    # All weights at once: 100 x 200k x 8 bytes = 160 MB (and as much again for the draws).
    assert peak < 60 * 2**20, f"peak {peak / 2**20:.0f} MB"
    # Chunking changes nothing in distribution: the spread of a cluster mean is the same.
    values = np.random.default_rng(1).normal(size=(5_000, 1))
    one = cluster_bootstrap(values, 400, np.random.default_rng(2))[:, 0]
    chunked = cluster_bootstrap(values, 400, np.random.default_rng(2), chunk_entries=5_000 * 7)[:, 0]
    assert chunked.std() == pytest.approx(one.std(), rel=0.2)
    assert chunked.std() == pytest.approx(np.sqrt(5_000) * values.std(), rel=0.2)


# --- 7. The finding in one sentence ---------------------------------------------------------------


def test_finding_sentence_has_numbers_intervals_and_counts(study):
    report = build_report(study.ratings, study.responses, n_boot=200, seed=1)
    f = report["finding"]
    model = f["model"]
    assert f["status"] == "ok" and model.startswith("imitation")  # the most-rated imitation model
    row = next(r for r in report["win_rates"]["overall"] if r["model"] == model)
    assert row["n"] == max(r["n"] for r in report["win_rates"]["overall"] if r["model"].startswith("imitation"))
    acc = {r["model"]: r for r in report["factuality"]["overall"]}
    mine, teacher = acc[model], acc["teacher"]
    expected = (
        f"Crowd raters rated {model} as good as or better than teacher in {100 * row['p_geq']:.0f}% "
        f"[{100 * row['p_geq_lo']:.0f}, {100 * row['p_geq_hi']:.0f}] of {row['n']} ratings ({row['n_prompts']} "
        f"prompts), while its answers were factually correct in {100 * mine['accuracy']:.0f}% "
        f"[{100 * mine['lo']:.0f}, {100 * mine['hi']:.0f}] of {mine['n']} reference questions against the "
        f"teacher's {100 * teacher['accuracy']:.0f}% [{100 * teacher['lo']:.0f}, {100 * teacher['hi']:.0f}]."
    )
    assert f["sentence"].startswith(expected), f["sentence"]


def test_finding_waits_for_enough_prompts():
    ratings = _ratings([("t", "s", "A" if k % 2 else "B", f"p{k % 3}") for k in range(12)])
    wins = win_rates_vs_teacher(ratings, n_boot=50)
    f = one_sentence_finding(ratings, wins, {"overall": []})
    assert f["status"] == "not_enough"
    assert f["sentence"].startswith("Not enough ratings yet (3 of 10 prompts)") and "12 ratings" in f["sentence"]
    assert one_sentence_finding(ratings, wins, {"overall": []}, min_prompts=3)["status"] == "ok"


# --- 8. Plots -------------------------------------------------------------------------------------


def test_figures_are_clean_labelled_and_colour_blind_safe(study):
    report = build_report(study.ratings, study.responses, n_boot=50, seed=1)
    palette = {c.lower() for c in OKABE_ITO.values()}
    figs = figures(report)
    assert all(fig is not None for fig in figs.values())
    from matplotlib.colors import to_hex

    for name, fig in figs.items():
        assert overlaps(fig) == [], name
        ax = fig.axes[0]
        label = ax.get_xlabel() if name != "accuracy_vs_preference" else ax.get_ylabel()
        assert any(unit in label for unit in ("%", "points", "log-odds")), (name, label)
        colours = {to_hex(p.get_facecolor()) for p in ax.patches if p.get_visible()}
        # Lines as drawn: marker-only lines (points, error-bar caps) show their marker colour.
        colours |= {
            to_hex(line.get_markeredgecolor() if line.get_linestyle() in ("None", "") else line.get_color())
            for line in ax.lines
        }
        colours |= {to_hex(c) for coll in ax.collections for c in coll.get_edgecolor()}
        colours -= {"#ffffff"}
        assert colours <= palette, (name, colours - palette)
    from evalsite.dashboard.views import PLOT_NOTES

    assert set(PLOT_NOTES) == set(figs) and all(len(note) > 40 and note.endswith(".") for note in PLOT_NOTES.values())


def test_report_has_no_zero_width_intervals(study):
    report = build_report(study.ratings, study.responses, n_boot=100, seed=1)

    def walk(node, path=""):
        if isinstance(node, dict):
            for lo_key in [k for k in node if k == "lo" or k.endswith("_lo")]:
                hi_key = lo_key[:-2] + "hi"
                lo, hi = node.get(lo_key), node.get(hi_key)
                if lo is not None and hi is not None:
                    assert hi - lo > 1e-9, f"{path}.{lo_key}: [{lo}, {hi}]"
            for k, v in node.items():
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for k, v in enumerate(node):
                walk(v, f"{path}[{k}]")

    walk(report)
    assert pd.notna(report["finding"]["sentence"])
