"""Where the Koala human-evaluation test set lives (180 prompts, Apache-2.0, not vendored here)."""

import os
from pathlib import Path

_RELATIVE = Path("shared") / "data" / "koala-test-set" / "koala_test_set.jsonl"


def koala_test_set() -> Path | None:
    """The file from ``KOALA_TEST_SET``, or beside the checkout (``../shared/…``), or None."""
    repo = Path(__file__).resolve().parents[2]
    candidates = [os.environ.get("KOALA_TEST_SET"), repo.parent / _RELATIVE, Path("/work") / _RELATIVE]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None
