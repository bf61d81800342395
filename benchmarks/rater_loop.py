"""Rater-loop benchmark: N simulated raters doing what a browser does, against gunicorn + PostgreSQL.

Creates (drops and recreates) its own database, migrates and seeds it, starts gunicorn on a free
port, lets every rater enter and consent through the HTML pages (httpx), then runs the raters for
a fixed time on raw asyncio streams (uvloop when installed; a cheap load generator matters when it
shares the cores with the server). One cycle is the browser's path: the task page (GET, HTML),
then the rating form's POST (every question answered) and its 302 back to the task page, which is
the next cycle's GET. The rater token travels in the URLs, as for a worker whose browser blocks
cookies. It prints cycles/s, latency percentiles and the
CPU each side spent per cycle, then checks the database for collisions (a comparison over k, a
rater who got a comparison twice, counters that disagree with the rows). Exit status 1 on a
collision.

    .venv/bin/python benchmarks/rater_loop.py --raters 100 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import psycopg

ROOT = Path(__file__).resolve().parent.parent
SLUG = "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def recreate_database(server_url: str, name: str) -> None:
    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def seed(n_prompts: int, redundancy: int) -> None:
    """Migrate and build a live study with one comparison per prompt (teacher vs imitation)."""
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from evalsite.rating.attention import build_attention_checks
    from evalsite.studies import lifecycle
    from evalsite.studies.models import Comparison, LanguageModel, Prompt, Response, Study

    study = Study.objects.create(
        slug=SLUG,
        title="Benchmark",
        completion_code="BENCH",
        redundancy=redundancy,
        tasks_per_rater=100_000,
        min_seconds_per_task=0.0,
        attention_check_rate=0.05,
        max_attention_failures=30_000,
        instructions="Rate fast.",
    )
    teacher = LanguageModel.objects.create(study=study, alias="teacher", role="teacher", backend="imported")
    student = LanguageModel.objects.create(study=study, alias="student", role="imitation", backend="imported")
    prompts = Prompt.objects.bulk_create(
        Prompt(study=study, source_id=f"p{i}", text=f"Question {i}: why is the sky blue?", position=i)
        for i in range(n_prompts)
    )
    body = "Because of **Rayleigh scattering**.\n\n- shorter wavelengths scatter more\n- so blue dominates\n"
    responses = Response.objects.bulk_create(
        Response(prompt=p, model=m, text=f"{body} ({m.role} {p.position})") for p in prompts for m in (teacher, student)
    )
    Comparison.objects.bulk_create(
        Comparison(
            study=study,
            prompt_id=responses[i].prompt_id,
            response_a=responses[i],
            response_b=responses[i + 1],
        )
        for i in range(0, len(responses), 2)
    )
    build_attention_checks(study, limit=50, seed=0)
    lifecycle.transition(study, Study.Status.READY)
    lifecycle.launch(study)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # a live database has statistics; a freshly seeded one does not


class RawHTTP:
    """A minimal HTTP/1.1 client on asyncio streams, one connection per rater (keep-alive when the
    server allows it). The load generator shares the machine's cores with the server, so it must be
    cheap: httpx costs several ms of CPU per request, this a small fraction of one.
    """

    def __init__(self, host: str, port: int, cookies: dict[str, str]):
        self.host, self.port = host, port
        self.cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"", headers: str = "") -> tuple[int, bytes, dict]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nCookie: {self.cookie}\r\n{headers}"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        payload = await self.reader.readexactly(int(fields.get("content-length", "0")))
        if fields.get("connection", "").lower() == "close":
            await self.close()
        return status, payload, fields

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


async def rater(i: int, base: str, run: dict, cycles: list, latencies: list, errors: list) -> None:
    """Enter and consent (full pages), wait until every rater has, then cycle until the deadline."""
    cookies, task_url = None, ""
    try:
        cookies, task_url = await enter(i, base)
    except httpx.HTTPError as exc:
        errors.append(f"entry {exc!r}")
    finally:
        run["entered"] += 1
        if run["entered"] == run["raters"]:
            run["go"].set()
    if cookies is None:
        errors.append(f"no entry for rater {i}")
        return
    await run["go"].wait()
    url = httpx.URL(base)
    # The rater token travels in the URLs (as in a browser that blocks cookies); no cookie is sent.
    http = RawHTTP(url.host, url.port, {})
    headers = "Content-Type: application/x-www-form-urlencoded\r\n"
    state = {"url": task_url}
    try:
        while time.perf_counter() < run["deadline"]:
            try:
                if not await cycle(http, headers, state, cycles, latencies, errors):
                    return
            except (OSError, asyncio.IncompleteReadError) as exc:
                errors.append(f"transport {exc!r}")
                await http.close()
                await asyncio.sleep(0.1)
    finally:
        await http.close()


async def enter(i: int, base: str) -> tuple[dict | None, str]:
    """A rater's entry link and consent through the HTML pages; its cookies and first task URL."""
    async with httpx.AsyncClient(base_url=base, timeout=30.0) as client:
        r = await client.get(f"/r/{SLUG}/?PROLIFIC_PID=bench-{i}&STUDY_ID=s&SESSION_ID=x", follow_redirects=True)
        r = await client.post(r.url, data={"agree": "yes"})
        if r.status_code != 302:
            print(f"entry of rater {i} refused: {r.status_code} {r.text[:300]!r}", file=sys.stderr)
            return None, ""
        return dict(client.cookies.items()), r.headers["location"]


_ACTION = re.compile(rb'action="(/r/[^"]+/task/[A-Za-z0-9_-]+/\?t=[^"]+)"')
_RADIO = re.compile(rb'type="radio" name="([a-z_]+)" value="([a-z0-9_]+)"')


def fill_form(page: bytes) -> tuple[str, bytes] | None:
    """The form a rater submits for this task page: every question answered, as a browser sends it."""
    action = _ACTION.search(page)
    if action is None:
        return None
    choices: dict[bytes, list[bytes]] = {}
    for name, value in _RADIO.findall(page):
        choices.setdefault(name, []).append(value)
    fields = {b"error_spans": b"[]", b"client_ms": b"4321"}
    fields.update({name: random.choice(values) for name, values in choices.items()})
    body = b"&".join(k + b"=" + v.replace(b"+", b"%2B") for k, v in fields.items())
    return action.group(1).decode().replace("&amp;", "&"), body


async def cycle(http: RawHTTP, headers: str, state: dict, cycles: list, latencies: list, errors: list) -> bool:
    """One task page → form POST cycle (latencies in seconds); ``False`` when this rater should stop."""
    t0 = time.perf_counter()
    status, page, _ = await http.request("GET", state["url"])
    t1 = time.perf_counter()
    form = fill_form(page) if status == 200 else None
    if form is None:
        errors.append(f"task page {status} {page[:200]!r}")
        return False
    action, body = form
    status, reply, fields = await http.request("POST", action, body, headers)
    t2 = time.perf_counter()
    if status != 302:
        errors.append(f"submit {status} {reply[:200]!r}")
        return False
    state["url"] = fields["location"]  # the redirect a browser follows: the next task page
    latencies.append(t1 - t0)
    latencies.append(t2 - t1)
    cycles.append(t2 - t0)
    return True


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (Linux /proc), in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def server_pids(gunicorn_pid: int, dsn: str, database: str) -> dict[str, list[int]]:
    children = Path(f"/proc/{gunicorn_pid}/task/{gunicorn_pid}/children").read_text().split()
    with psycopg.connect(dsn) as conn:
        backends = [
            r[0]
            for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [database]
            )
        ]
    return {"web": [gunicorn_pid, *map(int, children)], "db": backends}


async def run_raters(n: int, base: str, seconds: float, warmup: float, pids_of) -> dict:
    cycles: list[float] = []
    latencies: list[float] = []
    errors: list[str] = []
    run = {"raters": n, "entered": 0, "go": asyncio.Event(), "deadline": float("inf")}
    tasks = [asyncio.create_task(rater(i, base, run, cycles, latencies, errors)) for i in range(n)]
    await run["go"].wait()  # entries and consent use the HTML pages: not the steady state
    await asyncio.sleep(warmup)  # connections, prepared statements, caches
    run["deadline"] = time.perf_counter() + seconds
    pids = pids_of()
    cpu0 = {k: cpu_seconds(v) for k, v in pids.items()}
    client0 = time.process_time()
    n0, l0 = len(cycles), len(latencies)
    t0 = time.perf_counter()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    cpu = {k: cpu_seconds(v) - cpu0[k] for k, v in pids.items()}
    cpu["client"] = time.process_time() - client0
    cpu["backends"] = len(pids["db"])
    return {
        "cycles": cycles[n0:],
        "latencies": latencies[l0:],
        "errors": errors,
        "elapsed": elapsed,
        "cpu": cpu,
    }


def check_collisions(dsn: str) -> list[str]:
    problems = []
    with psycopg.connect(dsn) as conn:
        k = conn.execute("SELECT redundancy FROM studies_study WHERE slug = %s", [SLUG]).fetchone()[0]
        over = conn.execute(
            """SELECT c.id, COUNT(r.id) FROM studies_comparison c
               JOIN rating_rating r ON r.comparison_id = c.id
               WHERE NOT c.is_attention_check GROUP BY c.id HAVING COUNT(r.id) > %s""",
            [k],
        ).fetchall()
        if over:
            problems.append(f"{len(over)} comparisons have more than k={k} ratings")
        dup = conn.execute(
            "SELECT rater_id, comparison_id FROM rating_assignment GROUP BY 1, 2 HAVING COUNT(*) > 1"
        ).fetchall()
        if dup:
            problems.append(f"{len(dup)} rater×comparison pairs leased twice")
        drift = conn.execute(
            """SELECT COUNT(*) FROM studies_comparison c WHERE c.n_submitted <>
               (SELECT COUNT(*) FROM rating_rating r WHERE r.comparison_id = c.id)
               OR c.n_live <> (SELECT COUNT(*) FROM rating_assignment a WHERE a.comparison_id = c.id
                               AND a.status = 'live')"""
        ).fetchone()[0]
        if drift:
            problems.append(f"{drift} comparisons whose counters disagree with the rows")
        ratings = conn.execute("SELECT COUNT(*) FROM rating_rating").fetchone()[0]
    print(f"database: {ratings} ratings stored; k={k}")
    return problems


def run_async(coroutine):
    """Run on uvloop when installed: the load generator's own CPU cost is part of what we measure."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raters", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (one per core)")
    ap.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker (gthread, keep-alive)")
    ap.add_argument("--prompts", type=int, default=3000, help="comparisons to seed")
    ap.add_argument("--redundancy", type=int, default=10)
    ap.add_argument("--server", default=os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432"))
    ap.add_argument("--database", default="evalsite_bench")
    args = ap.parse_args()

    dsn = f"{args.server}/{args.database}"
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "DEBUG": "0",
        "SECRET_KEY": "bench-" + "x" * 50,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "0",
        "SECURE_COOKIES": "0",
        "SECURE_HSTS_SECONDS": "0",
        "DB_CONN_MAX_AGE": "600",
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "evalsite.settings",
    }
    recreate_database(args.server, args.database)
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    t = time.perf_counter()
    seed(args.prompts, args.redundancy)
    print(f"seeded {args.prompts} comparisons (k={args.redundancy}) in {time.perf_counter() - t:.1f}s")

    port = free_port()
    server = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/gunicorn"),
            "evalsite.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            str(args.workers),
            "--threads",
            str(args.threads),
            "--log-level",
            "warning",
            "--backlog",
            "2048",
            "--timeout",
            "120",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(f"{base}/r/{SLUG}/", timeout=1.0)  # the entry link creates nothing until consent
                break
            except httpx.TransportError:
                time.sleep(0.2)
        result = run_async(
            run_raters(
                args.raters,
                base,
                args.seconds,
                args.warmup,
                lambda: server_pids(server.pid, dsn, args.database),
            )
        )
    finally:
        server.terminate()
        server.wait(timeout=30)

    cycles, latencies, errors, elapsed = (
        result["cycles"],
        result["latencies"],
        result["errors"],
        result["elapsed"],
    )
    lat = np.array(latencies) * 1000
    cyc = np.array(cycles) * 1000
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.python_implementation()} "
        f"{platform.python_version()}; gunicorn {args.workers}x{args.threads} threads; {args.raters} raters"
    )
    print(
        f"cycles: {len(cycles)} in {elapsed:.1f}s = {len(cycles) / elapsed:.0f} cycles/s "
        f"({len(latencies) / elapsed:.0f} requests/s)"
    )
    if len(lat):
        p50, p95, p99 = np.percentile(lat, [50, 95, 99])
        c50, c95, c99 = np.percentile(cyc, [50, 95, 99])
        print(f"request latency ms: p50 {p50:.1f}  p95 {p95:.1f}  p99 {p99:.1f}")
        print(f"cycle latency ms:   p50 {c50:.1f}  p95 {c95:.1f}  p99 {c99:.1f}")
    if cycles:
        backends = result["cpu"].pop("backends")
        per = {k: 1000 * v / len(cycles) for k, v in result["cpu"].items()}
        total = per["web"] + per["db"]
        load = os.getloadavg()[0]
        print(
            f"CPU ms per cycle: web {per['web']:.1f}  postgres {per['db']:.1f} ({backends} backends)"
            f"  load generator {per['client']:.1f}"
            f"  (1-min load average at the end {load:.1f} on {os.cpu_count()} CPUs)"
        )
        print(
            f"server-side capacity if {os.cpu_count()} cores were free for web + postgres: "
            f"{1000 * os.cpu_count() / total:.0f} cycles/s"
        )
    if errors:
        print(f"errors: {len(errors)}; first: {errors[:3]}")
    problems = check_collisions(dsn)
    for p in problems:
        print("COLLISION:", p)
    print("collisions: none" if not problems else "collisions: FOUND")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
