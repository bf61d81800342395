"""The generation backend protocol: chat prompts + decoding parameters in, one result per prompt out.

A backend wraps one model behind one engine (vLLM, transformers, an HTTP endpoint, a file). Building
one is expensive (weights load, engines compile), so :func:`get_backend` keeps the last one loaded for
the next job with the same engine settings; a worker process holds one engine at a time.
"""

from __future__ import annotations

import gc
import hashlib
import importlib
import json
import sys
import threading
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ChatPrompt:
    """One user turn, optionally with a system prompt; ``key`` is the prompt's source id.

    ``history`` holds the conversation's earlier turns as ``(role, content)`` pairs (a system
    turn first, then user and assistant turns); for a later turn of a chain (MT-bench) it holds the
    model's own earlier answers. A system turn in the history is joined after the model's system
    prompt, so the model sees one system message.
    """

    text: str
    system: str = ""
    key: str = ""
    sample_index: int = 0
    history: tuple[tuple[str, str], ...] = ()

    def messages(self) -> list[dict[str, str]]:
        """OpenAI-style chat messages, the shape every chat template and endpoint takes."""
        turns = list(self.history)
        system = self.system
        if turns and turns[0][0] == "system":
            system = "\n\n".join(part for part in (system, turns.pop(0)[1]) if part)
        msgs = [{"role": "system", "content": system}] if system else []
        msgs += [{"role": role, "content": content} for role, content in turns]
        msgs.append({"role": "user", "content": self.text})
        return msgs


@dataclass(frozen=True)
class DecodingParams:
    """How to sample. ``temperature == 0`` means greedy."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int = 0
    stop: tuple[str, ...] = ()

    @classmethod
    def from_model(cls, model: Any) -> DecodingParams:
        """The decoding parameters stored on a :class:`~evalsite.studies.models.LanguageModel`."""
        return cls(
            temperature=float(model.temperature),
            top_p=float(model.top_p),
            max_tokens=int(model.max_tokens),
            seed=int(model.seed),
            stop=tuple(model.stop or ()),
        )

    def with_seed(self, seed: int) -> DecodingParams:
        return DecodingParams(self.temperature, self.top_p, self.max_tokens, seed, self.stop)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d


@dataclass
class GenerationResult:
    """One answer. ``error`` is set (and ``text`` empty) when this prompt alone could not be answered."""

    text: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str = ""
    latency_ms: float | None = None
    error: str = ""
    token_ids: list[int] | None = None  # generated ids where the engine exposes them (not stored)
    extra: dict[str, Any] = field(default_factory=dict)


class GenerationError(RuntimeError):
    """The whole batch (or backend) failed. ``transient`` errors are worth retrying later."""

    transient = False


class ModelNotFound(GenerationError):
    """The model path or name does not resolve to weights we can load."""


class OutOfMemory(GenerationError):
    """The model or batch does not fit in memory."""


class TransientGenerationError(GenerationError):
    """Connection refused, HTTP 429/5xx, a timeout: the same call may succeed later."""

    transient = True


def prompt_too_long_message(n_tokens: int, context: int) -> str:
    """The per-prompt error a user reads in the admin; it says what to do."""
    return (
        f"Prompt is {n_tokens} tokens but the model's context is {context} tokens: shorten the prompt, "
        f"or raise max_model_len in the model's engine options if the model supports it."
    )


class GenerationBackend(ABC):
    """One loaded model. Subclasses set ``name`` and implement :meth:`generate`."""

    name: str = "base"

    def __init__(self, model_path: str, engine_options: dict[str, Any] | None = None) -> None:
        self.model_path = model_path
        self.engine_options = dict(engine_options or {})

    @abstractmethod
    def generate(self, prompts: list[ChatPrompt], params: DecodingParams) -> list[GenerationResult]:
        """Answer every prompt; the result list is in the same order as ``prompts``."""

    def fingerprint(self) -> str:
        """A hash of what produces the answers: config and weight files (or a revision)."""
        return hash_parts(self.name, self.model_path, local_weights_signature(self.model_path))

    def describe(self) -> dict[str, Any]:
        """Backend name and version, stored with every response."""
        return {"backend": self.name, "version": self.version()}

    def version(self) -> str:
        return ""

    def default_batch_size(self) -> int:
        return int(self.engine_options.get("batch_size", 16))

    def close(self) -> None:  # noqa: B027 -- optional hook; most backends hold nothing to release
        """Release engine resources (GPU memory, child processes, connections)."""


def hash_parts(*parts: Any) -> str:
    """A stable sha256 over JSON-serialisable parts."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


# Files whose content defines the model's behaviour; weight files are too large to hash, so
# their names and sizes stand in for them (a re-export with the same shapes but new values keeps the
# same size, which the config/tokenizer hash and the revision usually catch).
_CONTENT_FILES = ("config.json", "generation_config.json", "tokenizer_config.json", "tokenizer.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")


def local_weights_signature(model_path: str) -> dict[str, Any]:
    """Config file hashes plus weight file names and sizes of a local model folder (or one file)."""
    path = Path(model_path)
    if path.is_file():
        return {"file": path.name, "size": path.stat().st_size}
    if not path.is_dir():
        return {"name": model_path}
    sig: dict[str, Any] = {}
    for name in _CONTENT_FILES:
        f = path / name
        if f.exists():
            sig[name] = hashlib.sha256(f.read_bytes()).hexdigest()
    sig["weights"] = sorted(
        (f.name, f.stat().st_size) for f in path.iterdir() if f.is_file() and f.suffix in _WEIGHT_SUFFIXES
    )
    return sig


_BACKENDS = {
    "vllm": "workers.backends.vllm:VLLMBackend",
    "hf": "workers.backends.hf:HFBackend",
    "openai": "workers.backends.openai_compat:OpenAICompatBackend",
    "imported": "workers.backends.imported:ImportedBackend",
}
# At most one engine per worker process: a GPU holds one model's weights and KV cache, not two.
_loaded: tuple[tuple[str, str, str], GenerationBackend] | None = None
_cache_lock = threading.Lock()


def backend_class(name: str) -> type[GenerationBackend]:
    """Import a backend lazily: a CPU worker must not import vLLM just to answer from a file."""
    try:
        module_name, cls_name = _BACKENDS[name].split(":")
    except KeyError:
        raise GenerationError(f"Unknown backend {name!r}; use one of {', '.join(_BACKENDS)}.") from None
    return getattr(importlib.import_module(module_name), cls_name)


def get_backend(model: Any) -> GenerationBackend:
    """The backend for a LanguageModel, kept loaded for the next job of the same engine settings.

    A worker process holds one engine at a time: asking for a different one closes and releases
    the loaded one (its GPU memory, engine processes) before the new one is built, so a study's
    second vLLM model does not run out of memory next to the first. Decoding parameters are not
    part of the key: one engine serves any temperature or seed.
    """
    global _loaded
    key = (model.backend, model.model_path, json.dumps(model.engine_options or {}, sort_keys=True))
    with _cache_lock:
        if _loaded is not None and _loaded[0] == key:
            return _loaded[1]
        _release_locked()
        backend = backend_class(model.backend)(model.model_path, model.engine_options or {})
        _loaded = (key, backend)
        return backend


def loaded_backend() -> GenerationBackend | None:
    """The engine this process holds now, if any."""
    with _cache_lock:
        return _loaded[1] if _loaded is not None else None


def clear_backend_cache() -> None:
    """Close and release the loaded backend (worker shutdown, tests)."""
    with _cache_lock:
        _release_locked()


def _release_locked() -> None:
    global _loaded
    if _loaded is None:
        return
    backend, _loaded = _loaded[1], None
    try:
        backend.close()
    finally:
        del backend  # the last reference: the engine's weights can be collected now
        release_memory()


def release_memory() -> None:
    """Collect what a closed engine left behind and hand cached CUDA memory back to the driver."""
    gc.collect()
    torch = sys.modules.get("torch")  # only when an engine already imported it
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
