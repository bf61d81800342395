"""``manage.py simulate_ratings STUDY --crowd 12 --experts 3``: fill a live study with simulated ratings."""

from django.core.management.base import BaseCommand, CommandError

from evalsite.rating.simulation import simulate
from evalsite.studies.models import Study


class Command(BaseCommand):
    help = "Simulated crowd and expert raters work through a live study via the real lease engine."

    def add_arguments(self, parser) -> None:
        parser.add_argument("study", help="study slug")
        parser.add_argument("--crowd", type=int, default=12)
        parser.add_argument("--experts", type=int, default=3)
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, study: str, crowd: int, experts: int, seed: int, **options) -> None:
        try:
            target = Study.objects.get(slug=study)
        except Study.DoesNotExist:
            raise CommandError(f"No study with slug {study!r}.") from None
        if target.status != Study.Status.LIVE:
            raise CommandError(f"Study {study!r} is {target.status}; launch it first.")
        stored = simulate(target, crowd=crowd, experts=experts, seed=seed)
        self.stdout.write(f"{stored} ratings stored from {crowd} crowd and {experts} expert raters.")
