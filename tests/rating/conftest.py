"""Fixtures for the rater experience: a live study with comparisons, and raters."""

import pytest

from evalsite.rating.identity import pseudonym
from evalsite.rating.models import Rater
from evalsite.studies import lifecycle
from evalsite.studies.models import Comparison, LanguageModel, Response, Study


def add_comparisons(study: Study) -> list[Comparison]:
    """Teacher against every other model on every prompt (storage order: teacher is A)."""
    teacher = study.models.get(role=LanguageModel.Role.TEACHER)
    comparisons = []
    for prompt in study.prompts.all():
        a = Response.objects.get(prompt=prompt, model=teacher)
        others = Response.objects.filter(prompt=prompt).exclude(model=teacher).exclude(model__alias="attention-check")
        for b in others:
            comparisons.append(Comparison.objects.create(study=study, prompt=prompt, response_a=a, response_b=b))
    return comparisons


@pytest.fixture
def live_study(make_study):
    """Build a live study: ``live_study(n_prompts=4, roles=(...), **study_fields)``."""

    def build(slug: str = "live", n_prompts: int = 4, roles=("teacher", "imitation"), **fields) -> Study:
        fields.setdefault("attention_check_rate", 0.0)
        fields.setdefault("min_seconds_per_task", 0.0)
        study = make_study(slug=slug, n_prompts=n_prompts, roles=roles, **fields)
        # The shared fixture writes the model alias into each answer; raters must never see one.
        for i, response in enumerate(Response.objects.filter(prompt__study=study).order_by("id")):
            response.text = f"Answer number {i}: the **result** is {i * 7}.\n\n- point one\n- point two"
            response.save(update_fields=["text"])
        add_comparisons(study)
        lifecycle.transition(study, Study.Status.READY)
        lifecycle.launch(study)
        return study

    return build


@pytest.fixture
def make_rater():
    def build(study: Study, external_id: str = "w1", platform: str = "prolific", **fields) -> Rater:
        return Rater.objects.create(
            study=study,
            platform=platform,
            external_id=external_id,
            pseudonym=pseudonym(study, platform, external_id),
            **fields,
        )

    return build
