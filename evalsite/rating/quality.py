"""Quality control on each submitted rating: attention checks, time on task, blocking.

A rater who fails more attention checks than ``study.max_attention_failures`` is blocked and all
their ratings are flagged. Flagged ratings are kept (the export shows them) but the analysis
excludes them by default. A rating faster than ``study.min_seconds_per_task`` (server time, which
the page cannot forge) counts as too fast and is flagged on its own.
"""

from __future__ import annotations

from evalsite.studies.models import Comparison, Study

from .models import Rater, Rating


def judge(rating: Rating, comparison: Comparison, rater: Rater, study: Study) -> None:
    """Fill the rating's quality fields before it is saved (no queries)."""
    if comparison.is_attention_check:
        rating.attention_passed = rating.winner == comparison.expected_winner
    if rating.server_seconds < study.min_seconds_per_task:
        rating.flagged = True
    if rater.blocked:
        rating.flagged = True


def apply(rating: Rating, rater: Rater, study: Study) -> None:
    """Update the (locked) rater's counters for ``rating``; block and flag when the rater fails.

    The caller holds the rater's row lock and has already counted the submission itself.
    """
    if rating.attention_passed is True:
        rater.attention_passed += 1
    elif rating.attention_passed is False:
        rater.attention_failed += 1
    if rating.server_seconds < study.min_seconds_per_task:
        rater.too_fast += 1
    fields = ["tasks_submitted", "attention_passed", "attention_failed", "too_fast"]
    if not rater.blocked and rater.attention_failed > study.max_attention_failures:
        rater.blocked = True
        rater.blocked_reason = (
            f"Failed {rater.attention_failed} attention checks (more than {study.max_attention_failures})."
        )
        fields += ["blocked", "blocked_reason"]
        Rating.objects.filter(rater_id=rater.pk).update(flagged=True)
        rating.flagged = True
    rater.save(update_fields=fields)


def block(rater: Rater, reason: str) -> None:
    """Block a rater by hand (admin action): no more work, and their ratings are flagged."""
    from .assignment import release_live_lease  # the engine imports this module

    Rater.objects.filter(pk=rater.pk).update(blocked=True, blocked_reason=reason[:200])
    Rating.objects.filter(rater_id=rater.pk).update(flagged=True)
    release_live_lease(rater)


def unblock(rater: Rater) -> None:
    """Lift a block and unflag the ratings that were flagged only because of it.

    Ratings that are too fast or failed an attention check stay flagged.
    """
    Rater.objects.filter(pk=rater.pk).update(blocked=False, blocked_reason="")
    study = rater.study
    ratings = Rating.objects.filter(rater_id=rater.pk, server_seconds__gte=study.min_seconds_per_task)
    ratings.exclude(attention_passed=False).update(flagged=False)
