"""How many places (Prolific) or assignments (MTurk) a study needs.

Places = crowd ratings needed / tasks a participant really rates (``tasks_per_rater`` less the
share of attention checks), rounded up. When the planner (``evalsite.analysis.planning``) lands,
:func:`ratings_needed` is the one place to ask it instead of the study's fixed redundancy.
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


def ratings_needed(study: Study) -> int:
    """Crowd ratings still missing: k less what is submitted or leased, over the real comparisons."""
    missing = (
        study.comparisons.filter(is_attention_check=False)
        .annotate(missing=Greatest(study.redundancy - F("n_submitted") - F("n_live"), 0))
        .aggregate(total=Sum("missing"))["total"]
    )
    return int(missing or 0)


def initial_places(study: Study) -> int:
    return max(1, places_for(ratings_total(study), study))


def more_places(link, holding: int) -> int:
    """Places to add so the missing ratings have someone to rate them: needed less places still open."""
    open_places = max(0, link.places - holding)
    return max(0, places_for(ratings_needed(link.study), link.study) - open_places)
