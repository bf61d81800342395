"""Who may do what: every endpoint × every kind of caller.

anonymous and raters (a signed rater cookie, no Django user) get 401; a logged-in non-staff user
403; another researcher does not even learn the study exists (404, empty lists); a collaborator
the study is shared with reads but cannot change it; owner and superuser do everything.
"""

import pytest

from evalsite.studies.models import Study

pytestmark = pytest.mark.django_db

# (name, method, path, body, kind). kind decides what each caller should get; see expected().
ENDPOINTS = [
    ("studies-list", "get", "/api/v1/studies/", None, "list"),
    ("study-detail", "get", "/api/v1/studies/{slug}/", None, "detail"),
    ("study-update", "patch", "/api/v1/studies/{slug}/", {"title": "Renamed"}, "write:200"),
    ("study-delete", "delete", "/api/v1/studies/{slug}/", None, "write:204"),
    ("study-launch", "post", "/api/v1/studies/{slug}/launch/", None, "write:200"),
    ("study-close", "post", "/api/v1/studies/{slug}/close/", None, "write:200"),
    ("study-build-comparisons", "post", "/api/v1/studies/{slug}/build-comparisons/", None, "write:200"),
    (
        "study-upload-prompts",
        "post",
        "/api/v1/studies/{slug}/prompts/",
        {"rows": [{"id": "new-1", "text": "New question?"}]},
        "write:201",
    ),
    ("study-analysis", "get", "/api/v1/studies/{slug}/analysis/", None, "analysis"),
    ("models-list", "get", "/api/v1/models/", None, "list"),
    ("model-detail", "get", "/api/v1/models/{model}/", None, "detail"),
    ("model-create", "post", "/api/v1/models/", {"study": "{slug}", "alias": "new-model", "role": "other"}, "create"),
    ("model-update", "patch", "/api/v1/models/{model}/", {"temperature": 0.2}, "write:200"),
    (
        "model-upload-responses",
        "post",
        "/api/v1/models/{model}/responses/",
        {"rows": [{"id": "p0", "text": "another answer", "sample_index": 1}]},
        "write:201",
    ),
    ("prompts-list", "get", "/api/v1/prompts/", None, "list"),
    ("prompt-detail", "get", "/api/v1/prompts/{prompt}/", None, "detail"),
    ("responses-list", "get", "/api/v1/responses/", None, "list"),
    ("response-detail", "get", "/api/v1/responses/{response}/", None, "detail"),
    ("comparisons-list", "get", "/api/v1/comparisons/", None, "list"),
    ("comparison-detail", "get", "/api/v1/comparisons/{comparison}/", None, "detail"),
    ("ratings-list", "get", "/api/v1/ratings/", None, "list"),
    ("rating-detail", "get", "/api/v1/ratings/{rating}/", None, "detail"),
    ("jobs-list", "get", "/api/v1/generation-jobs/", None, "list"),
    ("job-detail", "get", "/api/v1/generation-jobs/{job}/", None, "detail"),
    ("export-csv", "get", "/api/v1/studies/{slug}/ratings.csv", None, "detail"),
    ("export-jsonl", "get", "/api/v1/studies/{slug}/ratings.jsonl", None, "detail"),
    ("export-pairs", "get", "/api/v1/studies/{slug}/preference-pairs.jsonl", None, "detail"),
]
CALLERS = ["anonymous", "rater", "nonstaff", "other", "shared", "owner", "superuser"]
# The analysis endpoint answers 200 (report), 404 (none computed yet) or 503 (analysis not
# installed) to those allowed in; which one depends on other parts, not on permissions.
ANALYSIS_OK = {200, 404}


def expected(kind: str, caller: str) -> set[int]:
    if caller in {"anonymous", "rater"}:
        return {401}
    if caller == "nonstaff":
        return {403}
    if caller == "other":
        return {200} if kind == "list" else {400} if kind == "create" else {404}
    if kind.startswith("write") or kind == "create":
        if caller == "shared":
            return {403}
        return {201} if kind == "create" else {int(kind.split(":")[1])}
    return ANALYSIS_OK if kind == "analysis" else {200}


def fill(template, study: Study):
    ids = {
        "slug": study.slug,
        "model": study.models.get(role="imitation").pk,
        "prompt": study.prompts.first().pk,
        "response": study.prompts.first().responses.first().pk,
        "comparison": study.comparisons.first().pk,
        "rating": study.ratings.first().pk,
        "job": study.generation_jobs.first().pk,
    }
    if isinstance(template, str):
        return template.format(**ids)
    if isinstance(template, dict):
        return {k: fill(v, study) for k, v in template.items()}
    if isinstance(template, list):
        return [fill(v, study) for v in template]
    return template


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(("name", "method", "path", "body", "kind"), ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
def test_permission_matrix(client_for, rated_study, caller, name, method, path, body, kind):
    client = client_for(caller)
    url = fill(path, rated_study)
    response = getattr(client, method)(url, fill(body, rated_study), format="json")
    if response.status_code >= 400 and response.get("Content-Type", "").startswith("application/json"):
        detail = response.json()
    else:
        detail = ""
    assert response.status_code in expected(kind, caller), (caller, name, response.status_code, detail)
    if kind == "list" and caller == "other":
        # A list shows nothing of a study the caller cannot see.
        items = response.json()["results"]
        assert all(item.get("study", item.get("slug")) != rated_study.slug for item in items)
    if kind == "list" and caller in {"owner", "shared", "superuser"}:
        items = response.json()["results"]
        assert any(item.get("study", item.get("slug")) == rated_study.slug for item in items)


def test_each_researcher_sees_only_their_studies(client_for, cast, make_study, rated_study):
    make_study("others-study", owner=cast["other"])
    slugs = lambda name: {s["slug"] for s in client_for(name).get("/api/v1/studies/").json()["results"]}  # noqa: E731
    assert slugs("other") == {"others-study"}
    assert slugs("owner") == {"rated"}
    assert slugs("shared") == {"rated"}
    assert slugs("superuser") == {"rated", "others-study"}


def test_anonymous_is_told_how_to_authenticate(client_for):
    response = client_for("anonymous").get("/api/v1/studies/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


def test_nonstaff_gets_a_clear_message(client_for):
    response = client_for("nonstaff").get("/api/v1/studies/")
    assert response.status_code == 403
    assert "staff" in response.json()["detail"]


def test_token_endpoint(cast, rated_study):
    from rest_framework.test import APIClient

    client = APIClient()
    ok = client.post("/api/v1/auth/token/", {"username": "owner", "password": "pw-owner-1"}, format="json")
    assert ok.status_code == 200
    token = ok.json()["token"]
    # The same token again, and it works.
    again = client.post("/api/v1/auth/token/", {"username": "owner", "password": "pw-owner-1"}, format="json")
    assert again.json()["token"] == token
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get(f"/api/v1/studies/{rated_study.slug}/").status_code == 200
    bad = APIClient().post("/api/v1/auth/token/", {"username": "owner", "password": "nope"}, format="json")
    assert bad.status_code == 400
    member = APIClient().post("/api/v1/auth/token/", {"username": "member", "password": "pw-member-1"})
    assert member.status_code == 403


def test_session_auth_works_for_the_admin_login(client, cast, rated_study):
    client.force_login(cast["owner"])
    assert client.get(f"/api/v1/studies/{rated_study.slug}/ratings.csv").status_code == 200


@pytest.mark.parametrize(
    ("caller", "status"),
    [("anonymous", 401), ("rater", 401), ("nonstaff", 403), ("other", 404), ("shared", 403)],
)
def test_only_the_owner_may_start_generation(client_for, rated_study, caller, status):
    # Owner and superuser are left out here: a success would put real tasks on the broker.
    response = client_for(caller).post(f"/api/v1/studies/{rated_study.slug}/generate/")
    assert response.status_code == status
    assert not rated_study.generation_jobs.exclude(status="done").exists()


def test_slug_is_fixed_after_creation(client_for, rated_study):
    response = client_for("owner").patch(f"/api/v1/studies/{rated_study.slug}/", {"slug": "renamed"}, format="json")
    assert response.status_code == 400
    assert "cannot change" in response.json()["slug"][0]


def test_models_of_a_live_study_are_frozen(client_for, rated_study):
    client = client_for("owner")
    assert client.post(f"/api/v1/studies/{rated_study.slug}/launch/").status_code == 200
    model = rated_study.models.get(role="imitation")
    assert client.delete(f"/api/v1/models/{model.pk}/").status_code == 409
    response = client.post("/api/v1/models/", {"study": rated_study.slug, "alias": "late"}, format="json")
    assert response.status_code == 400 and "frozen" in str(response.json())
