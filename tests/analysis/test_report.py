import json

import pytest

from evalsite.analysis.plots import all_plots
from evalsite.analysis.report import build_report


@pytest.fixture(scope="module")
def report(study):
    return build_report(study.ratings, study.responses, n_boot=100, seed=1)


def test_report_is_strict_json(report):
    text = json.dumps(report, allow_nan=False)
    assert json.loads(text)["counts"]["ratings_total"] == report["counts"]["ratings_total"]


def test_exclusions_are_counted_and_optional(study, report):
    r = study.ratings
    assert report["excluded"]["attention_checks"] == int(r["is_attention_check"].sum())
    assert report["excluded"]["flagged_raters"] == int((r["flagged"] & ~r["is_attention_check"]).sum())
    assert report["counts"]["ratings_analysed"] == len(r) - report["excluded"]["total"]
    everything = build_report(r, study.responses, n_boot=0, include_flagged=True, include_attention=True)
    assert everything["excluded"]["total"] == 0 and everything["counts"]["ratings_analysed"] == len(r)


def test_headline_per_model_and_category(report):
    head = report["headline"]
    assert "crowd raters preferred or tied the wrong answer" in head["summary"]
    models = {row["model"] for row in head["per_model"]}
    assert {"imitation-13b", "base-13b", "teacher"} <= models
    assert {row["category"] for row in head["per_category"]} == {"factual-qa", "open-ended"}
    imit = next(r for r in head["per_model"] if r["model"] == "imitation-13b")
    teacher = next(r for r in head["per_model"] if r["model"] == "teacher")
    # The paper's picture: the imitation model is near the teacher in preference, far below in accuracy.
    assert imit["p_geq_teacher"] > 0.4 and imit["accuracy"] < teacher["accuracy"] - 0.2


def test_sections_present(report):
    for key in (
        "win_rates",
        "bradley_terry",
        "bradley_terry_position",
        "style",
        "factuality",
        "factuality_exact",
        "crowd_vs_expert",
        "agreement",
        "rater_quality",
        "position",
    ):
        assert report[key], key
    assert report["teacher"] == "teacher"


def test_judge_section(study):
    comps = study.ratings.drop_duplicates("comparison_id")
    import pandas as pd

    judgments = pd.DataFrame({"comparison_id": comps["comparison_id"], "verdict_ab": "A", "verdict_ba": "B"})
    rep = build_report(study.ratings, study.responses, n_boot=0, judgments=judgments)
    assert rep["judge"]["human"]["n_compared"] > 0
    assert 0 <= rep["judge"]["factual"]["picks_correct"] <= 1


def test_plots_are_svg(report):
    plots = all_plots(report)
    assert set(plots) == {"win_rates", "strengths", "style", "accuracy_vs_preference"}
    for name, svg in plots.items():
        assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>"), name
    assert all_plots({})["win_rates"] == ""
