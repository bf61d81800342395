"""Issue 13: the demo's report opens with the computed one-sentence finding, with its numbers,
intervals and counts, and the data behind it; with too few ratings it says so instead."""

import re

import pytest
from django.core.management import call_command
from django.urls import reverse

pytestmark = pytest.mark.django_db

FINDING = re.compile(
    r"Crowd raters rated imitation as good as or better than teacher in \d+% \[\d+, \d+\] of \d+ ratings "
    r"\(\d+ prompts\), while its answers were factually correct in \d+% \[\d+, \d+\] of \d+ reference questions "
    r"against the teacher's \d+% \[\d+, \d+\]\."
)


def finding_of(html: str) -> str:
    match = re.search(r'<p class="finding[^"]*" id="finding-sentence">(.*?)</p>', html, re.S)
    assert match, "the report has no finding sentence"
    return match.group(1).replace("&#x27;", "'")


def test_demo_report_opens_with_the_finding(client, staff_user, settings):
    settings.REPORT_BOOTSTRAP_ROUNDS = 50
    call_command("seed_demo")
    call_command("simulate_ratings", "demo", crowd=6, experts=2)
    client.force_login(staff_user)
    html = client.get(reverse("dashboard:report", args=["demo"])).content.decode()
    sentence = finding_of(html)
    assert FINDING.match(sentence), sentence
    # It comes first, before the headline table and the figures, with the data behind it.
    assert html.index('id="finding"') < html.index('id="headline"') < html.index('id="win-rates"')
    assert 'id="finding-data"' in html and "Reference questions" in html
    assert "How the 95% intervals are computed" in html and "cluster-robust sandwich (by prompt)" in html


def test_too_few_ratings_give_no_number(client, staff_user, rated_study):
    client.force_login(staff_user)
    html = client.get(reverse("dashboard:report", args=[rated_study.slug])).content.decode()
    sentence = finding_of(html)  # 8 prompts rated: below the minimum of 10
    assert sentence.startswith("Not enough ratings yet (8 of 10 prompts)"), sentence
    assert 'class="finding pending"' in html
    # No interval from 8 prompts: the cells say why instead of showing a zero-width one.
    assert "too few prompts (n = 8" in html
    assert "[0, 0]%" not in html
