"""The researcher's admin: pages, actions, uploads and progress, through the Django test client."""

import sys
import types

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from evalsite.studies.forms import LanguageModelForm
from evalsite.studies.models import Comparison, GenerationJob, LanguageModel, Prompt, Response, Study
from evalsite.studies.pairing import build_comparisons

from .helpers import admin_url, messages_of

pytestmark = pytest.mark.django_db


def act(client, action: str, *studies) -> list[str]:
    response = client.post(
        admin_url("study_changelist"),
        {"action": action, "_selected_action": [s.pk for s in studies]},
        follow=True,
    )
    assert response.redirect_chain[0][1] == 302
    return [str(m) for m in response.context["messages"]]


def ready_study(make_study, slug="ready") -> Study:
    study = make_study(slug=slug)
    build_comparisons(study)
    Study.objects.filter(pk=study.pk).update(status=Study.Status.READY)
    study.refresh_from_db()
    return study


# --- pages ------------------------------------------------------------------------------------


def test_study_changelist_counts_search_and_filters(admin_client_staff, make_study):
    make_study(slug="alpha", n_prompts=4)
    make_study(slug="beta", n_prompts=2, roles=("teacher",))
    page = admin_client_staff.get(admin_url("study_changelist"))
    assert page.status_code == 200
    rows = {s.slug: s for s in page.context["cl"].result_list}
    assert (rows["alpha"].prompts_count, rows["alpha"].models_count) == (4, 2)
    assert (rows["beta"].prompts_count, rows["beta"].models_count) == (2, 1)
    page = admin_client_staff.get(admin_url("study_changelist"), {"q": "alpha"})
    assert [s.slug for s in page.context["cl"].result_list] == ["alpha"]
    page = admin_client_staff.get(admin_url("study_changelist"), {"status__exact": "live"})
    assert list(page.context["cl"].result_list) == []


def test_study_change_page_has_inlines_upload_link_and_progress(admin_client_staff, make_study):
    study = make_study(slug="page", n_prompts=3)
    model = study.models.first()
    job = GenerationJob.objects.create(study=study, model=model, status="running", total=10, done=4)
    page = admin_client_staff.get(admin_url("study_change", study.pk))
    html = page.content.decode()
    assert page.status_code == 200
    assert admin_url("study_upload", study.pk) in html
    assert "3 prompts</a>" in html
    assert f'data-job="{job.pk}"' in html and '<progress max="10" value="4">' in html
    assert "admin/evalsite-progress.js" in html
    assert 'name="models-0-alias"' in html  # the models inline


def test_other_changelists_search_and_filter(admin_client_staff, make_study):
    study = ready_study(make_study)
    GenerationJob.objects.create(study=study, model=study.models.first(), total=3)
    for name, params in [
        ("response", {"q": "teacher-0"}),
        ("response", {"model__role__exact": "teacher"}),
        ("comparison", {"q": "p1"}),
        ("comparison", {"study__id__exact": study.pk}),
        ("prompt", {"q": "Question 2"}),
        ("languagemodel", {"backend__exact": "imported"}),
        ("generationjob", {"status__exact": "queued"}),
    ]:
        page = admin_client_staff.get(admin_url(f"{name}_changelist"), params)
        assert page.status_code == 200, name
        assert page.context["cl"].result_count >= 1, (name, params)
    page = admin_client_staff.get(admin_url("response_changelist"), {"q": "no such text anywhere"})
    assert page.context["cl"].result_count == 0


def test_progress_json(admin_client_staff, make_study):
    study = make_study(slug="prog")
    model = study.models.first()
    GenerationJob.objects.create(
        study=study, model=model, status="running", total=8, done=2, failed=2, eta_seconds=9
    )
    data = admin_client_staff.get(admin_url("study_progress", study.pk)).json()
    assert data["study"] == "prog"
    (job,) = data["jobs"]
    assert (job["model"], job["percent"], job["finished"]) == (model.alias, 50.0, False)
    assert job["label"] == "2/8 done, 2 failed · running · about 9 s left"


def test_admin_pages_need_staff(client, make_study):
    study = make_study(slug="private")
    assert client.get(admin_url("study_progress", study.pk)).status_code == 302  # to the login page
    assert client.get(admin_url("study_upload", study.pk)).status_code == 302


# --- actions ----------------------------------------------------------------------------------


def test_build_comparisons_action_makes_draft_ready(admin_client_staff, make_study):
    study = make_study(slug="b", n_prompts=3)
    msgs = act(admin_client_staff, "build_comparisons_action", study)
    assert "b: 3 comparison(s) added, 3 in total." in msgs and "b is ready to launch." in msgs
    study.refresh_from_db()
    assert study.status == "ready" and study.comparisons.count() == 3
    assert "b: 0 comparison(s) added, 3 in total." in act(
        admin_client_staff, "build_comparisons_action", study
    )


def test_build_comparisons_action_without_teacher_shows_error(admin_client_staff, make_study):
    study = make_study(slug="noteach", roles=("imitation", "base"))
    (msg,) = act(admin_client_staff, "build_comparisons_action", study)
    assert "no teacher model" in msg
    assert not Comparison.objects.exists()


def test_launch_pause_close_go_through_lifecycle(admin_client_staff, make_study):
    study = ready_study(make_study)
    assert act(admin_client_staff, "launch", study) == ["ready is live."]
    study.refresh_from_db()
    assert study.status == "live"
    assert act(admin_client_staff, "pause", study) == ["ready is paused."]
    study.refresh_from_db()
    assert study.status == "ready"
    assert act(admin_client_staff, "close", study) == ["ready is closed."]
    study.refresh_from_db()
    assert study.status == "closed"


def test_forbidden_transitions_become_error_messages(admin_client_staff, make_study):
    draft = make_study(slug="draft")
    (msg,) = act(admin_client_staff, "launch", draft)
    assert "cannot go from draft to live" in msg
    no_pairs = make_study(slug="nopairs")
    Study.objects.filter(pk=no_pairs.pk).update(status="ready")
    (msg,) = act(admin_client_staff, "launch", no_pairs)
    assert "has no comparisons" in msg
    (msg,) = act(admin_client_staff, "pause", draft)
    assert msg == "draft is draft, not live: nothing to pause."
    (msg,) = act(admin_client_staff, "close", draft)
    assert "cannot go from draft to closed" in msg
    assert set(Study.objects.values_list("status", flat=True)) == {"draft", "ready"}


def test_generate_action_calls_start_generation_per_study(admin_client_staff, make_study, monkeypatch):
    calls = []

    def start_generation(study):
        calls.append(study.slug)
        if study.slug == "broken":
            raise RuntimeError("no GPU worker is listening")

    fake = types.ModuleType("evalsite.generation.actions")
    fake.start_generation = start_generation
    monkeypatch.setitem(sys.modules, "evalsite.generation.actions", fake)
    ok, broken = make_study(slug="ok"), make_study(slug="broken")
    msgs = act(admin_client_staff, "generate_responses", ok, broken)
    assert sorted(calls) == ["broken", "ok"]
    assert "ok: generation started; progress shows on the study page." in msgs
    assert "broken: generation did not start: no GPU worker is listening" in msgs


def test_generate_action_without_generation_module(admin_client_staff, make_study, monkeypatch):
    monkeypatch.setitem(sys.modules, "evalsite.generation.actions", None)  # makes the import fail
    (msg,) = act(admin_client_staff, "generate_responses", make_study(slug="g"))
    assert msg.startswith("Generation is not available")


# --- language model form -------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, field, text",
    [
        ({"temperature": -0.1}, "temperature", "Temperature must be 0 or more"),
        ({"top_p": 0}, "top_p", "top_p must be greater than 0"),
        ({"top_p": 1.5}, "top_p", "top_p must be greater than 0"),
        ({"max_tokens": 0}, "max_tokens", "max_tokens must be a positive"),
        ({"stop": '"###"'}, "stop", "Stop sequences must be a JSON list"),
        ({"stop": "[1, 2]"}, "stop", "Stop sequences must be a JSON list"),
        ({"engine_options": "[1]"}, "engine_options", "Engine options must be a JSON object"),
        ({"model_path": ""}, "model_path", "A model path or name is needed"),
    ],
)
def test_language_model_form_validates_decoding_parameters(make_study, changes, field, text):
    study = make_study(slug="lm")
    data = {
        "study": study.pk,
        "alias": "m",
        "role": "base",
        "backend": "hf",
        "model_path": str(settings.MODEL_ROOTS[0] / "some-model"),
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 64,
        "seed": 0,
        "stop": '["\\n\\n"]',
        "samples_per_prompt": 1,
        "engine_options": '{"dtype": "float32"}',
        **changes,
    }
    form = LanguageModelForm(data)
    assert not form.is_valid()
    assert any(text in e for e in form.errors[field]), form.errors
    ok = {**data}
    ok.update(
        {
            "temperature": 0,
            "top_p": 1,
            "max_tokens": 1,
            "stop": '["\\n\\n"]',
            "engine_options": "{}",
            "model_path": str(settings.MODEL_ROOTS[0] / "some-model"),
        }
    )
    valid = LanguageModelForm(ok)
    assert valid.is_valid(), valid.errors


def test_language_model_admin_rejects_bad_top_p(admin_client_staff, make_study):
    study = make_study(slug="lma")
    data = {
        "study": study.pk,
        "alias": "new",
        "role": "base",
        "backend": "imported",
        "temperature": "0.7",
        "top_p": "2",
        "max_tokens": "64",
        "seed": "0",
        "stop": "[]",
        "samples_per_prompt": "1",
        "engine_options": "{}",
    }
    page = admin_client_staff.post(admin_url("languagemodel_add"), data)
    assert page.status_code == 200 and "top_p must be greater than 0" in page.content.decode()
    assert not LanguageModel.objects.filter(alias="new").exists()
    page = admin_client_staff.post(admin_url("languagemodel_add"), {**data, "top_p": "0.95"})
    assert page.status_code == 302
    assert LanguageModel.objects.get(alias="new").top_p == 0.95


# --- prompts frozen when live ----------------------------------------------------------------


def test_prompt_admin_is_read_only_for_live_study(admin_client_staff, make_study):
    study = ready_study(make_study, slug="frozen")
    Study.objects.filter(pk=study.pk).update(status="live")
    prompt = study.prompts.first()
    page = admin_client_staff.get(admin_url("prompt_change", prompt.pk))
    assert page.status_code == 200 and 'name="text"' not in page.content.decode()
    admin_client_staff.post(admin_url("prompt_change", prompt.pk), {"text": "changed", "study": study.pk})
    prompt.refresh_from_db()
    assert prompt.text != "changed"
    page = admin_client_staff.post(
        admin_url("prompt_add"),
        {
            "study": study.pk,
            "source_id": "new",
            "text": "x",
            "position": 0,
            "reference_answers": "[]",
            "metadata": "{}",
        },
    )
    assert page.status_code == 200 and "its prompts cannot be edited" in page.content.decode()
    assert admin_client_staff.get(admin_url("prompt_delete", prompt.pk)).status_code == 403
    assert not Prompt.objects.filter(source_id="new").exists()


# --- upload view -----------------------------------------------------------------------------


def upload(client, study, content: bytes, name: str, **fields):
    data = {"kind": "prompts", "format": "", "file": SimpleUploadedFile(name, content), **fields}
    return client.post(admin_url("study_upload", study.pk), data)


def test_upload_prompts_then_responses(admin_client_staff, db):
    study = Study.objects.create(slug="up", title="Up")
    page = admin_client_staff.get(admin_url("study_upload", study.pk))
    assert page.status_code == 200 and "study-upload-form" in page.content.decode()
    page = upload(
        admin_client_staff, study, b'{"id": "a", "prompt": "A?"}\n{"id": "b", "prompt": "B?"}\n', "p.jsonl"
    )
    assert page.status_code == 302 and messages_of(page) == ["Imported 2 prompt(s) into up (read as evalsite prompts)."]
    model = LanguageModel.objects.create(study=study, alias="gpt", role="teacher", backend="imported")
    page = upload(
        admin_client_staff, study, b"id,response\na,yes\nb,no\n", "r.csv", kind="responses", model=model.pk
    )
    assert page.status_code == 302
    assert sorted(Response.objects.values_list("text", flat=True)) == ["no", "yes"]


def test_upload_bad_file_lists_errors_and_imports_nothing(admin_client_staff, db):
    study = Study.objects.create(slug="bad", title="Bad")
    page = upload(
        admin_client_staff, study, b'{"id": "a", "prompt": "A?"}\n{"id": "a", "prompt": ""}\n', "p.jsonl"
    )
    html = page.content.decode()
    assert page.status_code == 200
    assert "p.jsonl: line 2: empty prompt" in html and "p.jsonl: line 2: duplicate id" in html
    assert "Nothing was imported." in html
    assert not Prompt.objects.exists()


def test_upload_responses_needs_an_imported_model(admin_client_staff, make_study):
    study = make_study(slug="needmodel", with_responses=False)
    LanguageModel.objects.create(study=study, alias="hfmodel", backend="hf", model_path="x")
    page = upload(admin_client_staff, study, b"id,response\np0,yes\n", "r.csv", kind="responses")
    assert page.status_code == 200 and "Choose the imported model" in page.content.decode()
    hf = LanguageModel.objects.get(alias="hfmodel")
    page = upload(admin_client_staff, study, b"id,response\np0,yes\n", "r.csv", kind="responses", model=hf.pk)
    assert page.status_code == 200 and "Select a valid choice" in page.content.decode()
    assert not Response.objects.exists()


def study_form_data(**overrides) -> dict:
    data = {
        "title": "From the admin",
        "slug": "from-admin",
        "description": "",
        "instructions": "Rate carefully.",
        "consent_text": "",
        "completion_code": "",
        "completion_url": "",
        "pairing": "teacher",
        "redundancy": "3",
        "tasks_per_rater": "20",
        "lease_seconds": "900",
        "attention_check_rate": "0.1",
        "min_seconds_per_task": "5",
        "max_attention_failures": "1",
        "public_title": "Compare two answers",
        "expert_redundancy": "1",
        "expert_share": "1.0",
        "form_strength": "on",  # the rating-form builder: strength only
        "models-TOTAL_FORMS": "1",
        "models-INITIAL_FORMS": "0",
        "models-MIN_NUM_FORMS": "0",
        "models-MAX_NUM_FORMS": "1000",
        "models-0-alias": "gpt",
        "models-0-role": "teacher",
        "models-0-backend": "openai",
        "models-0-model_path": "gpt-4o",
        "models-0-temperature": "0.7",
        "models-0-top_p": "1.0",
        "models-0-max_tokens": "256",
        "models-0-samples_per_prompt": "1",
        "generation_jobs-TOTAL_FORMS": "0",
        "generation_jobs-INITIAL_FORMS": "0",
        "generation_jobs-MIN_NUM_FORMS": "0",
        "generation_jobs-MAX_NUM_FORMS": "0",
    }
    data.update(overrides)
    return data


def test_create_study_with_model_inline(admin_client_staff):
    assert admin_client_staff.get(admin_url("study_add")).status_code == 200
    page = admin_client_staff.post(admin_url("study_add"), study_form_data(**{"models-0-temperature": "-1"}))
    assert page.status_code == 200 and "Temperature must be 0 or more" in page.content.decode()
    assert not Study.objects.exists()
    page = admin_client_staff.post(admin_url("study_add"), study_form_data())
    assert page.status_code == 302
    study = Study.objects.get(slug="from-admin")
    assert study.status == "draft"
    assert list(study.models.values_list("alias", "backend", "max_tokens")) == [("gpt", "openai", 256)]


def test_progress_script_and_styles_are_found_by_staticfiles():
    from django.contrib.staticfiles import finders

    script = finders.find("admin/evalsite-progress.js")
    assert script and "data-finished" in open(script).read()
    assert finders.find("admin/evalsite-progress.css")


def test_generate_action_refuses_live_study(admin_client_staff, make_study):
    study = ready_study(make_study, slug="onair")
    Study.objects.filter(pk=study.pk).update(status="live")
    (msg,) = act(admin_client_staff, "generate_responses", study)
    assert msg == "onair is live: pause it (back to ready) before generating."
    assert not GenerationJob.objects.exists()


def test_generate_action_with_real_start_generation(admin_client_staff, make_study):
    pytest.importorskip("evalsite.generation.actions")
    # Imported models whose answers are all present: jobs finish at once, nothing is enqueued.
    study = make_study(slug="complete", n_prompts=2)
    msgs = act(admin_client_staff, "generate_responses", study)
    assert msgs == ["complete: generation started; progress shows on the study page."]
    jobs = GenerationJob.objects.filter(study=study)
    assert jobs.count() == 2 and set(jobs.values_list("status", flat=True)) == {"done"}
    study.refresh_from_db()
    assert study.status == "ready"
    data = admin_client_staff.get(admin_url("study_progress", study.pk)).json()
    assert [j["finished"] for j in data["jobs"]] == [True, True]
