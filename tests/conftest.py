"""Shared fixtures. Area-specific fixtures live in each tests/<area>/conftest.py."""

import os
from pathlib import Path

import pytest
from django.db import connections

from evalsite.studies.models import LanguageModel, Prompt, Response, Study

CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright's own browser download is not used
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


FUZZ_SEEDS = ("API_FUZZ_SEED", "RATER_FUZZ_SEED", "IMPORT_FUZZ_SEED")


def pytest_report_header(config) -> str:
    """The randomized tests (schemathesis, rater submit, importers) draw a fresh seed each run,
    printed here; set the variable to replay a run."""
    import random

    for name in FUZZ_SEEDS:
        os.environ.setdefault(name, str(random.randrange(2**32)))
    return "fuzz seeds: " + " ".join(f"{name}={os.environ[name]}" for name in FUZZ_SEEDS)


def pytest_collection_modifyitems(config, items) -> None:
    """Browser tests skip, saying how to fix it, where Chromium is not installed."""
    if Path(CHROMIUM).exists():
        return
    skip = pytest.mark.skip(reason=f"needs {CHROMIUM} (apt-get install chromium)")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium for a test module (mark the tests ``browser``)."""
    # Playwright's sync API runs an event loop in this thread; Django would then refuse ORM calls
    # from the test body. Allow them while the browser is up, and restore the environment after.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as p:
            launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield launched
            launched.close()
            # ORM calls made while Playwright ran opened their own connections; close them, or
            # the test database cannot be dropped at the end of the session.
            connections.close_all()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(autouse=True)
def fresh_throttle_counters():
    """The API token endpoint is throttled per address (counters in the cache); every test starts
    with none spent, as tests all come from the same address."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Tests create many users; the production hasher would spend most of the suite's time on them."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user(
        "researcher", "researcher@example.org", "pw-researcher-1", is_staff=True, is_superuser=True
    )


@pytest.fixture
def make_study(db):
    """Build a study with a teacher and other models, prompts and one response per pair."""

    def build(
        slug: str = "study",
        n_prompts: int = 3,
        roles: tuple[str, ...] = ("teacher", "imitation"),
        owner=None,
        with_responses: bool = True,
        **fields,
    ) -> Study:
        study = Study.objects.create(slug=slug, title=slug.title(), owner=owner, completion_code="DONE123", **fields)
        models = [
            LanguageModel.objects.create(study=study, alias=f"{role}-{i}", role=role, backend="imported")
            for i, role in enumerate(roles)
        ]
        for p in range(n_prompts):
            prompt = Prompt.objects.create(
                study=study,
                source_id=f"p{p}",
                text=f"Question {p}?",
                category="factual-qa" if p % 2 else "open-ended",
                reference_answers=[f"answer {p}"] if p % 2 else [],
                position=p,
            )
            if with_responses:
                for m in models:
                    Response.objects.create(prompt=prompt, model=m, text=f"{m.alias} says answer {p}.")
        return study

    return build
