"""What a worker sends out and keeps: no request to the server's own network unless listed, a short
sanitized reason for a remote error, and model files only from under the model roots."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from workers.backends.base import ChatPrompt, DecodingParams, GenerationError, ModelNotFound
from workers.backends.imported import ImportedBackend
from workers.backends.openai_compat import MAX_REASON_CHARS, OpenAICompatBackend
from workers.local_models import require_local_model, resolve_model_path

FAST = {"backoff_seconds": 0.01, "max_retries": 0, "concurrency": 1}
SECRET = "root:x:0:0:root:/root:/bin/bash INTERNAL-ONLY-TOKEN=abc123"


class Leaky(BaseHTTPRequestHandler):
    """An internal service: answers with its own data, in the shapes the server is set to."""

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status, content_type, body = self.server.reply
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def leaky():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Leaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def ask(server, reply) -> str:
    server.reply = reply
    backend = OpenAICompatBackend("m", {"api_base": f"http://127.0.0.1:{server.server_port}/v1", **FAST})
    (result,) = backend.generate([ChatPrompt("hi")], DecodingParams())
    return result.error


def test_an_html_error_page_is_not_kept(leaky):
    error = ask(leaky, (400, "text/html", f"<html><body><pre>{SECRET}\n{'x' * 2000}</pre></body></html>".encode()))
    assert error == "HTTP 400: Bad Request"


def test_a_json_error_message_is_kept_short_and_on_one_line(leaky):
    message = "context too long\n\x1b[31m" + SECRET + "y" * 1000
    error = ask(leaky, (400, "application/json", json.dumps({"error": {"message": message}}).encode()))
    assert error.startswith("HTTP 400: context too long ") and "\n" not in error and "\x1b" not in error
    assert len(error) <= len("HTTP 400: ") + MAX_REASON_CHARS


@pytest.mark.parametrize(
    "body",
    [
        b"not json at all",
        b'{"choices": [{"message": {"content": "hi"}}], "usage": {"prompt_tokens": NaN}}',
        b'{"choices": [{"message": {"content": "\\ud800"}}]}',
        b"[" * 50_000,
        b'{"choices": [{"message": {"content": 5}}]}',
    ],
)
def test_a_malformed_success_fails_that_prompt_only(leaky, body):
    error = ask(leaky, (200, "application/json", body))
    assert error.startswith("Malformed response from endpoint") and len(error) < 200


def test_token_counts_that_are_not_counts_are_dropped(leaky):
    leaky.reply = (200, "application/json", json.dumps(
        {"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}],
         "usage": {"prompt_tokens": -4, "completion_tokens": 10**15}}).encode())
    backend = OpenAICompatBackend("m", {"api_base": f"http://127.0.0.1:{leaky.server_port}/v1", **FAST})
    (result,) = backend.generate([ChatPrompt("hi")], DecodingParams())
    assert result.text == "ok" and result.prompt_tokens is None and result.completion_tokens is None


@pytest.mark.parametrize(
    "api_base",
    ["http://127.0.0.1:9/v1", "http://169.254.169.254/latest", "http://localhost/v1", "http://[::1]/v1"],
)
def test_worker_refuses_the_servers_own_network_unless_listed(monkeypatch, api_base):
    monkeypatch.delenv("EVALSITE_API_HOSTS")
    with pytest.raises(GenerationError, match="EVALSITE_API_HOSTS"):
        OpenAICompatBackend("m", {"api_base": api_base})


def test_model_paths_outside_the_roots_are_refused_on_the_worker(settings, tmp_path):
    root = tmp_path / "models"
    (root / "tiny").mkdir(parents=True)
    (root / "tiny" / "config.json").write_text("{}")
    (root / "answers.jsonl").write_text('{"id": "p0", "response": "hi"}\n')
    (root / "escape").symlink_to("/etc")
    settings.MODEL_ROOTS = [root]
    assert require_local_model(str(root / "tiny")) == str(root / "tiny")
    for path in ("/etc", "etc/passwd", str(root / "escape"), str(root / ".." / "models-elsewhere"), "org/model"):
        with pytest.raises(ModelNotFound, match="model roots"):
            resolve_model_path(path)
    assert ImportedBackend(str(root / "answers.jsonl")).file_name == "answers.jsonl"
    with pytest.raises(ModelNotFound, match="model roots"):
        ImportedBackend("/etc/passwd")
