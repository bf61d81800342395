"""The study page's "Crowd platforms" section, its buttons, the API endpoints, the webhook, the command."""

import base64
import hashlib
import hmac
import json
import time

import pytest
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from evalsite.platforms.models import AuditEntry, Bonus, PlatformStudy, PlatformSubmission
from evalsite.rating.assignment import lease_next
from evalsite.rating.models import Assignment

from .conftest import join

pytestmark = pytest.mark.django_db


def test_the_section_offers_publishing_to_the_owner_only(client, live_study, owner, collaborator, fake_prolific):
    client.force_login(owner)
    page = client.get("/studies/crowd/").content.decode()
    assert 'id="platforms"' in page and "Crowd platforms" in page
    assert "Publish on Prolific" in page and "Create the HIT" in page
    assert "EVALSITE_API_KEY_PROLIFIC_CROWD" in page and "set on this server" in page
    assert "test-token" not in page
    client.force_login(collaborator)
    page = client.get("/studies/crowd/").content.decode()
    assert 'id="platforms"' in page and "Publish on Prolific" not in page
    r = client.post("/platforms/crowd/prolific/publish/", {"reward": "2.50", "estimated_minutes": "8"})
    assert r.status_code == 404 and not fake_prolific.studies


def test_publish_review_and_pay_from_the_page(client, live_study, owner, fake_prolific):
    client.force_login(owner)
    r = client.post("/platforms/crowd/prolific/publish/", {"reward": "2.50", "estimated_minutes": "8", "places": "6"},
                    follow=True)
    page = r.content.decode()
    assert "Published on Prolific" in page
    (study_id,) = fake_prolific.studies
    assert fake_prolific.studies[study_id]["total_available_places"] == 6
    assert fake_prolific.studies[study_id]["external_study_url"].startswith("http://testserver/r/crowd/?PROLIFIC_PID=")
    sub = fake_prolific.add_submission(study_id, "p1")
    join(live_study, "prolific", "p1", sub)
    page = client.post("/platforms/crowd/prolific/sync/", follow=True).content.decode()
    assert study_id in page and "awaiting review: 1" in page and "Review 1: approve 1, reject 0" in page
    page = client.post("/platforms/crowd/prolific/review/", follow=True).content.decode()
    assert "1 approved" in page and fake_prolific.submissions[sub]["status"] == "APPROVED"
    assert "spent 2.50" in page  # one reward paid
    page = client.post("/platforms/crowd/prolific/bonuses/", {"flat": "0.40", "label": "bonus"}, follow=True)
    assert "1 bonus(es) recorded (0.40 in all)" in page.content.decode()
    assert "Pay 1 pending bonus(es) (0.40)" in page.content.decode()
    page = client.post("/platforms/crowd/prolific/pay-bonuses/", follow=True).content.decode()
    assert "1 bonus(es) paid" in page and fake_prolific.paid(sub) == [40]
    assert "spent 2.90" in page
    page = client.post("/platforms/crowd/prolific/add-places/", {"total": "3"}, follow=True).content.decode()
    assert "places can only increase" in page
    assert 'id="platform-audit"' in page and "places.increase" in page


def test_csv_upload_and_resolving_a_bonus_from_the_page(client, live_study, owner, fake_prolific):
    client.force_login(owner)
    client.post("/platforms/crowd/prolific/publish/", {"reward": "2.50", "estimated_minutes": "8"})
    (study_id,) = fake_prolific.studies
    sub = fake_prolific.add_submission(study_id, "p1")
    join(live_study, "prolific", "p1", sub)
    client.post("/platforms/crowd/prolific/review/")
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("b.csv", b"id,amount\np1,1.25\n", content_type="text/csv")
    page = client.post("/platforms/crowd/prolific/bonuses/", {"csv_file": upload, "label": "round1"}, follow=True)
    assert "1 bonus(es) recorded (1.25 in all)" in page.content.decode()
    fake_prolific.fail("POST", "/pay/", "500")
    page = client.post("/platforms/crowd/prolific/pay-bonuses/", follow=True).content.decode()
    assert "Bonuses that need you" in page and "It was paid" in page
    bonus = Bonus.objects.get()
    page = client.post(f"/platforms/crowd/bonus/{bonus.pk}/", {"outcome": "cancel"}, follow=True).content.decode()
    assert "sending → failed" in page and Bonus.objects.get().state == "failed"


@pytest.fixture
def api(owner, collaborator):
    def make(user):
        c = APIClient()
        c.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
        return c

    return make


def test_the_api_publishes_and_summarises_for_the_owner_only(api, live_study, owner, collaborator, fake_prolific):
    base = "/api/v1/studies/crowd/platforms"
    offer = {"reward_cents": 300, "estimated_minutes": 9}
    r = api(collaborator).post(f"{base}/prolific/publish/", offer, format="json")
    assert r.status_code == 403 and not fake_prolific.studies
    r = api(owner).post(f"{base}/prolific/publish/", offer, format="json")
    assert r.status_code == 201, r.content
    assert r.json()["result"]["places"] == 5
    r = api(owner).post(f"{base}/prolific/publish/", {"reward_cents": 300, "estimated_minutes": 9}, format="json")
    assert r.status_code == 409
    r = api(owner).post(f"{base}/prolific/add-places/", {"total": 7}, format="json")
    assert r.status_code == 200 and r.json()["result"] == {"from": 5, "to": 7}
    r = api(owner).post(f"{base}/prolific/add-places/", {"total": 2}, format="json")
    assert r.status_code == 409
    r = api(owner).post(f"{base}/prolific/bonuses/", {"rows": [{"id": "nobody", "amount": "1.00"}]}, format="json")
    assert r.status_code == 400 and "no such submission" in r.json()["detail"]
    assert api(owner).post(f"{base}/teams/sync/").status_code == 404
    assert api(owner).post(f"{base}/prolific/explode/").status_code == 404
    summary = api(collaborator).get(f"{base}/").json()  # reading is open to collaborators
    prolific = next(p for p in summary["platforms"] if p["platform"] == "prolific")
    assert prolific["link"]["places"] == 7 and prolific["link"]["state"] == "ACTIVE"
    assert summary["can_change"] is False
    assert [(e["action"], e["ok"]) for e in summary["audit"][:3]] == [
        ("bonus.record", False), ("places.increase", False), ("places.increase", True)
    ]
    mturk = next(p for p in summary["platforms"] if p["platform"] == "mturk")
    assert mturk["published"] is False


def test_a_platform_that_is_down_answers_502_and_is_logged(api, live_study, owner, fake_prolific):
    base = "/api/v1/studies/crowd/platforms"
    api(owner).post(f"{base}/prolific/publish/", {"reward_cents": 300, "estimated_minutes": 9}, format="json")
    fake_prolific.fail("GET", "/studies/", "500")
    fake_prolific.fail("GET", "/studies/", "500")  # the read is retried once
    r = api(owner).post(f"{base}/prolific/sync/")
    assert r.status_code == 502 and "HTTP 500" in r.json()["detail"]
    entry = AuditEntry.objects.filter(action="sync").get()
    assert not entry.ok and PlatformStudy.objects.get().last_error


def sign(secret: str, body: bytes) -> dict:
    ts = str(int(time.time()))
    sig = base64.b64encode(hmac.new(secret.encode(), ts.encode() + body, hashlib.sha256).digest()).decode()
    return {"HTTP_X_PROLIFIC_REQUEST_TIMESTAMP": ts, "HTTP_X_PROLIFIC_REQUEST_SIGNATURE": sig}


def test_the_webhook_reclaims_the_lease_of_who_returned(client, live_study, monkeypatch):
    rater = join(live_study, "prolific", "p-left", "SESSION1", tasks=0)
    lease = lease_next(rater, live_study)
    body = json.dumps({"resource_id": "SESSION1", "event_type": "submission.status.change",
                       "participant_id": "p-left", "status": "RETURNED"}).encode()
    url = "/platforms/hooks/prolific/"
    assert client.post(url, body, content_type="application/json").status_code == 404  # no secret: not set up
    monkeypatch.setenv("EVALSITE_PROLIFIC_WEBHOOK_SECRET", "hook-secret")
    r = client.post(url, body, content_type="application/json", **sign("wrong", body))
    assert r.status_code == 403 and Assignment.objects.get(pk=lease.pk).status == "live"
    r = client.post(url, body, content_type="application/json", **sign("hook-secret", body))
    assert r.status_code == 200 and r.json() == {"result": "released"}
    assert Assignment.objects.get(pk=lease.pk).status == "expired"
    assert AuditEntry.objects.get(action="webhook").detail["released"] is True
    r = client.post(url, body, content_type="application/json", **sign("hook-secret", body))  # delivered again
    assert r.json() == {"result": "stored"}


def test_the_poll_command_reclaims_and_reports(live_study, owner, fake_prolific):
    from evalsite.platforms import actions

    actions.publish(live_study, "prolific", owner, entry_url="https://e.example/r/crowd/", reward_cents=100,
                    estimated_minutes=5)
    (study_id,) = fake_prolific.studies
    sub = fake_prolific.add_submission(study_id, "p-gone", status="ACTIVE")
    lease = lease_next(join(live_study, "prolific", "p-gone", sub, tasks=0), live_study)
    fake_prolific.submissions[sub]["status"] = "TIMED-OUT"
    from io import StringIO

    out = StringIO()
    call_command("platforms_poll", "--study", "crowd", stdout=out)
    assert "1 lease(s) reclaimed" in out.getvalue()
    assert Assignment.objects.get(pk=lease.pk).status == "expired"
    assert PlatformSubmission.objects.get(external_id=sub).lease_released_at is not None


def test_the_admin_lists_are_read_only(admin_client, live_study, owner, fake_prolific):
    from evalsite.platforms import actions

    actions.publish(live_study, "prolific", owner, entry_url="https://e.example/r/crowd/", reward_cents=100,
                    estimated_minutes=5)
    for model in ("platformstudy", "platformsubmission", "bonus", "auditentry"):
        assert admin_client.get(f"/admin/platforms/{model}/").status_code == 200
    assert admin_client.get("/admin/platforms/bonus/add/").status_code == 403
    link = PlatformStudy.objects.get()
    page = admin_client.get(f"/admin/platforms/platformstudy/{link.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
