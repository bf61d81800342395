"""``manage.py import_prompts STUDY FILE``: add prompts from a JSONL or CSV file (all or nothing)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from evalsite.studies.actions import ImportRefused, import_prompts
from evalsite.studies.models import Study


def get_study(slug: str) -> Study:
    """The study with ``slug``, or a :class:`CommandError` naming it."""
    try:
        return Study.objects.get(slug=slug)
    except Study.DoesNotExist:
        raise CommandError(f"No study with slug {slug!r}.") from None


def existing_file(path: str) -> Path:
    """``path`` as a Path, or a :class:`CommandError` if there is no such file."""
    file = Path(path)
    if not file.is_file():
        raise CommandError(f"{path}: file not found.")
    return file


class Command(BaseCommand):
    help = (
        "Import prompts from a JSONL, CSV or Parquet file: evalsite's own rows (id, prompt/text, category, "
        "reference_answers, history, parent), MT-bench, Arena-Hard, Alpaca(Eval), ShareGPT or OpenAI messages."
    )

    def add_arguments(self, parser):
        parser.add_argument("study", help="The study's slug.")
        parser.add_argument("file", help="A .jsonl, .csv or .parquet file (the common prompt formats are recognised).")
        parser.add_argument(
            "--format", choices=["jsonl", "csv", "parquet"], help="Override detection by file extension."
        )

    def handle(self, *args, study: str, file: str, format: str | None = None, **options):
        target = get_study(study)
        try:
            count = import_prompts(target, existing_file(file), fmt=format)
        except ImportRefused as exc:
            raise CommandError(f"Nothing was imported.\n{exc}") from None
        self.stdout.write(
            self.style.SUCCESS(f"Imported {count} prompt(s) into {target.slug!r} (read as {count.format_label}).")
        )
