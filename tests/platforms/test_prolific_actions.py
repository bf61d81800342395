"""Prolific through the actions, against the contract server: publish, review by the quality rule,
bonuses paid exactly once under retries, places only up, reclaim, close, audit, permission."""

import pytest

from evalsite.platforms import actions
from evalsite.platforms.errors import PlatformActionFailed
from evalsite.platforms.models import AuditEntry, Bonus, PlatformStudy, PlatformSubmission
from evalsite.rating.assignment import lease_next
from evalsite.rating.models import Assignment
from evalsite.studies.errors import ActionConflict, ActionError, ActionForbidden
from evalsite.studies.models import Comparison

from .conftest import join

pytestmark = pytest.mark.django_db
ENTRY = "https://evalsite.example/r/crowd/"


def publish(study, owner, **kw):
    kw.setdefault("reward_cents", 250)
    kw.setdefault("estimated_minutes", 8)
    return actions.publish(study, "prolific", owner, entry_url=ENTRY, **kw)


def remote(fake):
    (study,) = fake.studies.values()
    return study


def test_publish_creates_the_study_with_both_codes_and_the_places_the_study_needs(live_study, owner, fake_prolific):
    result = publish(live_study, owner)
    study = remote(fake_prolific)
    assert study["status"] == "ACTIVE" and study["reward"] == 250 and study["estimated_completion_time"] == 8
    assert study["total_available_places"] == 5  # 6 comparisons × k=3 / 4 tasks each, rounded up
    assert study["external_study_url"] == (
        ENTRY + "?PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
    )
    codes = {c["code_type"]: c["code"] for c in study["completion_codes"]}
    assert codes == {"COMPLETED": "DONE123", "FAILED_ATTENTION_CHECK": "DONE123-QC"}
    link = PlatformStudy.objects.get(study=live_study, platform="prolific")
    assert (link.external_id, link.state, link.places) == (study["id"], "ACTIVE", 5)
    assert "Published on Prolific" in result.message
    entry = AuditEntry.objects.get(action="publish")
    assert entry.ok and entry.actor == owner and entry.link == link
    with pytest.raises(ActionConflict, match="already on Prolific"):
        publish(live_study, owner)


def test_publish_refuses_without_a_token_and_never_stores_one(live_study, owner, fake_prolific, monkeypatch):
    monkeypatch.delenv("EVALSITE_API_KEY_PROLIFIC_CROWD")
    with pytest.raises(ActionConflict, match="EVALSITE_API_KEY_PROLIFIC_CROWD"):
        publish(live_study, owner)
    with pytest.raises(ActionError, match="not an API-key variable"):
        publish(live_study, owner, token_env="SECRET_KEY")
    assert fake_prolific.studies == {}
    assert not AuditEntry.objects.filter(ok=True).exists() and AuditEntry.objects.filter(ok=False).count() == 2
    assert "test-token" not in str(list(PlatformStudy.objects.values()))


def test_a_draft_whose_publish_failed_is_published_on_retry(live_study, owner, fake_prolific):
    fake_prolific.fail("POST", "/transition/$", "500")
    with pytest.raises(PlatformActionFailed):
        publish(live_study, owner)
    link = PlatformStudy.objects.get(study=live_study)
    assert link.state == "UNPUBLISHED" and link.external_id
    publish(live_study, owner)
    assert len(fake_prolific.studies) == 1 and remote(fake_prolific)["status"] == "ACTIVE"


def test_publish_needs_a_live_study(live_study, owner, fake_prolific):
    live_study.status = "ready"
    live_study.save()
    with pytest.raises(ActionConflict, match="Launch the study first"):
        publish(live_study, owner)


def _published(live_study, owner, fake):
    publish(live_study, owner)
    return remote(fake)["id"]


def test_review_approves_rejects_and_returns_by_the_quality_rule(live_study, owner, fake_prolific):
    sid = _published(live_study, owner, fake_prolific)
    f = fake_prolific
    good = f.add_submission(sid, "p-good")
    join(live_study, "prolific", "p-good", good)
    blocked = f.add_submission(sid, "p-blocked")
    join(live_study, "prolific", "p-blocked", blocked, blocked=True, attention_failed=2,
         blocked_reason="Failed 2 attention checks (more than 1).")
    fast = f.add_submission(sid, "p-fast")
    join(live_study, "prolific", "p-fast", fast, too_fast=3)
    ghost = f.add_submission(sid, "p-ghost")  # entered a code without ever rating here
    working = f.add_submission(sid, "p-working", status="ACTIVE")
    join(live_study, "prolific", "p-working", working, tasks=1)

    link = PlatformStudy.objects.get(study=live_study)
    actions.sync(live_study, "prolific", owner)
    assert actions.preview_review(link) == {"approve": 1, "reject": 2, "return": 1}
    result = actions.review(live_study, "prolific", owner)
    assert result.detail["approve"] == 1 and result.detail["reject"] == 2 and result.detail["return"] == 1
    assert f.submissions[good]["status"] == "APPROVED"
    assert f.submissions[blocked]["status"] == "REJECTED" and f.submissions[fast]["status"] == "REJECTED"
    assert f.submissions[ghost]["return_requested"] and f.submissions[working]["status"] == "ACTIVE"
    reject_bodies = [b for m, p, b in f.requests if p.endswith("/transition/") and b.get("action") == "REJECT"]
    assert {b["rejection_category"] for b in reject_bodies} == {"FAILED_CHECK", "TOO_QUICKLY"}
    assert all(len(b["message"]) >= 100 for b in reject_bodies)
    assert "Failed 2 attention checks" in next(b["message"] for b in reject_bodies if b["rejection_category"] ==
                                                 "FAILED_CHECK")
    sent = f.count("POST", "/submissions/")
    actions.review(live_study, "prolific", owner)  # nothing is decided twice
    assert f.count("POST", "/submissions/") == sent
    assert PlatformSubmission.objects.get(external_id=ghost).decision == "return"
    entry = AuditEntry.objects.filter(action="review").order_by("id").first()
    assert entry.ok and entry.detail["approve"] == 1


def _approved(live_study, owner, fake, n):
    sid = _published(live_study, owner, fake)
    subs = []
    for i in range(n):
        sub = fake.add_submission(sid, f"p{i}")
        join(live_study, "prolific", f"p{i}", sub, tasks=4)
        subs.append(sub)
    actions.review(live_study, "prolific", owner)
    assert all(fake.submissions[s]["status"] == "APPROVED" for s in subs)
    return subs


def test_a_bonus_batch_cut_by_a_timeout_pays_nobody_twice_on_retry(live_study, owner, fake_prolific, monkeypatch):
    monkeypatch.setenv("EVALSITE_PROLIFIC_BONUS_BATCH", "2")
    subs = _approved(live_study, owner, fake_prolific, 5)
    recorded = actions.add_bonuses(live_study, "prolific", owner, flat_cents=50, per_task_cents=10)
    assert recorded.detail["recorded"] == 5 and recorded.detail["total_cents"] == 5 * 90
    again = actions.add_bonuses(live_study, "prolific", owner, flat_cents=50, per_task_cents=10)
    assert again.detail["recorded"] == 0 and again.detail["already"] == 5  # the same label adds nothing
    # Batch 1 is paid; batch 2's pay call is carried out by Prolific, but its answer never arrives.
    fake_prolific.fail("POST", "/pay/$", "timeout", after=1)
    fake_prolific.fail("POST", "/submissions/bonus-payments/$", "429")  # batch 1's set-up: rate limited, retried
    with pytest.raises(PlatformActionFailed, match="Stopped"):
        actions.pay_bonuses(live_study, "prolific", owner)
    assert fake_prolific.count("POST", "/submissions/bonus-payments/$") == 3  # batch 1's set-up was sent twice
    states = sorted(Bonus.objects.values_list("state", flat=True))
    assert states == ["paid", "paid", "pending", "sending", "sending"]
    assert sum(len(fake_prolific.paid(s)) for s in subs) == 4  # the lost answer's batch was paid
    # Retry: the unconfirmed ones are confirmed from the submissions' bonus_payments, not paid again.
    result = actions.pay_bonuses(live_study, "prolific", owner)
    assert result.detail["confirmed"] == 2 and result.detail["paid"] == 1
    assert [fake_prolific.paid(s) for s in subs] == [[90]] * 5
    pays = fake_prolific.count("POST", "/pay/")
    actions.pay_bonuses(live_study, "prolific", owner)  # and again: nothing left to send
    assert fake_prolific.count("POST", "/pay/") == pays and set(Bonus.objects.values_list("state", flat=True)) == {
        "paid"
    }
    audit = list(AuditEntry.objects.filter(action="bonus.pay").order_by("id"))
    assert [e.ok for e in audit] == [False, True, True] and audit[0].detail["unconfirmed"] == 2


def test_an_unconfirmed_bonus_waits_for_the_researcher(live_study, owner, fake_prolific):
    (sub,) = _approved(live_study, owner, fake_prolific, 1)
    actions.add_bonuses(live_study, "prolific", owner, rows=[("p0", 125)], label="extra")
    fake_prolific.fail("POST", "/pay/", "500")  # the server failed: paid or not, nobody knows
    with pytest.raises(PlatformActionFailed):
        actions.pay_bonuses(live_study, "prolific", owner)
    bonus = Bonus.objects.get()
    assert bonus.state == "sending" and fake_prolific.paid(sub) == []
    actions.pay_bonuses(live_study, "prolific", owner)  # not shown as paid there: still not re-sent
    bonus.refresh_from_db()
    assert bonus.state == "sending" and fake_prolific.count("POST", "/pay/") == 1
    actions.resolve_bonus(bonus, owner, outcome="resend")  # the researcher saw it was not paid
    with pytest.raises(ActionConflict, match="nothing to resend"):
        actions.resolve_bonus(bonus, owner, outcome="resend")
    bonus.refresh_from_db()
    assert bonus.state == "pending"
    actions.pay_bonuses(live_study, "prolific", owner)
    assert fake_prolific.paid(sub) == [125] and Bonus.objects.get().state == "paid"
    assert AuditEntry.objects.filter(action="bonus.resend", ok=True).count() == 1


def test_bonus_rows_are_checked_whole_before_anything_is_recorded(live_study, owner, fake_prolific, monkeypatch):
    _approved(live_study, owner, fake_prolific, 2)
    with pytest.raises(ActionError) as info:
        actions.parse_bonus_csv("id,amount\np0,1.5\np1,abc\np2,0\np3,1.234\n")
    assert "line 3" in str(info.value) and "line 4" in str(info.value) and "line 5" in str(info.value)
    monkeypatch.setenv("EVALSITE_MAX_BONUS", "2.00")
    with pytest.raises(ActionError, match="largest bonus"):
        actions.parse_bonus_csv("p0,2.01\n")
    with pytest.raises(ActionError, match="no such submission"):
        actions.add_bonuses(live_study, "prolific", owner, rows=[("p0", 100), ("stranger", 100)])
    assert not Bonus.objects.exists()
    rows = actions.parse_bonus_csv("p0,1.50\np1,£0.25\n")
    assert actions.add_bonuses(live_study, "prolific", owner, rows=rows).detail["total_cents"] == 175


def test_places_only_increase(live_study, owner, fake_prolific):
    sid = _published(live_study, owner, fake_prolific)
    with pytest.raises(ActionConflict, match="only increase"):
        actions.add_places(live_study, "prolific", owner, total=4)
    with pytest.raises(ActionConflict, match="No more places are needed"):
        actions.add_places(live_study, "prolific", owner)  # 5 open places cover the 18 missing ratings
    for i in range(5):  # all five places taken: the missing ratings need five more
        fake_prolific.add_submission(sid, f"w{i}", status="ACTIVE")
    actions.sync(live_study, "prolific", owner)
    actions.add_places(live_study, "prolific", owner)
    assert fake_prolific.studies[sid]["total_available_places"] == 10
    actions.add_places(live_study, "prolific", owner, total=12)
    assert PlatformStudy.objects.get().places == 12 and fake_prolific.studies[sid]["total_available_places"] == 12
    assert [e.detail for e in AuditEntry.objects.filter(action="places.increase", ok=True).order_by("id")] == [
        {"from": 5, "to": 10}, {"from": 10, "to": 12}
    ]


def test_sync_reclaims_the_leases_of_who_returned_or_timed_out(live_study, owner, fake_prolific):
    sid = _published(live_study, owner, fake_prolific)
    leases = {}
    for name, status in (("p-returned", "RETURNED"), ("p-timed-out", "TIMED-OUT"), ("p-active", "ACTIVE")):
        sub = fake_prolific.add_submission(sid, name, status="ACTIVE")
        rater = join(live_study, "prolific", name, sub, tasks=0)
        leases[name] = lease_next(rater, live_study)
        fake_prolific.submissions[sub]["status"] = status
    assert sum(Comparison.objects.values_list("n_live", flat=True)) == 3
    result = actions.sync(live_study, "prolific", owner)
    assert result.detail["released"] == 2
    status = {name: Assignment.objects.get(pk=a.pk).status for name, a in leases.items()}
    assert status == {"p-returned": "expired", "p-timed-out": "expired", "p-active": "live"}
    assert sum(Comparison.objects.values_list("n_live", flat=True)) == 1  # two slots back in the pool
    assert actions.sync(live_study, "prolific", owner).detail["released"] == 0


def test_close_stops_the_study_and_poll_closes_it_when_the_study_closes(live_study, owner, fake_prolific):
    sid = _published(live_study, owner, fake_prolific)
    from evalsite.studies.actions import close_study

    close_study(live_study, owner)
    lines = actions.poll()
    assert any("stopped" in line for line in lines)
    assert fake_prolific.studies[sid]["status"] == "AWAITING REVIEW"
    with pytest.raises(ActionConflict, match="nothing to close"):
        actions.close(live_study, "prolific", owner)


def test_only_the_owner_acts_and_every_try_is_audited(live_study, owner, collaborator, fake_prolific):
    with pytest.raises(ActionForbidden):
        publish(live_study, collaborator)
    _published(live_study, owner, fake_prolific)
    for call in (actions.sync, actions.review, actions.pay_bonuses, actions.close):
        with pytest.raises(ActionForbidden):
            call(live_study, "prolific", collaborator)
    with pytest.raises(ActionForbidden):
        actions.add_places(live_study, "prolific", collaborator, total=50)
    refused = AuditEntry.objects.filter(actor=collaborator)
    assert refused.count() == 6 and not refused.filter(ok=True).exists()
    assert remote(fake_prolific)["total_available_places"] == 5
