"""The rater pages through Django's test client: entry per platform, consent, tasks, completion."""

import re
from html.parser import HTMLParser

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from evalsite.rating.identity import pseudonym
from evalsite.rating.models import Assignment, Rater, Rating
from evalsite.studies import lifecycle
from evalsite.studies.models import Comparison, LanguageModel

from .pages import ANSWERED, token_of
from .pages import enter_and_consent as consent_and_first_task

pytestmark = [pytest.mark.django_db, pytest.mark.engine]

XSS = (
    '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
    "[click](javascript:window.pwned=3) ![tracker](https://evil.example/t.png) "
    '<a href="https://ok.example" onclick="window.pwned=4">ok</a> **bold**'
)


def test_prolific_entry_creates_a_rater_with_a_pseudonym(client, live_study):
    study = live_study()
    page = consent_and_first_task(client, study, "?PROLIFIC_PID=abc123&STUDY_ID=s1&SESSION_ID=x9")
    assert page.status_code == 200 and b"Task 1 of" in page.content
    rater = Rater.objects.get(study=study)
    # One participation = worker id + session; the pseudonym follows the worker.
    assert rater.platform == "prolific" and rater.external_id == "abc123#x9"
    assert rater.platform_data == {"STUDY_ID": "s1", "SESSION_ID": "x9", "worker_id": "abc123"}
    assert rater.pseudonym == pseudonym(study, "prolific", "abc123")
    assert "abc123" not in rater.pseudonym and len(rater.pseudonym) == 24
    assert rater.consented_at is not None
    # Frameable for MTurk, and the token in the form is this rater's live lease.
    assert "X-Frame-Options" not in page.headers
    assert Assignment.objects.get(token=token_of(page)).rater == rater


def test_mturk_entry_and_externalsubmit_form(client, live_study):
    study = live_study(tasks_per_rater=1)
    q = "?workerId=W1&assignmentId=A1&hitId=H1&turkSubmitTo=https%3A%2F%2Fworkersandbox.mturk.com"
    page = consent_and_first_task(client, study, q)
    r = client.post(f"/r/{study.slug}/task/{token_of(page)}/", {**ANSWERED, "preference": "tie"})
    assert r.status_code == 302 and r.url.split("?")[0].endswith("/task/")
    r = client.get(r.url)
    assert r.status_code == 302 and r.url.split("?")[0].endswith("/done/")
    done = client.get(r.url).content.decode()
    assert 'action="https://workersandbox.mturk.com/mturk/externalSubmit"' in done
    assert 'name="assignmentId" value="A1"' in done and "DONE123" in done
    # A new assignment is a new participation; a doctored turkSubmitTo never becomes the form's target.
    page = consent_and_first_task(client, study, "?workerId=W1&assignmentId=A2&turkSubmitTo=https%3A%2F%2Fevil.example")
    client.post(f"/r/{study.slug}/task/{token_of(page)}/", {**ANSWERED, "preference": "tie"})
    done = client.get(f"/r/{study.slug}/done/").content.decode()
    assert "evil.example" not in done and 'action="https://www.mturk.com/mturk/externalSubmit"' in done
    assert 'value="A2"' in done


def test_mturk_preview_shows_a_sample_without_leasing(client, live_study):
    study = live_study()
    r = client.get(f"/r/{study.slug}/?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=H1")
    assert r.status_code == 200 and b"preview" in r.content.lower()
    assert b"Answer 1" in r.content and b"Answer 2" in r.content
    assert not Assignment.objects.exists() and not Rater.objects.exists()


def test_plain_link_uses_a_signed_cookie_and_resumes(client, live_study):
    study = live_study()
    first = consent_and_first_task(client, study)
    rater = Rater.objects.get(study=study)
    assert rater.platform == "link" and rater.external_id
    assert client.cookies[f"evalsite_rater_{study.slug}"].value != str(rater.pk)  # signed, not bare
    again = client.get(f"/r/{study.slug}/")  # the same browser comes back
    assert again.url.split("?")[0].endswith("/task/") and Rater.objects.count() == 1
    assert token_of(client.get("/r/" + study.slug + "/task/")) == token_of(first)


def test_forged_cookie_is_ignored(client, live_study):
    study = live_study()
    client.cookies[f"evalsite_rater_{study.slug}"] = "1"
    r = client.get(f"/r/{study.slug}/task/")
    assert r.status_code == 400 and b"open the study link" in r.content  # no redirect loop
    assert client.get(f"/r/{study.slug}/task/?t=1:forged:sig").status_code == 400


def test_not_live_study_says_so(client, live_study):
    study = live_study()
    lifecycle.pause(study)
    r = client.get(f"/r/{study.slug}/?PROLIFIC_PID=p1")
    assert r.status_code == 200 and b"not running" in r.content
    assert not Rater.objects.exists()
    assert client.get("/r/no-such-study/").status_code == 404


def test_prolific_completion_redirect_and_code(client, live_study):
    study = live_study(tasks_per_rater=2)
    page = consent_and_first_task(client, study, "?PROLIFIC_PID=p2")
    for _ in range(2):
        client.post(f"/r/{study.slug}/task/{token_of(page)}/", {**ANSWERED, "preference": "left", "client_ms": "4321"})
        page = client.get(f"/r/{study.slug}/task/")
    assert page.status_code == 302
    done = client.get(page.url).content.decode()
    assert "https://app.prolific.com/submissions/complete?cc=DONE123" in done.replace("&amp;", "&")
    assert Rating.objects.count() == 2 and Rating.objects.first().client_seconds == pytest.approx(4.321)
    assert Rater.objects.get().completed_at is not None


def test_no_model_identity_in_any_page(client, live_study):
    study = live_study(n_prompts=2, roles=("teacher", "imitation", "base"), tasks_per_rater=3, instructions="Be fair.")
    LanguageModel.objects.filter(study=study).update(model_path="secret/model-path-xyz")
    pages = [client.get(f"/r/{study.slug}/?PROLIFIC_PID=p3", follow=True)]
    pages.append(client.post(pages[0].redirect_chain[-1][0], {"agree": "yes"}, follow=True))
    for _ in range(3):
        token = token_of(pages[-1])
        pages.append(client.get(f"/r/{study.slug}/task/"))
        pages.append(client.post(f"/r/{study.slug}/task/{token}/", {**ANSWERED, "preference": "tie"}, follow=True))
    pages.append(client.get(f"/r/{study.slug}/?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE"))
    forbidden = ["teacher", "imitation", "base-", "model-path-xyz", "model_id", "comparison"]
    forbidden += [m.alias for m in LanguageModel.objects.filter(study=study)]
    for page in pages:
        html = page.content.decode().lower()
        for word in forbidden:
            assert word not in html, f"{word!r} leaked into a rater page"


class TagCollector(HTMLParser):
    """Every real element and attribute in a page (escaped text is not an element)."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_model_text_is_sanitized(client, live_study):
    study = live_study(n_prompts=1)
    c = Comparison.objects.get(study=study)
    c.response_b.text = XSS
    c.response_b.save()
    page = consent_and_first_task(client, study).content.decode()
    parser = TagCollector()
    parser.feed(page)
    for tag, attrs in parser.tags:
        assert tag not in {"img", "iframe", "svg", "object", "embed"}, tag
        # Scripts: our static files, or inert JSON data blocks.
        assert tag != "script" or attrs.get("src", "").startswith("/static/") or attrs.get("type") == "application/json"
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert not attrs.get("href", "").lower().startswith("javascript"), attrs
    # Markdown still works, and the tracker "image" is at most a link: nothing is fetched.
    assert "<strong>bold</strong>" in page
    assert not any(tag == "img" for tag, _ in parser.tags)
    # The plain-text copy used for marking errors shows the raw text escaped, never as markup.
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in page


def test_form_errors_are_clear_and_keep_the_task(client, live_study):
    study = live_study()
    page = consent_and_first_task(client, study)
    token = token_of(page)
    r = client.post(f"/r/{study.slug}/task/{token}/", {**ANSWERED, "preference": ""})
    assert r.status_code == 400 and b"Please answer which answer is better" in r.content
    assert token_of(r) == token
    r = client.post(f"/r/{study.slug}/task/{token}/", {"preference": "left"})
    assert r.status_code == 400 and b"whether Answer 1 is correct" in r.content  # required, named
    r = client.post(
        f"/r/{study.slug}/task/{token}/",
        {**ANSWERED, "preference": "left", "error_spans": '[{"side":"left","start":0,"end":99999}]'},
    )
    assert r.status_code == 400 and b"does not fit" in r.content
    assert not Rating.objects.exists()


def test_submit_needs_the_raters_own_token(client, live_study):
    """Rater POSTs are CSRF-exempt (cookies may be blocked); the secrets they carry protect them."""
    from django.test import Client

    study = live_study()
    page = consent_and_first_task(client, study, "?PROLIFIC_PID=p1&SESSION_ID=s1")
    action = re.search(r'action="([^"]+)"', page.content.decode()).group(1).replace("&amp;", "&")
    stranger = Client(enforce_csrf_checks=True)  # another site's form: no token, no cookie
    r = stranger.post(action.split("?")[0], {**ANSWERED, "preference": "tie"})
    assert r.status_code == 400 and not Rating.objects.exists()
    other = consent_and_first_task(Client(), study, "?PROLIFIC_PID=p2&SESSION_ID=s2")
    theirs = re.search(r"\?t=([^\"&]+)", other.content.decode()).group(1)
    r = stranger.post(action.split("?")[0] + f"?t={theirs}", {**ANSWERED, "preference": "tie"})
    assert r.status_code == 404 and not Rating.objects.exists()  # not their lease
    r = Client(enforce_csrf_checks=True).post(action, {**ANSWERED, "preference": "tie"})
    assert r.status_code == 302 and Rating.objects.count() == 1


def test_a_bounce_creates_no_rater_and_another_session_is_a_new_participation(client, live_study):
    study = live_study()
    for _ in range(3):  # entry without consent, again and again (a cookie-less iframe)
        assert client.get(f"/r/{study.slug}/?workerId=W1&assignmentId=A1&hitId=H").status_code == 302
    assert not Rater.objects.exists()
    page = consent_and_first_task(client, study, "?PROLIFIC_PID=victim&SESSION_ID=s1")
    from django.test import Client

    attacker = Client()
    theirs = consent_and_first_task(attacker, study, "?PROLIFIC_PID=victim&SESSION_ID=guess")
    assert token_of(theirs) != token_of(page) and Rater.objects.count() == 2


def test_json_endpoints_are_gone(client, live_study):
    """The page is a form POST and its redirect; there is no second, JSON way to rate."""
    study = live_study()
    consent_and_first_task(client, study)
    assert client.get(f"/r/{study.slug}/api/next/").status_code == 404


def test_page_cycle_query_budget(client, live_study, monkeypatch):
    """What a browser does per task: the form POST, then the task page it redirects to."""
    from evalsite.rating import assignment

    monkeypatch.setattr(assignment, "_last_sweep", {study_pk: 1e18 for study_pk in range(1, 10_000)})
    study = live_study(tasks_per_rater=3)
    token = token_of(consent_and_first_task(client, study))
    with CaptureQueriesContext(connection) as submit_q:
        r = client.post(f"/r/{study.slug}/task/{token}/", {**ANSWERED, "preference": "tie"})
    assert r.status_code == 302
    with CaptureQueriesContext(connection) as next_q:
        assert client.get(r.url).status_code == 200
    # Savepoints (the test's transaction) are counted too; the budget guards against N+1 regressions.
    assert len(next_q.captured_queries) <= 10, [q["sql"] for q in next_q.captured_queries]
    assert len(submit_q.captured_queries) <= 10, [q["sql"] for q in submit_q.captured_queries]


def test_expired_lease_offers_the_next_task(client, live_study):
    from datetime import timedelta

    from django.utils import timezone

    study = live_study()
    page = consent_and_first_task(client, study)
    token = token_of(page)
    Assignment.objects.filter(token=token).update(expires_at=timezone.now() - timedelta(seconds=1))
    r = client.post(f"/r/{study.slug}/task/{token}/", {**ANSWERED, "preference": "tie"})
    assert r.status_code == 302 and "/task/?" in r.url and r.url.endswith("&expired=1")
    nxt = client.get(r.url)
    assert b"ran out" in nxt.content and token_of(nxt) != token
    assert Assignment.objects.get(token=token).status == "expired" and not Rating.objects.exists()


def test_blocked_rater_gets_no_code(client, live_study):
    study = live_study()
    consent_and_first_task(client, study, "?PROLIFIC_PID=bad")
    Rater.objects.filter(external_id="bad").update(blocked=True)
    r = client.get(f"/r/{study.slug}/task/")
    assert r.status_code == 302 and r.url.split("?")[0].endswith("/done/")
    done = client.get(r.url).content.decode()
    # Not the completion code: Prolific's failed-quality code, so the researcher sees why.
    assert "attention checks" in done and "DONE123-QC" in done
    assert done.count("DONE123") == done.count("DONE123-QC")


def test_rater_pages_are_framed_only_by_the_platforms_and_refuse_large_bodies(client, live_study):
    study = live_study()
    page = consent_and_first_task(client, study, "?PROLIFIC_PID=f1&SESSION_ID=s")
    csp = page.headers["Content-Security-Policy"]
    assert csp.startswith("frame-ancestors ") and "mturk.com" in csp and "prolific" in csp
    r = client.post(
        f"/r/{study.slug}/task/{token_of(page)}/", {**ANSWERED, "preference": "tie", "rationale": "x" * 300_000}
    )
    assert r.status_code == 413 and not Rating.objects.exists()
