"""Attention-check comparisons: a real answer against one that is plainly wrong for the prompt.

The wrong answer is another prompt's teacher answer (off-topic), or a canned off-topic text when
the study has a single prompt. It is stored as a Response of a hidden model with the alias
``attention-check`` (role ``other``, backend ``imported``), so no generation backend produces it and
the page, which never shows model identities anyway, cannot tell it apart. The expected winner is
the real answer; its side in storage is random, and the page randomizes sides again.
"""

from __future__ import annotations

import random

from django.db import transaction

from evalsite.studies.models import Comparison, LanguageModel, Response, Study

ATTENTION_ALIAS = "attention-check"
OFF_TOPIC = (
    "Bananas are berries, but strawberries are not. Also, the best way to keep a houseplant alive "
    "is to water it every day with a cup of coffee."
)


def attention_model(study: Study) -> LanguageModel:
    """The study's hidden model that owns the off-topic answers (created on first use)."""
    model, _ = LanguageModel.objects.get_or_create(
        study=study,
        alias=ATTENTION_ALIAS,
        defaults={
            "role": LanguageModel.Role.ATTENTION,
            "backend": LanguageModel.Backend.IMPORTED,
            "model_path": "",
            "system_prompt": "Attention checks; not a real model.",
        },
    )
    return model


def build_attention_checks(study: Study, limit: int | None = None, *, seed: int | None = None) -> list[Comparison]:
    """Create attention-check comparisons for prompts that have a teacher answer and none yet.

    ``limit`` caps how many are created (default: one per eligible prompt). Returns the new
    comparisons. Idempotent: a prompt that already has an attention check is skipped.
    """
    rng = random.Random(seed)
    real = list(
        Response.objects.filter(prompt__study=study, model__role=LanguageModel.Role.TEACHER, error="")
        .exclude(text="")
        .select_related("prompt")
        .order_by("prompt__position", "prompt_id", "sample_index")
    )
    by_prompt: dict[int, Response] = {}
    for response in real:
        by_prompt.setdefault(response.prompt_id, response)
    if not by_prompt:
        raise ValueError(f"Study {study.slug!r} has no teacher answers yet: generate them first.")
    done = set(Comparison.objects.filter(study=study, is_attention_check=True).values_list("prompt_id", flat=True))
    prompt_ids = [p for p in by_prompt if p not in done]
    rng.shuffle(prompt_ids)
    if limit is not None:
        prompt_ids = prompt_ids[:limit]

    created = []
    with transaction.atomic():
        model = attention_model(study)
        for prompt_id in prompt_ids:
            good = by_prompt[prompt_id]
            others = [r for p, r in by_prompt.items() if p != prompt_id and r.text.strip() != good.text.strip()]
            wrong_text = rng.choice(others).text if others else OFF_TOPIC
            wrong, _ = Response.objects.update_or_create(
                prompt_id=prompt_id,
                model=model,
                sample_index=0,
                defaults={
                    "text": wrong_text,
                    "backend": LanguageModel.Backend.IMPORTED,
                    "finish_reason": "stop",
                },
            )
            good_is_a = rng.random() < 0.5
            created.append(
                Comparison.objects.create(
                    study=study,
                    prompt_id=prompt_id,
                    response_a=good if good_is_a else wrong,
                    response_b=wrong if good_is_a else good,
                    is_attention_check=True,
                    expected_winner="A" if good_is_a else "B",
                )
            )
    return created
