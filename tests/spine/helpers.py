"""Helpers shared by the spine tests."""

import json
import os
import subprocess
import sys
from pathlib import Path

from django.contrib.messages import get_messages
from django.urls import reverse

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, django
django.setup()
from django.conf import settings as s
db = s.DATABASES["default"]
print(json.dumps({
    "engine": db["ENGINE"], "name": str(db["NAME"]), "host": db.get("HOST"), "port": db.get("PORT"),
    "user": db.get("USER"), "password": db.get("PASSWORD"),
    "broker": s.CELERY_BROKER_URL,
    "transport": {k: str(v) for k, v in s.CELERY_BROKER_TRANSPORT_OPTIONS.items()},
    "debug": s.DEBUG, "allowed_hosts": s.ALLOWED_HOSTS, "secret_key": s.SECRET_KEY,
    "ssl_redirect": s.SECURE_SSL_REDIRECT, "session_cookie_secure": s.SESSION_COOKIE_SECURE,
}))
"""
PRODUCTION_KEY = "x7Gq2-not-a-real-key-but-long-and-random-enough-for-check-deploy-9fK3pLw"


def clean_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """Only what the case sets: nothing leaks in from the test run's own DATABASE_URL etc."""
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "EVALSITE_DATA_DIR": str(tmp_path / "data")}
    env.update(overrides)
    return env


def run(tmp_path: Path, argv: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv, cwd=ROOT, env=clean_env(tmp_path, **env), capture_output=True, text=True, timeout=60
    )


def probe(tmp_path: Path, **env: str) -> dict:
    env.setdefault("DJANGO_SETTINGS_MODULE", "evalsite.settings")
    result = run(tmp_path, [sys.executable, "-c", PROBE], **env)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def admin_url(name: str, *args) -> str:
    return reverse(f"admin:studies_{name}", args=args)


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]
