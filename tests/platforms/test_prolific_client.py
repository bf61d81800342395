"""The Prolific client against the contract server (fake_prolific.py): shapes, errors, 429, timeouts."""

import base64
import hashlib
import hmac
import json

import pytest

from evalsite.platforms import prolific
from evalsite.platforms.errors import Refused, Unsure

from .fake_prolific import FakeProlific


@pytest.fixture
def server():
    fake = FakeProlific(token="t0k").start()
    yield fake
    fake.stop()


@pytest.fixture
def client(server):
    waits = []
    with prolific.ProlificClient("t0k", base=server.base_url, timeout=0.5, sleep=waits.append) as c:
        c.waits = waits
        yield c


STUDY = {
    "name": "Compare two answers",
    "internal_name": "evalsite crowd",
    "description": "Say which answer is better.",
    "external_study_url": "https://evalsite.example/r/crowd/?PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}",
    "prolific_id_option": "url_parameters",
    "completion_codes": [{"code": "DONE", "code_type": "COMPLETED", "actions": [{"action": "MANUALLY_REVIEW"}]}],
    "total_available_places": 5,
    "estimated_completion_time": 10,
    "reward": 250,
}


def test_create_publish_and_places_only_grow(client, server):
    study = client.create_study(STUDY)
    assert study["status"] == "UNPUBLISHED" and len(study["id"]) == 24
    assert client.transition_study(study["id"], "PUBLISH")["status"] == "ACTIVE"
    assert client.update_study(study["id"], total_available_places=8)["total_available_places"] == 8
    with pytest.raises(Refused, match="only increase"):
        client.update_study(study["id"], total_available_places=3)
    assert client.get_study(study["id"])["total_available_places"] == 8


def test_a_bad_token_is_refused_with_the_platform_message(server):
    with prolific.ProlificClient("wrong", base=server.base_url) as c, pytest.raises(Refused) as info:
        c.get_study("x")
    assert info.value.status == 401 and "credentials" in str(info.value)


def test_submissions_are_read_across_pages(client, server, monkeypatch):
    monkeypatch.setattr(prolific, "PAGE_SIZE", 2)
    study_id = server.add_study()
    ids = {server.add_submission(study_id) for _ in range(5)}
    server.add_submission(server.add_study())  # another study's: not listed
    assert {s["id"] for s in client.list_submissions(study_id)} == ids
    assert server.count("GET", "/submissions/$") == 3


def test_a_429_waits_for_retry_after_then_succeeds(client, server):
    study_id = server.add_study()
    server.fail("GET", f"/studies/{study_id}/", "429")
    server.fail("GET", f"/studies/{study_id}/", "429")
    assert client.get_study(study_id)["id"] == study_id
    assert client.waits == [0.0, 0.0]  # Retry-After: 0, twice


def test_reads_retry_once_after_a_server_error_writes_of_money_never(client, server):
    study_id = server.add_study()
    server.fail("GET", f"/studies/{study_id}/", "500")
    assert client.get_study(study_id)["id"] == study_id
    sub = server.add_submission(study_id)
    setup = client.set_up_bonuses(study_id, [(sub, 150)])
    assert setup["amount"] == 150 and server.paid(sub) == []  # setting up pays nothing
    server.fail("POST", "/pay/", "timeout")
    with pytest.raises(Unsure):
        client.pay_bonuses(setup["id"])
    assert server.paid(sub) == [150]  # it was paid, and the client did not pay again
    assert server.count("POST", "/pay/") == 1


def test_reject_needs_a_category_and_100_characters(client, server):
    sub = server.add_submission(server.add_study())
    with pytest.raises(Refused, match="100 chars"):
        client.reject(sub, category="FAILED_CHECK", message="too short")
    answer = client.reject(sub, category="FAILED_CHECK", message="x" * 100)
    assert answer["status"] == "REJECTED"
    assert client.reject(sub, category="FAILED_CHECK", message="x" * 100)["status"] == "REJECTED"  # idempotent


def test_request_return_and_bonus_ids_must_have_taken_part(client, server):
    study_id = server.add_study()
    sub = server.add_submission(study_id)
    assert client.request_return(sub, ["Didn't finish the study"])["return_requested"]
    with pytest.raises(Refused, match="did not take part"):
        client.set_up_bonuses(study_id, [("not-a-participant", 100)])


def test_webhook_signature_as_documented():
    body = json.dumps({"resource_id": "s1", "event_type": "submission.status.change", "status": "RETURNED"})
    timestamp = "1764400000"
    signature = base64.b64encode(hmac.new(b"sec", (timestamp + body).encode(), hashlib.sha256).digest()).decode()
    assert prolific.verify_signature("sec", timestamp, body.encode(), signature)
    assert not prolific.verify_signature("other", timestamp, body.encode(), signature)
    assert not prolific.verify_signature("sec", "1764400001", body.encode(), signature)
    assert not prolific.verify_signature("sec", timestamp, body.encode(), "")
