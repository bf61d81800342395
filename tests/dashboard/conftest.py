"""A small rated study in the database for the dashboard tests."""

import itertools

import numpy as np
import pytest
from django.utils import timezone

from evalsite.rating.models import Assignment, Rater, Rating
from evalsite.studies.models import Comparison, Response


@pytest.fixture
def rated_study(make_study, staff_user):
    """Teacher vs imitation on 8 prompts, 3 crowd raters and 1 expert per comparison.

    On factual prompts (odd ones, with references) the imitation answer is wrong half the time,
    yet the crowd mostly prefers it; the expert prefers the correct answer.
    """
    study = make_study(slug="demo", n_prompts=8, owner=staff_user, status="live")
    teacher, imitation = study.models.get(role="teacher"), study.models.get(role="imitation")
    rng = np.random.default_rng(0)
    crowd = [
        Rater.objects.create(study=study, platform="prolific", external_id=f"w{i}", pseudonym=f"c{i}") for i in range(3)
    ]
    expert = Rater.objects.create(study=study, platform="staff", external_id="x", pseudonym="e0", is_expert=True)
    tokens = itertools.count()
    now = timezone.now()
    for prompt in study.prompts.all():
        a = Response.objects.get(prompt=prompt, model=teacher)
        b = Response.objects.get(prompt=prompt, model=imitation)
        wrong = prompt.position % 4 == 1  # imitation wrong on half of the factual prompts
        if wrong:
            b.text = "It is definitely something else entirely, clearly."
            b.save()
        comparison = Comparison.objects.create(study=study, prompt=prompt, response_a=a, response_b=b)
        for rater in [*crowd, expert]:
            left = "A" if rng.random() < 0.5 else "B"
            assignment = Assignment.objects.create(
                rater=rater,
                comparison=comparison,
                token=f"t{next(tokens)}",
                left_side=left,
                status="submitted",
                leased_at=now,
                expires_at=now,
                submitted_at=now,
            )
            if rater.is_expert:
                winner, correct_b = ("A", "error") if wrong else ("tie", "correct")
            else:
                winner, correct_b = ("B" if rng.random() < 0.7 else "A"), "correct"
            Rating.objects.create(
                assignment=assignment,
                study=study,
                comparison=comparison,
                rater=rater,
                winner=winner,
                strength=3,
                correct_a="correct",
                correct_b=correct_b,
                server_seconds=30.0,
                style={"A": {"fluent": 4, "confident": 3}, "B": {"fluent": 4, "confident": 5 if wrong else 4}},
                error_spans=[{"response": "B", "start": 0, "end": 5, "text": "It is"}]
                if rater.is_expert and wrong
                else [],
            )
    return study
