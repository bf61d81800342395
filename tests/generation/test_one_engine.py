"""A worker process holds one engine: loading a second model releases the first before it loads."""

from __future__ import annotations

import shutil
import weakref

import pytest

from evalsite.generation import runner
from evalsite.generation.actions import start_generation
from evalsite.generation.runner import run_job
from evalsite.studies.models import GenerationJob
from workers.backends import base
from workers.backends.hf import HFBackend

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_models(tiny_model_dir, tmp_path):
    """Two different model folders (the same tiny weights under two paths: two engines)."""
    second = tmp_path / "tiny-copy"
    shutil.copytree(tiny_model_dir, second)
    return tiny_model_dir, second


def test_generating_with_two_models_keeps_one_engine_alive(make_gen_study, two_models, monkeypatch):
    base.clear_backend_cache()
    first_path, second_path = two_models
    study = make_gen_study(
        [
            {"alias": "teacher", "role": "teacher", "backend": "hf", "model_path": str(first_path)},
            {"alias": "imitation", "role": "imitation", "backend": "hf", "model_path": str(second_path)},
        ]
    )
    loaded = []  # weak references only: the test itself must not keep an engine alive
    built = []
    real_get_backend = runner.get_backend

    def recording_get_backend(model):
        backend = real_get_backend(model)
        loaded.append((model.alias, weakref.ref(backend), weakref.ref(backend.model)))
        # When the second engine is built the first one is already closed and collected.
        built.append([alias for alias, ref, _ in loaded if ref() is not None])
        return backend

    monkeypatch.setattr(runner, "get_backend", recording_get_backend)
    jobs = {j.model.alias: j for j in start_generation(study, enqueue=False)}
    assert run_job(jobs["teacher"].pk).status == GenerationJob.Status.DONE
    assert run_job(jobs["imitation"].pk).status == GenerationJob.Status.DONE

    (_, first, first_weights), (_, second, _) = loaded
    assert first() is None and first_weights() is None  # the first engine and its weights are gone
    assert built == [["teacher"], ["imitation"]]
    assert isinstance(second(), HFBackend) and base.loaded_backend() is second()
    assert second().model_path == str(second_path)


def test_same_engine_settings_reuse_the_loaded_engine(make_gen_study, tiny_model_dir):
    base.clear_backend_cache()
    study = make_gen_study([{"alias": "imitation", "backend": "hf", "model_path": str(tiny_model_dir)}])
    model = study.models.get()
    first = base.get_backend(model)
    model.temperature = 0.7  # decoding parameters are not part of the engine
    assert base.get_backend(model) is first
    ref = weakref.ref(first)
    del first
    base.clear_backend_cache()
    assert ref() is None and base.loaded_backend() is None


def test_loading_another_engine_closes_the_previous_one_first(monkeypatch):
    events = []

    class Fake(base.GenerationBackend):
        name = "fake"

        def __init__(self, model_path, engine_options=None):
            super().__init__(model_path, engine_options)
            events.append(f"load {model_path} (alive: {sorted(b.model_path for b in alive)})")
            alive.add(self)

        def generate(self, prompts, params):
            return []

        def close(self):
            events.append(f"close {self.model_path}")
            alive.discard(self)

    alive = weakref.WeakSet()
    monkeypatch.setattr(base, "backend_class", lambda name: Fake)
    base.clear_backend_cache()

    class Model:
        backend, engine_options = "fake", {}

        def __init__(self, path):
            self.model_path = path

    base.get_backend(Model("a"))
    base.get_backend(Model("a"))
    base.get_backend(Model("b"))
    base.clear_backend_cache()
    assert events == ["load a (alive: [])", "close a", "load b (alive: [])", "close b"]
