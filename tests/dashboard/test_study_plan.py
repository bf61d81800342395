"""The planner where researchers reach it: ``manage.py plan_study``, the API and the study page."""

import io
import itertools
import json
import secrets
from datetime import timedelta

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from rest_framework.test import APIClient

from evalsite.analysis.planning import Design, simulate_estimates, simulate_prompts
from evalsite.rating.models import Assignment, Rater, Rating
from evalsite.studies.models import Comparison, Study


def plan_json(*args: str) -> dict:
    out = io.StringIO()
    call_command("plan_study", *args, "--json", stdout=out)
    return json.loads(out.getvalue())


# --- manage.py plan_study ---------------------------------------------------------------------


def test_command_json_has_the_issue_fields():
    result = plan_json(
        "--models", "3", "--prompts", "200", "--k", "3", "--win-rate", "0.5", "--tie-rate", "0.1",
        "--icc", "0.1", "--target-halfwidth", "0.03",
    )  # fmt: skip
    assert result["design"]["models"] == 3 and result["comparisons_per_prompt"] == 2
    assert result["win_rate_ci_halfwidth"] == pytest.approx(1.959964 * (0.24 * 1.2 / 600) ** 0.5, rel=1e-5)
    assert result["prompts_needed"] == 410
    assert result["ratings"] == 1200 and result["cost"] > 0


def test_command_answers_within_15_percent_of_simulation_across_the_grid():
    worst = 0.0
    grid = itertools.product((30, 300, 2000), (1, 4, 7), (0.3, 0.8), (0.0, 0.3))
    for i, (prompts, k, win, icc) in enumerate(grid):
        args = [
            "--prompts",
            str(prompts),
            "--k",
            str(k),
            "--win-rate",
            str(win),
            "--tie-rate",
            "0.1",
            "--icc",
            str(icc),
        ]
        predicted = plan_json("--models", "2", *args)["win_rate_ci_halfwidth"]
        design = Design(prompts=prompts, k=k, win_rate=win, tie_rate=0.1, icc=icc)
        simulated = simulate_estimates(design, 2000, seed=i)["win_rate_ci_halfwidth"]
        worst = max(worst, abs(simulated / predicted - 1))
    assert worst <= 0.15


@pytest.mark.django_db
def test_command_text_simulation_and_errors():
    out = io.StringIO()
    call_command("plan_study", "--prompts", "100", "--target-halfwidth", "0.02", "--simulate", "300", stdout=out)
    text = out.getvalue()
    assert "P(rated >= teacher), one model: ±" in text and "Simulated (300 studies)" in text
    assert "no k reaches it on 100 prompts" in text
    with pytest.raises(CommandError, match="win rate \\+ tie rate"):
        call_command("plan_study", "--win-rate", "0.9", "--tie-rate", "0.2", stdout=io.StringIO())
    with pytest.raises(CommandError, match="No study"):
        call_command("plan_study", "--study", "nope", stdout=io.StringIO())


# --- a study with pilot ratings ---------------------------------------------------------------


@pytest.fixture
def piloted(make_study, django_user_model):
    """40 prompts, the imitation against the teacher rated 3 times each, from a planted design."""
    owner = django_user_model.objects.create_user("owner", "o@example.org", "pw-owner-1", is_staff=True)
    study = make_study("pilot", n_prompts=40, owner=owner, redundancy=3)
    teacher, imitation = study.models.get(role="teacher"), study.models.get(role="imitation")
    raters = [
        Rater.objects.create(study=study, platform="prolific", external_id=f"W{i}", pseudonym=f"pw{i}")
        for i in range(3)
    ]
    wins, ties = simulate_prompts(40, 3, 0.4, 0.2, 0.2, 1, np.random.default_rng(2))
    now = timezone.now()
    for p, prompt in enumerate(study.prompts.order_by("position")):
        comparison = Comparison.objects.create(
            study=study,
            prompt=prompt,
            response_a=prompt.responses.get(model=teacher),
            response_b=prompt.responses.get(model=imitation),
        )
        verdicts = ["B"] * wins[0, p] + ["tie"] * ties[0, p] + ["A"] * (3 - wins[0, p] - ties[0, p])
        for rater, verdict in zip(raters, verdicts, strict=True):
            assignment = Assignment.objects.create(
                rater=rater,
                comparison=comparison,
                token=secrets.token_urlsafe(32),
                status=Assignment.Status.SUBMITTED,
                left_side="A",
                leased_at=now - timedelta(seconds=50),
                expires_at=now + timedelta(seconds=600),
                submitted_at=now,
            )
            Rating.objects.create(
                assignment=assignment,
                study=study,
                comparison=comparison,
                rater=rater,
                winner=verdict,
                server_seconds=50.0,
            )
    return study


@pytest.mark.django_db
def test_command_on_a_study_uses_its_design_and_pilot(piloted):
    result = plan_json("--study", "pilot", "--target-halfwidth", "0.1", "--cost-per-task", "0.5")
    assert result["study"] == "pilot"
    assert result["design"]["prompts"] == 40 and result["design"]["k"] == 3
    assert result["sources"]["icc"].startswith("pilot: 40 comparisons")
    assert result["sources"]["cost_per_task"] == "given"
    assert result["design"]["seconds_per_task"] == 50.0
    assert result["pilot"]["n_ratings"] == 120
    assert result["progress"]["crowd_ratings_done"] == 120
    assert result["progress"]["to_finish"]["ratings"] == 0
    (row,) = result["status"]["models"]
    assert row["n_prompts"] == 40 and "to_target" in result["progress"]
    out = io.StringIO()
    call_command("plan_study", "--study", "pilot", stdout=out)
    assert "Now: " in out.getvalue() and "reached ±" in out.getvalue()


# --- API --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_api_plan_get_and_post(piloted, django_user_model):
    owner = piloted.owner
    client = APIClient()
    client.force_authenticate(owner)
    r = client.get("/api/v1/studies/pilot/plan/", {"target_halfwidth": "0.05"})
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["win_rate_ci_halfwidth"] > 0 and body["prompts_needed"] >= 1
    assert body["status"]["models"][0]["model"] == "imitation-1"
    r = client.post("/api/v1/studies/pilot/plan/", {"prompts": 500, "k": 1, "icc": 0}, format="json")
    assert r.status_code == 200 and r.json()["design"]["prompts"] == 500
    r = client.post("/api/v1/studies/pilot/plan/", {"win_rate": 2, "k": "x"}, format="json")
    assert r.status_code == 400 and set(r.json()) == {"win_rate", "k"}
    r = client.get("/api/v1/studies/pilot/plan/", {"win_rate": "0.9", "tie_rate": "0.3"})
    assert r.status_code == 400 and "at most 1" in r.json()["detail"]
    # Shared read-only: planning changes nothing, so GET and POST are open to collaborators.
    shared = django_user_model.objects.create_user("shared", "s@example.org", "pw-s-1", is_staff=True)
    piloted.shared_with.add(shared)
    client.force_authenticate(shared)
    assert client.post("/api/v1/studies/pilot/plan/", {"k": 2}, format="json").status_code == 200
    stranger = django_user_model.objects.create_user("other", "x@example.org", "pw-x-1", is_staff=True)
    client.force_authenticate(stranger)
    assert client.get("/api/v1/studies/pilot/plan/").status_code == 404
    client.force_authenticate(None)
    assert client.get("/api/v1/studies/pilot/plan/").status_code == 401


# --- study page -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_study_page_plan_section(client, piloted):
    client.force_login(piloted.owner)
    page = client.get("/studies/pilot/").content.decode()
    assert 'id="plan"' in page and 'id="plan-halfwidth"' in page
    assert 'id="plan-reached"' in page and "imitation-1" in page
    assert "pilot: 40 comparisons rated twice or more" in page
    page = client.get("/studies/pilot/", {"plan": "1", "target_halfwidth": "0.05", "cost_per_task": "0.4"}).content
    page = page.decode()
    assert 'id="plan-target"' in page and "For ±5.0 points" in page
    bad = client.get("/studies/pilot/", {"plan": "1", "icc": "7"}).content.decode()
    assert "must be between 0 and 1" in bad and 'id="plan-halfwidth"' in bad


@pytest.mark.django_db
def test_study_page_plan_before_any_rating_and_when_closed(client, piloted, make_study):
    fresh = make_study("fresh", n_prompts=5, owner=piloted.owner)
    client.force_login(piloted.owner)
    page = client.get("/studies/fresh/").content.decode()
    assert "No crowd ratings against the teacher yet." in page
    assert "default (0.1: no pilot ratings)" in page
    assert fresh.status == Study.Status.DRAFT
    Study.objects.filter(pk=piloted.pk).update(status=Study.Status.CLOSED)
    page = client.get("/studies/pilot/", {"target_halfwidth": "0.001"}).content.decode()
    assert 'id="plan-why-stopped"' in page and "before the stopping rule was met" in page
