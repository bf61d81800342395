"""OpenAI-compatible backend: ``POST {api_base}/chat/completions`` on any such endpoint.

Works against a ``vllm`` server, a hosted teacher, or anything speaking the same protocol.
engine_options: ``api_base`` (required, e.g. ``http://127.0.0.1:8000/v1``), ``api_key_env`` (the *name*
of the environment variable that holds the key; the key itself is never stored or logged),
``concurrency`` (parallel requests, default 8), ``timeout`` (seconds, default 120), ``max_retries``
(default 4), ``batch_size``.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from evalsite import edge
from evalsite.studies.api_keys import check_api_base, check_api_key_env

from .base import (
    ChatPrompt,
    DecodingParams,
    GenerationBackend,
    GenerationError,
    GenerationResult,
    ModelNotFound,
    TransientGenerationError,
    hash_parts,
)

log = logging.getLogger(__name__)
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
# What of an endpoint's error reply is kept (in the response's error, which researchers read): the
# status and at most this many characters of its JSON error message, control characters removed.
MAX_REASON_CHARS = 120
MAX_TOKENS_COUNT = 10**9


class OpenAICompatBackend(GenerationBackend):
    name = "openai"

    def __init__(self, model_path: str, engine_options: dict[str, Any] | None = None) -> None:
        super().__init__(model_path, engine_options)
        opts = self.engine_options
        self.api_base = str(opts.get("api_base") or "").rstrip("/")
        if not self.api_base:
            raise GenerationError(
                'The openai backend needs engine_options.api_base, e.g. {"api_base": "http://host:8000/v1"}.'
            )
        if problem := check_api_base(self.api_base):
            raise GenerationError(problem)
        if not model_path:
            raise ModelNotFound("The openai backend needs the endpoint's model name in model_path.")
        headers = {"Content-Type": "application/json"}
        key_env = opts.get("api_key_env")
        if key_env:
            # Checked again here: a model row written around the validators must not leak secrets.
            if problem := check_api_key_env(key_env):
                raise GenerationError(problem)
            key = os.environ.get(key_env)
            if not key:
                raise GenerationError(
                    f"Environment variable {key_env} (api_key_env) is not set on this worker."
                )
            headers["Authorization"] = f"Bearer {key}"
        self.concurrency = max(1, int(opts.get("concurrency", 8)))
        self.max_retries = max(0, int(opts.get("max_retries", 4)))
        self.backoff = float(opts.get("backoff_seconds", 0.5))
        self.client = httpx.Client(
            base_url=self.api_base,
            headers=headers,
            timeout=float(opts.get("timeout", 120)),
            limits=httpx.Limits(max_connections=self.concurrency),
        )

    def version(self) -> str:
        return f"httpx {httpx.__version__}"

    def fingerprint(self) -> str:
        # A hosted model has no weight files to hash: endpoint + name (+ a pinned revision if given).
        return hash_parts(self.name, self.api_base, self.model_path, self.engine_options.get("revision", ""))

    def default_batch_size(self) -> int:
        return int(self.engine_options.get("batch_size", 4 * self.concurrency))

    def generate(self, prompts: list[ChatPrompt], params: DecodingParams) -> list[GenerationResult]:
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts) or 1)) as pool:
            return list(pool.map(lambda p: self._one(p, params), prompts))

    def _payload(self, prompt: ChatPrompt, params: DecodingParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model_path,
            "messages": prompt.messages(),
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "seed": params.seed,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        return body

    def _one(self, prompt: ChatPrompt, params: DecodingParams) -> GenerationResult:
        body = self._payload(prompt, params)
        last, retry_after = "", None
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self._delay(attempt, retry_after))
            started = time.perf_counter()
            retry_after = None
            try:
                resp = self.client.post("/chat/completions", json=body)
            except httpx.TransportError as exc:  # refused, reset, timeout: worth another try
                last = f"{type(exc).__name__}: {_clean(str(exc))}"
                continue
            latency_ms = (time.perf_counter() - started) * 1000
            if resp.status_code in RETRY_STATUS:
                last = f"HTTP {resp.status_code}: {_error_text(resp)}"
                retry_after = resp.headers.get("retry-after")
                continue
            if resp.status_code in (401, 403):
                raise GenerationError(
                    f"{self.api_base} refused the key (HTTP {resp.status_code}): check the key in the "
                    f"environment variable named by api_key_env."
                )
            if resp.status_code == 404:
                raise ModelNotFound(
                    f"{self.api_base} has no model {self.model_path!r} (HTTP 404): {_error_text(resp)}"
                )
            if resp.status_code >= 400:
                # A bad request is about this prompt (typically too long for the context): fail it alone.
                return GenerationResult(
                    error=f"HTTP {resp.status_code}: {_error_text(resp)}", latency_ms=latency_ms
                )
            return _parse(resp, latency_ms)
        raise TransientGenerationError(
            f"{self.api_base} kept failing after {self.max_retries + 1} attempts (last: {last}); "
            f"the endpoint may be down or rate limiting."
        )

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(float(retry_after), 60.0)
            except ValueError:
                pass
        # Exponential backoff with jitter so parallel requests don't retry in lockstep.
        return self.backoff * (2 ** (attempt - 1)) * (1 + random.random() / 2)

    def close(self) -> None:
        self.client.close()


def _clean(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """``text`` on one line, printable characters only, at most ``limit`` characters."""
    text = re.sub(r"\s+", " ", "".join(c if c.isprintable() else " " for c in text)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error_text(resp: httpx.Response) -> str:
    """A short, sanitized reason for an error reply: the endpoint's JSON error message if it sent
    one (OpenAI's ``{"error": {"message": ...}}``), else the HTTP reason phrase. The body of a reply
    that is not such an error (an HTML page, another service's data) is never kept."""
    message = ""
    try:
        data = edge.loads(resp.content[:65536], "reply")
        err = data.get("error", data) if isinstance(data, dict) else None
        msg = err.get("message", err.get("detail")) if isinstance(err, dict) else err
        message = msg if isinstance(msg, str) else ""
    except ValueError:
        pass
    return _clean(message) or _clean(resp.reason_phrase or "") or "no reason given"


def _count(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKENS_COUNT else None


def _message(data):
    """``choices[0].message`` of a decoded reply, or ``None`` where the reply has another shape."""
    try:
        return data["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        return None


def _parse(resp: httpx.Response, latency_ms: float) -> GenerationResult:
    """The answer in a 200 reply; a reply that is not a chat completion within the edge rules
    (:mod:`evalsite.edge`: valid Unicode, no NUL outside the answer, finite numbers) fails this
    prompt only."""
    try:
        data = edge.decode(resp.content, "The endpoint's reply")
        # A model may emit NUL in its answer (small or broken models do): the answer loses it, as
        # the local backends' answers do (generation/answers.py); a NUL elsewhere is refused.
        message = _message(data)
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            message["content"] = message["content"].replace("\x00", "")
        edge.check_json(data, "The endpoint's reply")
        choice = data["choices"][0]
        usage = data.get("usage") or {}
        text = choice["message"].get("content") or ""
        if not isinstance(text, str):
            raise TypeError("content is not text")
        fingerprint = data.get("system_fingerprint")
        return GenerationResult(
            text=text,
            prompt_tokens=_count(usage.get("prompt_tokens")),
            completion_tokens=_count(usage.get("completion_tokens")),
            finish_reason=_clean(str(choice.get("finish_reason") or ""), 32),
            latency_ms=latency_ms,
            extra={"system_fingerprint": _clean(fingerprint, 64) if isinstance(fingerprint, str) else None},
        )
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        reason = _clean(str(exc) if isinstance(exc, edge.EdgeError) else type(exc).__name__)
        return GenerationResult(error=f"Malformed response from endpoint ({reason})", latency_ms=latency_ms)
