"""Unit tests of the lease engine; CI runs them on PostgreSQL and again on SQLite (``-m engine``)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from evalsite.rating import assignment as engine
from evalsite.rating.assignment import AssignmentNotFound, LeaseExpired, RatingInput
from evalsite.rating.attention import build_attention_checks
from evalsite.rating.models import Assignment, Rating
from evalsite.studies.models import Comparison

pytestmark = [pytest.mark.django_db, pytest.mark.engine]


@pytest.fixture(autouse=True)
def _no_sweep_throttle(monkeypatch):
    # Each test starts with a clean per-process sweep clock.
    monkeypatch.setattr(engine, "_last_sweep", {})


def rate(a: Assignment, rater, preference="left", **kw) -> Rating:
    return engine.submit(a.token, rater, RatingInput(preference=preference, **kw))


def test_k_is_respected_and_no_rater_sees_a_comparison_twice(live_study, make_rater):
    study = live_study(n_prompts=3, redundancy=2, tasks_per_rater=10)
    raters = [make_rater(study, f"w{i}") for i in range(5)]
    seen = {r.pk: [] for r in raters}
    for _ in range(4):
        for r in raters:
            a = engine.lease_next(r, study)
            if a is not None:
                seen[r.pk].append(a.comparison_id)
                rate(a, r)
    for ids in seen.values():
        assert len(ids) == len(set(ids))
    for c in Comparison.objects.filter(study=study):
        assert c.n_submitted == 2 and c.n_live == 0
        assert c.ratings.count() == 2
    # 3 comparisons × k=2 = 6 slots for 5 raters: the sixth lease fails, everyone else gets nothing.
    assert sum(len(v) for v in seen.values()) == 6


def test_fewest_ratings_first(live_study, make_rater):
    study = live_study(n_prompts=3, redundancy=3)
    first = make_rater(study, "first")
    a = engine.lease_next(first, study)
    rate(a, first)
    busy = a.comparison_id
    # Every other comparison has 0 ratings, so the next two raters must avoid the rated one.
    for name in ("second", "third"):
        r = make_rater(study, name)
        b = engine.lease_next(r, study)
        assert b.comparison_id != busy
        rate(b, r)


def test_resume_returns_the_same_live_lease(live_study, make_rater):
    study = live_study()
    r = make_rater(study)
    a = engine.lease_next(r, study)
    b = engine.lease_next(r, study)
    assert a.pk == b.pk and a.token == b.token
    assert Comparison.objects.get(pk=a.comparison_id).n_live == 1


def test_expired_lease_returns_to_the_pool(live_study, make_rater):
    study = live_study(n_prompts=1, redundancy=1)
    slow, fast = make_rater(study, "slow"), make_rater(study, "fast")
    a = engine.lease_next(slow, study)
    assert engine.lease_next(fast, study) is None  # the only slot is leased
    later = timezone.now() + timedelta(seconds=study.lease_seconds + 1)
    b = engine.lease_next(fast, study, now=later)
    assert b is not None and b.comparison_id == a.comparison_id
    a.refresh_from_db()
    assert a.status == Assignment.Status.EXPIRED
    c = Comparison.objects.get(pk=a.comparison_id)
    assert (c.n_live, c.n_submitted) == (1, 0)
    with pytest.raises(LeaseExpired):
        engine.submit(a.token, slow, RatingInput(preference="left"), now=later)


def test_periodic_sweep_expires_and_decrements(live_study, make_rater):
    study = live_study(n_prompts=2, redundancy=2)
    raters = [make_rater(study, f"w{i}") for i in range(3)]
    for r in raters:
        engine.lease_next(r, study)
    later = timezone.now() + timedelta(seconds=study.lease_seconds + 1)
    assert engine.expire_stale_leases(now=later) == 3
    assert engine.expire_stale_leases(now=later) == 0
    assert sum(c.n_live for c in Comparison.objects.filter(study=study)) == 0


def test_submitting_an_expired_lease_raises_a_clear_error(live_study, make_rater):
    study = live_study()
    r = make_rater(study)
    a = engine.lease_next(r, study)
    later = a.expires_at + timedelta(seconds=1)
    with pytest.raises(LeaseExpired, match="ran out"):
        engine.submit(a.token, r, RatingInput(preference="tie"), now=later)
    assert Comparison.objects.get(pk=a.comparison_id).n_live == 0
    assert not Rating.objects.exists()


def test_quota_stops_work(live_study, make_rater):
    study = live_study(n_prompts=4, tasks_per_rater=2)
    r = make_rater(study)
    for _ in range(2):
        rate(engine.lease_next(r, study), r)
    assert engine.lease_next(r, study) is None
    r.refresh_from_db()
    assert r.tasks_submitted == 2


def test_blocked_rater_gets_nothing(live_study, make_rater):
    study = live_study()
    r = make_rater(study, blocked=True)
    assert engine.lease_next(r, study) is None


def test_not_live_study_gives_no_work(live_study, make_rater):
    from evalsite.studies import lifecycle

    study = live_study()
    lifecycle.pause(study)
    assert engine.lease_next(make_rater(study), study) is None


def test_submit_is_idempotent_and_translates_sides(live_study, make_rater):
    study = live_study()
    r = make_rater(study)
    a = engine.lease_next(r, study)
    first = rate(
        a,
        r,
        "left",
        correct={"left": "correct", "right": "error"},
        style={"left": {"fluent": 5}, "right": {"fluent": 2}},
        strength=4,
    )
    replay = rate(a, r, "right")
    assert replay.pk == first.pk and Rating.objects.count() == 1
    other = "B" if a.left_side == "A" else "A"
    assert first.winner == a.left_side
    assert getattr(first, f"correct_{a.left_side.lower()}") == "correct"
    assert getattr(first, f"correct_{other.lower()}") == "error"
    assert first.style == {a.left_side: {"fluent": 5}, other: {"fluent": 2}}
    c = Comparison.objects.get(pk=a.comparison_id)
    assert (c.n_live, c.n_submitted) == (0, 1)
    a.refresh_from_db()
    assert a.status == Assignment.Status.SUBMITTED and a.submitted_at is not None
    assert first.server_seconds >= 0


def test_a_rater_cannot_submit_someone_elses_lease(live_study, make_rater):
    study = live_study()
    owner, thief = make_rater(study, "owner"), make_rater(study, "thief")
    a = engine.lease_next(owner, study)
    with pytest.raises(AssignmentNotFound):
        rate(a, thief)
    with pytest.raises(AssignmentNotFound):
        engine.submit("no-such-token", owner, RatingInput(preference="tie"))
    assert not Rating.objects.exists()


def test_error_spans_map_crlf_offsets_to_raw_text(live_study, make_rater):
    study = live_study(n_prompts=1)
    c = Comparison.objects.get(study=study)
    raw = "Line one.\r\nThe capital of Australia is Sydney.\r\nEnd."
    c.response_b.text = raw
    c.response_b.save()
    r = make_rater(study)
    a = engine.lease_next(r, study)
    side_b = "left" if a.left_side == "B" else "right"
    shown = raw.replace("\r\n", "\n")
    start = shown.index("Sydney")
    rating = rate(a, r, error_spans=[(side_b, start, start + len("Sydney"))])
    (span,) = rating.error_spans
    assert span["response"] == "B"
    assert raw[span["start"] : span["end"]] == "Sydney" == span["text"]


def test_attention_checks_are_mixed_in_and_failures_block(live_study, make_rater):
    study = live_study(n_prompts=4, attention_check_rate=1.0, max_attention_failures=1, redundancy=1)
    # launch() mixes the checks in (one per prompt); building again adds none
    checks = list(Comparison.objects.filter(study=study, is_attention_check=True))
    assert len(checks) == 4 and all(c.is_attention_check and c.expected_winner in "AB" for c in checks)
    assert build_attention_checks(study) == []  # idempotent
    r = make_rater(study)
    for _ in range(2):
        a = engine.lease_next(r, study)
        c = Comparison.objects.get(pk=a.comparison_id)
        assert c.is_attention_check
        wrong_screen = "right" if a.left_side == c.expected_winner else "left"
        rating = rate(a, r, wrong_screen)
        assert rating.attention_passed is False
    r.refresh_from_db()
    assert r.blocked and r.attention_failed == 2
    assert Rating.objects.filter(rater=r, flagged=False).count() == 0
    assert engine.lease_next(r, study) is None


def test_attention_checks_are_not_bound_by_k(live_study, make_rater):
    study = live_study(n_prompts=2, attention_check_rate=1.0, redundancy=1, max_attention_failures=5)
    assert Comparison.objects.filter(study=study, is_attention_check=True).count() == 2  # built by launch()
    for i in range(3):
        r = make_rater(study, f"w{i}")
        a = engine.lease_next(r, study)
        c = Comparison.objects.get(pk=a.comparison_id)
        assert c.is_attention_check
        passed = rate(a, r, "left" if a.left_side == c.expected_winner else "right")
        assert passed.attention_passed is True
    counts = sorted(Comparison.objects.filter(is_attention_check=True).values_list("n_submitted", flat=True))
    assert counts == [1, 2]  # fewest-first, and 2 > k = 1


def test_too_fast_is_counted_and_flagged(live_study, make_rater):
    study = live_study(min_seconds_per_task=30.0)
    r = make_rater(study)
    rating = rate(engine.lease_next(r, study), r)
    assert rating.flagged
    r.refresh_from_db()
    assert r.too_fast == 1 and not r.blocked


def test_management_commands(live_study, make_rater):
    from io import StringIO

    from django.core.management import call_command

    study = live_study(n_prompts=3)
    out = StringIO()
    call_command("build_attention_checks", study.slug, "--limit", "2", stdout=out)
    assert "Created 2" in out.getvalue()
    assert Comparison.objects.filter(study=study, is_attention_check=True).count() == 2
    r = make_rater(study)
    a = engine.lease_next(r, study)
    Assignment.objects.filter(pk=a.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    call_command("expire_leases", stdout=out)
    assert "Expired 1" in out.getvalue()
    assert Comparison.objects.get(pk=a.comparison_id).n_live == 0
