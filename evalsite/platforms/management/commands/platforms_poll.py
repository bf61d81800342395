"""Read every published Prolific study / MTurk HIT, reclaim the leases of participants who returned
or timed out, confirm bonuses the platform shows as paid, and stop / expire the platform studies of
closed evalsite studies. For cron or Celery beat, e.g. every minute."""

from django.core.management.base import BaseCommand, CommandError

from evalsite.platforms.actions import poll
from evalsite.studies.models import Study


class Command(BaseCommand):
    help = "Sync the crowd platforms: submissions, reclaimed leases, confirmed bonuses, closing."

    def add_arguments(self, parser):
        parser.add_argument("--study", help="Only this study (its slug).")

    def handle(self, *args, **options):
        study = None
        if options["study"]:
            study = Study.objects.filter(slug=options["study"]).first()
            if study is None:
                raise CommandError(f"No study {options['study']!r}.")
        lines = poll(study)
        for line in lines:
            self.stdout.write(line)
        if not lines:
            self.stdout.write("No study is published on a crowd platform.")
