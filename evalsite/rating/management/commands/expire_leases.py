"""Return expired rater leases to the pool (for cron or Celery beat; raters also do it lazily)."""

from django.core.management.base import BaseCommand

from evalsite.rating.assignment import expire_stale_leases


class Command(BaseCommand):
    help = "Return every expired live lease to the pool of comparisons."

    def handle(self, *args, **options):
        n = expire_stale_leases()
        self.stdout.write(f"Expired {n} lease(s).")
