"""Run one GenerationJob: claim it, generate its missing answers in batches, write them per batch.

Called by the Celery task ``workers.tasks.run_generation_job`` and by ``manage.py generate --sync``.
Between two batches the run re-reads the job: once it is cancelled (:func:`.actions.cancel_generation`)
the run stops, so a cancel is honoured within one batch, and what it stored is kept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from django.utils import timezone

from evalsite.studies import conversations
from evalsite.studies.conversations import is_conversation
from evalsite.studies.models import GenerationJob, LanguageModel, Prompt
from workers.backends.base import (
    ChatPrompt,
    DecodingParams,
    GenerationBackend,
    GenerationError,
    GenerationResult,
    TransientGenerationError,
    get_backend,
)

from . import jobs
from .answers import AnswerCountMismatch, record_fingerprint, save_answers
from .claims import claim, heartbeat

log = logging.getLogger(__name__)

ProgressCallback = Callable[[GenerationJob], None]


class _Cancelled(Exception):
    pass


def run_job(job_id: int, progress: ProgressCallback | None = None, *, final_attempt: bool = True) -> GenerationJob:
    """Generate every missing answer of one job, in batches, updating the job after each batch.

    Whole-job failures (unknown model, out of memory, endpoint down) mark the job failed with the
    reason and keep what was already written. A transient error re-raises when ``final_attempt`` is
    false so the Celery task can retry later.
    """
    job = GenerationJob.objects.select_related("model", "study").get(pk=job_id)
    if job.status in (GenerationJob.Status.DONE, GenerationJob.Status.CANCELLED):
        return job  # a redelivered task for a finished or cancelled job: nothing to do
    if not claim(job.pk):
        # Another run holds the job and is alive (or it finished meanwhile): a duplicate delivery.
        log.info("Generation job %s is held by another live run; this delivery does nothing", job.pk)
        job.refresh_from_db()
        return job
    with heartbeat(job.pk):
        return _run_claimed(job, progress, final_attempt)


def _run_claimed(job: GenerationJob, progress: ProgressCallback | None, final_attempt: bool) -> GenerationJob:
    model = job.model
    todo = jobs.missing_items(model)
    started = job.started_at or timezone.now()
    if not jobs.set_status(
        job,
        GenerationJob.Status.RUNNING,
        started_at=started,
        done=max(0, job.total - len(todo)),
        failed=0,
        last_error="",
    ):
        return job  # cancelled between the claim and now
    _notify(progress, job)
    if todo:
        try:
            backend = get_backend(model)
            record_fingerprint(model, backend.fingerprint())
            _run_batches(job, model, backend, todo, progress)
        except TransientGenerationError as exc:
            if not final_attempt:
                if jobs.set_status(job, GenerationJob.Status.QUEUED, last_error=f"Will retry: {exc}"):
                    raise
                return job  # cancelled meanwhile: no retry
            return _fail(job, str(exc), progress)
        except (GenerationError, AnswerCountMismatch) as exc:
            return _fail(job, str(exc), progress)
        except _Cancelled:
            job.refresh_from_db()
            log.info("Generation job %s (%s) cancelled after %d answers", job.pk, model.alias, job.done)
            _notify(progress, job)
            return job
        except Exception as exc:  # an engine bug must not leave the job "running" forever
            log.exception("Generation job %s (%s) crashed", job.pk, model.alias)
            return _fail(job, f"{type(exc).__name__}: {exc}", progress)
    if job.failed:
        return _fail(job, f"{job.failed} of {job.total} answers failed; last error: {job.last_error}", progress)
    jobs.finish(job)
    _notify(progress, job)
    jobs.finish_study_if_complete(job.study)
    return job


def _run_batches(
    job: GenerationJob,
    model: LanguageModel,
    backend: GenerationBackend,
    todo: list[tuple[Prompt, int]],
    progress: ProgressCallback | None,
) -> None:
    params = DecodingParams.from_model(model)
    started, tokens, generated = time.perf_counter(), 0, 0
    for batch in batches(todo, backend.default_batch_size()):
        if jobs.is_cancelled(job.pk):
            raise _Cancelled
        sample = batch[0][1]
        # One seed per sample index: samples differ from each other, a rerun repeats them.
        batch_params = params.with_seed(params.seed + sample)
        results = _generate(backend, model, batch, batch_params)
        save_answers(model, backend, batch, results, batch_params)
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
        # Progress only: the status column is left alone, so a cancel written meanwhile stays.
        job.save(update_fields=["done", "failed", "last_error", "tokens_per_second", "eta_seconds", "updated_at"])
        _notify(progress, job)
    if jobs.is_cancelled(job.pk):
        raise _Cancelled  # cancelled during the last batch: the job ends cancelled, its answers kept


def _generate(
    backend: GenerationBackend, model: LanguageModel, batch: list[tuple[Prompt, int]], params: DecodingParams
) -> list[GenerationResult]:
    """Ask the backend for one batch. A later turn of a conversation is asked with the model's own
    earlier answers (read now, after the earlier turns' batches were saved); one whose earlier
    answer is missing or failed fails alone, and is retried with the next generation."""
    results: list[GenerationResult | None] = [None] * len(batch)
    asked, index = [], []
    for i, (prompt, sample) in enumerate(batch):
        try:
            history = conversations.history_for(prompt, model.pk, sample) if is_conversation(prompt) else []
        except conversations.MissingEarlierAnswer as exc:
            results[i] = GenerationResult(error=str(exc))
            continue
        turns = tuple((m["role"], m["content"]) for m in history)
        asked.append(ChatPrompt(prompt.text, model.system_prompt, prompt.source_id, sample, turns))
        index.append(i)
    if asked:
        answers = backend.generate(asked, params)
        if len(answers) != len(asked):
            message = f"Backend {backend.name} returned {len(answers)} answers for {len(asked)} prompts."
            raise AnswerCountMismatch(message)
        for i, answer in zip(index, answers, strict=True):
            results[i] = answer
    return [r for r in results if r is not None]


def batches(todo: list[tuple[Prompt, int]], size: int) -> Iterator[list[tuple[Prompt, int]]]:
    """Chunks of at most ``size`` that never mix sample indices (one seed per call) nor turns (a
    later turn waits for the batch that answers the turn before)."""
    size = max(1, size)
    batch: list[tuple[Prompt, int]] = []
    for item in todo:
        first = batch[0] if batch else None
        if batch and (len(batch) >= size or item[1] != first[1] or item[0].turn != first[0].turn):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def _fail(job: GenerationJob, message: str, progress: ProgressCallback | None = None) -> GenerationJob:
    jobs.fail(job, message)
    _notify(progress, job)
    return job


def _notify(progress: ProgressCallback | None, job: GenerationJob) -> None:
    if progress is not None:
        progress(job)
