"""Pairing: who is compared with whom, in which storage order, and idempotence."""

import pytest

from evalsite.studies.models import Comparison, LanguageModel, Response
from evalsite.studies.pairing import PairingError, build_comparisons

pytestmark = pytest.mark.django_db


def pairs_by_alias(study) -> set[tuple[str, str, str]]:
    return {
        (c.prompt.source_id, c.response_a.model.alias, c.response_b.model.alias)
        for c in Comparison.objects.filter(study=study).select_related(
            "prompt", "response_a__model", "response_b__model"
        )
    }


def test_teacher_mode_pairs_each_model_with_teacher_on_every_prompt(make_study):
    study = make_study(n_prompts=4, roles=("imitation", "teacher", "base"))
    assert build_comparisons(study) == 8
    assert pairs_by_alias(study) == {
        (f"p{p}", "teacher-1", other) for p in range(4) for other in ("imitation-0", "base-2")
    }
    # comparisons point at a response of their own prompt
    for c in Comparison.objects.filter(study=study):
        assert c.response_a.prompt_id == c.prompt_id == c.response_b.prompt_id


def test_rerunning_adds_nothing_and_later_responses_are_added(make_study):
    study = make_study(n_prompts=3)
    assert build_comparisons(study) == 3
    assert build_comparisons(study) == 0
    assert Comparison.objects.filter(study=study).count() == 3
    late = LanguageModel.objects.create(study=study, alias="late", role="base", backend="imported")
    Response.objects.create(prompt=study.prompts.first(), model=late, text="late answer")
    assert build_comparisons(study) == 1
    assert Comparison.objects.filter(study=study).count() == 4


def test_existing_pair_in_reverse_order_is_not_duplicated(make_study):
    study = make_study(n_prompts=1)
    teacher_resp = Response.objects.get(model__role="teacher")
    other_resp = Response.objects.get(model__role="imitation")
    Comparison.objects.create(
        study=study, prompt=teacher_resp.prompt, response_a=other_resp, response_b=teacher_resp
    )
    assert build_comparisons(study) == 0


def test_all_pairs_on_request_and_from_study_setting(make_study):
    study = make_study(n_prompts=2, roles=("teacher", "imitation", "base"))
    assert build_comparisons(study, all_pairs=True) == 6
    assert {(a, b) for _, a, b in pairs_by_alias(study)} == {
        ("teacher-0", "imitation-1"),
        ("teacher-0", "base-2"),
        ("imitation-1", "base-2"),
    }
    other = make_study(slug="other", n_prompts=2, roles=("imitation", "base"), pairing="all")
    assert build_comparisons(other) == 2


def test_only_first_samples_without_error_and_with_text(make_study):
    study = make_study(n_prompts=4)
    imitation = LanguageModel.objects.get(study=study, role="imitation")
    responses = {
        r.prompt.source_id: r for r in Response.objects.filter(model=imitation).select_related("prompt")
    }
    Response.objects.filter(pk=responses["p0"].pk).update(error="CUDA out of memory")
    Response.objects.filter(pk=responses["p1"].pk).update(text="   \n")
    Response.objects.filter(pk=responses["p2"].pk).update(text="")
    Response.objects.create(
        prompt=responses["p3"].prompt, model=imitation, sample_index=1, text="second sample"
    )
    assert build_comparisons(study) == 1
    (c,) = Comparison.objects.filter(study=study)
    assert c.prompt.source_id == "p3" and c.response_b.sample_index == 0


def test_teacher_mode_without_teacher_is_a_clear_error(make_study):
    study = make_study(roles=("imitation", "base"))
    with pytest.raises(PairingError, match="no teacher model"):
        build_comparisons(study)
    assert not Comparison.objects.exists()


def test_other_studies_are_untouched(make_study):
    a = make_study(slug="a", n_prompts=2)
    b = make_study(slug="b", n_prompts=2)
    build_comparisons(a)
    assert Comparison.objects.filter(study=b).count() == 0
    assert Comparison.objects.filter(study=a).count() == 2
