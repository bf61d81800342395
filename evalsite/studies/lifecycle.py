"""Study status transitions, validated in one place.

draft → generating → ready → live → closed, with *pause* (live → ready) and a way back from
generating to draft when generation is abandoned. Every status change in the code base goes
through :func:`transition`, so the rules below are the only rules.
"""

from django.db import transaction

from .models import Study

S = Study.Status

ALLOWED: dict[str, set[str]] = {
    S.DRAFT: {S.GENERATING, S.READY},
    S.GENERATING: {S.READY, S.DRAFT},
    S.READY: {S.LIVE, S.GENERATING, S.DRAFT, S.CLOSED},
    S.LIVE: {S.READY, S.CLOSED},  # live → ready is "pause"
    S.CLOSED: {S.READY},  # reopen for more ratings
}


class TransitionError(ValueError):
    """A status change the rules forbid; the message says why and what to do."""


def check_transition(study: Study, target: str) -> None:
    """Raise :class:`TransitionError` unless ``study`` may move to ``target`` now."""
    current = study.status
    if target not in S.values:
        raise TransitionError(f"Unknown status {target!r}.")
    if target == current:
        raise TransitionError(f"Study {study.slug!r} is already {current}.")
    if target not in ALLOWED[current]:
        raise TransitionError(f"Study {study.slug!r} cannot go from {current} to {target}.")
    if target == S.LIVE:
        if not study.comparisons.filter(is_attention_check=False).exists():
            raise TransitionError(
                f"Study {study.slug!r} has no comparisons: generate responses and build comparisons first."
            )
        if not study.completion_code:
            raise TransitionError(f"Study {study.slug!r} needs a completion code before it goes live.")
    if target == S.GENERATING and not study.models.exists():
        raise TransitionError(f"Study {study.slug!r} has no models to generate with.")


def transition(study: Study, target: str) -> Study:
    """Move ``study`` to ``target`` atomically, re-reading it under a row lock."""
    with transaction.atomic():
        locked = Study.objects.select_for_update().get(pk=study.pk)
        check_transition(locked, target)
        if target == S.LIVE:
            _ensure_attention_checks(locked)
            _choose_expert_pool(locked)
        locked.status = target
        locked.save(update_fields=["status", "updated_at"])
    study.status = target
    return study


def _choose_expert_pool(study: Study) -> None:
    """Going live fixes which comparisons invited experts rate (``study.expert_share`` of them)."""
    from evalsite.rating.assignment import choose_expert_pool

    choose_expert_pool(study)


def _ensure_attention_checks(study: Study) -> None:
    """Going live mixes in attention checks when the study asks for them and has none yet."""
    if study.attention_check_rate > 0 and not study.comparisons.filter(is_attention_check=True).exists():
        # Imported here: the rating app builds on studies, not the other way round.
        from evalsite.rating.attention import build_attention_checks

        build_attention_checks(study)


def prompts_editable(study: Study) -> bool:
    """A live (or closed) study's prompts are frozen: ratings refer to them."""
    return study.status not in {S.LIVE, S.CLOSED}


def launch(study: Study) -> Study:
    return transition(study, S.LIVE)


def pause(study: Study) -> Study:
    return transition(study, S.READY)


def close(study: Study) -> Study:
    return transition(study, S.CLOSED)
