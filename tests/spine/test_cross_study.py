"""Two researchers, one site: neither can see, nor refer to, the other's rows.

Alice and Bob are staff researchers with every studies/rating model permission, not
superusers. Everything of Alice's carries the marker ``alicesecret`` (study title and slug,
prompt texts, model aliases, answers, rater pseudonyms), so "Bob sees nothing of Alice's" is
"the marker is not in Bob's page". Every reference a row holds (a comparison's prompt and
responses, a response's prompt and model, a model's or prompt's study, an assignment's
comparison and rater …) is tried against the model's full_clean, the actions, the admin's add
and change forms and, where the endpoint exists, the API.
"""

import secrets
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from evalsite.dashboard.models import JudgeVerdict
from evalsite.rating.models import Assignment, Rater, Rating
from evalsite.studies import actions
from evalsite.studies.errors import ActionError
from evalsite.studies.models import Comparison, GenerationJob, LanguageModel, Prompt, Response, Study

pytestmark = pytest.mark.django_db

SECRET = "alicexyz"  # in every string of Alice's study (short enough for every field)
MINE = "bobstudy"  # in every string of Bob's first study


class World:
    """One researcher's study: two models, two prompts, their answers, comparisons, a rating, a job."""

    def __init__(self, owner, tag: str):
        self.study = Study.objects.create(
            slug=f"{tag}-study", title=f"{tag} title", owner=owner, completion_code="DONE123"
        )
        self.teacher = LanguageModel.objects.create(
            study=self.study, alias=f"{tag}-teacher", role="teacher", backend="imported"
        )
        self.imitation = LanguageModel.objects.create(
            study=self.study, alias=f"{tag}-imitation", role="imitation", backend="imported"
        )
        self.judge = LanguageModel.objects.create(
            study=self.study, alias=f"{tag}-judge", role="judge", backend="imported"
        )
        self.prompts = [
            Prompt.objects.create(
                study=self.study, source_id=f"{tag}-p{i}", text=f"{tag} prompt text {i}", category=f"{tag}-cat"
            )
            for i in range(2)
        ]
        self.answers = {
            (prompt.pk, model.pk): Response.objects.create(
                prompt=prompt,
                model=model,
                text=f"{tag} answer of {model.alias} to {prompt.source_id}",
                finish_reason=f"{tag}-stop",
                backend=tag,
            )
            for prompt in self.prompts
            for model in (self.teacher, self.imitation)
        }
        self.comparisons = [
            Comparison.objects.create(
                study=self.study,
                prompt=prompt,
                response_a=self.answer(prompt, self.teacher),
                response_b=self.answer(prompt, self.imitation),
            )
            for prompt in self.prompts
        ]
        self.rater = Rater.objects.create(
            study=self.study, platform="prolific", external_id=f"{tag}-worker", pseudonym=f"{tag}-ps"[:32]
        )
        now = timezone.now()
        self.assignment = Assignment.objects.create(
            rater=self.rater,
            comparison=self.comparisons[0],
            token=secrets.token_urlsafe(32),
            status=Assignment.Status.SUBMITTED,
            left_side="A",
            leased_at=now - timedelta(seconds=60),
            expires_at=now + timedelta(seconds=600),
            submitted_at=now,
        )
        self.rating = Rating.objects.create(
            assignment=self.assignment,
            study=self.study,
            comparison=self.comparisons[0],
            rater=self.rater,
            winner="A",
            server_seconds=30,
            rationale=f"{tag} rationale",
        )
        self.job = GenerationJob.objects.create(
            study=self.study, model=self.imitation, status="done", total=2, done=2, last_error=f"{tag} error"
        )

    def answer(self, prompt: Prompt, model: LanguageModel) -> Response:
        return self.answers[(prompt.pk, model.pk)]


@pytest.fixture
def researcher(django_user_model):
    def make(name: str):
        user = django_user_model.objects.create_user(name, f"{name}@example.org", f"pw-{name}-1", is_staff=True)
        user.user_permissions.set(Permission.objects.filter(content_type__app_label__in=["studies", "rating"]))
        return user

    return make


@pytest.fixture
def alice(researcher):
    return researcher("alice")


@pytest.fixture
def bob(researcher):
    return researcher("bob")


@pytest.fixture
def a(alice) -> World:
    return World(alice, SECRET)


@pytest.fixture
def b(bob) -> World:
    return World(bob, MINE)


@pytest.fixture
def b2(bob) -> World:
    """Bob's second study: references between two studies of one owner are refused just the same."""
    return World(bob, "bobother")


@pytest.fixture
def as_bob(client, bob, a, b):
    client.force_login(bob)
    return client


def html(page) -> str:
    return page.content.decode()


def snapshot(*rows) -> list[dict]:
    """The rows as the database holds them now (to check that a refused write changed nothing)."""
    return [type(row).objects.filter(pk=row.pk).values().get() for row in rows]


# --- the models' own rules (full_clean) ------------------------------------------------------------


def cross_study_rows(a: World, b: World) -> dict:
    """Unsaved or changed rows of Bob's that refer to a row of Alice's, and the field that must say so."""
    bp, ap = b.prompts[0], a.prompts[0]
    b_resp, a_resp = b.answer(bp, b.teacher), a.answer(ap, a.teacher)
    now = timezone.now()
    moved_model = LanguageModel.objects.get(pk=b.imitation.pk)
    moved_model.study = a.study
    moved_prompt = Prompt.objects.get(pk=bp.pk)
    moved_prompt.study = a.study
    moved_response = Response.objects.get(pk=b_resp.pk)
    moved_response.prompt, moved_response.model = ap, a.judge  # consistent within Alice's study
    moved_rater = Rater.objects.get(pk=b.rater.pk)
    moved_rater.study = a.study
    moved_comparison = Comparison.objects.get(pk=b.comparisons[0].pk)
    moved_comparison.study = a.study
    return {
        "comparison.prompt": (
            Comparison(study=b.study, prompt=ap, response_a=b_resp, response_b=b.answer(bp, b.imitation)),
            "prompt",
        ),
        "comparison.response_a": (
            Comparison(study=b.study, prompt=bp, response_a=a_resp, response_b=b.answer(bp, b.imitation)),
            "response_a",
        ),
        "comparison.response_b": (
            Comparison(study=b.study, prompt=bp, response_a=b_resp, response_b=a.answer(ap, a.imitation)),
            "response_b",
        ),
        "comparison.study": (moved_comparison, "study"),
        "response.model": (Response(prompt=bp, model=a.judge, text="x"), "model"),
        "response.prompt": (Response(prompt=ap, model=b.judge, text="x"), "model"),
        "response moved": (moved_response, "prompt"),
        "model.study": (moved_model, "study"),
        "prompt.study": (moved_prompt, "study"),
        "rater.study": (moved_rater, "study"),
        "assignment.comparison": (
            Assignment(
                rater=b.rater, comparison=a.comparisons[1], token="t" * 43, left_side="A", leased_at=now, expires_at=now
            ),
            "comparison",
        ),
        "rating.comparison": (
            Rating(
                assignment=b.assignment,
                study=b.study,
                comparison=a.comparisons[0],
                rater=b.rater,
                winner="A",
                server_seconds=9,
            ),
            "comparison",
        ),
        "rating.rater": (
            Rating(
                assignment=b.assignment,
                study=b.study,
                comparison=b.comparisons[0],
                rater=a.rater,
                winner="A",
                server_seconds=9,
            ),
            "rater",
        ),
        "generationjob.model": (GenerationJob(study=b.study, model=a.imitation), "model"),
        "judgeverdict.judge": (JudgeVerdict(comparison=b.comparisons[0], judge=a.judge, order="AB"), "judge"),
    }


CASES = [
    "comparison.prompt",
    "comparison.response_a",
    "comparison.response_b",
    "comparison.study",
    "response.model",
    "response.prompt",
    "response moved",
    "model.study",
    "prompt.study",
    "rater.study",
    "assignment.comparison",
    "rating.comparison",
    "rating.rater",
    "generationjob.model",
    "judgeverdict.judge",
]


@pytest.mark.parametrize("case", CASES)
def test_full_clean_refuses_a_reference_to_another_study(a, b, b2, case):
    for other in (a, b2):  # another researcher's study, or another of Bob's own
        row, field = cross_study_rows(other, b)[case]
        with pytest.raises(ValidationError) as caught:
            row.full_clean()
        assert field in caught.value.message_dict, caught.value.message_dict


def test_full_clean_refuses_a_response_of_another_prompt_in_the_same_study(b):
    p0, p1 = b.prompts
    comparison = Comparison(
        study=b.study, prompt=p0, response_a=b.answer(p0, b.teacher), response_b=b.answer(p1, b.imitation)
    )
    with pytest.raises(ValidationError) as caught:
        comparison.full_clean()
    assert "answers another prompt" in str(caught.value.message_dict["response_b"])


def test_full_clean_accepts_rows_of_one_study(b):
    """The rules refuse only what crosses studies: every row the world built is valid as it is."""
    rows = [
        b.study.models.first(),
        b.prompts[0],
        *b.answers.values(),
        *b.comparisons,
        b.rater,
        b.assignment,
        b.rating,
        b.job,
        JudgeVerdict(comparison=b.comparisons[0], judge=b.judge, order="AB"),
    ]
    for row in rows:
        row.full_clean()
    moved_within = Response.objects.get(pk=b.answer(b.prompts[0], b.teacher).pk)
    moved_within.prompt = b.prompts[1]  # another prompt of the same study: not a move between studies
    moved_within.model = b.judge
    moved_within.full_clean()


# --- the actions -------------------------------------------------------------------------------------


@pytest.mark.parametrize("other", ["a", "b2"])
def test_actions_refuse_cross_study_rows_and_change_nothing(a, b, b2, bob, other):
    other = {"a": a, "b2": b2}[other]
    rows = cross_study_rows(other, b)
    before = snapshot(b.comparisons[0], b.prompts[0], b.answer(b.prompts[0], b.teacher), b.imitation)
    n_comparisons, n_responses = Comparison.objects.count(), Response.objects.count()
    for case, save in [
        ("comparison.prompt", actions.save_comparison),
        ("comparison.response_a", actions.save_comparison),
        ("comparison.response_b", actions.save_comparison),
        ("comparison.study", actions.save_comparison),
        ("response.model", actions.save_response),
        ("response.prompt", actions.save_response),
        ("response moved", actions.save_response),
        ("prompt.study", actions.save_prompt),
    ]:
        with pytest.raises(ActionError):
            save(rows[case][0], bob)
    with pytest.raises(ActionError, match="cannot move"):
        actions.update_model(LanguageModel.objects.get(pk=b.imitation.pk), bob, study=other.study)
    with pytest.raises(ActionError, match="does not belong|cannot move"):
        moved = LanguageModel.objects.get(pk=b.imitation.pk)
        moved.study = other.study
        actions.set_study_models(b.study, bob, save=[moved])
    assert snapshot(b.comparisons[0], b.prompts[0], b.answer(b.prompts[0], b.teacher), b.imitation) == before
    assert (Comparison.objects.count(), Response.objects.count()) == (n_comparisons, n_responses)


def test_actions_refuse_a_row_in_someone_elses_study(a, bob):
    """Even all of one study's own rows: Bob cannot add them to Alice's study."""
    p = a.prompts[0]
    Comparison.objects.filter(prompt=p).delete()
    with pytest.raises(ActionError, match="Only the owner"):
        actions.save_comparison(
            Comparison(study=a.study, prompt=p, response_a=a.answer(p, a.teacher), response_b=a.answer(p, a.imitation)),
            bob,
        )
    with pytest.raises(ActionError, match="Only the owner"):
        actions.save_prompt(Prompt(study=a.study, source_id="new", text="x"), bob)
    with pytest.raises(ActionError, match="Only the owner"):
        actions.save_response(Response(prompt=p, model=a.judge, text="x"), bob)
    assert not Prompt.objects.filter(source_id="new").exists()
    assert not Comparison.objects.filter(prompt=p).exists()
    assert not Response.objects.filter(model=a.judge).exists()


def test_actions_save_rows_of_ones_own_study(b, bob):
    p = b.prompts[0]
    Comparison.objects.filter(prompt=p).delete()
    made = actions.save_comparison(
        Comparison(study=b.study, prompt=p, response_a=b.answer(p, b.teacher), response_b=b.answer(p, b.imitation)),
        bob,
    )
    assert made.pk and Comparison.objects.filter(pk=made.pk).exists()
    assert actions.save_response(Response(prompt=p, model=b.judge, text="judged"), bob).pk
    assert actions.save_prompt(Prompt(study=b.study, source_id="new", text="x"), bob).pk


# --- the admin's add and change forms ------------------------------------------------------------


def form_data(page) -> dict:
    """What the admin page's form would post as it stands (its initial values, inline management forms)."""
    form = page.context["adminform"].form
    data = {}
    for name in form.fields:
        value = form[name].value()  # already as the widget renders it
        if isinstance(value, bool):
            if value:
                data[name] = "on"
            continue
        data[name] = "" if value is None else value
    for inline in page.context.get("inline_admin_formsets", []):
        management = inline.formset.management_form
        for name in management.fields:
            data[f"{inline.formset.prefix}-{name}"] = management[name].value()
    return data


def post_form(client, url: str, **changes):
    """GET the page, post its form back with ``changes``; returns the answer."""
    page = client.get(url)
    assert page.status_code == 200, (url, page.status_code)
    return client.post(url, {**form_data(page), **changes})


def assert_form_error(page, field: str, text: str | None = None) -> None:
    assert page.status_code == 200, f"expected the form again with an error, got {page.status_code}"
    errors = page.context["adminform"].form.errors
    assert field in errors, errors
    if text is not None:
        assert text in str(errors[field]), errors


def add_url(model: str) -> str:
    return reverse(f"admin:{model}_add")


def change_url(model: str, pk: int) -> str:
    return reverse(f"admin:{model}_change", args=[pk])


CMP = "studies_comparison"


def fresh_prompt_pair(world: World):
    """A prompt of the world whose comparison is removed, so a new one can be added for it."""
    p = world.prompts[1]
    Comparison.objects.filter(prompt=p).delete()
    return p, world.answer(p, world.teacher), world.answer(p, world.imitation)


@pytest.mark.parametrize("field", ["prompt", "response_a", "response_b"])
def test_admin_add_comparison_refuses_alices_rows(as_bob, a, b, field):
    p, ra, rb = fresh_prompt_pair(b)
    alices = {
        "prompt": a.prompts[1],
        "response_a": a.answer(a.prompts[1], a.teacher),
        "response_b": a.answer(a.prompts[1], a.imitation),
    }[field]
    count = Comparison.objects.count()
    values = {"study": b.study.pk, "prompt": p.pk, "response_a": ra.pk, "response_b": rb.pk, field: alices.pk}
    page = post_form(as_bob, add_url(CMP), **values)
    assert_form_error(page, field, "not in a study you own")
    assert Comparison.objects.count() == count


def test_admin_add_comparison_refuses_alices_study(as_bob, a):
    p = a.prompts[1]
    Comparison.objects.filter(prompt=p).delete()
    count = Comparison.objects.count()
    values = {
        "study": a.study.pk,
        "prompt": p.pk,
        "response_a": a.answer(p, a.teacher).pk,
        "response_b": a.answer(p, a.imitation).pk,
    }
    page = post_form(as_bob, add_url(CMP), **values)
    assert_form_error(page, "study", "not one you own")
    assert Comparison.objects.count() == count


@pytest.mark.parametrize("field", ["prompt", "response_a", "response_b"])
def test_admin_add_comparison_refuses_rows_of_bobs_other_study(as_bob, b, b2, field):
    """Both studies are Bob's, so the choices allow the rows: the model's rule refuses them."""
    p, ra, rb = fresh_prompt_pair(b)
    other = {
        "prompt": b2.prompts[0],
        "response_a": b2.answer(b2.prompts[0], b2.teacher),
        "response_b": b2.answer(b2.prompts[0], b2.imitation),
    }[field]
    count = Comparison.objects.count()
    values = {"study": b.study.pk, "prompt": p.pk, "response_a": ra.pk, "response_b": rb.pk, field: other.pk}
    page = post_form(as_bob, add_url(CMP), **values)
    assert_form_error(page, field, "another study")
    assert Comparison.objects.count() == count


def test_admin_add_comparison_of_ones_own_rows_works(as_bob, b):
    p, ra, rb = fresh_prompt_pair(b)
    page = post_form(as_bob, add_url(CMP), study=b.study.pk, prompt=p.pk, response_a=ra.pk, response_b=rb.pk)
    assert page.status_code == 302, page.context["adminform"].form.errors if page.context else page
    assert Comparison.objects.filter(prompt=p, response_a=ra, response_b=rb).exists()


@pytest.mark.parametrize("field", ["study", "prompt", "response_a", "response_b"])
def test_admin_change_comparison_refuses_alices_rows(as_bob, a, b, field):
    mine = b.comparisons[0]
    alices = {
        "study": a.study,
        "prompt": a.prompts[0],
        "response_a": a.answer(a.prompts[0], a.teacher),
        "response_b": a.answer(a.prompts[0], a.imitation),
    }[field]
    before = snapshot(mine)
    page = post_form(as_bob, change_url(CMP, mine.pk), **{field: alices.pk})
    assert_form_error(page, field)
    assert snapshot(mine) == before


RSP = "studies_response"


@pytest.mark.parametrize(
    "prompt_of, model_of, field",
    [("b", "a", "model"), ("a", "b", "prompt"), ("a", "a", "prompt")],
)
def test_admin_add_response_refuses_alices_prompt_or_model(as_bob, a, b, prompt_of, model_of, field):
    worlds = {"a": a, "b": b}
    count = Response.objects.count()
    values = {"prompt": worlds[prompt_of].prompts[0].pk, "model": worlds[model_of].judge.pk, "text": "sneaky"}
    page = post_form(as_bob, add_url(RSP), **values)
    assert_form_error(page, field, "not in a study you own")
    assert Response.objects.count() == count


def test_admin_add_response_refuses_a_model_of_bobs_other_study(as_bob, b, b2):
    count = Response.objects.count()
    page = post_form(as_bob, add_url(RSP), prompt=b.prompts[0].pk, model=b2.judge.pk, text="mixed")
    assert_form_error(page, "model", "another study")
    assert Response.objects.count() == count


@pytest.mark.parametrize("fields", [("prompt",), ("model",), ("prompt", "model")])
def test_admin_change_response_cannot_move_it_into_alices_study(as_bob, a, b, fields):
    mine = b.answer(b.prompts[0], b.teacher)
    alices = {"prompt": a.prompts[0].pk, "model": a.judge.pk}
    before = snapshot(mine)
    page = post_form(as_bob, change_url(RSP, mine.pk), **{f: alices[f] for f in fields})
    assert_form_error(page, fields[0], "not in a study you own")
    assert snapshot(mine) == before
    assert not Response.objects.filter(prompt__study=a.study, text__contains=MINE).exists()


def test_admin_change_response_cannot_move_it_to_bobs_other_study(as_bob, b, b2):
    mine = b.answer(b.prompts[0], b.teacher)
    before = snapshot(mine)
    page = post_form(as_bob, change_url(RSP, mine.pk), prompt=b2.prompts[0].pk, model=b2.judge.pk)
    assert_form_error(page, "prompt", "cannot move to another study")
    assert snapshot(mine) == before


@pytest.mark.parametrize("model", ["studies_prompt", "studies_languagemodel"])
def test_admin_add_prompt_or_model_refuses_alices_study(as_bob, a, model):
    values = {"study": a.study.pk, "source_id": "sneaky", "text": "x", "alias": "sneaky", "backend": "imported"}
    page = post_form(as_bob, add_url(model), **values)
    assert_form_error(page, "study", "not one you own")
    assert not Prompt.objects.filter(source_id="sneaky").exists()
    assert not LanguageModel.objects.filter(alias="sneaky").exists()


@pytest.mark.parametrize("model", ["studies_prompt", "studies_languagemodel"])
def test_admin_change_prompt_or_model_keeps_its_study(as_bob, a, b, b2, model):
    """The study is shown read-only on the change page; a posted study is ignored."""
    row = b.prompts[0] if model == "studies_prompt" else b.imitation
    page = as_bob.get(change_url(model, row.pk))
    assert 'name="study"' not in html(page)
    for target in (a.study, b2.study):
        answer = as_bob.post(change_url(model, row.pk), {**form_data(page), "study": target.pk})
        assert answer.status_code == 302, answer.context["adminform"].form.errors
        row.refresh_from_db()
        assert row.study_id == b.study.pk


def test_admin_rater_keeps_its_study(as_bob, b, b2):
    page = as_bob.get(change_url("rating_rater", b.rater.pk))
    assert page.status_code == 200 and 'name="study"' not in html(page)
    as_bob.post(change_url("rating_rater", b.rater.pk), {**form_data(page), "study": b2.study.pk})
    b.rater.refresh_from_db()
    assert b.rater.study_id == b.study.pk


@pytest.mark.parametrize("model", ["rating_assignment", "rating_rating"])
def test_admin_engine_rows_cannot_be_added_or_changed(as_bob, b, model):
    """An assignment's comparison and rater, a rating's: only the lease engine writes them."""
    assert as_bob.get(add_url(model)).status_code == 403
    row = {"rating_assignment": b.assignment, "rating_rating": b.rating}[model]
    page = as_bob.get(change_url(model, row.pk))
    assert page.status_code == 200 and 'name="_save"' not in html(page)
    before = snapshot(row)
    as_bob.post(change_url(model, row.pk), {"comparison": b.comparisons[1].pk, "rater": b.rater.pk})
    assert snapshot(row) == before


# --- the API -----------------------------------------------------------------------------------------


@pytest.fixture
def api_bob(bob, a, b):
    client = APIClient()
    client.force_authenticate(bob)
    return client


def test_api_refuses_a_model_in_alices_study(api_bob, a):
    answer = api_bob.post(
        "/api/v1/models/", {"study": a.study.slug, "alias": "sneaky", "backend": "imported"}, format="json"
    )
    assert answer.status_code == 400 and "study" in answer.json()
    assert not LanguageModel.objects.filter(alias="sneaky").exists()


@pytest.mark.parametrize("target", ["a", "b2"])
def test_api_refuses_to_move_bobs_model(api_bob, a, b, b2, target):
    study = {"a": a, "b2": b2}[target].study
    answer = api_bob.patch(f"/api/v1/models/{b.imitation.pk}/", {"study": study.slug}, format="json")
    assert answer.status_code == 400, answer.content
    assert "study" in answer.json()
    b.imitation.refresh_from_db()
    assert b.imitation.study_id == b.study.pk


def test_api_hides_alices_rows(api_bob, a):
    rows = {
        "studies": a.study.slug,
        "models": a.imitation.pk,
        "prompts": a.prompts[0].pk,
        "responses": a.answer(a.prompts[0], a.teacher).pk,
        "comparisons": a.comparisons[0].pk,
        "ratings": a.rating.pk,
        "generation-jobs": a.job.pk,
    }
    for endpoint, key in rows.items():
        assert api_bob.get(f"/api/v1/{endpoint}/{key}/").status_code == 404, endpoint
        listing = api_bob.get(f"/api/v1/{endpoint}/")
        assert listing.status_code == 200 and SECRET not in listing.content.decode(), endpoint
    assert api_bob.patch(f"/api/v1/models/{a.imitation.pk}/", {"temperature": 0.1}, format="json").status_code == 404
    assert (
        api_bob.post(f"/api/v1/studies/{a.study.slug}/prompts/", [{"id": "x", "text": "y"}], format="json").status_code
        == 404
    )


# --- every admin page: nothing of Alice's ------------------------------------------------------------

ADMIN_MODELS = [
    "studies_study",
    "studies_languagemodel",
    "studies_prompt",
    "studies_response",
    "studies_comparison",
    "studies_generationjob",
    "rating_rater",
    "rating_assignment",
    "rating_rating",
]


def alices_row(a: World, model: str):
    return {
        "studies_study": a.study,
        "studies_languagemodel": a.imitation,
        "studies_prompt": a.prompts[0],
        "studies_response": a.answer(a.prompts[0], a.teacher),
        "studies_comparison": a.comparisons[0],
        "studies_generationjob": a.job,
        "rating_rater": a.rater,
        "rating_assignment": a.assignment,
        "rating_rating": a.rating,
    }[model]


@pytest.mark.parametrize("model", ADMIN_MODELS)
def test_admin_changelist_and_its_filters_show_nothing_of_alices(as_bob, a, b, model):
    url = reverse(f"admin:{model}_changelist")
    page = as_bob.get(url)
    assert page.status_code == 200
    assert SECRET not in html(page)
    choices = [
        str(choice["display"])
        for spec in page.context["cl"].filter_specs
        for choice in spec.choices(page.context["cl"])
    ]
    assert not [c for c in choices if SECRET in c], choices
    if model != "studies_study":
        assert MINE in " ".join(choices), "the study filter lists Bob's own study"
    # Even asked for by id, Alice's study filters nothing in.
    for spec in page.context["cl"].filter_specs:
        parameter = getattr(spec, "parameter_name", "")
        if parameter.endswith("study__id__exact"):
            filtered = as_bob.get(url, {parameter: a.study.pk})
            assert filtered.status_code == 200 and SECRET not in html(filtered)
            own = as_bob.get(url, {parameter: b.study.pk})
            assert own.status_code == 200 and own.context["cl"].result_count > 0
            assert as_bob.get(url, {parameter: "not-a-number"}).status_code == 302  # ?e=1, not a 500
    searched = as_bob.get(url, {"q": SECRET})
    assert searched.status_code == 200 and searched.context["cl"].result_count == 0


@pytest.mark.parametrize("model", ADMIN_MODELS)
def test_admin_add_page_offers_nothing_of_alices(as_bob, a, b, model):
    page = as_bob.get(add_url(model))
    if page.status_code == 403:
        return  # the engine's rows: never added by hand
    assert page.status_code == 200 and SECRET not in html(page)
    for name, field in page.context["adminform"].form.fields.items():
        queryset = getattr(field, "queryset", None)
        if queryset is not None and queryset.model is not type(a.study.owner):
            assert not [str(row) for row in queryset if SECRET in str(row)], name


@pytest.mark.parametrize("model", ADMIN_MODELS)
def test_admin_pages_of_alices_rows_are_not_found(as_bob, a, model):
    pk = alices_row(a, model).pk
    for view in ("change", "history", "delete"):
        page = as_bob.get(reverse(f"admin:{model}_{view}", args=[pk]))
        assert page.status_code in (302, 403, 404), (view, page.status_code)
        assert SECRET not in html(page)
    before = snapshot(alices_row(a, model))
    as_bob.post(change_url(model, pk), {"title": "taken", "text": "taken"})
    as_bob.post(reverse(f"admin:{model}_delete", args=[pk]), {"post": "yes"})
    assert snapshot(alices_row(a, model)) == before


@pytest.mark.parametrize(
    "source, field, target",
    [
        ("comparison", "prompt", "studies_prompt"),
        ("comparison", "response_a", "studies_response"),
        ("comparison", "response_b", "studies_response"),
        ("response", "prompt", "studies_prompt"),
        ("response", "model", "studies_languagemodel"),
        ("comparison", "study", "studies_study"),
        ("prompt", "study", "studies_study"),
        ("languagemodel", "study", "studies_study"),
    ],
)
def test_admin_raw_id_and_autocomplete_lookups_list_nothing_of_alices(as_bob, a, b, source, field, target):
    # The raw-id widget's magnifier opens the target's changelist as a popup.
    popup = as_bob.get(reverse(f"admin:{target}_changelist"), {"_to_field": "id", "_popup": "1"})
    assert popup.status_code == 200 and SECRET not in html(popup)
    assert MINE in html(popup)
    picked = as_bob.get(
        reverse(f"admin:{target}_changelist"), {"_to_field": "id", "_popup": "1", "id__exact": alices_row(a, target).pk}
    )
    assert SECRET not in html(picked)
    lookup = as_bob.get(
        reverse("admin:autocomplete"),
        {"app_label": "studies", "model_name": source, "field_name": field, "term": ""},
    )
    assert lookup.status_code == 200
    assert SECRET not in lookup.content.decode() and MINE in lookup.content.decode()


def test_admin_study_pages_of_alices_study_are_not_found(as_bob, a):
    for name in ("studies_study_upload", "studies_study_progress"):
        assert as_bob.get(reverse(f"admin:{name}", args=[a.study.pk])).status_code == 404
