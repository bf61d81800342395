"""``manage.py seed_demo``: the demo study from the sample bundled in ``studies/demo_data``.

Idempotent: re-running leaves an existing demo as it is and only fills in what is missing.
"""

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from evalsite.studies import lifecycle
from evalsite.studies.importers import ImportFileError, import_prompts, import_responses
from evalsite.studies.models import LanguageModel, Study
from evalsite.studies.pairing import build_comparisons

DEMO_DATA = Path(__file__).resolve().parents[2] / "demo_data"
DEMO_SLUG = "demo"

INSTRUCTIONS = """\
You will see a question and two answers, **A** and **B**, written by AI assistants.

1. Read both answers carefully.
2. Say which one is better overall, or that they are about equally good.
3. For each answer, tell us whether it sounds fluent and confident, and whether it is **factually
   correct** as far as you can tell. If you spot a mistake, highlight it.

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
    """Create (or complete) the live demo study and return it."""
    with transaction.atomic():
        study, _ = Study.objects.get_or_create(
            slug=DEMO_SLUG,
            defaults={
                "title": "Demo: does the imitation match the teacher?",
                "description": (
                    "Bundled sample: a teacher, an imitation that copies its style but not its facts, "
                    "a base model, and SmolLM2 generated on demand."
                ),
                "instructions": INSTRUCTIONS,
                "consent_text": CONSENT,
                "completion_code": "EVALSITE-DEMO",
                "owner": owner,
                "tasks_per_rater": 10,
                # Room for the simulated raters scripts/demo.py adds and for real visitors.
                "redundancy": 5,
            },
        )
        models = {}
        for alias, role, backend, path, _file in DEMO_MODELS:
            models[alias], _ = LanguageModel.objects.get_or_create(
                study=study,
                alias=alias,
                defaults={
                    "role": role,
                    "backend": backend,
                    "model_path": path,
                    "max_tokens": 128 if backend == Backend.HF else 512,
                    "temperature": 0.7,
                },
            )
    if lifecycle.prompts_editable(study):
        if not study.prompts.exists():
            import_prompts(study, DEMO_DATA / "prompts.jsonl")
        for alias, *_rest, sample in DEMO_MODELS:
            if sample and not models[alias].responses.exists():
                import_responses(models[alias], DEMO_DATA / sample)
    build_comparisons(study)
    study.refresh_from_db()
    if study.status == Study.Status.DRAFT:
        lifecycle.transition(study, Study.Status.READY)
    if study.status == Study.Status.READY:
        lifecycle.launch(study)
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
        except (ImportFileError, lifecycle.TransitionError) as exc:
            raise CommandError(f"The demo could not be seeded:\n{exc}") from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo study {study.slug!r} is {study.status}: {study.prompts.count()} prompts, "
                f"{study.models.count()} models, {study.comparisons.count()} comparisons."
            )
        )
