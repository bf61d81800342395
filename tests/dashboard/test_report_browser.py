"""The staff report of the demo study in a real headless Chromium: headline, inline SVG figures,
no request leaving the server, and a standalone HTML download that renders on its own."""

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# E.g. "... in 25% [8, 52] of 12 ratings on 12 prompts" (an interval, marked when it is Wilson's).
HEADLINE = re.compile(
    r"crowd raters preferred or tied the wrong answer in \d+%(?: \[\d+, \d+\])?(?: \(Wilson[^)]*\))? of \d+ ratings?"
)
FINDING = re.compile(
    r"Crowd raters rated imitation as good as or better than teacher in \d+% \[\d+, \d+\] of \d+ ratings"
)
LOCAL_HOSTS = {"localhost", "127.0.0.1"}


def visible_svgs(page) -> list[dict]:
    return page.eval_on_selector_all(
        "svg",
        """els => els.map(el => { const r = el.getBoundingClientRect(); return {w: r.width, h: r.height}; })
                 .filter(r => r.w > 0 && r.h > 0)""",
    )


def test_demo_report_renders_offline_and_downloads_standalone(
    browser, live_server, transactional_db, staff_user, settings
):
    settings.REPORT_BOOTSTRAP_ROUNDS = 50  # the report is computed inside the page request
    call_command("seed_demo")
    call_command("simulate_ratings", "demo", crowd=6, experts=2)

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    requested = []
    page.on("request", lambda r: requested.append(r.url))

    # The real admin login form, then the report (a staff-only page).
    page.goto(f"{live_server.url}/admin/login/?next=/reports/demo/")
    page.fill("#id_username", "researcher")
    page.fill("#id_password", "pw-researcher-1")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/reports/demo/")
    page.wait_for_load_state("load")

    assert HEADLINE.search(page.text_content("#headline p.headline"))
    assert FINDING.match(page.text_content("#finding-sentence"))
    assert page.is_visible("#plots")
    assert len(visible_svgs(page)) >= 3
    assert page.locator("#plots figure svg").count() >= 3

    # The standalone download, through the page's own link.
    with page.expect_download() as info:
        page.click("#download-html")
    download = info.value
    assert download.suggested_filename == "demo-report.html"
    html = Path(download.path()).read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert html.count("<svg") >= 3 and HEADLINE.search(html)
    external = re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)=", html, re.I)
    assert not external, f"the standalone file must inline everything: {external.group(0)}"

    foreign = [u for u in requested if urlsplit(u).hostname not in LOCAL_HOSTS]
    assert not foreign, foreign

    # The downloaded file renders on its own, with no request at all.
    offline = context.new_page()
    offline_requests = []
    offline.on("request", lambda r: offline_requests.append(r.url) if not r.url.startswith("data:") else None)
    offline.set_content(html)
    assert HEADLINE.search(offline.text_content("#headline p.headline"))
    assert len(visible_svgs(offline)) >= 3
    assert not offline_requests, offline_requests
    context.close()
