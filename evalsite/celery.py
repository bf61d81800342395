"""The Celery application. Tasks live in ``workers/``."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "evalsite.settings")

app = Celery("evalsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"], related_name="tasks")

# Redis hands a killed worker's unacknowledged task to another worker only after the visibility
# timeout; tests (and sites with short jobs) shorten it. It must exceed the longest job, or a job
# still running is delivered twice (harmless, thanks to the upserts, but wasted work).
if os.environ.get("CELERY_VISIBILITY_TIMEOUT"):
    _timeout = int(os.environ["CELERY_VISIBILITY_TIMEOUT"])
    app.conf.broker_transport_options = {
        **(app.conf.broker_transport_options or {}),
        "visibility_timeout": _timeout,
        # kombu looks for such tasks every 10 s but scans only every 10th time (~100 s); with a
        # short timeout, scan on every look so a lost task comes back within about the timeout.
        "unacked_restore_interval": min(10, _timeout),
        "unacked_restore_throttle": 1,
    }
