"""The environment is read in one place (settings.py), and the demo broker writes only under DATA_DIR."""

import ast
import json
import sys
from pathlib import Path

from .helpers import ROOT, run

SNIPPET = """
import json, django
django.setup()
from django.conf import settings as s
print(json.dumps({
    "transport": {k: v for k, v in s.CELERY_BROKER_TRANSPORT_OPTIONS.items()},
    "stale": s.GENERATION_JOB_STALE_MINUTES, "heartbeat": s.GENERATION_HEARTBEAT_SECONDS,
    "boot": s.REPORT_BOOTSTRAP_ROUNDS,
}))
"""
# Where reading the environment at import time is the point: settings, and the two entry points that
# name the settings module.
ENVIRONMENT_READERS = {"evalsite/settings.py", "evalsite/celery.py", "evalsite/wsgi.py"}


def read_settings(tmp_path: Path, **env: str) -> dict:
    env.setdefault("DJANGO_SETTINGS_MODULE", "evalsite.settings")
    result = run(tmp_path, [sys.executable, "-c", SNIPPET], **env)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_filesystem_broker_folder_is_under_the_data_dir(tmp_path):
    data = (tmp_path / "data").resolve()
    options = read_settings(tmp_path)["transport"]
    folders = {k: v for k, v in options.items() if k.endswith("_folder") or k.startswith("data_folder")}
    # kombu's filesystem transport writes to these four; any it does not get here defaults to a
    # folder relative to the working directory (control/ used to land in the repository root).
    assert set(folders) == {"data_folder_in", "data_folder_out", "processed_folder", "control_folder"}
    for key, folder in folders.items():
        assert Path(folder).resolve().is_relative_to(data / "broker"), (key, folder)
        assert Path(folder).is_dir(), key  # kombu creates the control folder without its parents


def test_the_demo_worker_leaves_no_control_folder_in_the_working_directory(tmp_path):
    # What a worker does at start: bind its queues to their exchanges through the transport.
    script = SNIPPET.replace(
        "print(json.dumps({",
        "from kombu import Exchange, Queue\n"
        "from evalsite.celery import app\n"
        "with app.connection_for_write() as conn:\n"
        "    Queue('default', Exchange('default', 'direct'), 'default')(conn.default_channel).declare()\n"
        "print(json.dumps({",
    )
    # The subprocess runs in the repository root, where kombu's default control/ folder would go.
    result = run(tmp_path, [sys.executable, "-c", script], DJANGO_SETTINGS_MODULE="evalsite.settings")
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (ROOT / "control").exists()
    assert (tmp_path / "data" / "broker" / "control" / "default.exchange").is_file()


def test_generation_and_report_settings_come_from_the_environment(tmp_path):
    defaults = read_settings(tmp_path)
    assert (defaults["stale"], defaults["heartbeat"], defaults["boot"]) == (30, 10, 1000)
    got = read_settings(
        tmp_path,
        EVALSITE_JOB_STALE_MINUTES="5",
        EVALSITE_JOB_HEARTBEAT_SECONDS="0.5",
        EVALSITE_REPORT_BOOTSTRAP_ROUNDS="200",
    )
    assert (got["stale"], got["heartbeat"], got["boot"]) == (5, 0.5, 200)


def module_level_environ_reads(path: Path) -> list[int]:
    """Lines that touch ``os.environ`` / ``os.getenv`` outside any function body."""
    tree = ast.parse(path.read_text())
    in_functions = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for inner in ast.walk(node)
    }
    lines = []
    for node in ast.walk(tree):
        if id(node) in in_functions:
            continue
        if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv"}:
            if isinstance(node.value, ast.Name) and node.value.id == "os":
                lines.append(node.lineno)
    return lines


def test_no_module_reads_the_environment_at_import_time_except_settings():
    offenders = {}
    for package in ("evalsite", "workers"):
        for path in (ROOT / package).rglob("*.py"):
            relative = path.relative_to(ROOT).as_posix()
            if relative not in ENVIRONMENT_READERS and (lines := module_level_environ_reads(path)):
                offenders[relative] = lines
    assert offenders == {}
