"""What a person can trigger about generation: start it, cancel it.

Each action is atomic and checks its rules itself; the admin, the API and ``manage.py generate`` call
these and nothing else. Tasks are sent by name after the transaction commits.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from evalsite.studies.lifecycle import transition
from evalsite.studies.models import GenerationJob, LanguageModel, Study

from . import jobs
from .jobs import GenerationSetupError

__all__ = ["GenerationSetupError", "cancel_generation", "start_generation"]


def start_generation(
    study: Study, models: list[LanguageModel] | None = None, *, enqueue: bool = True, queue: str | None = None
) -> list[GenerationJob]:
    """Create a GenerationJob per model (reusing one still queued or running) and send its task.

    Moves the study to ``generating`` (and on to ``ready`` at once when every answer exists
    already). ``models`` defaults to every generated model of the study (not judges or attention
    decoys). ``queue`` overrides the per-backend queue (tests, dedicated workers); with
    ``enqueue=False`` the caller runs the jobs itself (``manage.py generate --sync``).

    Raises :class:`GenerationSetupError` (no models, no prompts, a live or closed study) or
    :class:`~evalsite.studies.lifecycle.TransitionError`; nothing is written then.
    """
    models = list(models) if models is not None else list(LanguageModel.real.filter(study=study))
    if not models:
        raise GenerationSetupError(f"Study {study.slug!r} has no models: add at least one model first.")
    if not study.prompts.exists():
        raise GenerationSetupError(f"Study {study.slug!r} has no prompts: import prompts first.")
    with transaction.atomic():
        locked = Study.objects.select_for_update().get(pk=study.pk)
        if locked.status != Study.Status.GENERATING:
            transition(locked, Study.Status.GENERATING)  # raises a TransitionError saying why not
        study.status = locked.status
        all_jobs, to_send = jobs.open_jobs(locked, models)
        if enqueue:
            for job in to_send:
                jobs.enqueue(job, queue)
    jobs.finish_study_if_complete(study)
    return all_jobs


def cancel_generation(study: Study) -> list[GenerationJob]:
    """Cancel the study's queued and running jobs; returns them (now ``cancelled``).

    A queued job's task finds it cancelled and does nothing; a running job's worker stops before
    its next batch (:mod:`.runner`), keeping every answer it stored. A study still ``generating``
    goes back to ``ready`` when every answer exists after all, else to ``draft``. Raises
    :class:`GenerationSetupError` when nothing is being generated.
    """
    with transaction.atomic():
        locked = Study.objects.select_for_update().get(pk=study.pk)
        active = list(
            GenerationJob.objects.select_for_update()
            .filter(study=locked, status__in=jobs.ACTIVE)
            .order_by("created_at")
        )
        if not active and locked.status != Study.Status.GENERATING:
            raise GenerationSetupError(f"Study {study.slug!r} is not generating: there is nothing to cancel.")
        now = timezone.now()
        GenerationJob.objects.filter(pk__in=[j.pk for j in active]).update(
            status=GenerationJob.Status.CANCELLED, finished_at=now, eta_seconds=None, updated_at=now
        )
        for job in active:
            job.status, job.finished_at, job.eta_seconds, job.updated_at = (
                GenerationJob.Status.CANCELLED, now, None, now,
            )
        if locked.status == Study.Status.GENERATING:
            target = Study.Status.READY if jobs.all_answers_present(locked) else Study.Status.DRAFT
            transition(locked, target)
        study.status = locked.status
    return active
