"""``manage.py seed_demo``: the demo study from the sample bundled in ``studies/demo_data``.

Idempotent: re-running leaves an existing demo as it is and only fills in what is missing.
"""

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from evalsite.studies import actions
from evalsite.studies.errors import ActionError
from evalsite.studies.models import LanguageModel, Study

DEMO_DATA = Path(__file__).resolve().parents[2] / "demo_data"
DEMO_SLUG = "demo"

INSTRUCTIONS = """\
You will see a question and two answers, **Answer 1** and **Answer 2**, written by AI assistants.

1. Read both answers carefully.
2. For each answer, tell us whether it sounds fluent and confident, and whether it is **factually
   correct** as far as you can tell (this is required). If you spot a mistake, select it and
   mark it as an error.
3. Say which one is better overall, or that they are about the same, or that both are bad.

Some questions have a known right answer; careful work matters more than speed.
"""

CONSENT = """\
This is a demonstration study of **evalsite**. Your answers are stored with a pseudonym and used
only to show how the analysis works. You may stop at any time.
"""

Role, Backend = LanguageModel.Role, LanguageModel.Backend
# alias, role, backend, model path, sample file (None: generated from the admin)
DEMO_MODELS = [
    ("teacher", Role.TEACHER, Backend.IMPORTED, "", "teacher.jsonl"),
    ("imitation", Role.IMITATION, Backend.IMPORTED, "", "imitation.jsonl"),
    ("base", Role.BASE, Backend.IMPORTED, "", "base.jsonl"),
    ("smollm2", Role.IMITATION, Backend.HF, "builtin:smollm2-135m-instruct", None),
]


def seed_demo(owner=None) -> Study:
    """Create (or complete) the live demo study and return it (through the same actions as the admin)."""
    with transaction.atomic():
        study = Study.objects.select_for_update().filter(slug=DEMO_SLUG).first()
        if study is None:
            study = actions.create_study(
                owner,
                slug=DEMO_SLUG,
                title="Demo: does the imitation match the teacher?",
                description=(
                    "Bundled sample: a teacher, an imitation that copies its style but not its facts, "
                    "a base model, and SmolLM2 generated on demand."
                ),
                instructions=INSTRUCTIONS,
                consent_text=CONSENT,
                completion_code="EVALSITE-DEMO",
                tasks_per_rater=10,
                # Room for the simulated raters scripts/demo.py adds and for real visitors.
                redundancy=5,
            )
        existing = set(study.models.values_list("alias", flat=True))
        missing = [
            LanguageModel(
                study=study,
                alias=alias,
                role=role,
                backend=backend,
                model_path=path,
                max_tokens=128 if backend == Backend.HF else 512,
                temperature=0.7,
            )
            for alias, role, backend, path, _file in DEMO_MODELS
            if alias not in existing
        ]
        # A live demo keeps the models it has: its models are frozen while ratings refer to them.
        if missing and actions.design_editable(study):
            actions.set_study_models(study, None, save=missing)
    models = {m.alias: m for m in study.models.all()}
    if actions.design_editable(study):
        if not study.prompts.exists():
            actions.import_prompts(study, DEMO_DATA / "prompts.jsonl")
        for alias, *_rest, sample in DEMO_MODELS:
            if sample and alias in models and not models[alias].responses.exists():
                actions.import_responses(models[alias], DEMO_DATA / sample)
    actions.build_comparisons(study)
    study.refresh_from_db()
    if study.status == Study.Status.DRAFT:
        actions.mark_study_ready(study)
    if study.status == Study.Status.READY:
        actions.launch_study(study)
    return study


class Command(BaseCommand):
    help = "Create the live demo study (slug 'demo') from the bundled sample. Safe to run again."

    def add_arguments(self, parser):
        parser.add_argument("--owner", help="Username of the study's owner (optional).")

    def handle(self, *args, owner: str | None = None, **options):
        user = None
        if owner:
            try:
                user = get_user_model().objects.get(username=owner)
            except get_user_model().DoesNotExist:
                raise CommandError(f"No user {owner!r}.") from None
        try:
            study = seed_demo(owner=user)
        except ActionError as exc:
            raise CommandError(f"The demo could not be seeded:\n{exc}") from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo study {study.slug!r} is {study.status}: {study.prompts.count()} prompts, "
                f"{study.models.count()} models, {study.comparisons.count()} comparisons."
            )
        )
