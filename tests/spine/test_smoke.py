import pytest
from django.db import IntegrityError, transaction

from evalsite.studies.models import Comparison, Response


@pytest.mark.django_db
def test_response_unique_per_prompt_model_sample(make_study):
    study = make_study()
    r = Response.objects.filter(prompt__study=study).first()
    with pytest.raises(IntegrityError), transaction.atomic():
        Response.objects.create(prompt=r.prompt, model=r.model, sample_index=0, text="dup")


@pytest.mark.django_db
def test_comparison_unique_per_unordered_pair(make_study):
    study = make_study()
    prompt = study.prompts.first()
    a, b = list(prompt.responses.all()[:2])
    Comparison.objects.create(study=study, prompt=prompt, response_a=a, response_b=b)
    with pytest.raises(IntegrityError), transaction.atomic():
        Comparison.objects.create(study=study, prompt=prompt, response_a=b, response_b=a)
