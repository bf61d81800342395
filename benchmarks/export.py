"""Export benchmark: stream 1M ratings as CSV over HTTP, beside PostgreSQL's own COPY of them.

    .venv/bin/python benchmarks/export.py [--ratings 1000000] [--reseed]

Uses its own database (``evalsite_bench_export`` on the local server, or ``BENCH_DATABASE_URL``),
seeds it once with SQL ``generate_series`` (re-used on later runs unless ``--reseed``), starts
gunicorn on a free port, downloads ``/api/v1/studies/bench/ratings.csv`` with httpx streaming,
and reports rows/s and the peak RSS of the gunicorn worker. In the same run it times
``COPY (<the export's own SQL>) TO STDOUT WITH CSV`` through psycopg, and prints the ratio
(target: HTTP >= 0.5 x COPY).

``seed_ratings`` is also used by the API test suite's memory test.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/evalsite_bench_export"
SLUG = "bench"


def seed_ratings(cursor, study_id: int, teacher_id: int, other_id: int, n_comparisons: int, n_raters: int) -> int:
    """Insert prompts, responses, comparisons, raters, submitted assignments and ratings with SQL.

    Every rater rates every comparison once, so the study gets ``n_comparisons * n_raters``
    ratings. Texts vary per row and include commas, quotes and non-ASCII so the CSV writer does
    real work. ``cursor`` is a DB-API cursor (Django's or psycopg's). Returns the rating count.
    """
    from evalsite.rating.models import Assignment, Rater, Rating
    from evalsite.studies.models import Comparison, Prompt, Response

    t = {m.__name__: m._meta.db_table for m in (Prompt, Response, Comparison, Rater, Assignment, Rating)}
    cursor.execute(
        f"""
        INSERT INTO {t["Prompt"]} (study_id, source_id, text, category, reference_answers, metadata, position)
        SELECT %s, 'p' || g, 'Question ' || g || ': what is the capital of country #' || g
               || ', and why does it matter? ' || repeat('Some context, "quoted" — ünïcödé. ', 4),
               CASE WHEN g %% 2 = 0 THEN 'factual-qa' ELSE 'open-ended' END, '[]'::jsonb, '{{}}'::jsonb, g
        FROM generate_series(1, %s) AS g
        """,
        [study_id, n_comparisons],
    )
    cursor.execute(
        f"""
        INSERT INTO {t["Response"]} (prompt_id, model_id, sample_index, text, finish_reason, generation_params,
                                     backend, fingerprint, error, created_at)
        SELECT p.id, m.id, 0, 'Answer of model ' || m.id || ' to prompt ' || p.id, 'stop', '{{}}'::jsonb,
               'imported', '', '', now()
        FROM {t["Prompt"]} p CROSS JOIN (VALUES (%s), (%s)) AS m(id)
        WHERE p.study_id = %s
        """,
        [teacher_id, other_id, study_id],
    )
    cursor.execute(
        f"""
        INSERT INTO {t["Comparison"]} (study_id, prompt_id, response_a_id, response_b_id, is_attention_check,
                                       expected_winner, n_live, n_submitted, created_at)
        SELECT %s, a.prompt_id, a.id, b.id, false, '', 0, %s, now()
        FROM {t["Response"]} a JOIN {t["Response"]} b ON b.prompt_id = a.prompt_id AND b.model_id = %s
        WHERE a.model_id = %s
        """,
        [study_id, n_raters, other_id, teacher_id],
    )
    cursor.execute(
        f"""
        INSERT INTO {t["Rater"]} (study_id, platform, external_id, pseudonym, is_expert, platform_data,
                                  consented_at, blocked, blocked_reason, tasks_submitted, attention_passed,
                                  attention_failed, attention_failures_forgiven, too_fast, created_at)
        SELECT %s, 'prolific', 'W' || g, md5('rater' || g)::varchar(24), false, '{{}}'::jsonb, now(),
               g %% 50 = 0, '', %s, 0, 0, 0, 0, now()
        FROM generate_series(1, %s) AS g
        """,
        [study_id, n_comparisons, n_raters],
    )
    cursor.execute(
        f"""
        INSERT INTO {t["Assignment"]} (rater_id, comparison_id, token, left_side, status, leased_at, expires_at,
                                       submitted_at)
        SELECT r.id, c.id, 't' || r.id || '-' || c.id, CASE WHEN (r.id + c.id) %% 2 = 0 THEN 'A' ELSE 'B' END,
               'submitted', now(), now() + interval '15 minutes', now()
        FROM {t["Rater"]} r CROSS JOIN {t["Comparison"]} c
        WHERE r.study_id = %s AND c.study_id = %s
        """,
        [study_id, study_id],
    )
    cursor.execute(
        f"""
        INSERT INTO {t["Rating"]} (assignment_id, study_id, comparison_id, rater_id, winner, strength, style,
                                   correct_a, correct_b, error_spans, rationale, server_seconds, client_seconds,
                                   attention_passed, flagged, created_at)
        SELECT a.id, %s, a.comparison_id, a.rater_id,
               (ARRAY['A', 'B', 'tie', 'both_bad'])[1 + a.id %% 4], 1 + a.id %% 5,
               '{{"A": {{"fluent": 4, "confident": 5}}, "B": {{"fluent": 3, "confident": 2}}}}'::jsonb,
               'correct', CASE WHEN a.id %% 3 = 0 THEN 'error' ELSE 'unsure' END,
               CASE WHEN a.id %% 7 = 0 THEN '[{{"response": "B", "start": 0, "end": 6, "text": "Answer"}}]'::jsonb
                    ELSE '[]'::jsonb END,
               CASE WHEN a.id %% 10 = 0 THEN '=cmd|'' /C calc''!A0' ELSE
                    'Rater ' || a.rater_id || ' thinks B is "better", because: reasons, ' || a.id END,
               10 + (a.id %% 90), CASE WHEN a.id %% 2 = 0 THEN 9.5 ELSE NULL END, NULL, false, now()
        FROM {t["Assignment"]} a JOIN {t["Rater"]} r ON r.id = a.rater_id
        WHERE r.study_id = %s
        """,
        [study_id, study_id],
    )
    cursor.execute(f"SELECT count(*) FROM {t['Rating']} WHERE study_id = %s", [study_id])
    return cursor.fetchone()[0]


# --- the benchmark ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def _prepare(n_ratings: int, reseed: bool) -> str:
    """Migrate and seed (if needed); return a researcher's API token."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection, transaction
    from rest_framework.authtoken.models import Token

    from evalsite.studies.models import LanguageModel, Study

    call_command("migrate", verbosity=0)
    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_staff": True})
    token, _ = Token.objects.get_or_create(user=user)
    study = Study.objects.filter(slug=SLUG).first()
    if study is not None and (reseed or study.ratings.count() != n_ratings):
        study.delete()
        study = None
    if study is None:
        n_raters = 200 if n_ratings >= 200_000 else 100
        if n_ratings % n_raters:
            raise SystemExit(f"--ratings must be a multiple of {n_raters}")
        start = time.perf_counter()
        with transaction.atomic():
            study = Study.objects.create(slug=SLUG, title="Export benchmark", owner=user, completion_code="X")
            teacher = LanguageModel.objects.create(study=study, alias="teacher", role="teacher", backend="imported")
            other = LanguageModel.objects.create(study=study, alias="imitation", role="imitation", backend="imported")
            with connection.cursor() as cursor:
                seeded = seed_ratings(cursor, study.pk, teacher.pk, other.pk, n_ratings // n_raters, n_raters)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        print(f"seeded {seeded:,} ratings in {time.perf_counter() - start:.1f} s")
    return token.key


def _copy_statement() -> tuple[str, str]:
    """The export's own join as plain SQL (same filter, columns and order), and a libpq conninfo."""
    import psycopg
    from django.db import connection

    from evalsite.api.export_formats import RATING_COLUMNS
    from evalsite.rating.models import Rating
    from evalsite.studies.models import Study

    study = Study.objects.get(slug=SLUG)
    qs = Rating.objects.filter(study=study).order_by("id").values_list(*(c.path for c in RATING_COLUMNS))
    sql, params = qs.query.sql_with_params()
    with connection.cursor() as cursor:
        statement = psycopg.ClientCursor(cursor.connection).mogrify(sql, params)
    db = connection.settings_dict
    conninfo = f"host={db['HOST']} port={db['PORT'] or 5432} dbname={db['NAME']} user={db['USER']}"
    return statement, conninfo


def _time_copy(statement: str, conninfo: str) -> tuple[float, int]:
    """PostgreSQL's own CSV of the rows: ``COPY (…) TO STDOUT WITH CSV``; returns (seconds, bytes)."""
    import psycopg

    size = 0
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        start = time.perf_counter()
        with cur.copy(f"COPY ({statement}) TO STDOUT WITH CSV HEADER") as copy:
            for block in copy:
                size += len(block)
        return time.perf_counter() - start, size


def _memory_mb(pid: int, field: str) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith(field))) / 1024


def _time_http(base: str, token: str) -> tuple[float, int, int]:
    """Download the CSV export with httpx streaming; returns (seconds, rows, bytes)."""
    import httpx

    rows = size = 0
    start = time.perf_counter()
    url = f"{base}/api/v1/studies/{SLUG}/ratings.csv"
    with httpx.stream("GET", url, headers={"Authorization": f"Token {token}"}, timeout=900) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes(1 << 16):
            size += len(chunk)
            rows += chunk.count(b"\n")  # the seeded texts hold no line breaks
    return time.perf_counter() - start, rows - 1, size


def _gunicorn(env: dict) -> tuple[subprocess.Popen, str]:
    import httpx

    port = _free_port()
    command = [str(ROOT / ".venv/bin/gunicorn"), "evalsite.wsgi:application", "--bind", f"127.0.0.1:{port}"]
    command += ["--workers", "1", "--timeout", "900", "--log-level", "warning"]
    server = subprocess.Popen(command, cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(f"{base}/api/schema/", timeout=2)
            return server, base
        except httpx.TransportError:
            time.sleep(0.1)
    server.terminate()
    raise SystemExit("gunicorn did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ratings", type=int, default=1_000_000)
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each; the best is reported")
    args = parser.parse_args()

    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    _ensure_database(url)
    env = {**os.environ, "DATABASE_URL": url, "DEBUG": "1", "PYTHONPATH": str(ROOT)}
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "evalsite.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    token = _prepare(args.ratings, args.reseed)

    import httpx
    import psutil

    statement, conninfo = _copy_statement()
    server, base = _gunicorn(env)
    try:
        # Warm-up: imports, the first connection and a tiny export are not what is measured.
        httpx.get(f"{base}/api/v1/studies/{SLUG}/ratings.csv?rater=none", headers={"Authorization": f"Token {token}"})
        (worker,) = psutil.Process(server.pid).children()
        rss_before = _memory_mb(worker.pid, "VmRSS")
        copies, downloads = [], []
        for _ in range(args.repeats):  # interleaved, so both see the same machine load
            copies.append(_time_copy(statement, conninfo))
            downloads.append(_time_http(base, token))
        peak = _memory_mb(worker.pid, "VmHWM")
    finally:
        server.terminate()
        server.wait(timeout=30)

    copy_s, copy_bytes = min(copies)
    http_s, rows, http_bytes = min(downloads)
    copy_rps, http_rps = args.ratings / copy_s, rows / http_s
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f}; best of {args.repeats}"
    )
    print(f"COPY  : {args.ratings:,} rows in {copy_s:.2f} s = {copy_rps:,.0f} rows/s ({copy_bytes / 1e6:.0f} MB)")
    print(f"HTTP  : {rows:,} rows in {http_s:.2f} s = {http_rps:,.0f} rows/s ({http_bytes / 1e6:.0f} MB)")
    print(f"gunicorn worker RSS: {rss_before:.0f} MB after warm-up, peak {peak:.0f} MB")
    print(f"ratio : HTTP / COPY = {http_rps / copy_rps:.2f} (target >= 0.5)")
    if rows != args.ratings:
        raise SystemExit(f"expected {args.ratings} rows, got {rows}")


if __name__ == "__main__":
    main()
