"""Shared fixtures. Area-specific fixtures live in each tests/<area>/conftest.py."""

import pytest

from evalsite.studies.models import LanguageModel, Prompt, Response, Study


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Tests create many users; the production hasher would spend most of the suite's time on them."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user(
        "researcher", "researcher@example.org", "pw-researcher-1", is_staff=True, is_superuser=True
    )


@pytest.fixture
def make_study(db):
    """Build a study with a teacher and other models, prompts and one response per pair."""

    def build(
        slug: str = "study",
        n_prompts: int = 3,
        roles: tuple[str, ...] = ("teacher", "imitation"),
        owner=None,
        with_responses: bool = True,
        **fields,
    ) -> Study:
        study = Study.objects.create(slug=slug, title=slug.title(), owner=owner, completion_code="DONE123", **fields)
        models = [
            LanguageModel.objects.create(study=study, alias=f"{role}-{i}", role=role, backend="imported")
            for i, role in enumerate(roles)
        ]
        for p in range(n_prompts):
            prompt = Prompt.objects.create(
                study=study, source_id=f"p{p}", text=f"Question {p}?", category="factual-qa" if p % 2 else "open-ended",
                reference_answers=[f"answer {p}"] if p % 2 else [], position=p,
            )
            if with_responses:
                for m in models:
                    Response.objects.create(prompt=prompt, model=m, text=f"{m.alias} says answer {p}.")
        return study

    return build
