"""vLLM on a CUDA GPU with SmolLM2. Skipped without CUDA; run on a GPU machine with ``-m gpu``."""

import time

import pytest

from workers.backends.base import ChatPrompt, DecodingParams
from workers.backends.hf import HFBackend

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
PROMPTS = [f"Explain, in a short paragraph, fact number {i} about the solar system." for i in range(64)]


def test_vllm_on_gpu_matches_transformers_and_is_faster(smollm2_dir):
    from workers.backends.vllm import VLLMBackend

    greedy = DecodingParams(temperature=0.0, max_tokens=64)
    vllm = VLLMBackend(
        str(smollm2_dir), {"dtype": "float32", "gpu_memory_utilization": 0.3, "max_model_len": 2048}
    )
    hf = HFBackend(str(smollm2_dir), {"device": "cuda", "dtype": "float32", "batch_size": 16})
    try:
        prompts = [ChatPrompt(p) for p in PROMPTS]
        started = time.perf_counter()
        fast = vllm.generate(prompts, greedy)
        vllm_tps = sum(r.completion_tokens for r in fast) / (time.perf_counter() - started)
        started = time.perf_counter()
        slow = [r for i in range(0, len(prompts), 16) for r in hf.generate(prompts[i : i + 16], greedy)]
        hf_tps = sum(r.completion_tokens for r in slow) / (time.perf_counter() - started)
        # Identical prefixes for most prompts (GPU kernels may break exact ties differently).
        same = sum(a.token_ids[:16] == b.token_ids[:16] for a, b in zip(fast, slow, strict=True))
        assert same >= 0.9 * len(prompts)
        print(f"vLLM {vllm_tps:.0f} tok/s, transformers {hf_tps:.0f} tok/s, ratio {vllm_tps / hf_tps:.1f}x")
        assert vllm_tps > hf_tps
    finally:
        vllm.close()
