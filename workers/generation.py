"""Run a backend over a study: one GenerationJob per model, missing answers only, written per batch.

A run claims its job first (a conditional UPDATE) and keeps a heartbeat on it, so a second delivery of
the same job (a stale job enqueued again, a broker redelivering while the first run still works) does
nothing, while a task redelivered after its worker died takes over once the heartbeat stops. Writes
are keyed on (prompt, model, sample index): missing answers are inserted, failed ones replaced, and a
stored good answer (which comparisons and ratings may already point to) is never overwritten.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from evalsite.studies.lifecycle import transition
from evalsite.studies.models import GenerationJob, LanguageModel, Prompt, Response, Study

from .backends.base import (
    ChatPrompt,
    DecodingParams,
    GenerationBackend,
    GenerationError,
    GenerationResult,
    TransientGenerationError,
    get_backend,
)

log = logging.getLogger(__name__)

QUEUES = {"vllm": "gpu", "hf": "gpu", "openai": "io", "imported": "default"}
ACTIVE = (GenerationJob.Status.QUEUED, GenerationJob.Status.RUNNING)
UPDATE_FIELDS = [
    "text",
    "prompt_tokens",
    "completion_tokens",
    "finish_reason",
    "latency_ms",
    "generation_params",
    "backend",
    "fingerprint",
    "error",
]
ProgressCallback = Callable[[GenerationJob], None]
# An active job untouched this long (no heartbeat, no progress) has lost its message or its worker.
STALE_AFTER = timedelta(minutes=int(os.environ.get("EVALSITE_JOB_STALE_MINUTES", "30")))
# While a run holds its job, a thread touches the job's updated_at this often (seconds), also during a
# long batch or model load; a running job silent for HEARTBEAT_TIMEOUT has lost its run, which another
# delivery of the job may then take over.
HEARTBEAT_INTERVAL = float(os.environ.get("EVALSITE_JOB_HEARTBEAT_SECONDS", "10"))
HEARTBEAT_TIMEOUT = timedelta(seconds=6 * HEARTBEAT_INTERVAL)


class GenerationSetupError(ValueError):
    """The study cannot be generated as it stands; the message says what to fix."""


def queue_for(model: LanguageModel) -> str:
    """The Celery queue a model's jobs go to: GPU engines, I/O-bound endpoints, or the default queue."""
    return QUEUES.get(model.backend, "default")


def missing_items(model: LanguageModel) -> list[tuple[Prompt, int]]:
    """(prompt, sample index) pairs with no successful response yet; failed ones are retried."""
    prompts = list(Prompt.objects.filter(study_id=model.study_id).order_by("position", "id"))
    have = set(Response.objects.filter(model=model, error="").values_list("prompt_id", "sample_index"))
    return [(p, s) for s in range(model.samples_per_prompt) for p in prompts if (p.pk, s) not in have]


def start_generation(
    study: Study, models: list[LanguageModel] | None = None, *, enqueue: bool = True, queue: str | None = None
) -> list[GenerationJob]:
    """Create a GenerationJob per model (reusing one still queued or running) and enqueue its task.

    An active job with no progress for ``STALE_AFTER`` is enqueued again (its message was lost).

    Moves the study to ``generating``. ``queue`` overrides the per-backend queue (tests, dedicated
    workers); with ``enqueue=False`` the caller runs the jobs itself (``manage.py generate --sync``).
    """
    models = list(models) if models is not None else list(LanguageModel.real.filter(study=study))
    if not models:
        raise GenerationSetupError(f"Study {study.slug!r} has no models: add at least one model first.")
    if not study.prompts.exists():
        raise GenerationSetupError(f"Study {study.slug!r} has no prompts: import prompts first.")
    jobs, new_jobs = [], []
    with transaction.atomic():
        if study.status != Study.Status.GENERATING:
            transition(study, Study.Status.GENERATING)  # raises a TransitionError saying why not
        for model in models:
            active = GenerationJob.objects.filter(model=model, status__in=ACTIVE).order_by("-created_at").first()
            if active is not None:
                jobs.append(active)
                if active.updated_at < timezone.now() - STALE_AFTER:
                    # No progress for a long time: its message was lost (a broker without
                    # redelivery, a purged queue). Sending it again is safe: run_job claims the
                    # job, so a run that is still alive is never doubled.
                    new_jobs.append(active)
                continue
            total = len(missing_items(model))
            job = GenerationJob.objects.create(study=study, model=model, total=total)
            if total == 0:
                _finish(job)
            else:
                new_jobs.append(job)
            jobs.append(job)
        if enqueue:
            transaction.on_commit(lambda: [_enqueue(job, queue) for job in new_jobs])
    finish_study_if_complete(study)
    return jobs


def _enqueue(job: GenerationJob, queue: str | None) -> None:
    from .tasks import run_generation_job

    result = run_generation_job.apply_async(args=[job.pk], queue=queue or queue_for(job.model))
    GenerationJob.objects.filter(pk=job.pk).update(celery_task_id=result.id)


def run_job(job_id: int, progress: ProgressCallback | None = None, *, final_attempt: bool = True) -> GenerationJob:
    """Generate every missing answer of one job, in batches, updating the job after each batch.

    Whole-job failures (unknown model, out of memory, endpoint down) mark the job failed with the
    reason and keep what was already written. A transient error re-raises when ``final_attempt`` is
    false so the Celery task can retry later.
    """
    job = GenerationJob.objects.select_related("model", "study").get(pk=job_id)
    if job.status in (GenerationJob.Status.DONE, GenerationJob.Status.CANCELLED):
        return job  # a redelivered task for a finished job: nothing to do
    if not _claim(job.pk):
        # Another run holds the job and is alive (or it finished meanwhile): a duplicate delivery.
        log.info("Generation job %s is held by another live run; this delivery does nothing", job.pk)
        job.refresh_from_db()
        return job
    with _heartbeat(job.pk):
        return _run_claimed(job, progress, final_attempt)


def _run_claimed(job: GenerationJob, progress: ProgressCallback | None, final_attempt: bool) -> GenerationJob:
    model = job.model
    todo = missing_items(model)
    job.status = GenerationJob.Status.RUNNING
    job.started_at = job.started_at or timezone.now()
    job.done, job.failed, job.last_error = max(0, job.total - len(todo)), 0, ""
    job.save(update_fields=["status", "started_at", "done", "failed", "last_error", "updated_at"])
    _notify(progress, job)
    if todo:
        try:
            backend = get_backend(model)
            _record_fingerprint(model, backend)
            _run_batches(job, model, backend, todo, progress)
        except TransientGenerationError as exc:
            if not final_attempt:
                _update(job, status=GenerationJob.Status.QUEUED, last_error=f"Will retry: {exc}")
                raise
            return _fail(job, str(exc), progress)
        except GenerationError as exc:
            return _fail(job, str(exc), progress)
        except _Cancelled:
            return job
        except Exception as exc:  # an engine bug must not leave the job "running" forever
            log.exception("Generation job %s (%s) crashed", job.pk, model.alias)
            return _fail(job, f"{type(exc).__name__}: {exc}", progress)
    if job.failed:
        return _fail(job, f"{job.failed} of {job.total} answers failed; last error: {job.last_error}", progress)
    _finish(job)
    _notify(progress, job)
    finish_study_if_complete(job.study)
    return job


def _try_claim(job_id: int) -> bool:
    """Atomically take a queued job, or a running one whose run has stopped its heartbeat."""
    now = timezone.now()
    claimable = Q(status=GenerationJob.Status.QUEUED) | Q(
        status=GenerationJob.Status.RUNNING, updated_at__lt=now - HEARTBEAT_TIMEOUT
    )
    # One UPDATE ... WHERE: of two runs racing for the job, exactly one sees a row updated.
    return (
        GenerationJob.objects.filter(claimable, pk=job_id).update(status=GenerationJob.Status.RUNNING, updated_at=now)
        == 1
    )


def _claim(job_id: int) -> bool:
    """Claim the job for this run; False when another run that is alive holds it, or it finished.

    A job "running" with a fresh heartbeat is either held by a live run (its heartbeat will move
    within HEARTBEAT_INTERVAL) or by a run whose worker just died (a redelivery after SIGKILL: its
    heartbeat never moves again). Watch it: it moves, leave the job to that run; it goes stale
    (at most HEARTBEAT_TIMEOUT), take the job over.
    """
    seen = None
    while True:
        if _try_claim(job_id):
            return True
        row = GenerationJob.objects.filter(pk=job_id).values_list("status", "updated_at").first()
        if row is None:
            return False
        status, updated_at = row
        if status == GenerationJob.Status.QUEUED:
            continue  # put back in the queue by its holder (a retry) just now: try again
        if status != GenerationJob.Status.RUNNING:
            return False  # done, failed or cancelled meanwhile
        if seen is not None and updated_at != seen:
            return False  # its heartbeat moved: the holder is alive
        seen = updated_at
        time.sleep(max(0.01, min(HEARTBEAT_INTERVAL / 2, 5.0)))


@contextmanager
def _heartbeat(job_id: int) -> Iterator[None]:
    """Touch the job's updated_at every HEARTBEAT_INTERVAL from a thread while this run holds it."""
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(HEARTBEAT_INTERVAL):
                try:
                    # Only while running: never revives a job that finished, failed or was cancelled.
                    GenerationJob.objects.filter(pk=job_id, status=GenerationJob.Status.RUNNING).update(
                        updated_at=timezone.now()
                    )
                except DatabaseError:
                    log.warning("Heartbeat of generation job %s failed", job_id, exc_info=True)
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"generation-job-{job_id}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class _Cancelled(Exception):
    pass


def _run_batches(
    job: GenerationJob,
    model: LanguageModel,
    backend: GenerationBackend,
    todo: list[tuple[Prompt, int]],
    progress: ProgressCallback | None,
) -> None:
    params = DecodingParams.from_model(model)
    started, tokens, generated = time.perf_counter(), 0, 0
    for batch in _batches(todo, backend.default_batch_size()):
        if GenerationJob.objects.filter(pk=job.pk, status=GenerationJob.Status.CANCELLED).exists():
            raise _Cancelled
        sample = batch[0][1]
        # One seed per sample index: samples differ from each other, a rerun repeats them.
        batch_params = params.with_seed(params.seed + sample)
        prompts = [ChatPrompt(p.text, model.system_prompt, p.source_id, s) for p, s in batch]
        results = backend.generate(prompts, batch_params)
        _upsert(model, backend, batch, results, batch_params)
        errors = [r.error for r in results if r.error]
        tokens += sum(r.completion_tokens or 0 for r in results)
        generated += len(batch)
        elapsed = time.perf_counter() - started
        job.done += len(batch) - len(errors)
        job.failed += len(errors)
        if errors:
            job.last_error = errors[-1]
        job.tokens_per_second = tokens / elapsed if elapsed > 0 else None
        remaining = job.total - job.done - job.failed
        job.eta_seconds = max(0.0, remaining * elapsed / generated) if generated else None
        job.save(update_fields=["done", "failed", "last_error", "tokens_per_second", "eta_seconds", "updated_at"])
        _notify(progress, job)


def _batches(todo: list[tuple[Prompt, int]], size: int) -> Iterator[list[tuple[Prompt, int]]]:
    """Chunks of at most ``size`` that never mix sample indices (one seed per call)."""
    size = max(1, size)
    batch: list[tuple[Prompt, int]] = []
    for item in todo:
        if batch and (len(batch) >= size or item[1] != batch[0][1]):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def _upsert(
    model: LanguageModel,
    backend: GenerationBackend,
    batch: list[tuple[Prompt, int]],
    results: list[GenerationResult],
    params: DecodingParams,
) -> None:
    if len(results) != len(batch):
        raise GenerationError(f"Backend {backend.name} returned {len(results)} answers for {len(batch)} prompts.")
    fingerprint = model.fingerprint
    produced_by = {
        **backend.describe(),
        "model_path": model.model_path,
        "fingerprint": fingerprint,
        "decoding": params.as_dict(),
        "system_prompt": model.system_prompt,
    }
    rows = [
        Response(
            prompt=prompt,
            model=model,
            sample_index=sample,
            # PostgreSQL text cannot hold NUL; byte-level models do emit it now and then.
            text=r.text.replace("\x00", ""),
            prompt_tokens=r.prompt_tokens,
            completion_tokens=r.completion_tokens,
            finish_reason=r.finish_reason[:32],
            latency_ms=r.latency_ms,
            generation_params=produced_by,
            backend=backend.name,
            fingerprint=fingerprint,
            error=r.error,
        )
        for (prompt, sample), r in zip(batch, results, strict=True)
    ]
    with transaction.atomic():  # a savepoint: a failed write must not poison the caller's transaction
        # Missing answers are inserted; a stored one is replaced only when it failed (error set). A
        # good stored answer stays as it is, whatever this run produced: comparisons and ratings may
        # already point to it, and an error result must never wipe it out.
        failed_before = set(
            Response.objects.filter(
                model=model, prompt__in=[p for p, _ in batch], sample_index__in={s for _, s in batch}
            )
            .exclude(error="")
            .values_list("prompt_id", "sample_index")
        )
        Response.objects.bulk_create(rows, ignore_conflicts=True)
        for row in rows:
            if (row.prompt_id, row.sample_index) in failed_before:
                Response.objects.filter(prompt_id=row.prompt_id, model=model, sample_index=row.sample_index).exclude(
                    error=""
                ).update(**{name: getattr(row, name) for name in UPDATE_FIELDS})


def _record_fingerprint(model: LanguageModel, backend: GenerationBackend) -> None:
    fingerprint = backend.fingerprint()
    if model.fingerprint != fingerprint:
        model.fingerprint = fingerprint
        LanguageModel.objects.filter(pk=model.pk).update(fingerprint=fingerprint)


def _update(job: GenerationJob, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(job, name, value)
    job.save(update_fields=[*fields, "updated_at"])


def _finish(job: GenerationJob) -> None:
    _update(job, status=GenerationJob.Status.DONE, finished_at=timezone.now(), eta_seconds=0.0)


def _fail(job: GenerationJob, message: str, progress: ProgressCallback | None = None) -> GenerationJob:
    log.warning("Generation job %s failed: %s", job.pk, message)
    _update(
        job,
        status=GenerationJob.Status.FAILED,
        last_error=message,
        finished_at=timezone.now(),
        eta_seconds=None,
    )
    _notify(progress, job)
    return job


def _notify(progress: ProgressCallback | None, job: GenerationJob) -> None:
    if progress is not None:
        progress(job)


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
        if any(missing_items(m) for m in LanguageModel.real.filter(study=locked)):
            return False
        transition(locked, Study.Status.READY)
    study.status = Study.Status.READY
    return True
