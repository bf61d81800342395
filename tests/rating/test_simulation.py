"""Simulated raters go through the real engine and reproduce the crowd-vs-expert gap."""

import pytest
from django.core.management import call_command
from django.db.models import Count

from evalsite.analysis.report import build_report
from evalsite.dashboard.loader import load_frames
from evalsite.rating.models import Assignment, Rating
from evalsite.studies.models import Study


@pytest.mark.django_db
def test_simulated_demo_shows_crowd_fooled_more_than_experts():
    call_command("seed_demo")
    study = Study.objects.get(slug="demo")
    call_command("simulate_ratings", "demo", crowd=9, experts=3)
    ratings = Rating.objects.filter(study=study)
    assert ratings.count() >= 100
    # The engine's guarantees hold for simulated raters too.
    per_comparison = ratings.filter(comparison__is_attention_check=False).values("comparison").annotate(n=Count("id"))
    assert max(row["n"] for row in per_comparison) <= study.redundancy
    assert not Assignment.objects.values("rater", "comparison").annotate(n=Count("id")).filter(n__gt=1).exists()
    # The simulated crowd leaves room for real visitors.
    assert (
        ratings.filter(comparison__is_attention_check=False).count()
        < study.comparisons.filter(is_attention_check=False).count() * study.redundancy
    )

    frames = load_frames(study)
    report = build_report(*frames, n_boot=200)
    overall = report["headline"]["overall"]
    assert overall["crowd"]["estimate"] > overall["expert"]["estimate"]
    imitation = next(row for row in report["headline"]["per_model"] if row["model"] == "imitation")
    teacher = next(row for row in report["headline"]["per_model"] if row["model"] == "teacher")
    # The study's picture: rated close to the teacher, far below it in accuracy.
    assert imitation["accuracy"] < teacher["accuracy"] - 0.4


def test_simulate_ratings_refuses_unknown_study(db):
    with pytest.raises(Exception, match="No study with slug"):
        call_command("simulate_ratings", "nope")
