"""Simulated raters that go through the real lease engine, for the demo and for load tests.

A *crowd* rater is swayed by style (longer, more assertive answers) and notices a factual error
only now and then; an *expert* checks facts against the prompt's reference answers and notices
most errors. That is the gap the study measures (Gudibande et al.; Hosking et al. 2023), so a
demo seeded with these ratings shows the report's central picture without real people.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from evalsite.analysis.factuality import answer_contained
from evalsite.analysis.style import style_features
from evalsite.studies.models import Study

from .assignment import RatingInput, lease_next, stored_side, submit
from .identity import pseudonym
from .models import Assignment, Rater


@dataclass(frozen=True)
class Persona:
    """How a simulated rater judges: weights on style, and how often it notices an error."""

    notice_error: float
    length_weight: float
    assertive_weight: float
    attention_accuracy: float
    noise: float = 1.0


CROWD = Persona(notice_error=0.15, length_weight=1.2, assertive_weight=0.6, attention_accuracy=0.97)
EXPERT = Persona(notice_error=0.9, length_weight=0.2, assertive_weight=0.0, attention_accuracy=1.0)


def _is_wrong(text: str, references: list[str]) -> bool:
    """Wrong when the prompt has references and none of them occurs in the answer."""
    return answer_contained(text, references) is False


def _score(text: str, wrong: bool, noticed: bool, persona: Persona, rng: random.Random) -> float:
    feats = style_features([text]).iloc[0]
    score = persona.length_weight * min(float(feats["length"]), 400.0) / 100.0
    score += persona.assertive_weight * (float(feats["assertive"]) - float(feats["hedging"]))
    if wrong and noticed:
        score -= 4.0
    return score + rng.gauss(0.0, persona.noise)


def rate(assignment: Assignment, persona: Persona, rng: random.Random) -> RatingInput:
    """One simulated verdict on a leased comparison, in screen terms as the page would send it."""
    comparison = assignment.comparison
    references = list(comparison.prompt.reference_answers or [])
    sides = {"left": stored_side(assignment, "left"), "right": stored_side(assignment, "right")}
    texts = {"A": comparison.response_a.text, "B": comparison.response_b.text}
    if comparison.is_attention_check:
        right_side = next(s for s, stored in sides.items() if stored == comparison.expected_winner)
        wrong_side = "right" if right_side == "left" else "left"
        pick = right_side if rng.random() < persona.attention_accuracy else wrong_side
        return RatingInput(preference=pick, client_seconds=rng.uniform(8, 30))
    correct, scores = {}, {}
    for screen, stored in sides.items():
        wrong = _is_wrong(texts[stored], references)
        noticed = wrong and rng.random() < persona.notice_error
        correct[screen] = "error" if noticed else ("correct" if references or rng.random() < 0.7 else "unsure")
        scores[screen] = _score(texts[stored], wrong, noticed, persona, rng)
    gap = scores["left"] - scores["right"] + 0.15  # a small pull toward the left side
    preference = "tie" if abs(gap) < 0.3 else ("left" if gap > 0 else "right")
    if all(v == "error" for v in correct.values()):
        preference = "both_bad"
    return RatingInput(
        preference=preference,
        strength=min(5, 3 + int(abs(gap))) if preference in ("left", "right") else 3,
        style={s: {"fluent": 4, "confident": 4} for s in sides},
        correct=correct,
        client_seconds=rng.uniform(20, 90),
    )


def simulate(study: Study, *, crowd: int, experts: int, seed: int = 0) -> int:
    """Let ``crowd`` + ``experts`` simulated raters work through the study; returns ratings stored."""
    rng = random.Random(seed)
    start = timezone.now()
    stored = 0
    people = [("crowd", i, CROWD) for i in range(crowd)] + [("expert", i, EXPERT) for i in range(experts)]
    for kind, i, persona in people:
        platform = Rater.Platform.STAFF if kind == "expert" else Rater.Platform.LINK
        external_id = f"simulated-{kind}-{seed}-{i}"
        rater, _ = Rater.objects.get_or_create(
            study=study,
            platform=platform,
            external_id=external_id,
            defaults={
                "pseudonym": pseudonym(study, platform, external_id),
                "is_expert": kind == "expert",
                "consented_at": start,
            },
        )
        clock = start
        while (assignment := lease_next(rater, study, now=clock)) is not None:
            payload = rate(assignment, persona, rng)
            clock += timedelta(seconds=payload.client_seconds or 30)
            submit(assignment.token, rater, payload, now=clock)
            stored += 1
            rater.refresh_from_db()
            if rater.blocked:
                break
    return stored
