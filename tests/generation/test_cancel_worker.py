"""Cancel reaches a real Celery worker on Redis: its running job stops within one batch, answers kept."""

from __future__ import annotations

import time
import uuid

import pytest
from django.conf import settings

from evalsite.generation.actions import cancel_generation, start_generation
from evalsite.studies.models import GenerationJob, Response, Study

from .test_worker_kill import start_worker, stop, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
BATCH = 2


@pytest.mark.skipif(
    not settings.CELERY_BROKER_URL.startswith("redis"), reason="needs CELERY_BROKER_URL=redis://… (make test sets it)"
)
def test_cancel_stops_the_workers_job_after_the_batch_in_flight(
    transactional_db, make_gen_study, tiny_model_dir, tmp_path
):
    prompts = [f"Question number {i}: tell me about topic {i * 7}." for i in range(24)]
    study = make_gen_study(
        [
            {
                "alias": "imitation",
                "backend": "hf",
                "model_path": str(tiny_model_dir),
                "max_tokens": 48,
                "engine_options": {"batch_size": BATCH, "device": "cpu"},
            }
        ],
        slug="cancelled",
        prompts=prompts,
    )
    answers = Response.objects.filter(model__study=study)
    queue = f"test-generation-{uuid.uuid4().hex[:10]}"
    log = tmp_path / "worker.log"
    worker = start_worker(queue, f"cancel-{queue}", log)
    try:
        (job,) = start_generation(study, queue=queue)
        wait_for(lambda: answers.count() >= BATCH, 180, "the first batch", worker, log)
        cancel_generation(Study.objects.get(pk=study.pk))
        at_cancel = answers.count()
        # The task ends (it does not wait for the remaining batches) and reports the job cancelled.
        wait_for(lambda: "'status': 'cancelled'" in log.read_text(), 60, "the task to stop", worker, log)
        stored = answers.count()
        assert at_cancel <= stored <= at_cancel + BATCH  # at most the batch in flight was still written
        assert stored < len(prompts)
        time.sleep(1.5)
        assert answers.count() == stored  # nothing more arrives
        job.refresh_from_db()
        assert job.status == GenerationJob.Status.CANCELLED and job.done == stored
        assert not answers.exclude(error="").exists()
        assert Study.objects.get(pk=study.pk).status == Study.Status.DRAFT
        assert worker.poll() is None  # the worker itself keeps serving
    finally:
        stop(worker)
