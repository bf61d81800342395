"""The study admin's live generation progress bar in a real headless Chromium.

The server renders the bar once; ``static/admin/evalsite-progress.js`` must then poll the study's
progress JSON and move it without a reload, and stop polling once every job on the page is finished.
"""

import pytest
from django.utils import timezone

from evalsite.studies.models import GenerationJob, LanguageModel

pytestmark = [pytest.mark.browser, pytest.mark.slow]

BAR = ".evalsite-progress[data-job='{}']"
POLL_WAIT_MS = 5000  # the script polls every 2 s


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


def bar_state(page, job: GenerationJob) -> dict:
    return page.eval_on_selector(
        BAR.format(job.pk),
        """el => ({
            percent: Math.round(100 * el.querySelector('progress').value / el.querySelector('progress').max),
            label: el.querySelector('.evalsite-progress-label').textContent,
            finished: el.getAttribute('data-finished'),
        })""",
    )


def test_progress_bar_moves_without_reload_and_stops_when_done(
    page, live_server, transactional_db, staff_user, make_study
):
    study = make_study(slug="progress", n_prompts=1, roles=("teacher",))
    model = study.models.get(role=LanguageModel.Role.TEACHER)
    job = GenerationJob.objects.create(
        study=study, model=model, status=GenerationJob.Status.RUNNING, total=10, done=2, started_at=timezone.now()
    )
    progress_url = f"/admin/studies/study/{study.pk}/progress/"
    polls = []
    page.on("request", lambda r: polls.append(r.url) if r.url.endswith(progress_url) else None)

    # The real login form, redirected to the study's change page.
    change_path = f"/admin/studies/study/{study.pk}/change/"
    page.goto(f"{live_server.url}/admin/login/?next={change_path}")
    page.fill("#id_username", "researcher")
    page.fill("#id_password", "pw-researcher-1")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}{change_path}")

    bar = page.locator(BAR.format(job.pk))
    assert bar.is_visible()
    assert bar.get_attribute("data-url") == progress_url
    assert bar_state(page, job) == {"percent": 20, "label": "2/10 done · running", "finished": "0"}
    page.evaluate("window.__sameDocument = true")  # lost if the page reloads

    # A worker reports progress: the page follows on its next poll.
    GenerationJob.objects.filter(pk=job.pk).update(done=7)
    page.wait_for_function(f'document.querySelector("{BAR.format(job.pk)} progress").value === 7', timeout=POLL_WAIT_MS)
    assert bar_state(page, job) == {"percent": 70, "label": "7/10 done · running", "finished": "0"}
    assert page.evaluate("window.__sameDocument") is True

    # The job finishes: the bar shows it, and the script stops polling.
    GenerationJob.objects.filter(pk=job.pk).update(
        done=10, status=GenerationJob.Status.DONE, finished_at=timezone.now()
    )
    page.wait_for_function(
        f"document.querySelector(\"{BAR.format(job.pk)}\").getAttribute('data-finished') === '1'",
        timeout=POLL_WAIT_MS,
    )
    assert bar_state(page, job) == {"percent": 100, "label": "10/10 done · done", "finished": "1"}
    assert page.evaluate("window.__sameDocument") is True
    assert len(polls) >= 2
    seen = len(polls)
    page.wait_for_timeout(2500)  # longer than one polling interval
    assert len(polls) == seen, "the script kept polling after every job had finished"
