"""The rating-form builder: fields, not JSON; validated in the admin, the API and the model; frozen
while live; and the task page previewed exactly as a worker sees it, leasing nothing."""

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from evalsite.rating.models import Assignment, Rater
from evalsite.studies import actions
from evalsite.studies.errors import ActionError, StudyFrozen
from evalsite.studies.models import Study, default_rating_form
from evalsite.studies.rating_form import KNOWN_KEYS, validate_rating_form

from .helpers import admin_url
from .test_actions import change_form_data, live
from .test_admin import study_form_data

pytestmark = pytest.mark.django_db

FROZEN_NOTE = "frozen while the study is live: pause it to change the form"
BUILDER = {  # everything the builder's fields post when a researcher ticks them
    "form_strength": "on",
    "form_style_aspects": ["fluent"],
    "form_extra_aspects": " concise, well_sourced ,concise",
    "form_correctness": "on",
    "form_rationale": "on",
    "form_required": ["correctness", "style", "rationale"],
}


def without_builder(data: dict) -> dict:
    """A study form with every builder field unticked (a browser posts nothing for those)."""
    return {k: v for k, v in data.items() if not k.startswith("form_") or k == "form_editable"}


@pytest.fixture
def researcher(django_user_model):
    def make(name: str = "alice"):
        user = django_user_model.objects.create_user(name, f"{name}@example.org", f"pw-{name}-1", is_staff=True)
        user.user_permissions.set(Permission.objects.filter(content_type__app_label__in=["studies", "rating"]))
        return user

    return make


# --- the builder in the admin --------------------------------------------------------------------


def test_builder_fields_compose_the_rating_form(admin_client_staff):
    add_page = admin_client_staff.get(admin_url("study_add")).content.decode()
    assert 'name="rating_form"' not in add_page  # no raw JSON box
    for name in ("form_strength", "form_style_aspects", "form_extra_aspects", "form_correctness", "form_required"):
        assert f'name="{name}"' in add_page, name
    assert 'name="form_preference"' in add_page and "disabled" in add_page  # always on, shown as such

    page = admin_client_staff.post(admin_url("study_add"), {**without_builder(study_form_data()), **BUILDER})
    assert page.status_code == 302, page.content.decode()[:2000]
    study = Study.objects.get(slug="from-admin")
    assert study.rating_form == {
        "strength": True,
        "style_aspects": ["fluent", "concise", "well_sourced"],
        "correctness": True,
        "error_spans": False,
        "rationale": True,
        "required": ["preference", "correctness", "style", "rationale"],
    }

    # The change page shows the stored form in the fields, and a change goes through the action.
    url = admin_url("study_change", study.pk)
    base = change_form_data(admin_client_staff, url)
    assert base["form_style_aspects"] == ["fluent"] and base["form_extra_aspects"] == "concise, well_sourced"
    assert base["form_required"] == ["correctness", "style", "rationale"]
    edited = {**without_builder(base), "form_correctness": "on", "form_error_spans": "on"}
    assert admin_client_staff.post(url, edited).status_code == 302
    study.refresh_from_db()
    assert study.rating_form == {
        "strength": False,
        "style_aspects": [],
        "correctness": True,
        "error_spans": True,
        "rationale": False,
        "required": ["preference"],
    }


def test_the_default_form_shows_as_ticked_fields_and_saves_unchanged(admin_client_staff, make_study):
    study = make_study(slug="defaults")
    url = admin_url("study_change", study.pk)
    base = change_form_data(admin_client_staff, url)
    assert base["form_strength"] == base["form_correctness"] == base["form_error_spans"] == "on"
    assert base["form_style_aspects"] == ["fluent", "confident"]
    assert base["form_required"] == ["correctness"]  # the default: preference and correctness
    assert admin_client_staff.post(url, {**base, "description": "noted"}).status_code == 302
    study.refresh_from_db()
    assert study.rating_form == default_rating_form() and study.description == "noted"


def test_a_required_question_must_be_asked(admin_client_staff, make_study):
    study = make_study(slug="reqs")
    url = admin_url("study_change", study.pk)
    base = without_builder(change_form_data(admin_client_staff, url))
    before = study.rating_form
    page = admin_client_staff.post(url, {**base, "form_required": ["strength", "style"]})
    html = page.content.decode()
    assert page.status_code == 200
    assert "“Strength of preference” is required but not asked: ask it above, or untick it here." in html
    assert "“Every style score” is required but not asked: choose at least one style aspect" in html
    study.refresh_from_db()
    assert study.rating_form == before


def test_extra_style_aspects_must_be_slugs(admin_client_staff):
    data = {**without_builder(study_form_data()), "form_extra_aspects": "concise, well sourced"}
    page = admin_client_staff.post(admin_url("study_add"), data)
    assert page.status_code == 200
    assert "Style aspect &#x27;well sourced&#x27; must be a slug" in page.content.decode()
    assert not Study.objects.exists()


def test_a_live_studys_builder_is_frozen(admin_client_staff, make_study):
    study = live(make_study)
    before = study.rating_form
    url = admin_url("study_change", study.pk)
    page = admin_client_staff.get(url).content.decode()
    assert FROZEN_NOTE in page
    form = admin_client_staff.get(url).context["adminform"].form
    assert all(form.fields[name].disabled for name in ("form_strength", "form_style_aspects", "form_required"))
    # Whatever the fields post is ignored, the rest of the study still saves.
    base = change_form_data(admin_client_staff, url)
    posted = {**without_builder(base), "form_rationale": "on", "description": "live note"}
    assert admin_client_staff.post(url, posted).status_code == 302
    study.refresh_from_db()
    assert study.rating_form == before and study.description == "live note"
    # A page opened before the study went live (its builder enabled) is refused with the reason.
    page = admin_client_staff.post(url, {**base, "form_editable": "1", "form_extra_aspects": "concise"})
    assert page.status_code == 200 and "its rating form is frozen" in page.content.decode()
    study.refresh_from_db()
    assert study.rating_form == before
    # And the action refuses anyway, whoever calls it.
    with pytest.raises(StudyFrozen, match="Pause the study first"):
        actions.update_study(study, None, rating_form={"strength": False})
    # Paused, the builder is back.
    actions.pause_study(study)
    assert FROZEN_NOTE not in admin_client_staff.get(url).content.decode()


def test_the_change_page_links_the_preview_and_the_report(admin_client_staff, make_study):
    study = make_study(slug="linked")
    page = admin_client_staff.get(admin_url("study_change", study.pk)).content.decode()
    assert f'href="{reverse("studies:preview", args=[study.slug])}"' in page
    assert "Preview the task page" in page
    assert f'href="{reverse("dashboard:report", args=[study.slug])}"' in page


def test_a_shared_reader_sees_the_form_in_words(client, researcher, make_study):
    alice, bob = researcher("alice"), researcher("bob")
    study = make_study(slug="shared", owner=alice)
    study.shared_with.add(bob)
    client.force_login(bob)
    page = client.get(admin_url("study_change", study.pk)).content.decode()
    assert 'name="form_strength"' not in page
    assert "overall preference (required); strength; correctness (required); style: fluent, confident" in page


# --- the model and the API refuse unknown keys ----------------------------------------------------


def test_a_typo_is_refused_by_the_model_naming_the_known_keys(make_study):
    study = make_study(slug="typo")
    with pytest.raises(ActionError) as info:
        actions.update_study(study, None, rating_form={"correctnes": True})
    (message,) = info.value.message_dict["rating_form"]
    assert "Unknown rating form key 'correctnes' (did you mean 'correctness'?)" in message
    assert "Known keys: " + ", ".join(KNOWN_KEYS) in message
    study.refresh_from_db()
    assert study.rating_form == default_rating_form()


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        ([], "must be a JSON object"),
        ({"strength": "yes"}, "'strength' must be true or false"),
        ({"style_aspects": ["fine", "not ok"]}, "must be a slug"),
        ({"style_aspects": ["a", "a"]}, "listed twice: a"),
        ({"required": ["speed"]}, "Unknown required question 'speed'"),
        ({"required": ["rationale"]}, "'rationale' is required but the form does not ask it"),
    ],
)
def test_validate_rating_form(form, expected):
    with pytest.raises(ValidationError) as info:
        validate_rating_form(form)
    assert expected in " ".join(info.value.messages)


def test_valid_forms_pass():
    for form in (default_rating_form(), {}, {"strength": False}, {"style_aspects": ["x"], "required": ["style"]}):
        validate_rating_form(form)


def test_the_api_answers_a_typo_with_400_naming_the_key(researcher, make_study):
    alice = researcher("alice")
    study = make_study(slug="api-typo", owner=alice)
    api = APIClient()
    api.force_authenticate(alice)
    url = f"/api/v1/studies/{study.slug}/"
    response = api.patch(url, {"rating_form": {"strength": True, "correctnes": True}}, format="json")
    assert response.status_code == 400
    (message,) = response.json()["rating_form"]
    assert "'correctnes'" in message and "Known keys: strength, style_aspects, correctness" in message
    study.refresh_from_db()
    assert study.rating_form == default_rating_form()
    created = api.post(
        "/api/v1/studies/", {"slug": "new", "title": "New", "rating_form": {"ratonale": True}}, format="json"
    )
    assert created.status_code == 400 and "'ratonale'" in created.json()["rating_form"][0]
    assert not Study.objects.filter(slug="new").exists()
    # A well-formed form goes through.
    assert api.patch(url, {"rating_form": {"correctness": True}}, format="json").status_code == 200


# --- the preview --------------------------------------------------------------------------------


def test_the_preview_shows_the_task_page_and_leases_nothing(admin_client_staff, make_study):
    study = make_study(slug="peek", rating_form={**default_rating_form(), "required": ["preference", "strength"]})
    actions.build_comparisons(study)
    first = study.comparisons.filter(is_attention_check=False).order_by("id").first()
    page = admin_client_staff.get(reverse("studies:preview", args=[study.slug]))
    assert page.status_code == 200
    html = page.content.decode()
    for text in (
        "Answer 1",
        "Answer 2",
        first.prompt.text,
        first.response_a.text,
        first.response_b.text,
        "Overall, which answer is better?",
        "How sure are you?",  # strength, required here: no "(optional)"
        "Fluent and well organized",
        "Is Answer 1 factually correct?",
        "Mark an error",
        "Why? (optional)",
        study.public_title,
    ):
        assert text in html, text
    assert "How sure are you? (optional)" not in html
    assert 'id="submit" disabled' in html and "action=" not in html.split('id="rating-form"')[1].split(">")[0]
    assert study.title not in html  # the internal title stays internal
    assert not Assignment.objects.exists() and not Rater.objects.exists()


def test_the_preview_of_a_study_without_comparisons_uses_a_sample(admin_client_staff, make_study):
    study = make_study(slug="bare", rating_form={"correctness": True})
    html = admin_client_staff.get(reverse("studies:preview", args=[study.slug])).content.decode()
    assert "boiling point of water" in html and "this study has no comparisons yet" in html
    assert "Is Answer 2 factually correct?" in html
    assert "How sure are you?" not in html and "Mark an error" not in html  # not asked
    assert not Assignment.objects.exists() and not Rater.objects.exists()


def test_the_preview_is_for_the_studys_researchers_only(client, researcher, make_study):
    study = make_study(slug="private", owner=researcher("alice"))
    url = reverse("studies:preview", args=[study.slug])
    assert client.get(url).status_code == 302  # to the login page
    client.force_login(researcher("bob"))
    assert client.get(url).status_code == 404
