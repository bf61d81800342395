"""A researcher scripts a whole study through the API alone (the README's curl walkthrough)."""

import csv
import io
import json

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def ok(response, status: int = 200):
    assert response.status_code == status, (response.status_code, response.content[:2000])
    return response


def test_script_a_study_from_creation_to_export(cast, rate):
    api = APIClient()
    token = ok(api.post("/api/v1/auth/token/", {"username": "owner", "password": "pw-owner-1"})).json()["token"]
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    study = ok(
        api.post(
            "/api/v1/studies/",
            {"slug": "koala-mini", "title": "Koala mini", "completion_code": "C0MPLETE", "shared_with": ["shared"]},
            format="json",
        ),
        201,
    ).json()
    assert study["owner"] == "owner" and study["status"] == "draft" and study["shared_with"] == ["shared"]
    models = {}
    for alias, role in (("chatgpt", "teacher"), ("imitation-13b", "imitation")):
        models[alias] = ok(
            api.post(
                "/api/v1/models/",
                {"study": "koala-mini", "alias": alias, "role": role, "backend": "imported"},
                format="json",
            ),
            201,
        ).json()["id"]

    # Prompts as a JSON list, then as a multipart CSV file.
    rows = [{"id": "q1", "text": 'Who wrote "Dune"?', "category": "factual-qa", "reference_answers": ["Herbert"]}]
    assert ok(api.post("/api/v1/studies/koala-mini/prompts/", rows, format="json"), 201).json()["result"] == {
        "added": 1,
        "format": "evalsite",  # the format the rows were read as
    }
    upload = io.BytesIO(b'id,prompt,category\nq2,"Explain tides, briefly.",open-ended\n')
    upload.name = "prompts.csv"
    ok(api.post("/api/v1/studies/koala-mini/prompts/", {"file": upload}, format="multipart"), 201)
    # A broken file is refused whole, with every problem listed.
    bad = api.post("/api/v1/studies/koala-mini/prompts/", [{"id": "q1", "text": "dup"}], format="json")
    assert bad.status_code == 400 and any("q1" in e for e in bad.json()["errors"])

    for alias, model_id in models.items():
        answers = [{"id": "q1", "text": f"{alias}: Frank Herbert."}, {"id": "q2", "text": f"{alias}: the moon."}]
        ok(api.post(f"/api/v1/models/{model_id}/responses/", answers, format="json"), 201)

    built = ok(api.post("/api/v1/studies/koala-mini/build-comparisons/")).json()
    assert built["result"]["added"] == 2
    assert ok(api.post("/api/v1/studies/koala-mini/ready/")).json()["status"] == "ready"
    assert ok(api.post("/api/v1/studies/koala-mini/launch/")).json()["status"] == "live"
    # A second launch is a conflict with the lifecycle's own message.
    again = api.post("/api/v1/studies/koala-mini/launch/")
    assert again.status_code == 409 and "already live" in again.json()["detail"]

    # Raters rate (through the rater pages in real life).
    from evalsite.studies.models import Comparison, Study

    study_obj = Study.objects.get(slug="koala-mini")
    for i, comparison in enumerate(Comparison.objects.filter(study=study_obj, is_attention_check=False)):
        rate(study_obj, comparison, i, "B" if i else "A", rationale='sounds, "confident"')

    listed = ok(api.get("/api/v1/ratings/?study=koala-mini")).json()["results"]
    assert len(listed) == 2
    text = b"".join(ok(api.get("/api/v1/studies/koala-mini/ratings.csv")).streaming_content).decode()
    exported = list(csv.DictReader(io.StringIO(text)))
    assert {r["rationale"] for r in exported} == {'sounds, "confident"'}
    assert {r["prompt_id"] for r in exported} == {"q1", "q2"}
    pairs = [
        json.loads(line)
        for line in b"".join(ok(api.get("/api/v1/studies/koala-mini/preference-pairs.jsonl")).streaming_content)
        .decode()
        .splitlines()
    ]
    assert {p["chosen_model"] for p in pairs} == {"chatgpt", "imitation-13b"}

    ok(api.post("/api/v1/studies/koala-mini/pause/"))
    assert ok(api.post("/api/v1/studies/koala-mini/close/")).json()["status"] == "closed"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("temperature", -0.1, "Temperature must be 0 or more"),
        ("top_p", 0, "top_p must be greater than 0"),
        ("top_p", 1.5, "top_p must be greater than 0"),
        ("max_tokens", 0, "max_tokens must be a positive number"),
        ("stop", ["ok", ""], "Stop sequences must be a JSON list of non-empty strings"),
        ("engine_options", ["not", "a", "dict"], "Engine options must be a JSON object"),
    ],
)
def test_api_model_validation_is_the_admin_forms(cast, make_study, field, value, message):
    """The API and the admin form share the model's validators: same rules, same messages."""
    make_study(slug="val", owner=cast["owner"])
    api = APIClient()
    api.force_authenticate(cast["owner"])
    body = {"study": "val", "alias": "m", "role": "base", "backend": "hf", "model_path": "x", field: value}
    response = api.post("/api/v1/models/", body, format="json")
    assert response.status_code == 400 and message in json.dumps(response.json()), response.json()


def test_api_refuses_a_secret_as_api_key_env(cast, make_study):
    make_study(slug="keys", owner=cast["owner"])
    api = APIClient()
    api.force_authenticate(cast["owner"])
    body = {"study": "keys", "alias": "t", "role": "teacher", "backend": "openai", "model_path": "gpt",
            "engine_options": {"api_base": "https://evil.example/v1", "api_key_env": "SECRET_KEY"}}
    response = api.post("/api/v1/models/", body, format="json")
    assert response.status_code == 400 and "not an API-key variable" in json.dumps(response.json())
    body["engine_options"] = {"api_base": "file:///etc/passwd", "api_key_env": "EVALSITE_API_KEY_TEACHER"}
    response = api.post("/api/v1/models/", body, format="json")
    assert response.status_code == 400 and "must be an http(s) URL" in json.dumps(response.json())
    body["engine_options"]["api_base"] = "https://api.example/v1"
    assert api.post("/api/v1/models/", body, format="json").status_code == 201


def test_patch_cannot_change_a_live_studys_models(cast, make_study):
    from evalsite.studies.models import LanguageModel, Study

    study = make_study(slug="frozen", owner=cast["owner"])
    Study.objects.filter(pk=study.pk).update(status="live")
    imitation = LanguageModel.objects.get(study=study, role="imitation")
    api = APIClient()
    api.force_authenticate(cast["owner"])
    response = api.patch(f"/api/v1/models/{imitation.pk}/", {"role": "teacher"}, format="json")
    assert response.status_code == 400 and "frozen" in json.dumps(response.json())
    imitation.refresh_from_db()
    assert imitation.role == "imitation"
