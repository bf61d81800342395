"""The transformers backend on the tiny local model: batching, padding, seeds, fingerprints, limits."""

import shutil

import pytest

from workers.backends.base import ChatPrompt, DecodingParams, ModelNotFound, get_backend
from workers.backends.hf import HFBackend

from .conftest import PROMPTS

GREEDY = DecodingParams(temperature=0.0, max_tokens=12)


@pytest.fixture(scope="module")
def hf(tiny_model_dir):
    return HFBackend(str(tiny_model_dir), {"device": "cpu"})


def test_left_padded_batch_equals_one_by_one(hf):
    prompts = [ChatPrompt(t) for t in PROMPTS]
    # Prompts of different lengths: the batch is left padded, so any padding bug changes the text.
    assert len({len(t) for t in PROMPTS}) > 1
    batched = hf.generate(prompts, GREEDY)
    single = [hf.generate([p], GREEDY)[0] for p in prompts]
    assert [r.text for r in batched] == [r.text for r in single]
    assert all(r.completion_tokens == 12 and r.finish_reason == "length" for r in batched)
    assert [r.prompt_tokens for r in batched] == [r.prompt_tokens for r in single]
    # The answers depend on the prompt (a constant answer would hide ordering bugs).
    assert len({r.text for r in batched}) == len(prompts)


def test_sampling_is_reproducible_with_a_seed(hf):
    prompts = [ChatPrompt(t) for t in PROMPTS[:3]]
    params = DecodingParams(temperature=1.0, top_p=0.95, max_tokens=16, seed=7)
    first = [r.text for r in hf.generate(prompts, params)]
    again = [r.text for r in hf.generate(prompts, params)]
    other = [r.text for r in hf.generate(prompts, params.with_seed(8))]
    assert first == again
    assert first != other


def test_system_prompt_changes_the_input(hf):
    plain = hf.generate([ChatPrompt("Hello")], GREEDY)[0]
    with_system = hf.generate([ChatPrompt("Hello", system="You are terse.")], GREEDY)[0]
    assert with_system.prompt_tokens > plain.prompt_tokens


def test_too_long_prompt_fails_alone(hf):
    results = hf.generate([ChatPrompt(PROMPTS[0]), ChatPrompt("word " * 400)], GREEDY)
    assert results[0].error == "" and results[0].text
    assert results[1].text == ""
    assert "context is 256 tokens" in results[1].error and "shorten the prompt" in results[1].error


def test_stop_strings_cut_the_answer(hf):
    full = hf.generate([ChatPrompt(PROMPTS[1])], DecodingParams(max_tokens=12))[0].text
    stop = full[3:5]
    cut = hf.generate([ChatPrompt(PROMPTS[1])], DecodingParams(max_tokens=12, stop=(stop,)))[0]
    assert cut.text == full[: full.find(stop)]
    assert cut.finish_reason == "stop"


def test_fingerprint_is_stable_and_tracks_the_weights(hf, tiny_model_dir, tmp_path):
    assert hf.fingerprint() == HFBackend(str(tiny_model_dir)).fingerprint()
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    config = (copy / "config.json").read_text().replace('"rms_norm_eps": 1e-06', '"rms_norm_eps": 1e-05')
    (copy / "config.json").write_text(config)
    assert HFBackend(str(copy)).fingerprint() != hf.fingerprint()
    assert hf.describe()["backend"] == "hf" and hf.describe()["version"]


def test_unknown_path_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFound, match="not a model folder"):
        HFBackend(str(tmp_path / "nope"))


@pytest.mark.django_db
def test_backend_is_built_once_per_engine_settings(make_gen_study, tiny_model_dir):
    path = str(tiny_model_dir)
    study = make_gen_study([
        {"alias": "a", "backend": "hf", "model_path": path, "temperature": 0.0},
        {"alias": "b", "backend": "hf", "model_path": path, "temperature": 0.9},
        {"alias": "c", "backend": "hf", "model_path": path, "engine_options": {"batch_size": 1}},
    ])
    a, b, c = study.models.order_by("alias")
    # Decoding parameters don't need a new engine; different engine settings do.
    assert get_backend(a) is get_backend(b)
    assert get_backend(a) is not get_backend(c)
