"""The actions: one function per write, the same rules whether the admin, the API or a command calls it."""

import io
import json

import pytest
from django import forms
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from evalsite.rating import actions as rating_actions
from evalsite.rating import assignment as engine
from evalsite.rating import quality
from evalsite.rating.assignment import RatingInput
from evalsite.rating.models import Assignment, Rater, Rating
from evalsite.studies import actions
from evalsite.studies.errors import ActionConflict, ActionError, ActionForbidden, ImportRefused, StudyFrozen
from evalsite.studies.models import Comparison, LanguageModel, Study

from .helpers import admin_url
from .test_admin import study_form_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def researcher(django_user_model):
    """A staff user who is not a superuser, with the studies and rating model permissions."""

    def make(name: str = "alice"):
        user = django_user_model.objects.create_user(name, f"{name}@example.org", f"pw-{name}-1", is_staff=True)
        user.user_permissions.set(Permission.objects.filter(content_type__app_label__in=["studies", "rating"]))
        return user

    return make


def live(make_study, slug: str = "onair", **fields) -> Study:
    """A live study with comparisons, made through the actions."""
    fields.setdefault("attention_check_rate", 0.0)
    fields.setdefault("min_seconds_per_task", 0.0)
    study = make_study(slug=slug, **fields)
    actions.build_comparisons(study)
    actions.mark_study_ready(study)
    actions.launch_study(study)
    assert study.status == Study.Status.LIVE
    return study


def change_form_data(client, url: str) -> dict:
    """The POST body of an admin change page as it stands: the form and every inline."""
    page = client.get(url)
    assert page.status_code == 200
    data: dict = {}

    def add(form) -> None:
        for name, field in form.fields.items():
            value = form[name].value()  # already prepared for the widget (JSON as text)
            if field.show_hidden_initial:  # fields with a callable default post their initial too
                data[form.add_initial_prefix(name)] = value
            if isinstance(field, forms.BooleanField):
                if value:
                    data[form.add_prefix(name)] = "on"
                continue
            data[form.add_prefix(name)] = "" if value is None else value

    add(page.context["adminform"].form)
    for inline in page.context["inline_admin_formsets"]:
        formset = inline.formset
        for name in formset.management_form.fields:
            data[f"{formset.prefix}-{name}"] = formset.management_form[name].value()
        for form in formset.forms:
            add(form)
    return data


def model_rows(study: Study) -> list[tuple]:
    return list(study.models.order_by("pk").values_list("alias", "role", "backend", "temperature"))


# --- creating a study -----------------------------------------------------------------------


def test_a_researcher_creates_a_study_in_the_admin_and_owns_it(client, researcher):
    alice = researcher("alice")
    client.force_login(alice)
    add_page = client.get(admin_url("study_add")).content.decode()
    assert 'name="owner"' not in add_page  # a researcher's new study is theirs
    response = client.post(admin_url("study_add"), study_form_data())
    assert response.status_code == 302, response.content.decode()[:3000]
    study = Study.objects.get(slug="from-admin")
    assert study.owner == alice and study.status == "draft"
    assert model_rows(study) == [("gpt", "teacher", "openai", 0.7)]  # the inline, through the models action
    # Before, the study had no owner and vanished from its creator's admin.
    assert client.get(admin_url("study_change", study.pk)).status_code == 200
    assert "from-admin" in client.get(admin_url("study_changelist")).content.decode()


def test_a_superuser_may_name_another_owner(admin_client_staff, researcher):
    bob = researcher("bob")
    response = admin_client_staff.post(admin_url("study_add"), study_form_data(owner=bob.pk))
    assert response.status_code == 302
    assert Study.objects.get(slug="from-admin").owner == bob


def test_create_study_action(researcher):
    alice = researcher("alice")
    study = actions.create_study(alice, slug="made", title="Made", shared_with=[researcher("carol")])
    assert (study.owner, study.status, [u.username for u in study.shared_with.all()]) == (alice, "draft", ["carol"])
    with pytest.raises(ActionError, match="starts as a draft"):
        actions.create_study(alice, slug="live-at-once", title="No", status="live")
    with pytest.raises(ActionError) as info:
        actions.create_study(alice, slug="bad", title="Bad", redundancy=0)
    assert "redundancy" in info.value.message_dict
    assert not Study.objects.filter(slug__in=["live-at-once", "bad"]).exists()


# --- a live study's models and rating form are frozen -------------------------------------------


def test_admin_refuses_model_and_form_edits_on_a_live_study(admin_client_staff, make_study):
    study = live(make_study)
    url = admin_url("study_change", study.pk)
    before = (model_rows(study), study.rating_form)
    base = change_form_data(admin_client_staff, url)
    assert base["models-INITIAL_FORMS"] == 2

    edits = {
        "change a model": {"models-1-role": "base"},
        "delete a model": {"models-0-DELETE": "on"},
        "add a model": {
            "models-TOTAL_FORMS": 3,
            "models-2-alias": "late",
            "models-2-role": "base",
            "models-2-backend": "imported",
            "models-2-temperature": "0.7",
            "models-2-top_p": "1",
            "models-2-max_tokens": "64",
            "models-2-samples_per_prompt": "1",
        },
        # The builder's fields are disabled on a live study; a page opened before it went live
        # posts them (form_editable=1): the change is refused with the reason, not dropped.
        "change the rating form": {"form_editable": "1", "form_extra_aspects": "concise"},
    }
    for what, change in edits.items():
        page = admin_client_staff.post(url, {**base, **change})
        assert page.status_code == 200, what  # the form again, with the reason
        assert "is live; its" in page.content.decode() and "frozen" in page.content.decode(), what
        study.refresh_from_db()
        assert (model_rows(study), study.rating_form) == before, what

    # Whatever is not frozen still saves.
    page = admin_client_staff.post(url, {**base, "description": "Now with a description."})
    assert page.status_code == 302
    study.refresh_from_db()
    assert study.description == "Now with a description." and model_rows(study) == before[0]


def test_the_action_itself_refuses_when_the_form_check_is_passed(admin_client_staff, make_study, monkeypatch):
    # A race (the study went live between the form's check and the save) or any other caller:
    # the action checks again under the study's lock; the admin rolls back and shows its message.
    study = live(make_study)
    url = admin_url("study_change", study.pk)
    base = change_form_data(admin_client_staff, url)
    monkeypatch.setattr("evalsite.studies.forms.check_design_editable", lambda *args: None)
    before = model_rows(study)
    page = admin_client_staff.post(url, {**base, "models-1-role": "base", "description": "changed too"}, follow=True)
    assert page.redirect_chain == [(url, 302)]
    assert any("is live; its models are frozen" in str(m) for m in page.context["messages"])
    study.refresh_from_db()
    assert model_rows(study) == before and study.description == ""  # the study's own save rolled back too


def test_language_model_admin_refuses_a_live_studys_models(admin_client_staff, make_study):
    study = live(make_study)
    model = study.models.get(role="imitation")
    page = admin_client_staff.get(admin_url("languagemodel_change", model.pk))
    assert page.status_code == 200 and 'name="alias"' not in page.content.decode()  # read-only
    assert admin_client_staff.get(admin_url("languagemodel_delete", model.pk)).status_code == 403
    new = {
        "study": study.pk, "alias": "late", "role": "base", "backend": "imported", "temperature": "0.7",
        "top_p": "1", "max_tokens": "64", "seed": "0", "stop": "[]", "samples_per_prompt": "1",
        "engine_options": "{}",
    }
    page = admin_client_staff.post(admin_url("languagemodel_add"), new)
    assert page.status_code == 200 and "its models are frozen" in page.content.decode()
    assert not LanguageModel.objects.filter(alias="late").exists()
    actions.pause_study(study)
    assert admin_client_staff.post(admin_url("languagemodel_add"), new).status_code == 302


def test_api_refuses_model_and_form_edits_on_a_live_study(researcher, make_study):
    alice = researcher("alice")
    study = live(make_study, owner=alice)
    api = APIClient()
    api.force_authenticate(alice)
    url = f"/api/v1/studies/{study.slug}/"
    response = api.patch(url, {"rating_form": {"strength": False}}, format="json")
    assert response.status_code == 409 and "rating form is frozen" in response.json()["detail"]
    model = study.models.get(role="imitation")
    response = api.patch(f"/api/v1/models/{model.pk}/", {"temperature": 0.1}, format="json")
    assert response.status_code == 400 and "models are frozen" in json.dumps(response.json())
    assert api.delete(f"/api/v1/models/{model.pk}/").status_code == 409
    study.refresh_from_db()
    model.refresh_from_db()
    assert study.rating_form != {"strength": False} and model.temperature == 0.7
    assert study.models.count() == 2
    # Other settings still change while live.
    assert api.patch(url, {"description": "live note"}, format="json").status_code == 200
    # Paused, the same edits go through (the same actions).
    assert api.post(f"{url}pause/").status_code == 200
    assert api.patch(url, {"rating_form": {"strength": False}}, format="json").status_code == 200
    assert api.patch(f"/api/v1/models/{model.pk}/", {"temperature": 0.1}, format="json").status_code == 200
    model.refresh_from_db()
    assert model.temperature == 0.1


def test_model_actions(make_study, researcher):
    alice = researcher("alice")
    study = make_study(slug="models", owner=alice)
    added = actions.add_model(study, alice, alias="extra", role="base", backend="imported")
    assert added.pk and added.study == study
    actions.update_model(added, alice, temperature=0.2)
    added.refresh_from_db()
    assert added.temperature == 0.2
    with pytest.raises(ActionError) as info:
        actions.update_model(added, alice, temperature=-1)
    assert "temperature" in info.value.message_dict
    with pytest.raises(ActionForbidden):
        actions.delete_model(added, researcher("mallory"))
    other = make_study(slug="other", owner=alice)
    with pytest.raises(ActionError, match="cannot move"):
        actions.update_model(added, alice, study=other)
    actions.delete_model(added, alice)
    assert not LanguageModel.objects.filter(pk=added.pk).exists()
    actions.build_comparisons(study)
    actions.mark_study_ready(study)
    actions.launch_study(study)
    with pytest.raises(StudyFrozen):
        actions.add_model(study, alice, alias="late", role="base", backend="imported")


# --- study settings, imports, pairing and status ------------------------------------------------


def test_update_study_rules(make_study, researcher):
    alice, carol = researcher("alice"), researcher("carol")
    study = make_study(slug="settings", owner=alice)
    actions.update_study(study, alice, title="Renamed title", shared_with=[carol])
    study.refresh_from_db()
    assert study.title == "Renamed title" and list(study.shared_with.all()) == [carol]
    with pytest.raises(ActionError, match="slug cannot change"):
        actions.update_study(study, alice, slug="new-slug")
    with pytest.raises(ActionError, match="status changes only through"):
        actions.update_study(study, alice, status="live")
    with pytest.raises(ActionForbidden, match="shared with you read-only"):
        actions.update_study(study, carol, title="Not mine")
    with pytest.raises(ActionForbidden, match="superuser"):
        actions.update_study(study, alice, owner=carol)
    study.refresh_from_db()
    assert (study.slug, study.status, study.title, study.owner) == ("settings", "draft", "Renamed title", alice)


def test_launch_pause_close_through_the_actions(make_study, researcher):
    alice, carol = researcher("alice"), researcher("carol")
    study = make_study(slug="flow", owner=alice)
    with pytest.raises(ActionConflict, match="cannot go from draft to live"):
        actions.launch_study(study, alice)
    assert actions.build_comparisons(study, alice) == 3
    assert actions.build_comparisons(study, alice) == 0  # idempotent
    actions.mark_study_ready(study, alice)
    with pytest.raises(ActionForbidden):
        actions.launch_study(study, carol)
    assert actions.launch_study(study, alice).status == "live"
    with pytest.raises(ActionConflict, match="already live"):
        actions.launch_study(study, alice)
    assert actions.pause_study(study, alice).status == "ready"
    with pytest.raises(ActionConflict, match="flow is ready, not live: nothing to pause"):
        actions.pause_study(study, alice)
    assert actions.close_study(study, alice).status == "closed"
    with pytest.raises(ActionConflict, match="cannot go from closed to live"):
        actions.launch_study(study, alice)
    assert Study.objects.get(pk=study.pk).status == "closed"

    no_teacher = make_study(slug="noteacher", roles=("imitation", "base"))
    with pytest.raises(ActionConflict, match="no teacher model"):
        actions.build_comparisons(no_teacher)
    nothing = make_study(slug="nocode")
    Study.objects.filter(pk=nothing.pk).update(completion_code="")
    actions.build_comparisons(nothing)
    actions.mark_study_ready(nothing)
    with pytest.raises(ActionConflict, match="needs a completion code"):
        actions.launch_study(nothing)


def test_import_actions_list_every_problem(make_study, researcher):
    alice = researcher("alice")
    study = make_study(slug="imports", owner=alice, n_prompts=0)
    upload = io.BytesIO(b'{"id": "a", "prompt": "A?"}\n{"id": "a", "prompt": ""}\n')
    upload.name = "p.jsonl"
    with pytest.raises(ImportRefused) as info:
        actions.import_prompts(study, upload, actor=alice)
    assert info.value.status_code == 400
    assert "p.jsonl: line 2: empty prompt" in info.value.messages
    assert "p.jsonl: line 2: empty prompt" in str(info.value)
    good = io.BytesIO(b"id,prompt\na,A?\n")
    good.name = "p.csv"
    with pytest.raises(ActionForbidden):
        actions.import_prompts(study, good, actor=researcher("mallory"))
    assert actions.import_prompts(study, good, actor=alice) == 1


def test_commands_go_through_the_actions(tmp_path, make_study):
    study = make_study(slug="cmd", n_prompts=0)
    bad = tmp_path / "bad.csv"
    bad.write_text("id,prompt,reference_answers\nq,fine,a|b\x00c\n")
    with pytest.raises(CommandError, match="bad.csv: line 2: reference_answers contains a NUL character"):
        call_command("import_prompts", "cmd", str(bad))
    assert not study.prompts.exists()


# --- raters -------------------------------------------------------------------------------------


def rate(rater: Rater, study: Study, preference: str = "tie") -> Rating:
    assignment = engine.lease_next(rater, study)
    assert assignment is not None, "the rater should get work"
    return engine.submit(assignment.token, rater, RatingInput(preference=preference))


def make_rater(study: Study, external_id: str, **fields) -> Rater:
    return Rater.objects.create(
        study=study, platform="prolific", external_id=external_id, pseudonym=f"ps-{external_id}", **fields
    )


def test_unblock_lasts_beyond_the_next_rating(make_study):
    # Regression: the failed-attention counter re-blocked an unblocked rater at their next rating.
    study = live(make_study, n_prompts=6, max_attention_failures=1)
    rater = make_rater(study, "w1")
    for _ in range(2):  # two failed attention checks, as the engine counts them
        quality.apply(Rating(attention_passed=False, server_seconds=10.0), rater, study)
    rater.refresh_from_db()
    assert rater.blocked and "Failed 2 attention checks" in rater.blocked_reason
    assert engine.lease_next(rater, study) is None

    rating_actions.unblock_rater(rater)
    rater.refresh_from_db()
    assert not rater.blocked and rater.unblocked_at is not None and rater.attention_failures_forgiven == 2
    rate(rater, study)
    rate(rater, study)
    rater.refresh_from_db()
    assert not rater.blocked and rater.tasks_submitted == 2
    assert not Rating.objects.filter(rater=rater, flagged=True).exists()

    # Fresh failures beyond the study's allowance block the rater again.
    quality.apply(Rating(attention_passed=False, server_seconds=10.0), rater, study)
    rater.refresh_from_db()
    assert not rater.blocked
    quality.apply(Rating(attention_passed=False, server_seconds=10.0), rater, study)
    rater.refresh_from_db()
    assert rater.blocked and rater.blocked_reason == (
        "Failed 2 attention checks since being unblocked (more than 1)."
    )


def test_block_and_unblock_actions(make_study, researcher):
    alice = researcher("alice")
    study = live(make_study, owner=alice)
    rater = make_rater(study, "w1")
    rate(rater, study)
    held = engine.lease_next(rater, study)
    assert held is not None
    with pytest.raises(ActionForbidden):
        rating_actions.block_rater(rater, "spam", researcher("mallory"))
    rating_actions.block_rater(rater, "Copy-pasted rationales.", alice)
    rater.refresh_from_db()
    assert rater.blocked and rater.blocked_reason == "Copy-pasted rationales."
    assert Rating.objects.get(rater=rater).flagged
    held.refresh_from_db()
    assert held.status == Assignment.Status.EXPIRED  # the live lease went back to the pool
    assert Comparison.objects.get(pk=held.comparison_id).n_live == 0
    with pytest.raises(ActionConflict, match="already blocked"):
        rating_actions.block_rater(rater, "again", alice)
    rating_actions.unblock_rater(rater, alice)
    assert not Rating.objects.get(rater=rater).flagged
    with pytest.raises(ActionConflict, match="not blocked"):
        rating_actions.unblock_rater(rater, alice)


def test_rater_admin_block_actions_report_each_refusal(admin_client_staff, make_study):
    study = live(make_study)
    raters = [make_rater(study, f"w{i}") for i in range(2)]
    rating_actions.block_rater(raters[0], "earlier")
    page = admin_client_staff.post(
        "/admin/rating/rater/", {"action": "block_raters", "_selected_action": [r.pk for r in raters]}, follow=True
    )
    msgs = [str(m) for m in page.context["messages"]]
    assert any("already blocked (earlier)" in m for m in msgs)
    assert "Blocked 1 rater(s); their ratings are flagged." in msgs
    assert Rater.objects.filter(blocked=True).count() == 2


# --- engine-owned rows are read-only in the admin -------------------------------------------


def test_engine_rows_and_counters_are_read_only_in_the_admin(admin_client_staff, make_study):
    study = live(make_study)
    rater = make_rater(study, "w1")
    rating = rate(rater, study)
    assignment = rating.assignment
    client = admin_client_staff
    assert client.get("/admin/rating/assignment/add/").status_code == 403  # was a 500
    assert client.get("/admin/rating/rating/add/").status_code == 403
    page = client.get(f"/admin/rating/assignment/{assignment.pk}/change/")
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert client.post(f"/admin/rating/assignment/{assignment.pk}/change/", {"status": "live"}).status_code == 403
    assert client.post(f"/admin/rating/assignment/{assignment.pk}/delete/", {"post": "yes"}).status_code == 403
    assignment.refresh_from_db()
    assert assignment.status == "submitted"

    comparison = rating.comparison
    page = client.get(admin_url("comparison_change", comparison.pk)).content.decode()
    assert 'name="n_live"' not in page and 'name="n_submitted"' not in page
    page = client.get(f"/admin/rating/rater/{rater.pk}/change/").content.decode()
    for field in ("tasks_submitted", "attention_passed", "attention_failed", "too_fast", "blocked"):
        assert f'name="{field}"' not in page, field
    assert client.get("/admin/rating/rater/add/").status_code == 403


# --- repair_counters ----------------------------------------------------------------------------


def test_repair_counters_recounts_from_the_rows(make_study):
    study = live(make_study, n_prompts=3)
    first, second = make_rater(study, "w1"), make_rater(study, "w2")
    rated = rate(first, study)
    rate(second, study)
    held = engine.lease_next(second, study)  # a live lease: n_live 1
    Rating.objects.filter(pk=rated.pk).update(attention_passed=False)  # as if it were a failed check
    Comparison.objects.filter(pk=rated.comparison_id).update(n_live=3, n_submitted=0)
    Comparison.objects.filter(pk=held.comparison_id).update(n_live=0)
    Rater.objects.filter(pk=first.pk).update(tasks_submitted=9)
    assert held.comparison_id != rated.comparison_id  # the engine leases the least-rated comparison
    expected = {
        f"comparison {rated.comparison_id}: n_live 3 → 0",
        f"comparison {rated.comparison_id}: n_submitted 0 → 1",
        f"comparison {held.comparison_id}: n_live 0 → 1",
        f"rater {first.pk} (ps-w1): tasks_submitted 9 → 1",
        f"rater {first.pk} (ps-w1): attention_failed 0 → 1",
    }

    out = io.StringIO()
    call_command("repair_counters", "--dry-run", stdout=out)
    lines = set(out.getvalue().splitlines())
    assert expected <= lines and "5 counter(s) would change (dry run: nothing was written)." in lines
    assert Comparison.objects.get(pk=rated.comparison_id).n_live == 3  # nothing written
    assert Rater.objects.get(pk=first.pk).tasks_submitted == 9

    out = io.StringIO()
    call_command("repair_counters", "--study", study.slug, stdout=out)
    assert expected <= set(out.getvalue().splitlines()) and "5 counter(s) repaired." in out.getvalue()
    fixed = Comparison.objects.get(pk=rated.comparison_id)
    assert (fixed.n_live, fixed.n_submitted) == (0, 1)
    assert Comparison.objects.get(pk=held.comparison_id).n_live == 1
    first.refresh_from_db()
    assert (first.tasks_submitted, first.attention_failed, first.attention_passed) == (1, 1, 0)

    out = io.StringIO()
    call_command("repair_counters", stdout=out)
    assert out.getvalue().strip() == "Every counter agrees with the rows; nothing to repair."


def test_repair_counters_scope_and_unknown_study(make_study):
    study = live(make_study)
    other = live(make_study, slug="other")
    Comparison.objects.filter(study=other).update(n_submitted=4)
    out = io.StringIO()
    call_command("repair_counters", "--study", study.slug, stdout=out)
    assert "nothing to repair" in out.getvalue()
    assert set(Comparison.objects.filter(study=other).values_list("n_submitted", flat=True)) == {4}
    with pytest.raises(CommandError, match="No study with slug 'ghost'"):
        call_command("repair_counters", "--study", "ghost")
