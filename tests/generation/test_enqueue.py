"""Jobs are sent to Celery by task name, once the transaction that made them commits."""

from __future__ import annotations

import json

import pytest
from django.db import transaction

from evalsite.celery import app
from evalsite.generation.actions import start_generation
from evalsite.studies.models import GenerationJob, Study

from .conftest import PROMPTS

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):
    calls = []

    class Result:
        def __init__(self, task_id):
            self.id = task_id

    def send_task(name, args=None, queue=None, task_id=None, **_):
        calls.append({"name": name, "args": args, "queue": queue, "task_id": task_id})
        return Result(task_id)

    monkeypatch.setattr(app, "send_task", send_task)
    return calls


@pytest.fixture
def imported_study(make_gen_study, tmp_path):
    answers = tmp_path / "answers.jsonl"
    answers.write_text("\n".join(json.dumps({"id": f"p{i}", "response": f"a{i}"}) for i in range(len(PROMPTS))))
    return make_gen_study([{"alias": "t", "role": "teacher", "backend": "imported", "model_path": str(answers)}])


def test_sent_by_name_after_commit(imported_study, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        (job,) = start_generation(imported_study)
        assert sent == []  # nothing leaves before the commit
    assert len(callbacks) == 1
    job.refresh_from_db()
    assert sent == [
        {
            "name": "workers.tasks.run_generation_job",
            "args": [job.pk],
            "queue": "default",
            "task_id": job.celery_task_id,
        }
    ]


def test_a_rolled_back_start_sends_nothing(imported_study, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError), transaction.atomic():
            start_generation(imported_study)
            raise RuntimeError("the caller's transaction fails after the start")
    assert sent == [] and not GenerationJob.objects.exists()
    assert Study.objects.get(pk=imported_study.pk).status == Study.Status.DRAFT


def test_eager_mode_runs_the_task_here(imported_study, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setitem(app.conf, "task_always_eager", True)
    with django_capture_on_commit_callbacks(execute=True):
        (job,) = start_generation(imported_study)
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.DONE and job.done == len(PROMPTS)
    assert Study.objects.get(pk=imported_study.pk).status == Study.Status.READY
