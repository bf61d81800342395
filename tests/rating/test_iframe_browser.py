"""MTurk's way: the study inside a cross-site iframe, where the browser withholds our cookie.

The outer page (the "HIT") is served from another site (127.0.0.1 vs localhost). Over plain HTTP
our rater cookie is SameSite=Lax, so Chromium never sends it inside the cross-site frame: exactly
a browser that blocks third-party cookies. The worker must still get from consent through three
tasks to the completion code, with one rater created and no redirect loop.
"""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from evalsite.rating.models import Rater, Rating

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def hit_page(live_server):
    """A page on another site that frames the study link, like MTurk's ExternalQuestion."""
    frames: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's API
            body = f'<!doctype html><title>HIT</title><iframe id="hit" src="{frames["src"]}" width="1000" '
            body += 'height="1400"></iframe>'
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = urlsplit(live_server.url).port
    base = f"http://localhost:{port}"  # the study's site; the HIT is on 127.0.0.1: cross-site

    def frame(path: str) -> str:
        frames["src"] = base + path
        return f"http://127.0.0.1:{server.server_address[1]}/hit"

    yield frame
    server.shutdown()


def test_a_site_that_is_not_a_crowd_platform_cannot_frame_the_study(browser, live_study, hit_page):
    study = live_study(slug="framed")
    page = browser.new_page()
    page.goto(hit_page(f"/r/{study.slug}/?PROLIFIC_PID=x&SESSION_ID=y"))
    page.wait_for_load_state("load")  # the parent's load waits for the frame's (error) document
    frame = page.frame_locator("#hit")
    assert frame.locator("#start").count() == 0  # blocked by frame-ancestors
    page.close()


def test_three_tasks_and_the_code_inside_a_cross_site_iframe(browser, live_study, hit_page, tmp_path, settings):
    settings.RATER_FRAME_ANCESTORS = "http://127.0.0.1:*"  # the test's "MTurk"
    study = live_study(slug="hit", n_prompts=3, tasks_per_rater=3)
    query = "?workerId=W9&assignmentId=A9&hitId=H9&turkSubmitTo=https%3A%2F%2Fworkersandbox.mturk.com"
    context = browser.new_context(viewport={"width": 1100, "height": 1500})
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(hit_page(f"/r/{study.slug}/{query}"))
    frame = page.frame_locator("#hit")
    frame.locator("input[name=agree]").check()
    frame.locator("#start").click()
    frame.locator("#progress").wait_for()
    page.screenshot(path=str(tmp_path / "hit-task.png"))
    for n in (1, 2, 3):
        frame.locator("#progress").filter(has_text=f"Task {n} of 3").wait_for()
        for name, value in (("preference", "left"), ("correct_left", "correct"), ("correct_right", "error")):
            frame.locator(f"label:has(input[name={name}][value={value}])").click()
        frame.locator("#submit").click()
    frame.locator("#completion-code").wait_for()
    assert frame.locator("#completion-code").inner_text().strip() == "DONE123"
    assert 'value="A9"' in frame.locator("#mturk-submit").inner_html()
    page.screenshot(path=str(tmp_path / "hit-done.png"))
    context.close()
    assert Rater.objects.filter(study=study).count() == 1
    assert Rating.objects.filter(study=study).count() == 3
    # No bouncing: the frame loaded the consent page once (GET, then the POST of agreeing).
    assert sum(1 for url in requests if "/consent/" in url) == 2, requests


def test_honest_worker_waits_while_made_up_ids_hold_the_pool(browser, live_server, live_study, make_rater):
    """Hoarders hold every slot: the worker sees no code, the page looks again by itself, and once
    the hoarders' short first leases lapse it gets a task."""
    from datetime import timedelta

    from django.utils import timezone

    from evalsite.rating import assignment as engine
    from evalsite.rating.models import Assignment

    study = live_study(slug="hoard", n_prompts=2, redundancy=1, tasks_per_rater=5)
    for i in range(2):
        engine.lease_next(make_rater(study, f"fake{i}", consented_at=timezone.now()), study)
    page = browser.new_page()
    page.goto(f"{live_server.url}/r/{study.slug}/?PROLIFIC_PID=honest&SESSION_ID=s1")
    page.check("input[name=agree]")
    page.click("#start")
    page.wait_for_selector("#wait")
    assert "DONE123" not in page.content() and "being worked on" in page.inner_text("#wait")
    leases = Assignment.objects.filter(status="live")
    assert all((a.expires_at - a.leased_at).total_seconds() == engine.FIRST_LEASE_SECONDS for a in leases)
    leases.update(expires_at=timezone.now() - timedelta(seconds=1))  # the hoarders never came back
    engine._last_sweep.clear()
    page.wait_for_selector("#rating-form", timeout=15000)  # the countdown (5 s) retried by itself
    assert "Task 1 of 2" in page.inner_text("#progress")
    page.close()
