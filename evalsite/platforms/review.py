"""The quality rule: approve, reject or ask to return a platform submission, from the rater's record.

The same rule for both platforms, read from what :mod:`evalsite.rating.quality` kept on the rater:

1. no rater, or no submitted task: nothing was done in evalsite. Prolific: ask the participant to
   return the submission (no rejection on their record); MTurk: reject, saying so.
2. the rater is blocked (failed more attention checks than the study allows, or blocked by hand):
   reject, with the block's reason (category ``FAILED_CHECK``, or ``OTHER`` for a manual block).
3. more than half of the rater's ratings were faster than the study's minimum time per task
   (the server's clock, which the page cannot forge): reject (``TOO_QUICKLY``).
4. otherwise: approve.

A researcher's unblock (:func:`evalsite.rating.actions.unblock_rater`) therefore turns a
rejection into an approval, as long as the decision was not sent yet.
"""

from __future__ import annotations

from dataclasses import dataclass

from evalsite.rating.models import Rater
from evalsite.studies.models import Study

from .prolific import REJECTION_MESSAGE_MIN

APPROVE, REJECT, RETURN = "approve", "reject", "return"
RETURN_REASONS = ["Didn't finish the study"]


@dataclass(frozen=True)
class Verdict:
    decision: str  # approve | reject | return
    category: str = ""  # Prolific's rejection category
    reason: str = ""  # what the participant is told (empty for an approval)


def verdict(rater: Rater | None, study: Study) -> Verdict:
    if rater is None or rater.tasks_submitted == 0:
        return Verdict(RETURN, "NO_DATA", "No comparison was rated in the study for this submission.")
    if rater.blocked:
        attention = rater.blocked_reason.startswith("Failed")
        why = rater.blocked_reason or "The researcher excluded this submission."
        return Verdict(REJECT, "FAILED_CHECK" if attention else "OTHER", f"You did not pass quality control: {why}")
    if rater.too_fast * 2 > rater.tasks_submitted:
        return Verdict(
            REJECT,
            "TOO_QUICKLY",
            f"{rater.too_fast} of your {rater.tasks_submitted} ratings were given in less than "
            f"{study.min_seconds_per_task:g} seconds, too fast to read both answers.",
        )
    return Verdict(APPROVE)


def rejection_message(reason: str) -> str:
    """Prolific requires at least 100 characters; the reason, then what it means for the participant."""
    text = (
        f"{reason.strip()} This study's instructions explained that submissions are checked with attention "
        "checks and time per task, and that submissions failing these checks are not paid."
    )
    return text if len(text) >= REJECTION_MESSAGE_MIN else text.ljust(REJECTION_MESSAGE_MIN, ".")
