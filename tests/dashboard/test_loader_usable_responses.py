"""load_responses keeps only the answers raters compare: first samples, no error, with text."""

import pytest

from evalsite.analysis.factuality import accuracy_by_model
from evalsite.analysis.report import build_report
from evalsite.dashboard.loader import load_frames, load_responses
from evalsite.studies.models import Prompt, Response

pytestmark = pytest.mark.django_db


def teacher_accuracy(factuality: dict) -> dict:
    return next(row for row in factuality["overall"] if row["model"] == "teacher-0")


def test_failed_generations_and_extra_samples_do_not_count(rated_study):
    teacher = rated_study.models.get(alias="teacher-0")
    # A factual prompt whose teacher answer failed to generate (no text, error set) ...
    prompt = Prompt.objects.create(
        study=rated_study,
        source_id="p8",
        text="Question 8?",
        category="factual-qa",
        reference_answers=["answer 8"],
        position=8,
    )
    failed = Response.objects.create(prompt=prompt, model=teacher, text="", error="CUDA out of memory")
    # ... a whitespace-only answer, and a second, wrong sample on a prompt the teacher gets right.
    blank_prompt = Prompt.objects.create(
        study=rated_study,
        source_id="p9",
        text="Question 9?",
        category="factual-qa",
        reference_answers=["answer 9"],
        position=9,
    )
    Response.objects.create(prompt=blank_prompt, model=teacher, text="  \n")
    first = Response.objects.get(model=teacher, prompt__source_id="p1")
    extra = Response.objects.create(prompt=first.prompt, model=teacher, sample_index=1, text="No idea.")

    responses = load_responses(rated_study)
    assert failed.pk not in set(responses["response_id"].astype(int))
    assert extra.pk not in set(responses["response_id"].astype(int))
    assert len(responses) == 16  # 8 prompts x 2 models, as before the additions
    # The teacher answered all 4 checkable prompts correctly: 100%, not 4 of 7.
    row = teacher_accuracy(accuracy_by_model(responses))
    assert (row["n"], row["correct"], row["accuracy"]) == (4, 4, 1.0)
    report = build_report(*load_frames(rated_study), n_boot=0)
    assert teacher_accuracy(report["factuality"])["accuracy"] == 1.0
