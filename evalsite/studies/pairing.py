"""Which pairs of responses raters compare.

By default every non-teacher model is compared with the teacher on every prompt (the question
the study asks is "is the imitation as good as the teacher?"); on request, all pairs of models.
Only first samples (``sample_index`` 0) that were generated without error and have text take part.
Storage order is canonical (the teacher, else the earlier model, is A) so that re-running finds
what it built before; the rater page randomizes the sides it shows.
"""

from collections import defaultdict
from itertools import combinations

from django.db import transaction

from .models import Comparison, LanguageModel, Response, Study


class PairingError(ValueError):
    """The study cannot be paired as asked; the message says what to change."""


def _model_order(model: LanguageModel) -> tuple[int, int]:
    # Teachers first, then creation order: this decides which side is stored as A.
    return (0 if model.role == LanguageModel.Role.TEACHER else 1, model.pk)


def _usable_responses(study: Study) -> dict[int, dict[int, int]]:
    """``{prompt_id: {model_id: response_id}}`` for first samples with text and no error."""
    rows = (
        Response.objects.filter(prompt__study=study, model__study=study, sample_index=0, error="")
        .exclude(text="")
        .values_list("prompt_id", "model_id", "id", "text")
    )
    by_prompt: dict[int, dict[int, int]] = defaultdict(dict)
    for prompt_id, model_id, response_id, text in rows:
        if text.strip():  # whitespace-only answers cannot be judged
            by_prompt[prompt_id][model_id] = response_id
    return by_prompt


def _model_pairs(study: Study, all_pairs: bool) -> list[tuple[int, int]]:
    """Ordered ``(model_a_id, model_b_id)`` pairs to compare on each prompt."""
    models = sorted(LanguageModel.real.filter(study=study), key=_model_order)
    if all_pairs:
        return [(a.pk, b.pk) for a, b in combinations(models, 2)]
    teachers = [m for m in models if m.role == LanguageModel.Role.TEACHER]
    if not teachers:
        raise PairingError(
            f"Study {study.slug!r} has no teacher model: give one model the role 'teacher', "
            "or set the study's pairing to 'All pairs of models'."
        )
    others = [m for m in models if m.role != LanguageModel.Role.TEACHER]
    # With several teachers each non-teacher meets each of them; teachers never meet each other.
    return [(t.pk, o.pk) for t in teachers for o in others]


def build_comparisons(study: Study, all_pairs: bool | None = None) -> int:
    """Create the study's missing comparisons and return how many were added.

    ``all_pairs`` overrides ``study.pairing`` when given. Idempotent: pairs that already exist,
    in either storage order, are skipped, so re-running after more responses arrive only adds
    the new pairs. Raises :class:`PairingError` in teacher mode when the study has no teacher.
    """
    if all_pairs is None:
        all_pairs = study.pairing == Study.Pairing.ALL_PAIRS
    model_pairs = _model_pairs(study, all_pairs)
    with transaction.atomic():
        by_prompt = _usable_responses(study)
        existing = {
            frozenset(pair)
            for pair in Comparison.objects.filter(study=study).values_list("response_a_id", "response_b_id")
        }
        new: list[Comparison] = []
        for prompt_id in sorted(by_prompt):
            answers = by_prompt[prompt_id]
            for model_a, model_b in model_pairs:
                if model_a not in answers or model_b not in answers:
                    continue
                pair = (answers[model_a], answers[model_b])
                if frozenset(pair) in existing:
                    continue
                existing.add(frozenset(pair))
                new.append(
                    Comparison(study=study, prompt_id=prompt_id, response_a_id=pair[0], response_b_id=pair[1])
                )
        # ignore_conflicts guards against a concurrent run that inserted the same pair meanwhile.
        Comparison.objects.bulk_create(new, batch_size=1000, ignore_conflicts=True)
    return len(new)


def explain_skips(study: Study, all_pairs: bool | None = None) -> list[str]:
    """Why prompts are left out of comparisons, one sentence per model that lacks answers.

    E.g. "175 of 180 prompts have no usable answer from imitation (170 missing, 5 failed)".
    Empty when every prompt has a usable answer from every model that takes part.
    """
    if all_pairs is None:
        all_pairs = study.pairing == Study.Pairing.ALL_PAIRS
    try:
        pairs = _model_pairs(study, all_pairs)
    except PairingError as exc:
        return [str(exc)]
    models = {m.pk: m.alias for m in LanguageModel.real.filter(study=study)}
    taking_part = {m for pair in pairs for m in pair}
    prompt_ids = list(study.prompts.values_list("pk", flat=True))
    usable = _usable_responses(study)
    failed = defaultdict(set)
    errors = Response.objects.filter(prompt__study=study, sample_index=0).exclude(error="")
    for prompt_id, model_id in errors.values_list("prompt_id", "model_id"):
        failed[model_id].add(prompt_id)
    reasons = []
    for model_id in sorted(taking_part, key=lambda pk: models.get(pk, "")):
        lacking = [p for p in prompt_ids if model_id not in usable.get(p, {})]
        if lacking:
            n_failed = len(failed[model_id] & set(lacking))
            detail = f"{len(lacking) - n_failed} missing, {n_failed} failed or empty" if n_failed else "no answer yet"
            reasons.append(
                f"{len(lacking)} of {len(prompt_ids)} prompts have no usable answer from {models[model_id]} ({detail})"
            )
    return reasons
