"""A 200k-rating export streams in flat memory: a separate process serving it stays under 200 MB.

The ratings are seeded with SQL (``benchmarks/export.py``'s ``seed_ratings``) and committed, so a
fresh Python process can serve the export from the test database through Django's request stack
(API URLs only); its peak RSS (``VmHWM``) is what is measured, not an in-process estimate.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token

from evalsite.studies.models import LanguageModel, Study

ROOT = Path(__file__).resolve().parents[2]
N_COMPARISONS, N_RATERS = 2000, 100  # 200,000 ratings
LIMIT_MB = 200

SERVE_EXPORT = """
import json, sys
import django
django.setup()
from django.conf import settings
from django.test import Client

# Only the API's URLs: the process carries what serving an export needs, not the dashboard's
# pandas/matplotlib (which the full URLconf imports, ~140 MB before any request).
settings.ROOT_URLCONF = "api_only_urls"


def peak_rss_mb():
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent (pytest) across exec.
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024


client = Client(HTTP_AUTHORIZATION="Token " + sys.argv[1])
client.get("/api/v1/studies/memtest/ratings.csv?rater=nobody")  # imports and first query done
baseline = peak_rss_mb()
response = client.get("/api/v1/studies/memtest/" + sys.argv[2])
assert response.status_code == 200, response.status_code
size = lines = 0
for chunk in response.streaming_content:
    size += len(chunk)
    lines += chunk.count(b"\\n")
peak = peak_rss_mb()
print(json.dumps({"bytes": size, "lines": lines, "baseline_mb": baseline, "peak_mb": peak}))
"""


def _seed_ratings():
    spec = importlib.util.spec_from_file_location("bench_export", ROOT / "benchmarks" / "export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.seed_ratings


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("export", ["ratings.csv", "ratings.jsonl"])
def test_200k_rating_export_stays_under_200_mb(django_user_model, export):
    user = django_user_model.objects.create_user("memtest", is_staff=True)
    token = Token.objects.create(user=user).key
    study = Study.objects.create(slug="memtest", title="Memory", owner=user)
    teacher = LanguageModel.objects.create(study=study, alias="teacher", role="teacher", backend="imported")
    other = LanguageModel.objects.create(study=study, alias="imitation", role="imitation", backend="imported")
    with connection.cursor() as cursor:
        n = _seed_ratings()(cursor, study.pk, teacher.pk, other.pk, N_COMPARISONS, N_RATERS)
        cursor.execute("ANALYZE")
    assert n == N_COMPARISONS * N_RATERS

    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "DJANGO_SETTINGS_MODULE": "evalsite.settings",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(Path(__file__).parent)]),
    }
    if db.get("PASSWORD"):
        env["PGPASSWORD"] = db["PASSWORD"]
    result = subprocess.run(
        [sys.executable, "-c", SERVE_EXPORT, token, export],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    stats = json.loads(result.stdout.strip().splitlines()[-1])
    # Every rating arrived (CSV: plus the header; the seeded texts hold no line breaks).
    assert stats["lines"] == n + (1 if export.endswith(".csv") else 0)
    assert stats["bytes"] > 50 * n
    assert stats["peak_mb"] < LIMIT_MB, stats
    # Flat, not merely small: streaming 200k rows adds little over serving an empty export.
    assert stats["peak_mb"] - stats["baseline_mb"] < 60, stats
    print(f"{export}: {stats}")
