"""API fixtures: the cast of users, a rated study built directly with the ORM, and token clients."""

import secrets
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from evalsite.rating.models import Assignment, Rater, Rating
from evalsite.studies import lifecycle
from evalsite.studies.models import Comparison, GenerationJob, Study

AWKWARD = [
    'He said "hi", then left',
    "line one\nline two\r\nline three",
    "emoji 🙂🚀 and a ZWJ family 👨‍👩‍👧",
    "עברית مرحبا (right-to-left)",
    '=HYPERLINK("http://evil.example","click")',
    "+1 plus",
    "-2 minus",
    "@SUM(A1:A2)",
    "\tleading tab",
    "\rleading CR",
    "plain, with comma; and semicolon",
    "",
]


def add_rating(study: Study, comparison: Comparison, rater: Rater, winner: str, **fields) -> Rating:
    """A submitted assignment and its rating, as the lease engine would leave them."""
    now = timezone.now()
    assignment = Assignment.objects.create(
        rater=rater,
        comparison=comparison,
        token=secrets.token_urlsafe(32),
        status=Assignment.Status.SUBMITTED,
        left_side=fields.pop("left_side", "A"),
        leased_at=now - timedelta(seconds=60),
        expires_at=now + timedelta(seconds=840),
        submitted_at=now,
    )
    fields.setdefault("server_seconds", 42.5)
    return Rating.objects.create(
        assignment=assignment, study=study, comparison=comparison, rater=rater, winner=winner, **fields
    )


def make_rater(study: Study, n: int, **fields) -> Rater:
    return Rater.objects.create(
        study=study,
        platform=fields.pop("platform", "prolific"),
        external_id=f"RAW-PLATFORM-ID-{study.pk}-{n}",
        pseudonym=f"ps{study.pk}x{n}",
        **fields,
    )


@pytest.fixture
def awkward_texts() -> list[str]:
    """The rationales the rated study's ratings carry, in order."""
    return list(AWKWARD)


@pytest.fixture
def cast(django_user_model):
    """Every kind of caller, by name. ``None`` stands for anonymous."""
    make = django_user_model.objects.create_user
    return {
        "anonymous": None,
        "rater": None,
        "nonstaff": make("member", "m@example.org", "pw-member-1"),
        "other": make("other", "o@example.org", "pw-other-1", is_staff=True),
        "owner": make("owner", "ow@example.org", "pw-owner-1", is_staff=True),
        "shared": make("shared", "s@example.org", "pw-shared-1", is_staff=True),
        "superuser": make("root", "r@example.org", "pw-root-1", is_staff=True, is_superuser=True),
    }


@pytest.fixture
def rated_study(make_study, cast):
    """A ready study with 3 prompts, two comparisons per prompt pair, raters and awkward ratings."""
    study = make_study("rated", n_prompts=3, roles=("teacher", "imitation", "base"), owner=cast["owner"])
    study.shared_with.add(cast["shared"])
    lifecycle.transition(study, Study.Status.READY)
    teacher, imitation, base = (study.models.get(role=role) for role in ("teacher", "imitation", "base"))
    prompts = list(study.prompts.order_by("position"))
    comparisons = []
    for prompt in prompts:
        t = prompt.responses.get(model=teacher)
        for other in (imitation, base):
            comparisons.append(
                Comparison.objects.create(
                    study=study, prompt=prompt, response_a=t, response_b=prompt.responses.get(model=other)
                )
            )
    check = comparisons[-1]
    check.is_attention_check, check.expected_winner = True, "A"
    check.save()
    raters = [make_rater(study, i) for i in range(3)]
    raters[2].blocked = True
    raters[2].save()
    winners = ["A", "B", "tie", "both_bad"]
    n = 0
    for comparison in comparisons:
        for rater in raters:
            text = AWKWARD[n % len(AWKWARD)]
            add_rating(
                study,
                comparison,
                rater,
                winners[n % 4],
                left_side="AB"[n % 2],
                strength=1 + n % 5,
                style={"A": {"fluent": 4, "confident": 5}, "B": {"fluent": 2, "confident": 3}},
                correct_a="correct",
                correct_b="error" if n % 3 else "unsure",
                error_spans=[{"response": "B", "start": 0, "end": 3, "text": text[:3]}],
                rationale=text,
                client_seconds=30.25 if n % 2 else None,
                flagged=rater.blocked,
                attention_passed=(n % 2 == 0) if comparison.is_attention_check else None,
            )
            n += 1
    GenerationJob.objects.create(study=study, model=imitation, status="done", total=3, done=3)
    return study


@pytest.fixture
def client_for(cast, rated_study):
    """``client_for(name)``: an API client authenticated as that member of the cast (token auth)."""

    def build(name: str) -> APIClient:
        client = APIClient()
        user = cast[name]
        if user is not None:
            token, _ = Token.objects.get_or_create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        if name == "rater":
            from django.core import signing

            from evalsite.rating.identity import COOKIE_SALT, cookie_name

            rater = rated_study.raters.first()
            key = cookie_name(rated_study)
            client.cookies[key] = signing.get_cookie_signer(salt=key + COOKIE_SALT).sign(str(rater.pk))
        return client

    return build


@pytest.fixture
def rate():
    """``rate(study, comparison, rater_number, winner, **fields)``: a rater (made on first use) rates."""

    def build(study: Study, comparison: Comparison, n: int, winner: str, **fields) -> Rating:
        rater = Rater.objects.filter(study=study, pseudonym=f"ps{study.pk}x{n}").first() or make_rater(study, n)
        return add_rating(study, comparison, rater, winner, **fields)

    return build
