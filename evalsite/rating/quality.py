"""Quality control on each submitted rating: attention checks, time on task, blocking.

A rater who fails more attention checks than ``study.max_attention_failures`` is blocked and all
their ratings are flagged. Flagged ratings are kept (the export shows them) but the analysis
excludes them by default. A rating faster than ``study.min_seconds_per_task`` (server time, which
the page cannot forge) counts as too fast and is flagged on its own. Blocking and unblocking by
hand are actions (:mod:`.actions`).
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

    The caller holds the rater's row lock and has already counted the submission itself. Failures
    a researcher forgave by unblocking the rater (``attention_failures_forgiven``) do not count
    again: an unblock lasts until the rater fails more checks than the study allows, afresh.
    """
    if rating.attention_passed is True:
        rater.attention_passed += 1
    elif rating.attention_passed is False:
        rater.attention_failed += 1
    if rating.server_seconds < study.min_seconds_per_task:
        rater.too_fast += 1
    fields = ["tasks_submitted", "attention_passed", "attention_failed", "too_fast"]
    failures = rater.attention_failed - rater.attention_failures_forgiven
    if not rater.blocked and failures > study.max_attention_failures:
        rater.blocked = True
        since = " since being unblocked" if rater.attention_failures_forgiven else ""
        rater.blocked_reason = f"Failed {failures} attention checks{since} (more than {study.max_attention_failures})."
        fields += ["blocked", "blocked_reason"]
        Rating.objects.filter(rater_id=rater.pk).update(flagged=True)
        rating.flagged = True
    rater.save(update_fields=fields)
