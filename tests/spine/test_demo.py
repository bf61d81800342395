"""The bundled demo: seeding is idempotent, and scripts/demo.py starts and stops cleanly."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from evalsite.studies.management.commands.seed_demo import DEMO_DATA
from evalsite.studies.models import Comparison, LanguageModel, Response, Study

ROOT = Path(__file__).resolve().parents[2]


def read_jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (DEMO_DATA / name).read_text(encoding="utf-8").splitlines() if line]


def test_bundled_sample_is_consistent():
    prompts = read_jsonl("prompts.jsonl")
    ids = [p["id"] for p in prompts]
    assert len(ids) == len(set(ids)) >= 25
    factual = [p for p in prompts if p["category"] == "factual-qa"]
    assert len(factual) >= 10 and all(p["reference_answers"] for p in factual)
    assert any(p["category"] == "open-ended" for p in prompts)
    for name in ("teacher.jsonl", "imitation.jsonl", "base.jsonl"):
        assert [r["id"] for r in read_jsonl(name)] == ids, name
    # The point of the demo: the imitation is often wrong where the teacher is right.
    teacher = {r["id"]: r["response"].lower() for r in read_jsonl("teacher.jsonl")}
    imitation = {r["id"]: r["response"].lower() for r in read_jsonl("imitation.jsonl")}
    mentions = lambda text, refs: any(ref.lower() in text for ref in refs)  # noqa: E731
    assert all(mentions(teacher[p["id"]], p["reference_answers"]) for p in factual)
    wrong = [p["id"] for p in factual if not mentions(imitation[p["id"]], p["reference_answers"])]
    assert len(wrong) >= len(factual) // 2


@pytest.mark.django_db
def test_seed_demo_is_live_and_idempotent(django_user_model):
    django_user_model.objects.create_user("admin", is_staff=True)
    call_command("seed_demo", owner="admin")
    study = Study.objects.get(slug="demo")
    counts = (
        study.prompts.count(),
        Response.objects.filter(model__study=study).exclude(model__role="attention").count(),
        study.comparisons.filter(is_attention_check=False).count(),
    )
    assert study.status == "live" and study.owner.username == "admin" and study.completion_code
    assert counts == (30, 90, 60)  # 3 imported models; teacher vs imitation and vs base
    # Launching mixed in attention checks (the study's rate is > 0): one per prompt.
    assert study.comparisons.filter(is_attention_check=True).count() == 30
    smol = LanguageModel.objects.get(study=study, alias="smollm2")
    assert (smol.role, smol.backend, smol.model_path, smol.max_tokens) == (
        "imitation",
        "hf",
        "builtin:smollm2-135m-instruct",
        128,
    )
    call_command("seed_demo")
    study.refresh_from_db()
    again = (
        study.prompts.count(),
        Response.objects.filter(model__study=study).exclude(model__role="attention").count(),
        study.comparisons.filter(is_attention_check=False).count(),
    )
    assert again == counts and study.status == "live"
    assert not Comparison.objects.filter(study=study, response_a__model__role="imitation").exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_demo_script_starts_web_and_worker_and_stops(tmp_path):
    port = free_port()
    env = dict(os.environ)
    env["EVALSITE_DATA_DIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "scripts/demo.py", "--check", "--port", str(port), "--timeout", "120"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "demo check: web server and worker are up" in out
    assert "demo@" in out and " ready." in out  # the Celery worker's own ready line
    password = (tmp_path / "demo_admin_password").read_text().strip()
    assert f"user admin, password {password}" in out
    assert f"http://127.0.0.1:{port}/r/demo/?PROLIFIC_PID=demo1&STUDY_ID=s&SESSION_ID=x" in out
    assert (tmp_path / "evalsite.sqlite3").exists()  # embedded, even though the test env names PostgreSQL
    with socket.socket() as sock:  # the web server is gone
        assert sock.connect_ex(("127.0.0.1", port)) != 0
