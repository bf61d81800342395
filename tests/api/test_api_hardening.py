"""The API at the edge: bodies and query strings within the rules, bounded paging, outbound rules,
throttled tokens, computation only for owners. Each test failed (a 500, or the wrong answer) before.
"""

import json

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from evalsite.dashboard.models import StudyReport
from evalsite.studies.models import LanguageModel, Study

pytestmark = pytest.mark.django_db

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    "extra, expected",
    [
        ('"rating_form": ' + DEEP, "nested more than"),
        ('"rating_form": {"\\ud800": true}', "lone surrogate"),
        ('"description": "\\udfff"', "lone surrogate"),
        ('"redundancy": ' + "9" * 5000, "number too large"),
        ('"attention_check_rate": NaN', "NaN"),
        ('"attention_check_rate": 1e999', "not finite"),
        ('"title": "a\\u0000b"', "NUL"),
        ('"rating_form": {"style_aspects": ["x\\u0000"]}', "NUL"),
    ],
)
def test_bad_json_bodies_are_a_400_naming_the_problem(client_for, extra, expected):
    body = '{"slug": "fresh", "title": "T", "completion_code": "C", ' + extra + "}"
    response = client_for("owner").post("/api/v1/studies/", body, content_type="application/json")
    assert response.status_code == 400 and expected in json.dumps(response.json()), response.content[:300]
    assert not Study.objects.filter(slug="fresh").exists()


def test_engine_options_cannot_hold_a_non_finite_number(client_for):
    body = (
        '{"study": "rated", "alias": "x", "role": "base", "backend": "hf",'
        ' "model_path": "builtin:smollm2-135m-instruct", "engine_options": {"gpu_memory_utilization": Infinity}}'
    )
    response = client_for("owner").post("/api/v1/models/", body, content_type="application/json")
    assert response.status_code == 400 and "Infinity" in json.dumps(response.json())


def test_json_body_size_is_capped(client_for, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"slug": "big", "title": "T", "completion_code": "C", "description": "x" * 2000})
    response = client_for("owner").post("/api/v1/studies/", body, content_type="application/json")
    assert response.status_code == 400 and "larger than 1,000 bytes" in response.json()["detail"]
    assert not Study.objects.filter(slug="big").exists()


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/prompts/?limit=99999999999999999999",
        "/api/v1/models/?limit=5000",
        "/api/v1/studies/?offset=99999999999999999999",
        "/api/v1/generation-jobs/?limit=-3&offset=abc",
    ],
)
def test_limit_and_offset_are_bounded(client_for, url):
    response = client_for("owner").get(url)
    assert response.status_code == 200, response.content[:300]
    assert len(response.json()["results"]) <= 1000


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/studies/rated/analysis/?compute=%00",
        "/api/v1/studies/rated/ratings.csv?rater=%00",
        "/api/v1/ratings/?cursor=%00",
        "/api/v1/models/1%00/",
        "/api/v1/studies/?status=live&%00=1",
    ],
)
def test_nul_in_urls_is_a_400(client_for, url):
    response = client_for("owner").get(url)
    assert response.status_code == 400 and "NUL" in response.json()["detail"]


def test_nul_in_the_token_header_is_a_400(db):
    response = APIClient().get("/api/v1/studies/", HTTP_AUTHORIZATION="Token abc\x00def")
    assert response.status_code == 400


def test_form_bodies_refuse_nul(client_for, rated_study):
    response = client_for("owner").post(f"/api/v1/studies/{rated_study.slug}/invite-expert/", {"label": "a\x00b"})
    assert response.status_code == 400 and "NUL" in json.dumps(response.json())
    assert not rated_study.raters.filter(is_expert=True).exists()


# --- outbound ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "api_base",
    [
        "http://127.0.0.1:8000/v1",
        "http://localhost:8000/v1",
        "http://169.254.169.254/latest/meta-data",
        "http://metadata.google.internal/v1",
        "http://10.0.0.7/v1",
        "http://[::1]:8000/v1",
        "http://[::ffff:127.0.0.1]/v1",
        "http://2130706433/v1",
        "http://0/v1",
        "http://user:pw@api.example/v1",
    ],
)
def test_api_base_on_the_servers_own_network_is_refused(client_for, monkeypatch, api_base):
    monkeypatch.delenv("EVALSITE_API_HOSTS", raising=False)
    body = {"study": "rated", "alias": "local", "role": "base", "backend": "openai", "model_path": "m",
            "engine_options": {"api_base": api_base}}
    response = client_for("owner").post("/api/v1/models/", body, format="json")
    assert response.status_code == 400, response.json()
    assert "EVALSITE_API_HOSTS" in json.dumps(response.json()) or "user name" in json.dumps(response.json())


def test_a_listed_local_host_is_allowed(client_for, monkeypatch):
    monkeypatch.setenv("EVALSITE_API_HOSTS", "127.0.0.1,api.example")
    body = {"study": "rated", "alias": "local", "role": "base", "backend": "openai", "model_path": "m",
            "engine_options": {"api_base": "http://127.0.0.1:8000/v1"}}
    assert client_for("owner").post("/api/v1/models/", body, format="json").status_code == 201


@pytest.mark.parametrize(
    "backend, model_path, ok",
    [
        ("hf", "/etc", False),
        ("vllm", "relative/folder", False),
        ("imported", "/etc/passwd", False),
        ("hf", "builtin:smollm2-135m-instruct", True),
        ("openai", "gpt-4o", True),  # an endpoint's model name, not a path
        ("hf", "{root}/tiny", True),
        ("hf", "{root}/../escape", False),
    ],
)
def test_model_path_must_lie_under_the_model_roots(client_for, backend, model_path, ok, monkeypatch):
    monkeypatch.setenv("EVALSITE_API_HOSTS", "api.example")
    root = settings.MODEL_ROOTS[0]
    body = {"study": "rated", "alias": "m", "role": "base", "backend": backend,
            "model_path": model_path.format(root=root)}
    if backend == "openai":
        body["engine_options"] = {"api_base": "https://api.example/v1"}
    response = client_for("owner").post("/api/v1/models/", body, format="json")
    assert (response.status_code == 201) == ok, response.json()
    if not ok:
        assert "model roots" in json.dumps(response.json())


def test_model_path_symlink_out_of_the_roots_is_refused(client_for, settings, tmp_path):
    root = tmp_path / "models"
    root.mkdir()
    (root / "escape").symlink_to("/etc")
    settings.MODEL_ROOTS = [root]
    body = {"study": "rated", "alias": "m", "role": "base", "backend": "hf", "model_path": str(root / "escape")}
    response = client_for("owner").post("/api/v1/models/", body, format="json")
    assert response.status_code == 400 and "outside the model roots" in json.dumps(response.json())
    assert not LanguageModel.objects.filter(alias="m").exists()


# --- throttling --------------------------------------------------------------------------------


def test_token_endpoint_is_throttled_per_address(cast):
    client = APIClient()
    answers = [
        client.post("/api/v1/auth/token/", {"username": f"nobody{i}", "password": "guess"}, format="json")
        for i in range(12)
    ]
    assert [a.status_code for a in answers[:10]] == [400] * 10
    assert answers[10].status_code == 429 and int(answers[10]["Retry-After"]) > 0


def test_token_endpoint_locks_out_a_username_after_failures(cast, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"token": "1000/minute"}}
    client = APIClient()
    for i in range(settings.AXES_FAILURE_LIMIT):
        wrong = client.post("/api/v1/auth/token/", {"username": "owner", "password": f"wrong{i}"}, format="json")
        assert wrong.status_code in (400, 429)
    right = client.post("/api/v1/auth/token/", {"username": "owner", "password": "pw-owner-1"}, format="json")
    assert right.status_code == 429 and "token" not in right.json()
    # Another researcher from the same address is not locked out.
    other = client.post("/api/v1/auth/token/", {"username": "other", "password": "pw-other-1"}, format="json")
    assert other.status_code == 200 and other.json()["token"]


# --- computation -------------------------------------------------------------------------------


def test_read_only_collaborator_cannot_compute(client_for, rated_study):
    response = client_for("shared").get(f"/api/v1/studies/{rated_study.slug}/analysis/?compute=true")
    assert response.status_code == 403
    assert not StudyReport.objects.exists()
    # Reading the cached report is still theirs: none yet.
    assert client_for("shared").get(f"/api/v1/studies/{rated_study.slug}/analysis/").status_code == 404


def test_owner_computes_small_studies_in_the_request_and_large_ones_on_the_worker(
    client_for, rated_study, monkeypatch
):
    from evalsite.dashboard import reports

    sent = []
    monkeypatch.setattr(reports, "send_task_on_commit", lambda name, args: sent.append((name, args)))
    monkeypatch.setattr(reports, "SYNC_RATING_LIMIT", 0)
    queued = client_for("owner").get(f"/api/v1/studies/{rated_study.slug}/analysis/?compute=true")
    assert queued.status_code == 202 and "worker" in queued.json()["detail"]
    assert len(sent) == 1 and sent[0][1][0] == rated_study.pk
    assert StudyReport.objects.get().status == StudyReport.Status.PENDING

    StudyReport.objects.all().delete()
    monkeypatch.setattr(reports, "SYNC_RATING_LIMIT", 20_000)
    done = client_for("owner").get(f"/api/v1/studies/{rated_study.slug}/analysis/?compute=true")
    assert done.status_code == 200 and done.json()["n_ratings"] > 0
    assert len(sent) == 1


@pytest.mark.parametrize(
    "body", ["null", "false", '"text"', "[1, 2]", '{"label": 5}', '{"label": "' + "x" * 101 + '"}']
)
def test_invite_expert_refuses_a_body_that_is_not_its_object(client_for, rated_study, body):
    # Found by the randomized schema test: any JSON but an object was a 500.
    response = client_for("owner").post(f"/api/v1/studies/{rated_study.slug}/invite-expert/", body,
                                        content_type="application/json")
    assert response.status_code in (400, 201) and (response.status_code == 201) == (body == '{"label": 5}')
    assert rated_study.raters.filter(is_expert=True).count() == (body == '{"label": 5}')


@pytest.mark.parametrize(
    "url, headers",
    [
        ("ratings.jsonl?format=jsonl&winner=null", {}),
        ("ratings.csv?format=csv&winner=null", {}),
        ("preference-pairs.jsonl?format=jsonl&ties=sometimes", {}),
        ("trl-pairs.jsonl?format=jsonl&prompt_format=yaml", {}),
        ("trl-pairs.parquet?format=parquet&ties=sometimes", {}),
        ("ratings.csv?bom=maybe", {"HTTP_ACCEPT": "text/csv"}),
    ],
)
def test_export_refusals_are_json_whatever_format_was_asked_for(client_for, rated_study, url, headers):
    # Found by the randomized schema test: a refusal was labelled as CSV, JSON Lines or Parquet.
    response = client_for("owner").get(f"/api/v1/studies/{rated_study.slug}/{url}", **headers)
    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    assert response.json()


@pytest.mark.parametrize("platform", ["prolific", "mturk"])
@pytest.mark.parametrize("body", ["{}", '{"places": 3}', '{"\\u00ecC": [], "x": -2.3e16}'])
def test_publishing_without_reward_or_time_is_a_400(client_for, rated_study, platform, body):
    # Found by the randomized schema test: a body without reward_cents / estimated_minutes was a 500.
    response = client_for("owner").post(f"/api/v1/studies/{rated_study.slug}/platforms/{platform}/publish/", body,
                                        content_type="application/json")
    assert response.status_code in (400, 409), response.content[:300]
    assert response["Content-Type"] == "application/json" and response.json()["detail"]
