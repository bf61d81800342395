"""A real Celery worker on Redis is SIGKILLed mid-job; a new worker finishes the job, nothing is lost
or duplicated (acks_late + reject_on_worker_lost + upserts keyed on prompt, model, sample)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from evalsite.generation.actions import start_generation
from evalsite.studies.models import GenerationJob, Response, Study

from .conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]
VISIBILITY_TIMEOUT = 10  # seconds before Redis hands a dead worker's task to another worker


def database_url() -> str:
    """The test database, as a URL a worker subprocess can use."""
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgresql://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def start_worker(queue: str, name: str, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
        # A killed run's heartbeat goes stale after 6 intervals; 1 s keeps the takeover quick here.
        "EVALSITE_JOB_HEARTBEAT_SECONDS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "evalsite.celery",
        "worker",
        "-Q",
        queue,
        "-n",
        f"{name}@%h",
        "--pool",
        "solo",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-l",
        "info",
    ]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"worker exited ({proc.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}" + (f":\n{log.read_text()[-3000:]}" if log else ""))


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(
    not settings.CELERY_BROKER_URL.startswith("redis"),
    reason="needs CELERY_BROKER_URL=redis://… (make test sets it)",
)
def test_sigkill_mid_job_loses_nothing_and_duplicates_nothing(
    transactional_db, make_gen_study, tiny_model_dir, tmp_path
):
    prompts = [f"Question number {i}: tell me about topic {i * 7}." for i in range(24)]
    # Two prompts per batch and 48 tokens each: the job takes a while, with progress after every batch.
    study = make_gen_study(
        [
            {
                "alias": "imitation",
                "backend": "hf",
                "model_path": str(tiny_model_dir),
                "max_tokens": 48,
                "samples_per_prompt": 1,
                "engine_options": {"batch_size": 2, "device": "cpu"},
            }
        ],
        slug="killed",
        prompts=prompts,
    )
    queue = f"test-generation-{uuid.uuid4().hex[:10]}"  # nobody else's worker consumes this queue
    first_log, second_log = tmp_path / "worker1.log", tmp_path / "worker2.log"
    first = start_worker(queue, f"first-{queue}", first_log)
    second = None
    try:
        (job,) = start_generation(study, queue=queue)
        job.refresh_from_db()
        assert job.celery_task_id
        wait_for(
            lambda: Response.objects.filter(model__study=study).count() >= 4,
            180,
            "the first answers",
            first,
            first_log,
        )
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        before_kill = dict(Response.objects.filter(model__study=study).values_list("id", "text"))
        assert 4 <= len(before_kill) < len(prompts), "the job must be killed in the middle"
        job.refresh_from_db()
        assert job.status == GenerationJob.Status.RUNNING

        second = start_worker(queue, f"second-{queue}", second_log)
        wait_for(
            lambda: GenerationJob.objects.get(pk=job.pk).status == GenerationJob.Status.DONE,
            240,
            "the job to finish on the second worker",
            second,
            second_log,
        )
        rows = Response.objects.filter(model__study=study)
        assert rows.count() == len(prompts)
        assert set(rows.values_list("prompt__source_id", flat=True)) == {f"p{i}" for i in range(len(prompts))}
        assert not rows.exclude(error="").exists()
        # What the killed worker wrote was kept as it was, not generated again.
        assert dict(rows.filter(id__in=before_kill).values_list("id", "text")) == before_kill
        job.refresh_from_db()
        assert job.done == job.total == len(prompts) and job.failed == 0
        assert Study.objects.get(pk=study.pk).status == Study.Status.READY
        assert "run_generation_job" in second_log.read_text()
    finally:
        stop(first)
        if second is not None:
            stop(second)


@pytest.mark.skipif(
    not settings.CELERY_BROKER_URL.startswith("redis"), reason="needs CELERY_BROKER_URL=redis://… (make test sets it)"
)
def test_generate_command_follows_a_real_worker(transactional_db, make_gen_study, tiny_model_dir, tmp_path):
    from io import StringIO

    from django.core.management import call_command

    study = make_gen_study([{"alias": "imitation", "backend": "hf", "model_path": str(tiny_model_dir)}], slug="cmd")
    queue = f"test-generation-{uuid.uuid4().hex[:10]}"
    log = tmp_path / "worker.log"
    worker = start_worker(queue, f"cmd-{queue}", log)
    try:
        out, err = StringIO(), StringIO()
        call_command("generate", "cmd", "--queue", queue, stdout=out, stderr=err)
        assert "imitation: done (6/6, 0 failed)" in out.getvalue()
        assert "Study cmd is ready." in out.getvalue()
        assert "6/6" in err.getvalue()  # the tqdm bar
        assert Response.objects.filter(model__study=study, error="").count() == 6
    finally:
        stop(worker)


@pytest.mark.skipif(
    not settings.CELERY_BROKER_URL.startswith("redis"), reason="needs CELERY_BROKER_URL=redis://… (make test sets it)"
)
def test_vllm_job_on_a_real_worker_and_clean_shutdown(transactional_db, make_gen_study, tiny_model_dir, tmp_path):
    # vLLM as in production: its engine in a child process of the worker (multiprocessing on).
    options = {"dtype": "float32", "enforce_eager": True, "max_model_len": 256}
    study = make_gen_study(
        [{"alias": "v", "backend": "vllm", "model_path": str(tiny_model_dir), "engine_options": options}], slug="v"
    )
    queue = f"test-generation-{uuid.uuid4().hex[:10]}"
    log = tmp_path / "worker.log"
    worker = start_worker(queue, f"vllm-{queue}", log)
    try:
        (job,) = start_generation(study, queue=queue)
        wait_for(
            lambda: GenerationJob.objects.get(pk=job.pk).status in ("done", "failed"), 300, "the vLLM job", worker, log
        )
        job.refresh_from_db()
        assert job.status == GenerationJob.Status.DONE, job.last_error
        assert Response.objects.filter(model__study=study, backend="vllm", error="").count() == 6
        # A warm shutdown must also stop vLLM's engine processes, or the worker never exits.
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
    finally:
        stop(worker)
