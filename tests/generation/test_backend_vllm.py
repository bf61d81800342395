"""vLLM for real, on CPU: the offline engine and an OpenAI-compatible server, both against transformers.

float32 on both sides, so greedy answers must agree token for token. One engine start per session
(the backend cache and a session-scoped server), kept lean because CI runs these on 2 cores.
"""

import json
import shutil
from types import SimpleNamespace

import pytest

from evalsite.generation.actions import start_generation
from evalsite.generation.jobs import queue_for
from evalsite.generation.runner import run_job
from evalsite.studies.models import GenerationJob, Response
from workers.backends.base import ChatPrompt, DecodingParams, get_backend
from workers.backends.hf import HFBackend
from workers.backends.openai_compat import OpenAICompatBackend

from .conftest import PROMPTS

pytestmark = pytest.mark.slow
GREEDY = DecodingParams(temperature=0.0, max_tokens=16)
# enforce_eager skips torch.compile: seconds instead of a minute of start-up on a small CPU.
VLLM_OPTIONS = {"dtype": "float32", "enforce_eager": True, "max_model_len": 256, "batch_size": 4}


@pytest.fixture(scope="module")
def vllm_model(tiny_model_dir, monkeypatch_module):
    # One process is enough on CPU and starts faster than vLLM's engine-core child process.
    monkeypatch_module.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    return SimpleNamespace(backend="vllm", model_path=str(tiny_model_dir), engine_options=VLLM_OPTIONS)


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def hf_results(tiny_model_dir):
    prompts = [ChatPrompt(t) for t in PROMPTS]
    return HFBackend(str(tiny_model_dir), {"device": "cpu"}).generate(prompts, GREEDY)


def same_text(a: str, b: str) -> bool:
    """Equal up to a cut multi-byte character at the end: vLLM's incremental detokenizer holds it
    back, transformers decodes it to U+FFFD."""
    return a.rstrip("\ufffd").replace("\x00", "") == b.rstrip("\ufffd").replace("\x00", "")


def test_offline_engine_matches_transformers_greedy(vllm_model, hf_results):
    backend = get_backend(vllm_model)
    results = backend.generate([ChatPrompt(t) for t in PROMPTS] + [ChatPrompt("word " * 400)], GREEDY)
    assert [r.token_ids for r in results[:-1]] == [r.token_ids for r in hf_results]
    assert all(same_text(v.text, h.text) for v, h in zip(results, hf_results, strict=False))
    assert all(r.completion_tokens == 16 and r.finish_reason == "length" for r in results[:-1])
    # An over-long prompt fails alone instead of taking the batch down with it.
    assert "context is 256 tokens" in results[-1].error
    assert backend.describe() == {"backend": "vllm", "version": backend.version()}
    assert backend.version().startswith("0.")


def test_offline_engine_seeded_sampling_is_reproducible(vllm_model):
    backend = get_backend(vllm_model)
    prompts = [ChatPrompt(t) for t in PROMPTS[:3]]
    params = DecodingParams(temperature=1.0, top_p=0.9, max_tokens=12, seed=11)
    first = [r.text for r in backend.generate(prompts, params)]
    assert first == [r.text for r in backend.generate(prompts, params)]
    assert first != [r.text for r in backend.generate(prompts, params.with_seed(12))]


@pytest.mark.django_db
def test_pipeline_on_vllm(make_gen_study, vllm_model, hf_results):
    study = make_gen_study([{
        "alias": "imitation", "backend": "vllm", "model_path": vllm_model.model_path,
        "engine_options": VLLM_OPTIONS, "max_tokens": 16,
    }])
    assert queue_for(study.models.get()) == "gpu"
    (job,) = start_generation(study, enqueue=False)
    job = run_job(job.pk)
    assert job.status == GenerationJob.Status.DONE and job.done == len(PROMPTS)
    texts = [r.text for r in Response.objects.filter(model=job.model).order_by("prompt__position")]
    assert all(same_text(t, h.text) for t, h in zip(texts, hf_results, strict=True))
    assert Response.objects.filter(backend="vllm", generation_params__backend="vllm").count() == len(PROMPTS)


def test_openai_backend_against_a_real_vllm_server(vllm_server, hf_results):
    backend = OpenAICompatBackend("tiny", {"api_base": vllm_server, "concurrency": 3})
    results = backend.generate([ChatPrompt(t) for t in PROMPTS], GREEDY)
    assert [r.error for r in results] == [""] * len(PROMPTS)
    assert all(same_text(r.text, h.text) for r, h in zip(results, hf_results, strict=True))
    assert all(r.completion_tokens == 16 and r.finish_reason == "length" for r in results)
    # The server rejects an over-long prompt with a 400: that prompt fails, the backend goes on.
    (too_long,) = backend.generate([ChatPrompt("word " * 400)], GREEDY)
    assert too_long.error.startswith("HTTP 400")


@pytest.mark.django_db
def test_engine_out_of_memory_fails_the_job_with_a_clear_message(make_gen_study, vllm_model, tmp_path):
    # The same weights claiming a 2M-token context: its KV cache cannot fit in the 1 GiB the
    # CPU engine gets, so vLLM refuses to start, as it does on a GPU that is too small.
    big = tmp_path / "long-context"
    shutil.copytree(vllm_model.model_path, big)
    config = json.loads((big / "config.json").read_text())
    (big / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 2_000_000}))
    options = {k: v for k, v in VLLM_OPTIONS.items() if k != "max_model_len"}
    study = make_gen_study([{"alias": "too-big", "backend": "vllm", "model_path": str(big), "engine_options": options}])
    (job,) = start_generation(study, enqueue=False)
    job = run_job(job.pk)
    assert job.status == GenerationJob.Status.FAILED
    assert job.last_error.startswith("vLLM could not fit") and "lower max_model_len" in job.last_error
    assert not Response.objects.exists()
