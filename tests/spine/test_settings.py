"""Settings come from the environment; each case runs Django in a fresh subprocess with its own env."""

import stat
import sys

import pytest

from .helpers import PRODUCTION_KEY, probe, run


def test_defaults_are_embedded(tmp_path):
    got = probe(tmp_path)
    assert got["engine"] == "django.db.backends.sqlite3"
    assert got["name"] == str(tmp_path / "data" / "evalsite.sqlite3")
    assert got["broker"] == "filesystem://"
    assert got["transport"]["data_folder_in"] == str(tmp_path / "data" / "broker" / "in")
    assert (tmp_path / "data" / "broker" / "in").is_dir()
    assert got["debug"] is True and "localhost" in got["allowed_hosts"]


def test_demo_secret_key_is_generated_once_and_kept(tmp_path):
    first, second = probe(tmp_path)["secret_key"], probe(tmp_path)["secret_key"]
    key_file = tmp_path / "data" / "secret_key"
    assert first == second == key_file.read_text().strip() and len(first) >= 50
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_database_and_broker_urls(tmp_path):
    got = probe(
        tmp_path,
        DATABASE_URL="postgres://alice:s3cret@db.internal:6543/studies",
        CELERY_BROKER_URL="redis://cache.internal:6380/2",
    )
    assert (got["engine"], got["name"], got["host"], got["port"]) == (
        "django.db.backends.postgresql",
        "studies",
        "db.internal",
        6543,
    )
    assert (got["user"], got["password"]) == ("alice", "s3cret")
    assert got["broker"] == "redis://cache.internal:6380/2"
    assert "data_folder_in" not in got["transport"] and got["transport"]["visibility_timeout"] == "7200"


@pytest.mark.parametrize(
    "raw, expected", [("0", False), ("false", False), ("No", False), ("1", True), ("on", True)]
)
def test_debug_spellings(tmp_path, raw, expected):
    got = probe(
        tmp_path, DEBUG=raw, SECRET_KEY=PRODUCTION_KEY, ALLOWED_HOSTS="a.example.org, b.example.org ,"
    )
    assert got["debug"] is expected
    assert got["allowed_hosts"] == ["a.example.org", "b.example.org"]
    # Production defaults to HTTPS-only cookies and redirects.
    assert got["ssl_redirect"] is (not expected) and got["session_cookie_secure"] is (not expected)


def test_unknown_debug_value_is_an_error(tmp_path):
    result = run(tmp_path, [sys.executable, "manage.py", "check"], DEBUG="maybe")
    assert result.returncode != 0 and "DEBUG='maybe': use 1/0" in result.stderr


def test_secret_key_required_outside_debug(tmp_path):
    result = run(tmp_path, [sys.executable, "manage.py", "check"], DEBUG="0", ALLOWED_HOSTS="x.org")
    assert result.returncode != 0 and "SECRET_KEY must be set when DEBUG is off" in result.stderr
    assert not (tmp_path / "data" / "secret_key").exists()


def test_check_deploy_is_clean_with_production_variables(tmp_path):
    result = run(
        tmp_path,
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        DEBUG="0",
        SECRET_KEY=PRODUCTION_KEY,
        ALLOWED_HOSTS="evalsite.example.org",
        DATABASE_URL="postgres://evalsite:pw@db.example.org:5432/evalsite",
        CELERY_BROKER_URL="redis://redis.example.org:6379/0",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "System check identified no issues" in result.stdout
