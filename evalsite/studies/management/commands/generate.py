"""``manage.py generate STUDY [--model ALIAS ...] [--sync]``: generate a study's answers with progress bars.

Without ``--sync`` the jobs go to the Celery workers and the command follows their progress from the
database; with ``--sync`` it runs them here, one after the other, with no broker at all.
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from evalsite.studies.models import GenerationJob, Study

FINISHED = {GenerationJob.Status.DONE, GenerationJob.Status.FAILED, GenerationJob.Status.CANCELLED}


class Command(BaseCommand):
    help = "Generate the missing answers of a study's models (all models, or those named with --model)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("study", help="Study slug or id.")
        parser.add_argument(
            "--model", action="append", default=[], metavar="ALIAS", help="Only this model (repeatable)."
        )
        parser.add_argument("--queue", help="Send every job to this Celery queue instead of gpu/io/default.")
        parser.add_argument("--sync", action="store_true", help="Run here without a broker or worker.")
        parser.add_argument("--no-wait", action="store_true", help="Enqueue and exit; don't follow progress.")

    def handle(self, *args, **opts) -> None:
        from evalsite.generation.actions import GenerationSetupError, start_generation
        from evalsite.generation.runner import run_job

        study = self._study(opts["study"])
        models = None
        if opts["model"]:
            models = list(study.models.filter(alias__in=opts["model"]))
            unknown = set(opts["model"]) - {m.alias for m in models}
            if unknown:
                known = ", ".join(study.models.values_list("alias", flat=True)) or "none"
                raise CommandError(f"No model {', '.join(sorted(unknown))} in {study.slug}; models: {known}.")
        try:
            jobs = start_generation(study, models, enqueue=not opts["sync"], queue=opts["queue"])
        except (GenerationSetupError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        if opts["sync"]:
            for job in jobs:
                with self._bar(job) as bar:
                    run_job(job.pk, progress=lambda j, bar=bar: self._show(bar, j))
                    job.refresh_from_db()
                    self._show(bar, job)
                self._report(job)
        elif not opts["no_wait"]:
            self._follow(jobs)
        study.refresh_from_db()
        self.stdout.write(f"Study {study.slug} is {study.status}.")

    def _study(self, ref: str) -> Study:
        study = Study.objects.filter(slug=ref).first()
        if study is None and ref.isdigit():
            study = Study.objects.filter(pk=int(ref)).first()
        if study is None:
            raise CommandError(f"No study with slug or id {ref!r}.")
        return study

    def _bar(self, job: GenerationJob) -> tqdm:
        return tqdm(total=job.total, desc=job.model.alias, unit="ans", file=self.stderr._out, leave=True)

    @staticmethod
    def _show(bar: tqdm, job: GenerationJob) -> None:
        bar.n = job.done + job.failed
        rate = f"{job.tokens_per_second:.1f} tok/s" if job.tokens_per_second else ""
        bar.set_postfix_str(f"{job.status} {rate} failed={job.failed}", refresh=False)
        bar.refresh()

    def _report(self, job: GenerationJob) -> None:
        line = f"{job.model.alias}: {job.status} ({job.done}/{job.total}, {job.failed} failed)"
        if job.status == GenerationJob.Status.FAILED:
            self.stdout.write(self.style.ERROR(f"{line}: {job.last_error}"))
        else:
            self.stdout.write(self.style.SUCCESS(line))

    def _follow(self, jobs: list[GenerationJob], poll: float = 1.0) -> None:
        bars = {job.pk: self._bar(job) for job in jobs}
        try:
            pending = set(bars)
            while pending:
                for job in GenerationJob.objects.filter(pk__in=pending).select_related("model"):
                    self._show(bars[job.pk], job)
                    if job.status in FINISHED:
                        pending.discard(job.pk)
                        bars[job.pk].close()
                        self._report(job)
                if pending:
                    time.sleep(poll)
        finally:
            for bar in bars.values():
                bar.close()
