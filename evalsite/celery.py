"""The Celery application (``celery -A evalsite.celery worker``). Task bodies live in ``workers/``.

Code in ``evalsite/`` never imports a task: it sends one by name with :func:`send_task_on_commit`,
so the web process loads no task module (nor what they import) and no import circle runs through
``workers/``. Django processes load this module from ``evalsite.generation``'s app config.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "evalsite.settings")

app = Celery("evalsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"], related_name="tasks")


def send_task(name: str, args: Sequence[Any] = (), *, queue: str | None = None, task_id: str | None = None) -> str:
    """Send task ``name`` now; returns its id. Runs it here when ``CELERY_TASK_ALWAYS_EAGER`` is on."""
    if app.conf.task_always_eager:
        app.loader.import_default_modules()  # registers the tasks (workers.tasks) in this process
        return app.tasks[name].apply(args=list(args), task_id=task_id).id
    return app.send_task(name, args=list(args), queue=queue, task_id=task_id).id


def send_task_on_commit(
    name: str,
    args: Sequence[Any] = (),
    *,
    queue: str | None = None,
    task_id: str | None = None,
    then: Callable[[str], None] | None = None,
) -> None:
    """Send task ``name`` once the current transaction commits (at once outside a transaction).

    A worker then never picks up a message for a row it cannot see yet, and a rolled-back write
    sends nothing. ``then`` gets the task id after sending.
    """
    from django.db import transaction

    def send() -> None:
        sent = send_task(name, args, queue=queue, task_id=task_id)
        if then is not None:
            then(sent)

    transaction.on_commit(send)
