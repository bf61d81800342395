#!/usr/bin/env python
"""The embedded demo: SQLite, the filesystem broker, a web server and a real Celery worker.

    python scripts/demo.py            # serve until Ctrl-C
    python scripts/demo.py --check    # start everything, check it answers, stop (used by the tests)

Data (database, broker folders, the admin password) live in ``EVALSITE_DATA_DIR`` (default
``data/``). The port comes from ``--port`` or ``DEMO_PORT`` (default 8000).
"""

import argparse
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ADMIN_USER = "admin"
STOP_GRACE_SECONDS = 10
# The demo is embedded whatever the caller's environment points at (a test run sets PostgreSQL).
SERVER_VARIABLES = ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CELERY_TASK_ALWAYS_EAGER")


def demo_environment(data_dir: Path) -> dict[str, str]:
    """The children's environment: always embedded, whatever servers the caller's env points at."""
    env = {k: v for k, v in os.environ.items() if k not in SERVER_VARIABLES}
    env.update(
        EVALSITE_DATA_DIR=str(data_dir),
        DJANGO_SETTINGS_MODULE="evalsite.settings",
        DEBUG="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def prepare(env: dict[str, str], data_dir: Path) -> str:
    """Migrate, seed the demo study and make the staff login; return its password."""
    os.environ.clear()
    os.environ.update(env)  # this process runs Django too, with exactly the children's settings
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", interactive=False, verbosity=0)
    password_file = data_dir / "demo_admin_password"
    if password_file.exists():
        password = password_file.read_text().strip()
    else:
        password = secrets.token_urlsafe(12)
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
    users = get_user_model().objects
    user, _ = users.get_or_create(username=ADMIN_USER, defaults={"email": "admin@localhost"})
    user.is_staff = user.is_superuser = True
    user.set_password(password)  # keep the database and the file in agreement
    user.save()
    call_command("seed_demo", owner=ADMIN_USER)
    from evalsite.rating.models import Rating

    if not Rating.objects.filter(study__slug="demo").exists():
        # Simulated crowd and expert raters (through the real lease engine) give the report
        # page data to show at once; slots remain for real raters.
        call_command("simulate_ratings", "demo", crowd=9, experts=3)
    connections.close_all()  # the children write to the same SQLite file
    return password


class Child:
    """A subprocess in its own process group, its output echoed with a prefix."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], ready_marker: str | None = None):
        self.name = name
        self.ready = threading.Event()
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,  # its own process group: we can stop it and everything it forks
        )
        self._marker = ready_marker
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            sys.stdout.write(f"[{self.name}] {line}")
            if self._marker and self._marker in line:
                self.ready.set()

    def stop(self) -> int | None:
        """SIGTERM the group, then SIGKILL it if it has not gone after a grace period."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        return self.proc.returncode


def wait_for_http(url: str, deadline: float, children: list[Child]) -> str:
    """Poll ``url`` until it answers 200; return the body. Fails fast if a child exits."""
    while time.monotonic() < deadline:
        for child in children:
            if child.proc.poll() is not None:
                raise RuntimeError(f"{child.name} exited with status {child.proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return response.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer in time")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", "8000")))
    parser.add_argument(
        "--check", action="store_true", help="start, check the admin and the worker, then stop"
    )
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for the servers to start")
    args = parser.parse_args(argv)

    data_dir = Path(os.environ.get("EVALSITE_DATA_DIR", ROOT / "data")).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = demo_environment(data_dir)
    print(f"Preparing the demo in {data_dir} (SQLite, filesystem broker) ...", flush=True)
    password = prepare(env, data_dir)

    stopping = threading.Event()

    def request_stop(signum, _frame):
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    python = sys.executable
    base = f"http://127.0.0.1:{args.port}"
    children = [
        Child("web", [python, "manage.py", "runserver", f"127.0.0.1:{args.port}", "--noreload"], env),
        Child(
            "worker",
            [python, "-m", "celery", "-A", "evalsite.celery", "worker", "-Q", "default,gpu,io", "--pool", "solo",
             "--loglevel", "INFO", "--hostname", "demo@%h"],
            env,
            ready_marker=" ready.",
        ),
    ]
    status = 0
    try:
        deadline = time.monotonic() + args.timeout
        login_page = wait_for_http(f"{base}/admin/login/", deadline, children)
        if not children[1].ready.wait(max(deadline - time.monotonic(), 0)):
            raise RuntimeError("the Celery worker did not report ready in time")
        print(
            "\n"
            f"  Admin:   {base}/admin/   user {ADMIN_USER}, password {password}\n"
            f"           (the password is kept in {data_dir / 'demo_admin_password'})\n"
            f"  Study:   {base}/studies/demo/  (next step, buttons, links to paste, expert invitations)\n"
            f"  Rater:   {base}/r/demo/\n"
            f"           {base}/r/demo/?PROLIFIC_PID=demo1&STUDY_ID=s&SESSION_ID=x  (Prolific-style link)\n"
            f"  Report:  {base}/reports/demo/\n"
            "  Ctrl-C stops the web server and the worker.\n",
            flush=True,
        )
        if args.check:
            if 'name="username"' not in login_page:
                raise RuntimeError("the admin login page did not render a login form")
            print("demo check: web server and worker are up", flush=True)
        else:
            while not stopping.is_set():
                for child in children:
                    if child.proc.poll() is not None:
                        raise RuntimeError(f"{child.name} exited with status {child.proc.returncode}")
                stopping.wait(1)
    except RuntimeError as exc:
        print(f"demo: {exc}", file=sys.stderr, flush=True)
        status = 1
    finally:
        print("Stopping the web server and the worker ...", flush=True)
        for child in reversed(children):
            child.stop()
    return status


if __name__ == "__main__":
    sys.exit(main())
