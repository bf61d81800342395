"""The OpenAPI schema is served, validates without warnings, and the docs page needs no CDN."""

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_schema_is_served(client, staff_user):
    # For researchers only, like the API (the README says so): anonymous callers get 401.
    assert client.get("/api/schema/?format=json").status_code == 401
    assert client.get("/api/docs/").status_code == 401
    client.force_login(staff_user)
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/studies/{slug}/ratings.csv" in schema["paths"]
    assert "tokenAuth" in schema["components"]["securitySchemes"]


def test_schema_validates_without_warnings(tmp_path):
    # --fail-on-warn turns every drf-spectacular warning (a guessed type, a clashing enum) into an error.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert (tmp_path / "schema.yaml").read_text().startswith("openapi:")


def test_docs_page_uses_local_assets(client, staff_user):
    client.force_login(staff_user)
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn.jsdelivr.net" not in html and "unpkg.com" not in html
    assert "/api/schema/" in html
