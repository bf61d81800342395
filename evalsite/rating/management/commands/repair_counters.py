"""``manage.py repair_counters [--dry-run] [--study SLUG]``: recompute the lease engine's counters.

``Comparison.n_live`` / ``n_submitted`` and ``Rater.tasks_submitted`` / ``attention_passed`` /
``attention_failed`` are recounted from the Assignment and Rating rows; each change is printed
("comparison 12: n_live 3 → 1"). With ``--dry-run`` nothing is written.
"""

from django.core.management.base import BaseCommand, CommandError

from evalsite.rating.actions import repair_counters
from evalsite.studies.models import Study


class Command(BaseCommand):
    help = "Recompute comparison and rater counters from the assignment and rating rows; print each change."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Print what would change; write nothing.")
        parser.add_argument("--study", metavar="SLUG", help="Only this study's comparisons and raters.")

    def handle(self, *args, dry_run: bool = False, study: str | None = None, **options) -> None:
        target = None
        if study:
            target = Study.objects.filter(slug=study).first()
            if target is None:
                raise CommandError(f"No study with slug {study!r}.")
        changes = repair_counters(dry_run=dry_run, study=target)
        for change in changes:
            self.stdout.write(str(change))
        if not changes:
            self.stdout.write("Every counter agrees with the rows; nothing to repair.")
        elif dry_run:
            self.stdout.write(f"{len(changes)} counter(s) would change (dry run: nothing was written).")
        else:
            self.stdout.write(self.style.SUCCESS(f"{len(changes)} counter(s) repaired."))
