"""Adaptive allocation and stopping in the lease engine (issue 14); CI runs them on PostgreSQL and
again on SQLite (``-m engine``)."""

import time

import pytest

from evalsite.celery import app as celery_app
from evalsite.rating import actions as rating_actions
from evalsite.rating import assignment as engine
from evalsite.rating.assignment import RatingInput
from evalsite.rating.models import Assignment
from evalsite.studies import actions
from evalsite.studies.models import Comparison, LanguageModel, Study

pytestmark = [pytest.mark.django_db, pytest.mark.engine]


@pytest.fixture(autouse=True)
def _fresh_caches(monkeypatch):
    monkeypatch.setattr(engine, "_last_sweep", {})
    monkeypatch.setattr(engine, "_arm_states", {})
    monkeypatch.setattr(rating_actions, "_last_stop_check", {})
    # The stopping rule's check is a Celery task; here it runs in this process (the same body).
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)


def arm_of(comparison_id: int) -> tuple[int, int]:
    c = Comparison.objects.select_related("response_a", "response_b").get(pk=comparison_id)
    a, b = c.response_a.model_id, c.response_b.model_id
    return (min(a, b), max(a, b))


def three_models(live_study, **fields):
    return live_study(roles=("teacher", "imitation", "base"), **fields)


def test_uniform_is_the_default_and_records_no_probability(live_study, make_rater):
    study = three_models(live_study, n_prompts=3)
    assert study.allocation == Study.Allocation.UNIFORM
    r = make_rater(study)
    a = engine.lease_next(r, study)
    assert a.selection_probability is None
    assert engine._arm_states == {}  # the uniform path never computes arm statistics


def test_adaptive_lease_records_its_arms_probability(live_study, make_rater):
    study = three_models(live_study, n_prompts=4, redundancy=3, allocation="adaptive")
    state = engine.arm_state(study)
    assert len(state.keys) == 2  # each non-teacher model against the teacher
    assert sum(state.probabilities) == pytest.approx(1.0)
    assert min(state.probabilities) >= engine.ALLOCATION_MIX / 2 - 1e-12
    for i in range(6):
        r = make_rater(study, f"w{i}")
        a = engine.lease_next(r, study)
        p = dict(zip(state.keys, state.probabilities, strict=True))[arm_of(a.comparison_id)]
        assert a.selection_probability == pytest.approx(p)
        assert Assignment.objects.get(pk=a.pk).selection_probability == pytest.approx(p)


def test_the_draw_restricts_the_pick_then_falls_back_and_k_stays_a_cap(live_study, make_rater):
    study = three_models(live_study, n_prompts=3, redundancy=2, allocation="adaptive", tasks_per_rater=50)
    state = engine.arm_state(study)
    # Force every draw onto the first arm (a real draw keeps every open arm positive).
    state.probabilities = [1.0] + [0.0] * (len(state.keys) - 1)
    state.at = time.monotonic() + 3600
    first = state.keys[0]
    served = []
    for i in range(12):
        r = make_rater(study, f"w{i}")
        a = engine.lease_next(r, study)
        if a is None:
            break
        served.append((arm_of(a.comparison_id), a.selection_probability))
        engine.submit(a.token, r, RatingInput(preference="left"))
    # The first arm's 3 comparisons x k=2 come first, then the fallback serves the other arm.
    assert [arm for arm, _ in served[:6]] == [first] * 6
    assert all(p == 1.0 for _, p in served[:6])
    assert {arm for arm, _ in served[6:]} == {state.keys[1]}
    assert all(p is None for _, p in served[6:])  # its arm had probability 0: unknown, not made up
    assert len(served) == 12
    for c in Comparison.objects.filter(study=study, is_attention_check=False):
        assert c.n_submitted == 2 and c.n_live == 0


def test_probabilities_follow_the_ratings(live_study, make_rater):
    study = three_models(live_study, n_prompts=4, redundancy=5, allocation="adaptive", tasks_per_rater=50)
    imitation = LanguageModel.objects.get(study=study, role="imitation")
    rated = [c for c in Comparison.objects.filter(study=study) if imitation.pk in arm_of(c.pk)]
    for i in range(3):
        r = make_rater(study, f"w{i}")
        for j, c in enumerate(rated):
            a = Assignment.objects.create(
                rater=r, comparison=c, token=f"t{i}-{c.pk}", left_side="A", status="live",
                leased_at=engine.timezone.now(), expires_at=engine.timezone.now() + engine.timedelta(minutes=5),
            )  # fmt: skip
            Comparison.objects.filter(pk=c.pk).update(n_live=1)
            engine.submit(a.token, r, RatingInput(preference="left" if (i + j) % 2 else "right"))
    state = engine.arm_state(study, refresh=True)
    by_arm = {row["arm"]: row for row in state.rows}
    imitation_arm = arm_of(rated[0].pk)
    other = next(k for k in state.keys if k != imitation_arm)
    assert by_arm[imitation_arm]["n"] == 12 and by_arm[other]["n"] == 0
    p = dict(zip(state.keys, state.probabilities, strict=True))
    assert p[other] > p[imitation_arm] >= engine.ALLOCATION_MIX / 2 - 1e-12


def test_an_arm_at_its_target_gets_only_the_uniform_share(live_study, make_rater):
    study = three_models(live_study, n_prompts=30, redundancy=1, allocation="adaptive", tasks_per_rater=100,
                         target_halfwidth=0.5)  # fmt: skip
    imitation = LanguageModel.objects.get(study=study, role="imitation")
    r = make_rater(study)
    for c in Comparison.objects.filter(study=study):
        if imitation.pk not in arm_of(c.pk):
            continue
        a = Assignment.objects.create(
            rater=r, comparison=c, token=f"t{c.pk}", left_side="A", status="live",
            leased_at=engine.timezone.now(), expires_at=engine.timezone.now() + engine.timedelta(minutes=5),
        )  # fmt: skip
        Comparison.objects.filter(pk=c.pk).update(n_live=1)
        engine.submit(a.token, r, RatingInput(preference="left"))
    state = engine.arm_state(study, refresh=True)
    by_arm = {row["arm"]: row for row in state.rows}
    imitation_arm = next(k for k in state.keys if imitation.pk in k)
    # 30 prompts rated once each: precise enough for +-0.5, but its comparisons are full (k=1).
    assert not by_arm[imitation_arm]["wanted"] and not by_arm[imitation_arm]["room"]
    assert dict(zip(state.keys, state.probabilities, strict=True))[imitation_arm] == 0.0


def rate_everything(study, rater, preference="left"):
    closed_at = None
    for i in range(200):
        a = engine.lease_next(rater, study)
        if a is None:
            break
        rating_actions.submit_rating(a.token, rater, RatingInput(preference=preference))
        study.refresh_from_db()
        if study.status == Study.Status.CLOSED and closed_at is None:
            closed_at = i + 1
    return closed_at


def test_a_study_closes_itself_when_precise(live_study, make_rater, monkeypatch, client, django_user_model):
    monkeypatch.setattr(rating_actions, "STOP_CHECK_SECONDS", 0.0)
    study = live_study(n_prompts=40, redundancy=1, tasks_per_rater=100, stop_when_precise=True, target_halfwidth=0.3)
    r = make_rater(study)
    closed_at = rate_everything(study, r, preference="left")
    # Thirty prompts is the least the rule looks at; +-0.3 is reached there.
    assert closed_at == 30
    study.refresh_from_db()
    assert study.status == Study.Status.CLOSED
    assert "After 30 crowd ratings" in study.stopped_reason
    assert "imitation-1" in study.stopped_reason
    assert engine.lease_next(make_rater(study, "late"), study) is None
    # The study page says why it closed.
    client.force_login(django_user_model.objects.create_superuser("boss", "boss@example.com", "pw"))
    page = client.get(f"/studies/{study.slug}/").content.decode()
    assert 'id="stopped-reason"' in page and "Closed by its stopping rule" in page and "After 30 crowd ratings" in page
    # A researcher reopening and closing it clears the rule's reason.
    actions.mark_study_ready(study)
    actions.close_study(study)
    study.refresh_from_db()
    assert study.stopped_reason == ""


def test_without_the_setting_the_study_keeps_running(live_study, make_rater, monkeypatch):
    monkeypatch.setattr(rating_actions, "STOP_CHECK_SECONDS", 0.0)
    study = live_study(n_prompts=40, redundancy=1, tasks_per_rater=100, target_halfwidth=0.3)
    assert rate_everything(study, make_rater(study)) is None
    study.refresh_from_db()
    assert study.status == Study.Status.LIVE and study.stopped_reason == ""


def test_the_check_is_throttled(live_study, make_rater, monkeypatch):
    calls = []
    monkeypatch.setattr("evalsite.dashboard.study_plan.close_if_rule_met", lambda s: calls.append(s.pk))
    study = live_study(n_prompts=5, redundancy=1, tasks_per_rater=100, stop_when_precise=True)
    rate_everything(study, make_rater(study))
    assert len(calls) == 1  # five submits within STOP_CHECK_SECONDS: one check


def test_a_broker_outage_never_fails_a_stored_rating(live_study, make_rater, monkeypatch):
    def down(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(rating_actions, "send_task", down)
    study = live_study(n_prompts=3, redundancy=1, tasks_per_rater=10, stop_when_precise=True)
    rater = make_rater(study)
    lease = engine.lease_next(rater, study)
    rating = rating_actions.submit_rating(lease.token, rater, RatingInput(preference="left"))
    assert rating.pk and Assignment.objects.get(pk=lease.pk).status == Assignment.Status.SUBMITTED
    # Not throttled after a failed send: the next submit tries again.
    assert rating_actions._last_stop_check == {}
