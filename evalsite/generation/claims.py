"""One run holds a job at a time: an atomic claim, then a heartbeat while the run works.

A second delivery of the same job (a stale job enqueued again, a broker redelivering while the first
run still works) finds the job held and does nothing, while a task redelivered after its worker died
takes the job over once the heartbeat stops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Q
from django.utils import timezone

from evalsite.studies.models import GenerationJob

log = logging.getLogger(__name__)


def heartbeat_interval() -> float:
    """Seconds between two touches of a held job's ``updated_at`` (``EVALSITE_JOB_HEARTBEAT_SECONDS``)."""
    return float(settings.GENERATION_HEARTBEAT_SECONDS)


def heartbeat_timeout() -> timedelta:
    """A running job silent this long (six heartbeats) has lost its run; another delivery may take it."""
    return timedelta(seconds=6 * heartbeat_interval())


def try_claim(job_id: int) -> bool:
    """Atomically take a queued job, or a running one whose run has stopped its heartbeat."""
    now = timezone.now()
    claimable = Q(status=GenerationJob.Status.QUEUED) | Q(
        status=GenerationJob.Status.RUNNING, updated_at__lt=now - heartbeat_timeout()
    )
    # One UPDATE ... WHERE: of two runs racing for the job, exactly one sees a row updated.
    return (
        GenerationJob.objects.filter(claimable, pk=job_id).update(status=GenerationJob.Status.RUNNING, updated_at=now)
        == 1
    )


def claim(job_id: int) -> bool:
    """Claim the job for this run; False when another run that is alive holds it, or it finished.

    A job "running" with a fresh heartbeat is either held by a live run (its heartbeat will move
    within the heartbeat interval) or by a run whose worker just died (a redelivery after SIGKILL:
    its heartbeat never moves again). Watch it: it moves, leave the job to that run; it goes stale
    (at most :func:`heartbeat_timeout`), take the job over.
    """
    seen = None
    while True:
        if try_claim(job_id):
            return True
        row = GenerationJob.objects.filter(pk=job_id).values_list("status", "updated_at").first()
        if row is None:
            return False
        status, updated_at = row
        if status == GenerationJob.Status.QUEUED:
            continue  # put back in the queue by its holder (a retry) just now: try again
        if status != GenerationJob.Status.RUNNING:
            return False  # done, failed or cancelled meanwhile
        if seen is not None and updated_at != seen:
            return False  # its heartbeat moved: the holder is alive
        seen = updated_at
        time.sleep(max(0.01, min(heartbeat_interval() / 2, 5.0)))


@contextmanager
def heartbeat(job_id: int) -> Iterator[None]:
    """Touch the job's updated_at every heartbeat interval from a thread while this run holds it."""
    stop = threading.Event()
    interval = heartbeat_interval()

    def beat() -> None:
        try:
            while not stop.wait(interval):
                try:
                    # Only while running: never revives a job that finished, failed or was cancelled.
                    GenerationJob.objects.filter(pk=job_id, status=GenerationJob.Status.RUNNING).update(
                        updated_at=timezone.now()
                    )
                except DatabaseError:
                    log.warning("Heartbeat of generation job %s failed", job_id, exc_info=True)
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"generation-job-{job_id}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
