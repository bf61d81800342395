"""Celery tasks: thin wrappers around ``evalsite.generation``. Code in ``evalsite/`` sends them by name
(``evalsite.celery.send_task_on_commit``) and never imports this module.

All are ``acks_late`` + ``reject_on_worker_lost``: a worker killed mid-job leaves the message on the
broker, another worker picks it up, and the claim and the keyed upserts of the runner make that safe.
"""

from __future__ import annotations

import httpx
from celery import shared_task
from celery.signals import worker_process_shutdown, worker_shutdown

from evalsite.generation.judge import run_judge
from evalsite.generation.runner import run_job

from .backends.base import TransientGenerationError, clear_backend_cache

TRANSIENT = (TransientGenerationError, httpx.TransportError, ConnectionError, TimeoutError)


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT,
    retry_backoff=5,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=5,
)
def run_generation_job(self, job_id: int) -> dict:
    """Generate the missing answers of one GenerationJob; retried with backoff on transient errors."""
    job = run_job(job_id, final_attempt=self.request.retries >= self.max_retries)
    return {"job": job.pk, "status": job.status, "done": job.done, "failed": job.failed}


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, autoretry_for=TRANSIENT,
             retry_backoff=5, retry_backoff_max=600, max_retries=5)
def judge_study(self, study_id: int, judge_id: int) -> int:
    """Ask an LLM judge for every comparison of a study in both orders (``evalsite.generation.judge``)."""
    return run_judge(study_id, judge_id)


# Registered here because the Celery app autodiscovers ``workers.tasks`` only.
from . import analysis_tasks  # noqa: E402,F401


@worker_shutdown.connect
@worker_process_shutdown.connect
def close_engines(**_kwargs) -> None:
    """Stop the loaded engine when a worker stops: vLLM's engine processes and threads would otherwise
    keep a warm-shut-down worker alive forever."""
    clear_backend_cache()
