"""LLM-as-judge: both presentation orders, verdicts mapped back, against a real HTTP endpoint."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from evalsite.analysis.judge import combine_orders
from evalsite.dashboard.models import JudgeVerdict
from evalsite.generation.judge import parse_verdict, run_judge
from evalsite.studies.models import LanguageModel, Response
from evalsite.studies.pairing import build_comparisons
from workers.backends.base import clear_backend_cache


@pytest.mark.parametrize(
    ("output", "verdict"),
    [
        ("Answer A is right. [[A]]", "A"),
        ("[[B]]", "B"),
        ("Both are fine [[ C ]]", "tie"),
        ("first [[A]] then, on reflection, [[B]]", "B"),  # the last marker wins
        ("I prefer A.", ""),
        ("", ""),
    ],
)
def test_parse_verdict(output, verdict):
    assert parse_verdict(output) == verdict


class JudgeHandler(BaseHTTPRequestHandler):
    """A judge that prefers the answer containing "teacher" (or, if biased, always the first one)."""

    def do_POST(self) -> None:  # noqa: N802 -- http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = body["messages"][-1]["content"]
        first = text.split("[Answer A]")[1].split("[Answer B]")[0]
        verdict = "A" if self.server.biased or "teacher" in first else "B"
        data = json.dumps({
            "choices": [{"message": {"role": "assistant", "content": f"Reasoning. [[{verdict}]]"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def judge_endpoint():
    servers = []

    def start(biased: bool) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), JudgeHandler)
        server.biased = biased
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/v1"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
    clear_backend_cache()


@pytest.mark.django_db
@pytest.mark.parametrize("biased", [False, True])
def test_judge_asks_both_orders_and_combines(make_study, judge_endpoint, biased):
    study = make_study(slug=f"judge-{biased}", n_prompts=3)
    assert build_comparisons(study) == 3
    judge = LanguageModel.objects.create(
        study=study, alias="judge", role="other", backend="openai", model_path="judge-model",
        temperature=0, engine_options={"api_base": judge_endpoint(biased)},
    )
    assert run_judge(study.pk, judge.pk) == 6
    verdicts = {(v.comparison_id, v.order): v.verdict for v in JudgeVerdict.objects.filter(judge=judge)}
    assert len(verdicts) == 6
    for comparison in study.comparisons.all():
        ab, ba = verdicts[(comparison.pk, "AB")], verdicts[(comparison.pk, "BA")]
        # The teacher is stored as A: a fair judge finds it in both orders; a judge that always
        # picks the first answer is inconsistent, which counts as a tie.
        assert combine_orders(ab, ba) == ("tie" if biased else "A")
    # Re-running asks nothing again.
    assert run_judge(study.pk, judge.pk) == 0
    assert JudgeVerdict.objects.filter(judge=judge).count() == 6


@pytest.mark.django_db
def test_judge_role_is_not_compared_and_admin_action_queues_it(make_study, client, staff_user):
    study = make_study(slug="judged", n_prompts=2)
    judge = LanguageModel.objects.create(study=study, alias="judge", role="judge", backend="openai",
                                         model_path="m", engine_options={"api_base": "http://127.0.0.1:9/v1"})
    for prompt in study.prompts.all():  # even with answers of its own, a judge is not a contestant
        Response.objects.create(prompt=prompt, model=judge, text="judge output")
    # Judges are never paired with the models they judge.
    assert build_comparisons(study) == 2
    assert not study.comparisons.filter(response_b__model__role="judge").exists()

    client.force_login(staff_user)
    other = make_study(slug="nojudge", n_prompts=1)
    response = client.post("/admin/studies/study/", {"action": "ask_judge", "_selected_action": [other.pk]},
                           follow=True)
    assert "has no model with the role" in response.content.decode()
