"""Where a model's ``model_path`` may point on a worker: under the configured model roots.

A worker opens whatever ``model_path`` names (a model folder for ``vllm`` / ``hf``, an answer file
for ``imported``); were any path allowed, a researcher could have a worker read files it should not.
So a path must be absolute and lie, after symbolic links are followed, under one of
``settings.MODEL_ROOTS`` (``EVALSITE_MODEL_ROOTS``, comma-separated; default the model cache,
``EVALSITE_MODEL_CACHE``), or name a shipped model (``builtin:…``). The ``openai`` backend's
``model_path`` is the endpoint's model name, not a path, and is not checked here.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

BUILTIN_PREFIX = "builtin:"
PATH_BACKENDS = ("vllm", "hf", "imported")


def model_roots() -> list[Path]:
    return [Path(root).resolve() for root in settings.MODEL_ROOTS]


def check_model_path(backend: str, model_path: str) -> str | None:
    """None if a worker may open ``model_path`` for ``backend``, else the message saying what to do."""
    path = (model_path or "").strip()
    if backend not in PATH_BACKENDS or not path or path.startswith(BUILTIN_PREFIX):
        return None  # builtin names are checked against the shipped list where they are resolved
    roots = model_roots()
    where = ", ".join(str(r) for r in roots) or "none configured"
    if "\x00" in path or not Path(path).is_absolute():
        return f"model_path must be an absolute path under the model roots ({where}) or builtin:<name>, not {path!r}."
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError, ValueError):
        resolved = None
    if resolved is None or not any(resolved == root or root in resolved.parents for root in roots):
        return (
            f"model_path {path!r} is outside the model roots ({where}): put the model there, or ask an "
            "administrator to add its folder to EVALSITE_MODEL_ROOTS."
        )
    return None
