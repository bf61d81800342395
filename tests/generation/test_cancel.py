"""Cancel generation: queued jobs never run, a running job stops within one batch and keeps its answers."""

from __future__ import annotations

import pytest
from django.urls import reverse

from evalsite.generation import runner
from evalsite.generation.actions import GenerationSetupError, cancel_generation, start_generation
from evalsite.generation.runner import run_job
from evalsite.studies.models import GenerationJob, Response, Study
from workers.backends.base import GenerationResult

from .conftest import PROMPTS

pytestmark = pytest.mark.django_db


class BatchBackend:
    """Answers every prompt; calls ``during_batch(n)`` while batch ``n`` (from 1) is being generated."""

    name = "stub"

    def __init__(self, batch_size: int, during_batch=None) -> None:
        self.batch_size, self.during_batch, self.calls = batch_size, during_batch, 0

    def default_batch_size(self) -> int:
        return self.batch_size

    def fingerprint(self) -> str:
        return "stub"

    def describe(self) -> dict:
        return {"backend": self.name}

    def generate(self, prompts, params):
        self.calls += 1
        if self.during_batch is not None:
            self.during_batch(self.calls)
        return [GenerationResult(text=f"answer to {p.key}", completion_tokens=3, finish_reason="stop") for p in prompts]


def stub_study(make_gen_study, slug="cancel"):
    return make_gen_study([{"alias": "imitation", "backend": "hf", "model_path": "/nowhere"}], slug=slug)


def test_cancel_during_a_batch_stops_after_that_batch(make_gen_study, monkeypatch):
    study = stub_study(make_gen_study)
    (job,) = start_generation(study, enqueue=False)

    def cancel_in_first_batch(n):
        if n == 1:  # the researcher presses Cancel while the worker is busy with its first batch
            cancelled = cancel_generation(Study.objects.get(pk=study.pk))
            assert [j.pk for j in cancelled] == [job.pk]

    backend = BatchBackend(batch_size=2, during_batch=cancel_in_first_batch)
    monkeypatch.setattr(runner, "get_backend", lambda model: backend)
    done = run_job(job.pk)
    assert backend.calls == 1  # the batch in flight finished; no other batch started
    assert done.status == GenerationJob.Status.CANCELLED
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.CANCELLED and job.finished_at is not None
    # What the run stored is kept, and counted.
    assert Response.objects.filter(model__study=study, error="").count() == 2 == job.done
    study.refresh_from_db()
    assert study.status == Study.Status.DRAFT  # answers are missing: back to draft, not ready


def test_cancel_during_the_last_batch_still_ends_cancelled(make_gen_study, monkeypatch):
    study = stub_study(make_gen_study)
    (job,) = start_generation(study, enqueue=False)
    last = len(PROMPTS) // 3

    def cancel_in_last_batch(n):
        if n == last:
            cancel_generation(Study.objects.get(pk=study.pk))

    monkeypatch.setattr(runner, "get_backend", lambda model: BatchBackend(3, cancel_in_last_batch))
    assert run_job(job.pk).status == GenerationJob.Status.CANCELLED
    assert Response.objects.filter(model__study=study).count() == len(PROMPTS)
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.CANCELLED and job.done == len(PROMPTS)


def test_a_cancelled_queued_job_never_runs(make_gen_study, monkeypatch):
    study = stub_study(make_gen_study)
    (job,) = start_generation(study, enqueue=False)
    assert study.status == Study.Status.GENERATING
    assert cancel_generation(study)[0].status == GenerationJob.Status.CANCELLED
    assert study.status == Study.Status.DRAFT
    backend = BatchBackend(2)
    monkeypatch.setattr(runner, "get_backend", lambda model: backend)
    assert run_job(job.pk).status == GenerationJob.Status.CANCELLED  # the task arrives later: nothing to do
    assert backend.calls == 0 and not Response.objects.exists()
    # Generating again starts a new job for what is still missing.
    (again,) = start_generation(study, enqueue=False)
    assert again.pk != job.pk and again.status == GenerationJob.Status.QUEUED and again.total == len(PROMPTS)


def test_cancel_with_every_answer_present_leaves_the_study_ready(make_gen_study, monkeypatch):
    study = stub_study(make_gen_study)
    (job,) = start_generation(study, enqueue=False)
    model = study.models.get()
    for prompt in study.prompts.all():
        Response.objects.create(prompt=prompt, model=model, text="imported meanwhile")
    cancel_generation(study)
    study.refresh_from_db()
    assert study.status == Study.Status.READY


def test_nothing_to_cancel_is_an_error(make_gen_study):
    study = stub_study(make_gen_study)
    with pytest.raises(GenerationSetupError, match="is not generating"):
        cancel_generation(study)
    study.refresh_from_db()
    assert study.status == Study.Status.DRAFT


def test_a_failure_after_the_cancel_does_not_turn_the_job_failed(make_gen_study, monkeypatch):
    study = stub_study(make_gen_study)
    (job,) = start_generation(study, enqueue=False)

    class Crashing(BatchBackend):
        def generate(self, prompts, params):
            cancel_generation(Study.objects.get(pk=study.pk))
            raise RuntimeError("engine died while cancelling")

    monkeypatch.setattr(runner, "get_backend", lambda model: Crashing(2))
    assert run_job(job.pk).status == GenerationJob.Status.CANCELLED


def test_admin_action_cancels(make_gen_study, client, staff_user):
    study = stub_study(make_gen_study)
    (job,) = start_generation(study, enqueue=False)
    idle = stub_study(make_gen_study, slug="idle")
    client.force_login(staff_user)
    response = client.post(
        reverse("admin:studies_study_changelist"),
        {"action": "cancel_generation_action", "_selected_action": [study.pk, idle.pk]},
        follow=True,
    )
    messages = [str(m) for m in response.context["messages"]]
    assert any(m.startswith("cancel: 1 generation job(s) cancelled") and m.endswith("The study is draft.")
               for m in messages), messages
    assert "Study 'idle' is not generating: there is nothing to cancel." in messages
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.CANCELLED
