"""``manage.py import_responses STUDY MODEL_ALIAS FILE``: add an imported model's answers."""

from django.core.management.base import BaseCommand, CommandError

from evalsite.studies.actions import ImportRefused, import_responses
from evalsite.studies.management.commands.import_prompts import existing_file, get_study
from evalsite.studies.models import LanguageModel


class Command(BaseCommand):
    help = (
        "Import a model's responses (id = prompt id, response/text/output, sample_index) from JSONL or CSV."
    )

    def add_arguments(self, parser):
        parser.add_argument("study", help="The study's slug.")
        parser.add_argument("model", help="The model's alias in that study (backend 'imported').")
        parser.add_argument("file", help="A .jsonl, .csv or .parquet file (the common answer formats are recognised).")
        parser.add_argument(
            "--format", choices=["jsonl", "csv", "parquet"], help="Override detection by file extension."
        )

    def handle(self, *args, study: str, model: str, file: str, format: str | None = None, **options):
        target = get_study(study)
        try:
            language_model = target.models.get(alias=model)
        except LanguageModel.DoesNotExist:
            raise CommandError(f"No model {model!r} in study {target.slug!r}.") from None
        try:
            count = import_responses(language_model, existing_file(file), fmt=format)
        except ImportRefused as exc:
            raise CommandError(f"Nothing was imported.\n{exc}") from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {count} response(s) for {model!r} in {target.slug!r} (read as {count.format_label})."
            )
        )
