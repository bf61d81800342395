"""Saving generated answers: keyed on (prompt, model, sample index), a stored good answer is never overwritten.

Missing answers are inserted and failed ones replaced; a good answer (which comparisons and ratings
may already point to) stays as it is, whatever a later or duplicate run produced.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction

from evalsite.studies.models import LanguageModel, Prompt, Response

if TYPE_CHECKING:  # the backends are the worker's side; only their types are used here
    from workers.backends.base import DecodingParams, GenerationBackend, GenerationResult

UPDATE_FIELDS = [
    "text",
    "prompt_tokens",
    "completion_tokens",
    "finish_reason",
    "latency_ms",
    "generation_params",
    "backend",
    "fingerprint",
    "error",
]


class AnswerCountMismatch(RuntimeError):
    """A backend returned a different number of answers than it was given prompts."""


def save_answers(
    model: LanguageModel,
    backend: GenerationBackend,
    batch: list[tuple[Prompt, int]],
    results: list[GenerationResult],
    params: DecodingParams,
) -> None:
    """Write one batch's answers (one result per (prompt, sample index) of ``batch``, in order)."""
    if len(results) != len(batch):
        raise AnswerCountMismatch(
            f"Backend {backend.name} returned {len(results)} answers for {len(batch)} prompts."
        )
    fingerprint = model.fingerprint
    produced_by = {
        **backend.describe(),
        "model_path": model.model_path,
        "fingerprint": fingerprint,
        "decoding": params.as_dict(),
        "system_prompt": model.system_prompt,
    }
    rows = [
        Response(
            prompt=prompt,
            model=model,
            sample_index=sample,
            # PostgreSQL text cannot hold NUL; byte-level models do emit it now and then.
            text=r.text.replace("\x00", ""),
            prompt_tokens=r.prompt_tokens,
            completion_tokens=r.completion_tokens,
            finish_reason=r.finish_reason[:32],
            latency_ms=r.latency_ms,
            generation_params=produced_by,
            backend=backend.name,
            fingerprint=fingerprint,
            error=r.error,
        )
        for (prompt, sample), r in zip(batch, results, strict=True)
    ]
    with transaction.atomic():  # a savepoint: a failed write must not poison the caller's transaction
        failed_before = set(
            Response.objects.filter(
                model=model, prompt__in=[p for p, _ in batch], sample_index__in={s for _, s in batch}
            )
            .exclude(error="")
            .values_list("prompt_id", "sample_index")
        )
        Response.objects.bulk_create(rows, ignore_conflicts=True)
        for row in rows:
            if (row.prompt_id, row.sample_index) in failed_before:
                Response.objects.filter(prompt_id=row.prompt_id, model=model, sample_index=row.sample_index).exclude(
                    error=""
                ).update(**{name: getattr(row, name) for name in UPDATE_FIELDS})


def record_fingerprint(model: LanguageModel, fingerprint: str) -> None:
    """Store what produces the model's answers (config and weights hash) on the model."""
    if model.fingerprint != fingerprint:
        model.fingerprint = fingerprint
        LanguageModel.objects.filter(pk=model.pk).update(fingerprint=fingerprint)
