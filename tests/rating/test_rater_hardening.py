"""The rater pages at the edge: every bad input a clear 4xx, nothing non-finite stored, no 500 ever.

Regressions first (each was a 500 before: NUL on the unauthenticated entry link and in a submitted
field, ``error_spans`` nested deep, holding ``Infinity`` or a number of thousands of digits), then a
fuzz test that posts random fields to the submit endpoint with a fresh, printed seed per run.
"""

import json
import math
import os
import random
import re

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from evalsite.rating.models import Assignment, Rating

from .pages import ANSWERED, enter_and_consent, token_of

pytestmark = pytest.mark.django_db

SEED = int(os.environ.get("RATER_FUZZ_SEED") or random.randrange(2**32))
FULL_FORM = {
    "correctness": True,
    "error_spans": True,
    "rationale": True,
    "strength": True,
    "style_aspects": ["fluent", "confident"],
}


def submit_url(page) -> str:
    return re.search(r'action="([^"]+)"', page.content.decode()).group(1).replace("&amp;", "&")


@pytest.mark.parametrize(
    "query",
    [
        "?PROLIFIC_PID=a%00b&SESSION_ID=x",
        "?workerId=w%00&assignmentId=a1&hitId=h",
        "?PROLIFIC_PID=p&SESSION_ID=s%00",
        "?t=%00",
    ],
)
def test_nul_on_the_entry_link_is_a_400(live_study, query):
    study = live_study()
    response = Client(raise_request_exception=False).get(f"/r/{study.slug}/{query}")
    assert response.status_code == 400 and b"NUL" in response.content
    assert not study.raters.exists()


def test_nul_in_the_path_is_a_400(client, live_study):
    study = live_study()
    page = enter_and_consent(client, study)
    url = submit_url(page).replace(f"/task/{token_of(page)}/", "/task/x%00y/")
    response = client.post(url, {**ANSWERED, "preference": "left"})
    assert response.status_code == 400 and b"NUL" in response.content


@pytest.mark.parametrize(
    "fields, status",
    [
        ({"rationale": "a\x00b"}, 400),
        ({"style_left_fluent": "\x00"}, 400),
        ({"error_spans": "[" * 100_000 + "]" * 100_000}, 400),
        ({"error_spans": '[{"side": "left", "start": Infinity, "end": 3}]'}, 400),
        ({"error_spans": '[{"side": "left", "start": 1e999, "end": 3}]'}, 400),
        ({"error_spans": '[{"side": "left", "start": ' + "9" * 5000 + ', "end": 3}]'}, 400),
        ({"error_spans": '[{"side": "left", "start": 0, "end": 100000000000000000000}]'}, 400),
        ({"error_spans": '[{"side": "left", "start": NaN, "end": 3}]'}, 400),
        ({"strength": "9" * 5000}, 400),
    ],
)
def test_bad_fields_are_a_400_that_keeps_the_task(client, live_study, fields, status):
    study = live_study(rating_form=FULL_FORM)
    page = enter_and_consent(client, study)
    response = Client(raise_request_exception=False).post(
        submit_url(page), {**ANSWERED, "preference": "left", **fields}
    )
    assert response.status_code == status, response.content[:300]
    assert not Rating.objects.exists()
    assert Assignment.objects.get(token=token_of(page)).status == Assignment.Status.LIVE


@pytest.mark.parametrize("client_ms", ["nan", "NaN", "inf", "-inf", "1e999", "-5", "9" * 400])
def test_client_time_that_is_not_finite_is_not_stored(client, live_study, client_ms):
    study = live_study()
    page = enter_and_consent(client, study)
    response = client.post(submit_url(page), {**ANSWERED, "preference": "left", "client_ms": client_ms})
    assert response.status_code == 302
    assert Rating.objects.get().client_seconds is None


def test_after_a_non_finite_client_time_the_researchers_api_and_export_still_work(
    client, live_study, django_user_model
):
    # The finding: client_ms "nan" was stored, and /api/v1/ratings/ (list and detail) answered 500,
    # the JSON Lines export held NaN.
    study = live_study()
    page = enter_and_consent(client, study)
    client.post(submit_url(page), {**ANSWERED, "preference": "left", "client_ms": "nan"})
    rating = Rating.objects.get()
    api = APIClient()
    api.force_authenticate(django_user_model.objects.create_superuser("root", "r@example.org", "pw-root-1"))
    assert api.get("/api/v1/ratings/").status_code == 200
    assert api.get(f"/api/v1/ratings/{rating.pk}/").json()["client_seconds"] is None
    export = b"".join(api.get(f"/api/v1/studies/{study.slug}/ratings.jsonl").streaming_content)
    assert b"NaN" not in export and b"Infinity" not in export
    assert all(json.loads(line) for line in export.splitlines())


def test_body_over_the_cap_is_refused_before_parsing(client, live_study, settings):
    study = live_study()
    page = enter_and_consent(client, study)
    settings.RATER_MAX_BODY_BYTES = 1000
    response = client.post(submit_url(page), {**ANSWERED, "preference": "left", "rationale": "x" * 2000})
    assert response.status_code == 413 and not Rating.objects.exists()


# --- fuzz --------------------------------------------------------------------------------------

FIELD_NAMES = [
    "preference", "strength", "style_left_fluent", "style_right_confident", "correct_left", "correct_right",
    "error_spans", "rationale", "client_ms", "agree", "t",
]
numbers = st.one_of(
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "inf", "-Infinity", "1e999", "9" * 5000, "", " 3 ", "٣"]),
)
span = st.fixed_dictionaries(
    {},
    optional={
        "side": st.sampled_from(["left", "right", "A", ""]),
        "start": st.one_of(st.integers(), st.floats(), st.text(max_size=3)),
        "end": st.one_of(st.integers(), st.floats(), st.text(max_size=3)),
    },
)
spans = st.one_of(
    st.lists(span, max_size=60).map(json.dumps),
    st.text(max_size=40),
    st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),
)
values = st.one_of(
    st.text(max_size=60),  # NUL included; the test client encodes as UTF-8, so no lone surrogates
    numbers,
    spans,
    st.sampled_from(["left", "right", "tie", "both_bad", "correct", "error", "unsure", "1", "5"]),
)
forms = st.dictionaries(
    st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=12)),
    st.one_of(values, st.lists(values, max_size=3)),
    max_size=12,
)
raw_bodies = st.binary(max_size=400)


def test_fuzz_rater_submit_never_fails_and_stores_only_finite_values(live_study):
    """Random form posts (and raw bytes) to the submit endpoint: never a 5xx, nothing non-finite stored."""
    study = live_study(n_prompts=10, redundancy=50, tasks_per_rater=1000, rating_form=FULL_FORM)
    client = Client(raise_request_exception=False)
    page = enter_and_consent(client, study, "?PROLIFIC_PID=fuzzer&SESSION_ID=s")
    state = {"url": submit_url(page), "raters": 0}
    statuses: dict[int, int] = {}
    print(f"rater submit fuzz: RATER_FUZZ_SEED={SEED}")

    @seed(SEED)
    @given(form=forms, raw=st.one_of(st.none(), raw_bodies), with_answers=st.booleans())
    @settings(max_examples=120, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(form, raw, with_answers):
        if raw is not None:
            response = client.post(state["url"], raw, content_type="application/x-www-form-urlencoded")
        else:
            # Half the posts carry a valid verdict, so the other fields decide (stored or refused).
            data = {**form, **({**ANSWERED, "preference": "tie"} if with_answers else {})}
            response = client.post(state["url"], data)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (form, raw, response.content[:500])
        assert response.status_code in {302, 400, 404, 409, 413}, response.status_code
        if response.status_code == 302:  # stored (or expired): lease the next task
            task = client.get(response.url, follow=True)
            if b'action="' not in task.content:  # this rater is done: another one starts
                state["raters"] += 1
                task = enter_and_consent(client, study, f"?PROLIFIC_PID=fuzzer{state['raters']}&SESSION_ID=s")
            state["url"] = submit_url(task)

    check()
    print("rater submit statuses:", statuses)
    assert statuses.get(302) and statuses.get(400), statuses  # both paths were exercised
    for rating in Rating.objects.all():
        assert rating.client_seconds is None or math.isfinite(rating.client_seconds)
        assert all(isinstance(s["start"], int) and isinstance(s["end"], int) for s in rating.error_spans)
        assert "\x00" not in rating.rationale
    # At most one rating per assignment, however the fuzzer posted.
    assert Rating.objects.values("assignment").distinct().count() == Rating.objects.count()


ENTRY_NAMES = ["PROLIFIC_PID", "STUDY_ID", "SESSION_ID", "workerId", "assignmentId", "hitId", "turkSubmitTo",
               "t", "e", "expired", "wait"]
queries = st.dictionaries(
    st.one_of(st.sampled_from(ENTRY_NAMES), st.text(max_size=8)),
    st.one_of(st.text(max_size=40), st.sampled_from(["ASSIGNMENT_ID_NOT_AVAILABLE", "1", "", "x" * 300])),
    max_size=5,
)


def test_fuzz_rater_pages_never_fail(live_study):
    """Random query strings on every rater page and random form posts to consent and touch, from
    a fresh visitor and from a rater with a live task: never a 5xx, and only the answers the pages
    give (a page, a redirect, a refusal)."""
    from urllib.parse import urlencode

    study = live_study()
    rater_client = Client(raise_request_exception=False)
    page = enter_and_consent(rater_client, study, "?PROLIFIC_PID=known&SESSION_ID=s")
    token = token_of(page)
    statuses: dict[int, int] = {}
    print(f"rater pages fuzz: RATER_FUZZ_SEED={SEED}")

    @seed(SEED)
    @given(
        query=queries,
        form=forms,
        page_name=st.sampled_from(["", "consent/", "task/", f"task/{token}/touch/", "done/", "task/nosuch/touch/"]),
        as_rater=st.booleans(),
        method=st.sampled_from(["get", "post"]),
    )
    @settings(max_examples=100, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(query, form, page_name, as_rater, method):
        client = rater_client if as_rater else Client(raise_request_exception=False)
        url = f"/r/{study.slug}/{page_name}?" + urlencode(query)
        response = getattr(client, method)(url, form if method == "post" else None)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (url, form, response.content[:500])
        assert response.status_code in {200, 302, 400, 403, 404, 405, 409, 413}, (url, response.status_code)

    check()
    print("rater pages statuses:", statuses)
    assert Rating.objects.count() == 0  # none of these pages stores a rating
