"""How many places (Prolific) or assignments (MTurk) a study needs.

Places = crowd ratings needed / tasks a participant really rates (``tasks_per_rater`` less the
share of attention checks), rounded up. Crowd ratings needed: k on every comparison, or, when the
study states a target half-width, what the planner (``evalsite.analysis.planning``, fed with the
study's design and its ratings so far) says reaches it, capped by k on every comparison, since the
engine never serves more than that.
"""

from __future__ import annotations

import math

from django.db.models import F, Sum
from django.db.models.functions import Greatest

from evalsite.studies.models import Study

# Statuses of submissions that hold a place (returned, timed-out and rejected ones free theirs).
HOLDING = {
    "prolific": {"RESERVED", "ACTIVE", "AWAITING REVIEW", "APPROVED", "PARTIALLY APPROVED", "SCREENED OUT"},
    "mturk": {"Submitted", "Approved"},
}


def tasks_per_participant(study: Study) -> float:
    return max(1.0, study.tasks_per_rater * (1.0 - study.attention_check_rate))


def places_for(ratings: int, study: Study) -> int:
    return math.ceil(ratings / tasks_per_participant(study)) if ratings > 0 else 0


def ratings_total(study: Study) -> int:
    return study.comparisons.filter(is_attention_check=False).count() * study.redundancy


def _missing_at_k(study: Study) -> int:
    """Crowd ratings still missing: k less what is submitted or leased, over the real comparisons."""
    missing = (
        study.comparisons.filter(is_attention_check=False)
        .annotate(missing=Greatest(study.redundancy - F("n_submitted") - F("n_live"), 0))
        .aggregate(total=Sum("missing"))["total"]
    )
    return int(missing or 0)


def planned_to_target(study: Study) -> int | None:
    """Crowd ratings still to collect to reach the study's target half-width, by the planner
    (``None`` without a target, or when the planner cannot answer for this design)."""
    if not study.target_halfwidth:
        return None
    from evalsite.dashboard.study_plan import PlanInputError, study_plan

    try:
        plan = study_plan(study, {"target_halfwidth": study.target_halfwidth})
    except (PlanInputError, ValueError):
        return None
    to_target = plan["progress"].get("to_target")
    return int(to_target["ratings"]) if to_target else None


def ratings_needed(study: Study) -> int:
    """Crowd ratings still missing: k on every comparison, or fewer when the planner says fewer
    reach the study's target half-width."""
    missing = _missing_at_k(study)
    planned = planned_to_target(study)
    return missing if planned is None else min(missing, planned)


def initial_places(study: Study) -> int:
    planned = planned_to_target(study)
    ratings = ratings_total(study) if planned is None else min(ratings_total(study), planned)
    return max(1, places_for(ratings, study))


def more_places(link, holding: int) -> int:
    """Places to add so the missing ratings have someone to rate them: needed less places still open."""
    open_places = max(0, link.places - holding)
    return max(0, places_for(ratings_needed(link.study), link.study) - open_places)
