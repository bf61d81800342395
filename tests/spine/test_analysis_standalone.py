"""``evalsite.analysis`` is plain numpy/pandas: it imports where Django and Celery are not installed."""

import subprocess
import sys

from .helpers import ROOT

BLOCKED = ("django", "celery", "kombu", "rest_framework")
SCRIPT = f"""
import importlib, pkgutil, sys

BLOCKED = {BLOCKED!r}


class Blocker:
    '''A meta path finder that makes the web stack look uninstalled.'''

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked: not installed here")
        return None


sys.meta_path.insert(0, Blocker())
import evalsite.analysis
names = [m.name for m in pkgutil.walk_packages(evalsite.analysis.__path__, "evalsite.analysis.")]
for name in names:
    importlib.import_module(name)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not leaked, leaked
print("imported", len(names), "submodules")
"""


def test_analysis_imports_without_django_or_celery():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "imported" in result.stdout
    assert int(result.stdout.split()[1]) >= 10  # every submodule, not just the package


def test_the_blocker_really_blocks():
    script = SCRIPT.replace("import evalsite.analysis", "import django  # must fail", 1)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "django is blocked" in result.stderr
