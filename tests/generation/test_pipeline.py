"""run_job / start_generation against the database: upserts, progress, failures, study status."""

import json
import uuid

import pytest
from django.core.management import call_command

from evalsite.generation.actions import GenerationSetupError, start_generation
from evalsite.generation.jobs import missing_items, queue_for
from evalsite.generation.runner import run_job
from evalsite.studies.lifecycle import TransitionError
from evalsite.studies.models import GenerationJob, Response, Study

from .conftest import PROMPTS

pytestmark = pytest.mark.django_db


def hf_model(path, alias="imitation", **fields):
    return {"alias": alias, "role": "imitation", "backend": "hf", "model_path": str(path), **fields}


def run_all(study, **kwargs):
    jobs = start_generation(study, enqueue=False, **kwargs)
    return [run_job(job.pk) for job in jobs]


def test_generates_every_answer_and_marks_study_ready(make_gen_study, tiny_model_dir):
    study = make_gen_study([hf_model(tiny_model_dir, engine_options={"batch_size": 4}, samples_per_prompt=2)])
    seen = []
    jobs = start_generation(study, enqueue=False)
    assert study.status == Study.Status.GENERATING
    assert [j.total for j in jobs] == [len(PROMPTS) * 2]
    job = run_job(jobs[0].pk, progress=lambda j: seen.append((j.done, j.status)))
    assert job.status == GenerationJob.Status.DONE and job.done == job.total and job.failed == 0
    assert job.tokens_per_second > 0 and job.finished_at is not None
    # Progress was reported batch by batch (4 + 2 per sample index), not only at the end.
    assert [d for d, _ in seen if _ == "running"] == [0, 4, 6, 10, 12]
    rows = Response.objects.filter(model=job.model)
    assert rows.count() == len(PROMPTS) * 2 and not rows.exclude(error="").exists()
    r = rows.get(prompt__source_id="p0", sample_index=0)
    assert r.backend == "hf" and r.fingerprint == job.model.fingerprint != ""
    assert r.generation_params["decoding"]["seed"] == 0 and r.generation_params["version"]
    assert r.completion_tokens == 8 and r.finish_reason == "length"
    study.refresh_from_db()
    assert study.status == Study.Status.READY


def test_rerun_generates_nothing_new(make_gen_study, tiny_model_dir):
    study = make_gen_study([hf_model(tiny_model_dir)])
    run_all(study)
    before = dict(Response.objects.values_list("id", "text"))
    # A redelivered task for the finished job and a second "generate" both find nothing to do.
    job = GenerationJob.objects.get()
    assert run_job(job.pk).status == GenerationJob.Status.DONE
    second = start_generation(study, enqueue=False)  # ready → generating → ready again
    assert [j.total for j in second] == [0] and second[0].status == GenerationJob.Status.DONE
    assert dict(Response.objects.values_list("id", "text")) == before
    study.refresh_from_db()
    assert study.status == Study.Status.READY


def test_only_missing_answers_are_generated(make_gen_study, tiny_model_dir):
    study = make_gen_study([hf_model(tiny_model_dir)])
    run_all(study)
    Response.objects.filter(prompt__source_id__in=["p1", "p4"]).delete()
    kept = set(Response.objects.values_list("id", flat=True))
    model = study.models.get()
    assert [(p.source_id, s) for p, s in missing_items(model)] == [("p1", 0), ("p4", 0)]
    jobs = run_all(study)
    assert jobs[0].total == 2 and jobs[0].done == 2
    assert kept < set(Response.objects.values_list("id", flat=True))
    assert Response.objects.count() == len(PROMPTS)


def test_unknown_model_path_fails_that_job_only(make_gen_study, tiny_model_dir, tmp_path):
    study = make_gen_study([hf_model(tiny_model_dir), hf_model(tmp_path / "missing", alias="broken")])
    jobs = {j.model.alias: j for j in run_all(study)}
    assert jobs["imitation"].status == GenerationJob.Status.DONE
    broken = jobs["broken"]
    assert broken.status == GenerationJob.Status.FAILED
    assert "is not a model folder" in broken.last_error and "save_pretrained" in broken.last_error
    assert Response.objects.filter(model__alias="imitation").count() == len(PROMPTS)
    study.refresh_from_db()
    assert study.status == Study.Status.GENERATING  # not ready: the broken model has no answers


def test_too_long_prompt_fails_the_job_but_keeps_the_rest(make_gen_study, tiny_model_dir):
    study = make_gen_study([hf_model(tiny_model_dir)], prompts=[*PROMPTS, "word " * 400])
    (job,) = run_all(study)
    assert job.status == GenerationJob.Status.FAILED
    assert job.done == len(PROMPTS) and job.failed == 1
    assert "1 of 7 answers failed" in job.last_error and "shorten the prompt" in job.last_error
    bad = Response.objects.get(prompt__source_id=f"p{len(PROMPTS)}")
    assert bad.text == "" and "context is 256 tokens" in bad.error
    # Fix the prompt and rerun: only the failed answer is redone, in place.
    bad.prompt.text = "Short again."
    bad.prompt.save()
    (job2,) = start_generation(study, enqueue=False)
    assert job2.total == 1
    assert run_job(job2.pk).status == GenerationJob.Status.DONE
    bad.refresh_from_db()
    assert bad.error == "" and bad.text
    assert Response.objects.count() == len(PROMPTS) + 1


def test_imported_answers(make_gen_study, tmp_path):
    answers = tmp_path / "teacher.jsonl"
    rows = [{"source_id": f"p{i}", "response": f"Answer {i}"} for i in range(len(PROMPTS) - 1)]
    rows.append({"prompt": PROMPTS[-1], "output": "Matched on text"})
    answers.write_text("\n".join(json.dumps(r) for r in rows))
    teacher = {"alias": "teacher", "role": "teacher", "backend": "imported", "model_path": str(answers)}
    study = make_gen_study([teacher])
    assert queue_for(study.models.get()) == "default"
    (job,) = run_all(study)
    assert job.status == GenerationJob.Status.DONE
    assert Response.objects.get(prompt__source_id="p2").text == "Answer 2"
    assert Response.objects.get(prompt__source_id=f"p{len(PROMPTS) - 1}").text == "Matched on text"


def test_imported_file_missing_an_answer(make_gen_study, tmp_path):
    answers = tmp_path / "partial.jsonl"
    answers.write_text(json.dumps({"id": "p0", "text": "only one"}))
    study = make_gen_study([{"alias": "t", "backend": "imported", "model_path": str(answers)}])
    (job,) = run_all(study)
    assert job.status == GenerationJob.Status.FAILED and job.done == 1
    assert "No answer for prompt 'p5'" in job.last_error


def test_setup_errors_are_clear(make_gen_study, tiny_model_dir):
    empty = make_gen_study([], slug="empty")
    with pytest.raises(GenerationSetupError, match="no models"):
        start_generation(empty)
    no_prompts = make_gen_study([hf_model(tiny_model_dir)], slug="noprompts", prompts=[])
    no_prompts.prompts.all().delete()
    with pytest.raises(GenerationSetupError, match="no prompts"):
        start_generation(no_prompts)
    live = make_gen_study([hf_model(tiny_model_dir)], slug="live")
    Study.objects.filter(pk=live.pk).update(status=Study.Status.CLOSED)
    live.refresh_from_db()
    with pytest.raises(TransitionError, match="cannot go from closed to generating"):
        start_generation(live)
    assert not GenerationJob.objects.exists()


def test_cancelled_job_stops_between_batches(make_gen_study, tiny_model_dir):
    study = make_gen_study([hf_model(tiny_model_dir, engine_options={"batch_size": 2})])
    (job,) = start_generation(study, enqueue=False)

    def cancel_after_first_batch(j):
        if j.done == 2:
            GenerationJob.objects.filter(pk=j.pk).update(status=GenerationJob.Status.CANCELLED)

    run_job(job.pk, progress=cancel_after_first_batch)
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.CANCELLED
    assert Response.objects.count() == 2


def test_management_command_sync(make_gen_study, tiny_model_dir, tmp_path, capsys):
    answers = tmp_path / "a.jsonl"
    answers.write_text("\n".join(json.dumps({"id": f"p{i}", "response": "x"}) for i in range(len(PROMPTS))))
    study = make_gen_study(
        [
            hf_model(tiny_model_dir),
            {"alias": "teacher", "role": "teacher", "backend": "imported", "model_path": str(answers)},
        ]
    )
    call_command("generate", study.slug, "--model", "teacher", "--sync")
    assert set(Response.objects.values_list("model__alias", flat=True)) == {"teacher"}
    call_command("generate", str(study.pk), "--sync")
    assert Response.objects.filter(model__alias="imitation").count() == len(PROMPTS)
    out = capsys.readouterr()
    assert "imitation: done" in out.out
    study.refresh_from_db()
    assert study.status == Study.Status.READY


def queued_messages(queue: str) -> int:
    """Messages waiting in ``queue`` on the real broker (whatever CELERY_BROKER_URL names)."""
    from evalsite.celery import app

    with app.connection_for_write() as conn:
        try:
            return conn.default_channel.queue_declare(queue, passive=True).message_count
        except conn.channel_errors:
            return 0


def test_active_job_is_reused_and_a_stale_one_requeued(
    make_gen_study, tiny_model_dir, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from django.utils import timezone

    from evalsite.celery import app

    queue = f"test-stale-{uuid.uuid4().hex[:10]}"  # no worker listens here
    study = make_gen_study([hf_model(tiny_model_dir)])
    try:
        with django_capture_on_commit_callbacks(execute=True):
            (job,) = start_generation(study, queue=queue)
        assert queued_messages(queue) == 1
        with django_capture_on_commit_callbacks(execute=True):
            again = start_generation(study, queue=queue)
        assert [j.pk for j in again] == [job.pk]
        assert queued_messages(queue) == 1  # active and fresh: not sent twice
        GenerationJob.objects.filter(pk=job.pk).update(updated_at=timezone.now() - timedelta(hours=2))
        with django_capture_on_commit_callbacks(execute=True):
            start_generation(study, queue=queue)
        assert queued_messages(queue) == 2  # silent for hours: its message is presumed lost
        assert GenerationJob.objects.count() == 1
    finally:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
