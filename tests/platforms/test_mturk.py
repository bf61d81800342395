"""MTurk through the actions, with botocore's Stubber standing in for the requester API.

The Stubber checks every call's parameters against MTurk's service model (shapes from
botocore's ``mturk/2017-01-17`` definition, the published API) and answers with the documented
response shapes; the database and evalsite's code are real. Sandbox endpoint by default.
"""

from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import ANY, Stubber

from evalsite.platforms import actions, mturk
from evalsite.platforms.errors import PlatformActionFailed
from evalsite.platforms.models import AuditEntry, Bonus, PlatformStudy
from evalsite.studies.errors import ActionConflict, ActionError

from .conftest import join

pytestmark = pytest.mark.django_db
ENTRY = "https://evalsite.example/r/crowd/"
HIT_ID = "3Z5NHTSXAMPLEHITIDAAAAAAAAAAAA"


@pytest.fixture
def stub(monkeypatch):
    client = boto3.client(
        "mturk", region_name="us-east-1", endpoint_url=mturk.SANDBOX_ENDPOINT,
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )
    stubber = Stubber(client)
    made = []

    def make_client(*, sandbox=True):
        made.append(sandbox)
        return client

    monkeypatch.setattr(mturk, "make_client", make_client)
    with stubber:
        stubber.made = made
        yield stubber
        stubber.assert_no_pending_responses()


def hit(status="Assignable", max_assignments=5, available=5):
    return {"HIT": {"HITId": HIT_ID, "HITTypeId": "TYPE", "HITStatus": status, "MaxAssignments": max_assignments,
                    "NumberOfAssignmentsAvailable": available, "NumberOfAssignmentsPending": 0,
                    "NumberOfAssignmentsCompleted": 0, "Reward": "2.50", "Title": "Compare two answers"}}


def create_hit(stub, live_study, owner):
    stub.add_response("create_hit", hit(), {
        "Title": "Compare two answers", "Description": ANY, "Keywords": ANY, "Reward": "2.50",
        "MaxAssignments": 5, "LifetimeInSeconds": 7 * 24 * 3600, "AssignmentDurationInSeconds": 24 * 60,
        "AutoApprovalDelayInSeconds": 3 * 86400, "Question": mturk.external_question(ENTRY),
        "RequesterAnnotation": ANY, "UniqueRequestToken": ANY,
    })
    return actions.publish(live_study, "mturk", owner, entry_url=ENTRY, reward_cents=250, estimated_minutes=8)


def test_the_hit_is_created_in_the_sandbox_with_the_external_question(stub, live_study, owner):
    result = create_hit(stub, live_study, owner)
    link = PlatformStudy.objects.get(platform="mturk")
    assert (link.external_id, link.state, link.places, link.sandbox) == (HIT_ID, "Assignable", 5, True)
    assert stub.made == [True] and "sandbox" in result.message and len(link.request_token) <= 64
    assert "<ExternalURL>https://evalsite.example/r/crowd/</ExternalURL>" in mturk.external_question(ENTRY)
    with pytest.raises(ActionError, match="EVALSITE_MTURK_ALLOW_PRODUCTION"):
        PlatformStudy.objects.all().delete()
        actions.publish(live_study, "mturk", owner, entry_url=ENTRY, reward_cents=250, estimated_minutes=8,
                        sandbox=False)


def test_a_create_whose_answer_was_lost_makes_no_second_hit(stub, live_study, owner):
    stub.add_client_error("create_hit", "ServiceFault", "Internal error", http_status_code=500)
    with pytest.raises(PlatformActionFailed):
        actions.publish(live_study, "mturk", owner, entry_url=ENTRY, reward_cents=250, estimated_minutes=8)
    link = PlatformStudy.objects.get()
    token = link.request_token
    assert token and not link.external_id
    # The retry sends the same token; MTurk refuses the duplicate and the HIT is found by its annotation.
    stub.add_client_error("create_hit", "RequestError", "The request token has already been used.",
                          expected_params={"UniqueRequestToken": token, **{k: ANY for k in (
                              "Title", "Description", "Keywords", "Reward", "MaxAssignments", "LifetimeInSeconds",
                              "AssignmentDurationInSeconds", "AutoApprovalDelayInSeconds", "Question",
                              "RequesterAnnotation")}})
    listed = hit()["HIT"] | {"RequesterAnnotation": link.config["annotation"]}
    stub.add_response("list_hits", {"HITs": [listed], "NumResults": 1}, {"MaxResults": 100})
    actions.publish(live_study, "mturk", owner, entry_url=ENTRY, reward_cents=250, estimated_minutes=8)
    assert PlatformStudy.objects.get().external_id == HIT_ID


def assignments(*rows):
    return {"Assignments": [
        {"AssignmentId": aid, "WorkerId": worker, "HITId": HIT_ID, "AssignmentStatus": status,
         "AcceptTime": datetime(2026, 11, 20, 10, tzinfo=UTC), "SubmitTime": datetime(2026, 11, 20, 10, 20, tzinfo=UTC)}
        for aid, worker, status in rows
    ], "NumResults": len(rows)}


LIST = {"HITId": HIT_ID, "MaxResults": 100, "AssignmentStatuses": ["Submitted", "Approved", "Rejected"]}


def test_review_approves_and_rejects_by_the_same_rule(stub, live_study, owner):
    create_hit(stub, live_study, owner)
    join(live_study, "mturk", "W-GOOD", "A-GOOD")
    join(live_study, "mturk", "W-BAD", "A-BAD", blocked=True, blocked_reason="Failed 2 attention checks (more than 1).")
    stub.add_response("get_hit", hit(available=2), {"HITId": HIT_ID})
    stub.add_response("list_assignments_for_hit", assignments(
        ("A-GOOD", "W-GOOD", "Submitted"), ("A-BAD", "W-BAD", "Submitted"), ("A-NONE", "W-NONE", "Submitted")), LIST)
    stub.add_response("approve_assignment", {}, {"AssignmentId": "A-GOOD", "RequesterFeedback": ANY})
    stub.add_response("reject_assignment", {}, {"AssignmentId": "A-BAD", "RequesterFeedback": ANY})
    stub.add_response("reject_assignment", {}, {"AssignmentId": "A-NONE", "RequesterFeedback": ANY})
    result = actions.review(live_study, "mturk", owner)
    assert (result.detail["approve"], result.detail["reject"], result.detail["return"]) == (1, 1, 1)
    link = PlatformStudy.objects.get()
    assert dict(link.submissions.values_list("external_id", "status")) == {
        "A-GOOD": "Approved", "A-BAD": "Rejected", "A-NONE": "Rejected"
    }
    assert link.places_taken == 3


def _approved_two(stub, live_study, owner):
    create_hit(stub, live_study, owner)
    for i in (1, 2):
        join(live_study, "mturk", f"W{i}", f"A{i}")
    stub.add_response("get_hit", hit(), {"HITId": HIT_ID})
    stub.add_response("list_assignments_for_hit", assignments(("A1", "W1", "Submitted"), ("A2", "W2", "Submitted")),
                      LIST)
    stub.add_response("approve_assignment", {}, {"AssignmentId": "A1", "RequesterFeedback": ANY})
    stub.add_response("approve_assignment", {}, {"AssignmentId": "A2", "RequesterFeedback": ANY})
    actions.review(live_study, "mturk", owner)


def test_bonuses_are_idempotent_under_retry(stub, live_study, owner):
    _approved_two(stub, live_study, owner)
    actions.add_bonuses(live_study, "mturk", owner, flat_cents=100)
    first, second = Bonus.objects.order_by("id")
    send = {"WorkerId": "W1", "BonusAmount": "1.00", "AssignmentId": "A1", "Reason": ANY,
            "UniqueRequestToken": first.request_token}
    stub.add_client_error("send_bonus", "ServiceFault", "Internal error", http_status_code=500, expected_params=send)
    with pytest.raises(PlatformActionFailed, match="Stopped"):
        actions.pay_bonuses(live_study, "mturk", owner)
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.state, second.state) == ("sending", "pending")
    # Retry: MTurk lists the first bonus (it was paid after all): confirmed, not sent again.
    ref = first.request_token[-10:]
    stub.add_response("list_bonus_payments", {"BonusPayments": [
        {"WorkerId": "W1", "BonusAmount": "1.00", "AssignmentId": "A1", "Reason": f"Thanks (ref {ref})",
         "GrantTime": datetime(2026, 11, 21, tzinfo=UTC)}], "NumResults": 1}, {"AssignmentId": "A1", "MaxResults": 100})
    stub.add_response("send_bonus", {}, {"WorkerId": "W2", "BonusAmount": "1.00", "AssignmentId": "A2", "Reason": ANY,
                                         "UniqueRequestToken": second.request_token})
    result = actions.pay_bonuses(live_study, "mturk", owner)
    assert result.detail == {"paid": 1, "failed": 0, "confirmed": 1, "stopped": "", "pending": 0, "unconfirmed": 0}
    assert set(Bonus.objects.values_list("state", flat=True)) == {"paid"}
    actions.pay_bonuses(live_study, "mturk", owner)  # nothing left: no call at all (the Stubber would fail)


def test_an_unlisted_unconfirmed_bonus_is_resent_with_the_same_token(stub, live_study, owner):
    _approved_two(stub, live_study, owner)
    actions.add_bonuses(live_study, "mturk", owner, rows=[("A1", 30)], label="extra")
    bonus = Bonus.objects.get()
    send = {"WorkerId": "W1", "BonusAmount": "0.30", "AssignmentId": "A1", "Reason": ANY,
            "UniqueRequestToken": bonus.request_token}
    stub.add_client_error("send_bonus", "ServiceFault", "Internal error", http_status_code=500, expected_params=send)
    with pytest.raises(PlatformActionFailed):
        actions.pay_bonuses(live_study, "mturk", owner)
    stub.add_response("list_bonus_payments", {"BonusPayments": [], "NumResults": 0},
                      {"AssignmentId": "A1", "MaxResults": 100})
    stub.add_response("send_bonus", {}, send)  # same token: MTurk would refuse to pay it twice
    actions.pay_bonuses(live_study, "mturk", owner)
    assert Bonus.objects.get().state == "paid" and Bonus.objects.get().attempts == 2


def test_places_grow_and_closing_expires_the_hit(stub, live_study, owner):
    create_hit(stub, live_study, owner)
    link = PlatformStudy.objects.get()
    with pytest.raises(ActionConflict, match="only increase"):
        actions.add_places(live_study, "mturk", owner, total=5)
    stub.add_response("create_additional_assignments_for_hit", {}, {
        "HITId": HIT_ID, "NumberOfAdditionalAssignments": 3, "UniqueRequestToken": f"{link.request_token[:40]}-places-8"
    })
    actions.add_places(live_study, "mturk", owner, total=8)
    assert PlatformStudy.objects.get().places == 8
    stub.add_response("update_expiration_for_hit", {}, {"HITId": HIT_ID, "ExpireAt": mturk.EXPIRED_AT})
    stub.add_response("get_hit", hit(status="Reviewable"), {"HITId": HIT_ID})
    assert "expired" in actions.close(live_study, "mturk", owner).message
    assert PlatformStudy.objects.get().state == "Reviewable"
    assert list(AuditEntry.objects.order_by("id").values_list("action", flat=True)) == [
        "publish", "places.increase", "places.increase", "close"
    ]


def test_without_aws_credentials_nothing_is_called(live_study, owner, monkeypatch):
    with pytest.raises(ActionConflict, match="No AWS credentials"):
        actions.publish(live_study, "mturk", owner, entry_url=ENTRY, reward_cents=250, estimated_minutes=8)
    entry = AuditEntry.objects.get()
    assert not entry.ok and "AWS_ACCESS_KEY_ID" in entry.message
