"""Generation jobs: which answers are missing, one job per model, where it runs, the study's status.

A GenerationJob is ``queued`` until a run claims it (:mod:`.claims`), ``running`` while that run
writes answers batch by batch (:mod:`.runner`), and ends ``done``, ``failed`` or ``cancelled``. The
job's task is sent to its queue by name once the transaction that created the job commits.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from evalsite.celery import send_task_on_commit
from evalsite.studies.lifecycle import transition
from evalsite.studies.models import GenerationJob, LanguageModel, Prompt, Response, Study

log = logging.getLogger(__name__)

RUN_TASK = "workers.tasks.run_generation_job"
JUDGE_TASK = "workers.tasks.judge_study"
QUEUES = {"vllm": "gpu", "hf": "gpu", "openai": "io", "imported": "default"}
ACTIVE = (GenerationJob.Status.QUEUED, GenerationJob.Status.RUNNING)
FINISHED = (GenerationJob.Status.DONE, GenerationJob.Status.FAILED, GenerationJob.Status.CANCELLED)


class GenerationSetupError(ValueError):
    """The study cannot be generated (or cancelled) as it stands; the message says what to fix."""


def queue_for(model: LanguageModel) -> str:
    """The Celery queue a model's jobs go to: GPU engines, I/O-bound endpoints, or the default queue."""
    return QUEUES.get(model.backend, "default")


def stale_after() -> timedelta:
    """An active job untouched this long (no heartbeat, no progress) has lost its message or its
    worker (``EVALSITE_JOB_STALE_MINUTES``)."""
    return timedelta(minutes=settings.GENERATION_JOB_STALE_MINUTES)


def missing_items(model: LanguageModel) -> list[tuple[Prompt, int]]:
    """(prompt, sample index) pairs with no successful response yet; failed ones are retried.

    Earlier turns of a conversation come first (ordered by ``turn``): a later turn is answered
    after, and conditioned on, the model's own answer to the turn before."""
    prompts = list(Prompt.objects.filter(study_id=model.study_id).order_by("turn", "position", "id"))
    have = set(Response.objects.filter(model=model, error="").values_list("prompt_id", "sample_index"))
    return [(p, s) for s in range(model.samples_per_prompt) for p in prompts if (p.pk, s) not in have]


def open_jobs(study: Study, models: list[LanguageModel]) -> tuple[list[GenerationJob], list[GenerationJob]]:
    """One job per model, reusing one still queued or running; returns (all jobs, jobs to send).

    A new job with nothing missing is done at once. An active job with no progress for
    :func:`stale_after` is sent again (its message was lost: a broker without redelivery, a purged
    queue); that is safe because a run claims its job, so a run still alive is never doubled.
    Call inside a transaction.
    """
    jobs, to_send = [], []
    for model in models:
        active = GenerationJob.objects.filter(model=model, status__in=ACTIVE).order_by("-created_at").first()
        if active is not None:
            jobs.append(active)
            if active.updated_at < timezone.now() - stale_after():
                to_send.append(active)
            continue
        total = len(missing_items(model))
        job = GenerationJob.objects.create(study=study, model=model, total=total)
        if total == 0:
            finish(job)
        else:
            to_send.append(job)
        jobs.append(job)
    return jobs, to_send


def enqueue(job: GenerationJob, queue: str | None = None) -> None:
    """Record a new task id on the job and send its task (by name) when the transaction commits."""
    task_id = str(uuid.uuid4())
    GenerationJob.objects.filter(pk=job.pk).update(celery_task_id=task_id)
    job.celery_task_id = task_id
    send_task_on_commit(RUN_TASK, [job.pk], queue=queue or queue_for(job.model), task_id=task_id)


def enqueue_judge(study: Study, judge: LanguageModel) -> None:
    """Send the judge task for one judge model of a study to that model's queue."""
    send_task_on_commit(JUDGE_TASK, [study.pk, judge.pk], queue=queue_for(judge))


def set_status(job: GenerationJob, status: str, **fields: Any) -> bool:
    """Move an active job to ``status`` with ``fields``; False (and nothing written) when it is no
    longer active, e.g. cancelled while its run was still busy: a cancel always wins."""
    fields = {"status": status, **fields, "updated_at": timezone.now()}
    changed = GenerationJob.objects.filter(pk=job.pk, status__in=ACTIVE).update(**fields) == 1
    if changed:
        for name, value in fields.items():
            setattr(job, name, value)
    else:
        job.refresh_from_db()
    return changed


def finish(job: GenerationJob) -> bool:
    return set_status(job, GenerationJob.Status.DONE, finished_at=timezone.now(), eta_seconds=0.0)


def fail(job: GenerationJob, message: str) -> bool:
    log.warning("Generation job %s failed: %s", job.pk, message)
    return set_status(
        job, GenerationJob.Status.FAILED, last_error=message, finished_at=timezone.now(), eta_seconds=None
    )


def is_cancelled(job_id: int) -> bool:
    return GenerationJob.objects.filter(pk=job_id, status=GenerationJob.Status.CANCELLED).exists()


def all_answers_present(study: Study) -> bool:
    return not any(missing_items(m) for m in LanguageModel.real.filter(study=study))


def finish_study_if_complete(study: Study) -> bool:
    """Move a generating study to ``ready`` once no job is active and every answer exists.

    Runs under the study's row lock, so two jobs finishing at once cannot both miss (or both make)
    the move.
    """
    with transaction.atomic():
        locked = Study.objects.select_for_update().get(pk=study.pk)
        if locked.status != Study.Status.GENERATING:
            return False
        if GenerationJob.objects.filter(study=locked, status__in=ACTIVE).exists():
            return False
        if not all_answers_present(locked):
            return False
        transition(locked, Study.Status.READY)
    study.status = Study.Status.READY
    return True
