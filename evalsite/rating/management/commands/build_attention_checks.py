"""Create attention-check comparisons for a study (a teacher answer against an off-topic one)."""

from django.core.management.base import BaseCommand, CommandError

from evalsite.rating.attention import build_attention_checks
from evalsite.studies.models import Study


class Command(BaseCommand):
    help = "Create attention-check comparisons for prompts that have a teacher answer and no check yet."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="the study's slug")
        parser.add_argument("--limit", type=int, default=None, help="create at most this many")

    def handle(self, *args, slug, limit, **options):
        study = Study.objects.filter(slug=slug).first()
        if study is None:
            raise CommandError(f"No study with slug {slug!r}.")
        try:
            created = build_attention_checks(study, limit)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Created {len(created)} attention check(s) for {slug}.")
