"""Places come from the plan: k on every comparison, or fewer when a target half-width needs fewer."""

import math

from evalsite.platforms import places
from evalsite.studies import actions as study_actions


def _launched(make_study, owner, **fields):
    study = make_study(slug="planned", n_prompts=60, owner=owner, tasks_per_rater=10, attention_check_rate=0.0,
                       redundancy=5, **fields)
    study_actions.build_comparisons(study)
    study_actions.mark_study_ready(study)
    study_actions.launch_study(study)
    study.refresh_from_db()
    return study


def test_without_a_target_places_cover_k_on_every_comparison(make_study, owner):
    study = _launched(make_study, owner)
    assert places.planned_to_target(study) is None
    assert places.ratings_needed(study) == 60 * 5
    assert places.initial_places(study) == 30


def test_a_target_half_width_asks_for_what_the_planner_says(make_study, owner):
    study = _launched(make_study, owner, target_halfwidth=0.2)
    planned = places.planned_to_target(study)
    # ±0.2 on a proportion needs a few dozen ratings per model, far fewer than k=5 on 60 prompts.
    assert planned is not None and 0 < planned < 60 * 5
    assert places.ratings_needed(study) == planned
    assert places.initial_places(study) == math.ceil(planned / 10)


def test_a_target_beyond_reach_is_capped_by_k(make_study, owner):
    study = _launched(make_study, owner, target_halfwidth=0.005)
    assert places.planned_to_target(study) > 60 * 5
    assert places.ratings_needed(study) == 60 * 5
