"""The OpenAI-compatible backend against scripted local endpoints: retries, failures, secrets."""

import pytest

from evalsite.generation.actions import start_generation
from evalsite.generation.jobs import queue_for
from evalsite.generation.runner import run_job
from evalsite.studies.models import GenerationJob, Response
from workers.backends.base import ChatPrompt, DecodingParams, GenerationError, TransientGenerationError
from workers.backends.openai_compat import OpenAICompatBackend

from .conftest import PROMPTS

FAST = {"backoff_seconds": 0.01, "max_retries": 3, "concurrency": 4}


def test_retries_429_and_5xx_then_succeeds(scripted_endpoint):
    base, server = scripted_endpoint(script=[500, 429, 503])
    backend = OpenAICompatBackend("teacher-model", {"api_base": base, **FAST, "concurrency": 1})
    (result,) = backend.generate([ChatPrompt("hi", system="be nice")], DecodingParams(max_tokens=5, seed=3))
    assert result.text == "echo: hi" and result.error == ""
    assert result.prompt_tokens == 5 and result.completion_tokens == 3 and result.finish_reason == "stop"
    assert len(server.requests) == 4
    body = server.requests[-1]["body"]
    assert body["model"] == "teacher-model" and body["seed"] == 3 and body["max_tokens"] == 5
    assert body["messages"][0] == {"role": "system", "content": "be nice"}


def test_endpoint_that_keeps_failing_raises_transient(scripted_endpoint):
    base, server = scripted_endpoint(default=502)
    backend = OpenAICompatBackend("m", {"api_base": base, **FAST})
    with pytest.raises(TransientGenerationError, match="kept failing after 4 attempts.*HTTP 502"):
        backend.generate([ChatPrompt("hi")], DecodingParams())
    assert len(server.requests) == 4


def test_bad_request_fails_that_prompt_only(scripted_endpoint):
    base, _ = scripted_endpoint(script=[400])
    backend = OpenAICompatBackend("m", {"api_base": base, **FAST, "concurrency": 1})
    bad, good = backend.generate([ChatPrompt("too long"), ChatPrompt("fine")], DecodingParams())
    assert bad.error == "HTTP 400: scripted failure 400" and bad.text == ""
    assert good.text == "echo: fine"


def test_api_key_comes_from_the_environment_and_is_not_stored(scripted_endpoint, monkeypatch):
    base, server = scripted_endpoint()
    monkeypatch.delenv("EVALSITE_API_KEY_TEACHER", raising=False)
    with pytest.raises(GenerationError, match="EVALSITE_API_KEY_TEACHER .* not set"):
        OpenAICompatBackend("m", {"api_base": base, "api_key_env": "EVALSITE_API_KEY_TEACHER"})
    monkeypatch.setenv("EVALSITE_API_KEY_TEACHER", "sk-secret-123")
    backend = OpenAICompatBackend("m", {"api_base": base, "api_key_env": "EVALSITE_API_KEY_TEACHER"})
    backend.generate([ChatPrompt("hi")], DecodingParams())
    assert server.requests[0]["auth"] == "Bearer sk-secret-123"
    assert "sk-secret" not in repr(backend.describe()) + backend.fingerprint()


def test_only_api_key_variables_are_ever_sent(scripted_endpoint, monkeypatch):
    """A model naming SECRET_KEY (or DATABASE_URL ...) must not get it sent to its endpoint."""
    base, server = scripted_endpoint()
    monkeypatch.setenv("SECRET_KEY", "django-secret")
    with pytest.raises(GenerationError, match="not an API-key variable"):
        OpenAICompatBackend("m", {"api_base": base, "api_key_env": "SECRET_KEY"})
    assert server.requests == []
    monkeypatch.setenv("EVALSITE_API_KEY_VARS", "OPENAI_API_KEY,TEAM_KEY")
    monkeypatch.setenv("TEAM_KEY", "sk-team")
    backend = OpenAICompatBackend("m", {"api_base": base, "api_key_env": "TEAM_KEY"})
    backend.generate([ChatPrompt("hi")], DecodingParams())
    assert server.requests[0]["auth"] == "Bearer sk-team"


def test_api_base_must_be_an_allowed_host(scripted_endpoint, monkeypatch):
    base, server = scripted_endpoint()
    monkeypatch.setenv("EVALSITE_API_HOSTS", "api.openai.example")
    with pytest.raises(GenerationError, match="not in EVALSITE_API_HOSTS"):
        OpenAICompatBackend("m", {"api_base": base})
    assert server.requests == []
    monkeypatch.setenv("EVALSITE_API_HOSTS", "api.openai.example, 127.0.0.1")
    OpenAICompatBackend("m", {"api_base": base}).generate([ChatPrompt("hi")], DecodingParams())
    assert len(server.requests) == 1
    with pytest.raises(GenerationError, match="must be an http"):
        OpenAICompatBackend("m", {"api_base": "file:///etc/passwd"})


def test_unauthorized_is_not_retried(scripted_endpoint):
    base, server = scripted_endpoint(default=401)
    backend = OpenAICompatBackend("m", {"api_base": base, **FAST})
    with pytest.raises(GenerationError, match="refused the key"):
        backend.generate([ChatPrompt("hi")], DecodingParams())
    assert len(server.requests) == 1


@pytest.mark.django_db
def test_failing_endpoint_fails_its_job_and_other_jobs_go_on(
    make_gen_study, scripted_endpoint, tiny_model_dir
):
    down, _ = scripted_endpoint(default=500)
    up, _ = scripted_endpoint()
    study = make_gen_study([
        {"alias": "down", "backend": "openai", "model_path": "m",
         "engine_options": {"api_base": down, **FAST}},
        {"alias": "up", "backend": "openai", "model_path": "m", "engine_options": {"api_base": up, **FAST}},
        {"alias": "local", "backend": "hf", "model_path": str(tiny_model_dir)},
    ])
    assert queue_for(study.models.get(alias="down")) == "io"
    jobs = start_generation(study, enqueue=False)
    # Not the last attempt: the error propagates so the Celery task can retry with backoff.
    down_job = next(j for j in jobs if j.model.alias == "down")
    with pytest.raises(TransientGenerationError):
        run_job(down_job.pk, final_attempt=False)
    down_job.refresh_from_db()
    assert down_job.status == GenerationJob.Status.QUEUED and down_job.last_error.startswith("Will retry")
    finished = {j.model.alias: run_job(j.pk) for j in jobs}
    assert finished["down"].status == GenerationJob.Status.FAILED
    assert "kept failing" in finished["down"].last_error and "HTTP 500" in finished["down"].last_error
    assert finished["up"].status == finished["local"].status == GenerationJob.Status.DONE
    assert Response.objects.filter(model__alias="up").count() == len(PROMPTS)
    assert Response.objects.get(model__alias="up", prompt__source_id="p2").text == "echo: " + PROMPTS[2]
