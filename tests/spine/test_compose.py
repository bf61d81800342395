"""docker-compose.yml: the services, volumes and environment agree with each other and with settings.

There is no Docker engine here, so the file is parsed and its environment is fed to the real
settings module in a subprocess.
"""

import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from .helpers import PRODUCTION_KEY, probe

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("web", "worker", "worker-gpu")
COMPOSE_VAR = re.compile(r"\$\{(\w+)(?::?-([^}]*)|:\?[^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def resolve(value: str, **given: str) -> str:
    """Expand ``${VAR:-default}`` the way compose does, with ``given`` as the user's .env."""
    return COMPOSE_VAR.sub(lambda m: given.get(m.group(1), m.group(2) or ""), str(value))


def settings_env_names() -> set[str]:
    """Every variable the settings (and the Celery app) read."""
    source = "".join((ROOT / "evalsite" / name).read_text() for name in ("settings.py", "celery.py"))
    return set(re.findall(r'(?:os\.environ\.get|env_bool|env_list)\(\s*"(\w+)"', source))


def test_services_and_volumes(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "web", "worker", "worker-gpu"}
    declared = set(compose["volumes"])
    for name, service in services.items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            assert source in declared, f"{name} mounts undeclared volume {source}"
    assert {"pgdata", "redisdata"} <= declared
    assert any(m.endswith(":/var/lib/postgresql/data") for m in services["postgres"]["volumes"])


def test_web_migrates_then_serves_with_gunicorn(compose):
    command = " ".join(compose["services"]["web"]["command"])
    assert command.index("manage.py migrate") < command.index("gunicorn evalsite.wsgi:application")
    assert any(p.endswith(":8000") for p in compose["services"]["web"]["ports"])
    for name in APP_SERVICES:
        depends = compose["services"][name]["depends_on"]
        assert depends["postgres"]["condition"] == depends["redis"]["condition"] == "service_healthy"


def test_workers_listen_on_the_right_queues(compose):
    cpu = compose["services"]["worker"]["command"]
    gpu = compose["services"]["worker-gpu"]
    assert cpu[cpu.index("-Q") + 1].split(",") == ["default", "io"]
    assert gpu["command"][gpu["command"].index("-Q") + 1] == "gpu"
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert (
        gpu["build"]["args"]["EXTRAS"] == "gpu"
        and compose["services"]["worker"]["build"]["args"]["EXTRAS"] == "cpu"
    )


def test_environment_matches_services_and_settings(compose):
    services = compose["services"]
    pg = {k: resolve(v) for k, v in services["postgres"]["environment"].items()}
    known = settings_env_names()
    for name in APP_SERVICES:
        env = services[name]["environment"]
        unknown = set(env) - known
        assert not unknown, f"{name} sets variables settings.py never reads: {unknown}"
        db = urlparse(resolve(env["DATABASE_URL"]))
        assert (db.scheme, db.hostname, db.port) == ("postgres", "postgres", 5432)
        assert (db.username, db.password, db.path.lstrip("/")) == (
            pg["POSTGRES_USER"],
            pg["POSTGRES_PASSWORD"],
            pg["POSTGRES_DB"],
        )
        broker = urlparse(resolve(env["CELERY_BROKER_URL"]))
        assert (broker.scheme, broker.hostname, broker.port) == ("redis", "redis", 6379)
        assert env["DEBUG"] == "0" and ":?" in env["SECRET_KEY"]  # compose refuses to start without one
        assert set(services[name]["depends_on"]) == {"postgres", "redis"}
    # The password override reaches both the database server and the app.
    web = services["web"]["environment"]
    assert urlparse(resolve(web["DATABASE_URL"], POSTGRES_PASSWORD="pw2")).password == resolve(
        services["postgres"]["environment"]["POSTGRES_PASSWORD"], POSTGRES_PASSWORD="pw2"
    )


def test_settings_load_with_the_compose_environment(compose, tmp_path):
    env = {
        k: resolve(v, SECRET_KEY=PRODUCTION_KEY) for k, v in compose["services"]["web"]["environment"].items()
    }
    env["EVALSITE_DATA_DIR"] = str(tmp_path / "data")  # /data exists only in the container
    got = probe(tmp_path, **env)
    assert (got["engine"], got["host"], got["name"]) == (
        "django.db.backends.postgresql",
        "postgres",
        "evalsite",
    )
    assert got["broker"] == "redis://redis:6379/0"
    assert got["debug"] is False and got["allowed_hosts"] == ["localhost", "127.0.0.1"]
    assert got["secret_key"] == PRODUCTION_KEY


def test_dockerfile_uses_python_312_and_cpu_torch():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.12-slim" in dockerfile
    assert "download.pytorch.org/whl/cpu" in dockerfile and "collectstatic" in dockerfile
    assert ".venv" in (ROOT / ".dockerignore").read_text().split()
