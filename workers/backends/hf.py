"""transformers backend: ``AutoModelForCausalLM`` with batched, left-padded generation (CPU or CUDA).

engine_options: ``device`` (cpu / cuda, default: cuda when available), ``dtype`` (float32 on CPU,
bfloat16 on CUDA by default), ``max_model_len`` (defaults to the config's context), ``batch_size``.
"""

from __future__ import annotations

import time
from typing import Any

from .base import (
    ChatPrompt,
    DecodingParams,
    GenerationBackend,
    GenerationResult,
    ModelNotFound,
    OutOfMemory,
    hash_parts,
    local_weights_signature,
    prompt_too_long_message,
)
from .templating import cut_at_stop, encode_chat


class HFBackend(GenerationBackend):
    name = "hf"

    def __init__(self, model_path: str, engine_options: dict[str, Any] | None = None) -> None:
        super().__init__(model_path, engine_options)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ..local_models import require_local_model

        self.local_path = require_local_model(model_path)
        opts = self.engine_options
        self.device = opts.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype_name = opts.get("dtype") or ("bfloat16" if self.device.startswith("cuda") else "float32")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.local_path)
            self.model = AutoModelForCausalLM.from_pretrained(
                self.local_path, dtype=getattr(torch, dtype_name)
            )
            self.model.to(self.device).eval()
        except torch.OutOfMemoryError as exc:
            raise OutOfMemory(f"{model_path} does not fit on {self.device}: {exc}") from exc
        except OSError as exc:
            raise ModelNotFound(f"Could not load {model_path!r}: {exc}") from exc
        self.tokenizer.padding_side = "left"  # decoder-only models continue from the right end
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.context = int(
            opts.get("max_model_len") or getattr(self.model.config, "max_position_embeddings", 2048)
        )
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.eos_ids.add(self.tokenizer.eos_token_id)
        self.eos_ids.discard(None)

    def version(self) -> str:
        import transformers

        return transformers.__version__

    def fingerprint(self) -> str:
        return hash_parts(self.name, local_weights_signature(self.local_path), str(self.model.dtype))

    def default_batch_size(self) -> int:
        return int(self.engine_options.get("batch_size", 8))

    def generate(self, prompts: list[ChatPrompt], params: DecodingParams) -> list[GenerationResult]:
        import torch

        results: list[GenerationResult | None] = [None] * len(prompts)
        encoded: list[tuple[int, list[int]]] = []
        for i, prompt in enumerate(prompts):
            ids = encode_chat(self.tokenizer, prompt)
            if len(ids) >= self.context:
                results[i] = GenerationResult(
                    prompt_tokens=len(ids), error=prompt_too_long_message(len(ids), self.context)
                )
            else:
                encoded.append((i, ids))
        if encoded:
            try:
                for i, result in zip(
                    (i for i, _ in encoded),
                    self._generate_ids([ids for _, ids in encoded], params),
                    strict=True,
                ):
                    results[i] = result
            except torch.OutOfMemoryError as exc:
                raise OutOfMemory(
                    f"Out of memory on a batch of {len(encoded)} on {self.device}: lower batch_size in the "
                    f"model's engine options or max_tokens ({exc})."
                ) from exc
        return [r for r in results if r is not None]

    def _generate_ids(self, batch: list[list[int]], params: DecodingParams) -> list[GenerationResult]:
        import torch

        started = time.perf_counter()
        padded = self.tokenizer.pad({"input_ids": batch}, padding=True, return_tensors="pt").to(self.device)
        width = padded["input_ids"].shape[1]
        # Never run past the context window (RoPE models would silently degrade).
        max_new = max(1, min(params.max_tokens, self.context - max(len(ids) for ids in batch)))
        kwargs: dict[str, Any] = {"max_new_tokens": max_new, "pad_token_id": self.tokenizer.pad_token_id}
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0)
            torch.manual_seed(params.seed)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        with torch.inference_mode():
            out = self.model.generate(**padded, **kwargs)
        latency_ms = (time.perf_counter() - started) * 1000
        results = []
        for ids, row in zip(batch, out[:, width:].tolist(), strict=True):
            n, finish = len(row), "length"
            for j, tok in enumerate(row):
                if tok in self.eos_ids:
                    n, finish = j + 1, "stop"
                    break
            text = self.tokenizer.decode(row[:n], skip_special_tokens=True)
            text, stopped = cut_at_stop(text, params.stop)
            results.append(
                GenerationResult(
                    text=text,
                    prompt_tokens=len(ids),
                    completion_tokens=n,
                    finish_reason="stop" if stopped else finish,
                    token_ids=row[:n],
                    latency_ms=latency_ms,
                )
            )
        return results

    def close(self) -> None:
        """Drop the weights and tokenizer; ``get_backend`` then collects them and empties CUDA's cache."""
        self.model = None
        self.tokenizer = None
