"""A job runs once at a time (claim + heartbeat) and a stored good answer is never overwritten."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from evalsite.generation.actions import start_generation
from evalsite.generation.answers import save_answers
from evalsite.generation.claims import heartbeat
from evalsite.generation.runner import run_job
from evalsite.studies.models import GenerationJob, Response
from workers.backends.base import DecodingParams, GenerationResult

from .conftest import PROMPTS


@pytest.fixture
def fast_heartbeat(settings):
    """Heartbeats every 50 ms; a run silent for 0.3 s (six beats) is presumed dead."""
    settings.GENERATION_HEARTBEAT_SECONDS = 0.05


@pytest.fixture
def imported_study(make_gen_study, tmp_path):
    answers = tmp_path / "answers.jsonl"
    answers.write_text("\n".join(json.dumps({"id": f"p{i}", "response": f"new {i}"}) for i in range(len(PROMPTS))))
    return make_gen_study([{"alias": "t", "role": "teacher", "backend": "imported", "model_path": str(answers)}])


def hold(job: GenerationJob) -> None:
    """Mark the job as taken by another run that has just written its heartbeat."""
    GenerationJob.objects.filter(pk=job.pk).update(status=GenerationJob.Status.RUNNING, updated_at=timezone.now())


@pytest.mark.django_db(transaction=True)
def test_second_delivery_leaves_a_live_run_alone(imported_study, fast_heartbeat):
    (job,) = start_generation(imported_study, enqueue=False)
    hold(job)
    stop = threading.Event()

    def other_run_heartbeat():  # the live run, in another worker
        try:
            while not stop.wait(0.05):
                GenerationJob.objects.filter(pk=job.pk).update(updated_at=timezone.now())
        finally:
            connection.close()

    beating = threading.Thread(target=other_run_heartbeat)
    beating.start()
    try:
        started = time.monotonic()
        again = run_job(job.pk)
        assert time.monotonic() - started < 5
    finally:
        stop.set()
        beating.join()
    # The duplicate did no work: nothing generated, the job still belongs to the live run.
    assert again.status == GenerationJob.Status.RUNNING
    assert not Response.objects.exists()


@pytest.mark.django_db
def test_redelivery_after_the_worker_died_takes_over(imported_study, fast_heartbeat):
    (job,) = start_generation(imported_study, enqueue=False)
    hold(job)  # its run was SIGKILLed right after this heartbeat: it never beats again
    done = run_job(job.pk)
    assert done.status == GenerationJob.Status.DONE and done.done == len(PROMPTS)
    assert Response.objects.filter(error="").count() == len(PROMPTS)


@pytest.mark.django_db
def test_stale_running_job_is_taken_over_at_once(imported_study):
    (job,) = start_generation(imported_study, enqueue=False)
    GenerationJob.objects.filter(pk=job.pk).update(
        status=GenerationJob.Status.RUNNING, updated_at=timezone.now() - timedelta(hours=1)
    )
    started = time.monotonic()
    assert run_job(job.pk).status == GenerationJob.Status.DONE
    assert time.monotonic() - started < 5  # no waiting with the default heartbeat timeout


@pytest.mark.django_db(transaction=True)
def test_heartbeat_keeps_a_running_job_fresh_and_never_revives_it(imported_study, fast_heartbeat):
    (job,) = start_generation(imported_study, enqueue=False)
    old = timezone.now() - timedelta(hours=1)
    GenerationJob.objects.filter(pk=job.pk).update(status=GenerationJob.Status.RUNNING, updated_at=old)
    with heartbeat(job.pk):
        time.sleep(0.3)
    assert GenerationJob.objects.get(pk=job.pk).updated_at > old
    GenerationJob.objects.filter(pk=job.pk).update(status=GenerationJob.Status.CANCELLED, updated_at=old)
    with heartbeat(job.pk):
        time.sleep(0.3)
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.CANCELLED and job.updated_at == old


class StubBackend:
    name = "stub"

    def describe(self) -> dict:
        return {"backend": "stub"}


@pytest.mark.django_db
def test_write_keeps_good_answers_and_replaces_only_failed_ones(imported_study):
    model = imported_study.models.get()
    p0, p1, p2 = imported_study.prompts.order_by("position")[:3]
    good = Response.objects.create(prompt=p0, model=model, text="kept answer", backend="imported")
    failed = Response.objects.create(prompt=p1, model=model, text="", error="timed out", backend="imported")
    batch = [(p0, 0), (p1, 0), (p2, 0)]

    # A late duplicate run produces new answers: only the failed and the missing ones are written.
    answers = [GenerationResult(text=f"late {i}", finish_reason="stop") for i in range(3)]
    save_answers(model, StubBackend(), batch, answers, DecodingParams())
    good.refresh_from_db()
    failed.refresh_from_db()
    assert (good.text, good.backend) == ("kept answer", "imported")
    assert (failed.text, failed.error, failed.backend) == ("late 1", "", "stub")
    assert Response.objects.get(prompt=p2, model=model).text == "late 2"
    assert Response.objects.count() == 3

    # A run whose answers all fail afterwards leaves every good answer as it was.
    errors = [GenerationResult(error="CUDA out of memory") for _ in range(3)]
    save_answers(model, StubBackend(), batch, errors, DecodingParams())
    texts = dict(Response.objects.values_list("prompt__source_id", "text"))
    assert texts == {"p0": "kept answer", "p1": "late 1", "p2": "late 2"}
    assert not Response.objects.exclude(error="").exists()

    # A failed answer is still replaced by another failure's message (the latest reason is kept).
    Response.objects.filter(pk=failed.pk).update(text="", error="timed out")
    save_answers(model, StubBackend(), batch[1:2], errors[:1], DecodingParams())
    assert Response.objects.get(pk=failed.pk).error == "CUDA out of memory"
