"""MT-bench's protocol end to end: import the two-turn questions, generate turn 1, generate turn 2
conditioned on each model's own turn-1 answer (imported and transformers backends), build the
comparisons, and rate a second turn with the conversation so far shown above the answers."""

import re
import shutil
from pathlib import Path

import pytest

from evalsite.generation.actions import start_generation
from evalsite.generation.runner import run_job
from evalsite.rating.rendering import render_markdown
from evalsite.studies import lifecycle
from evalsite.studies.conversations import history_for
from evalsite.studies.importers import import_prompts
from evalsite.studies.models import Comparison, GenerationJob, LanguageModel, Response, Study
from evalsite.studies.pairing import build_comparisons
from workers.backends.base import ChatPrompt, DecodingParams, get_backend

pytestmark = pytest.mark.django_db
FIXTURES = Path(__file__).resolve().parents[1] / "conversations" / "fixtures"
ANSWERED = {"correct_left": "correct", "correct_right": "unsure"}


def mt_bench_study(tmp_path, tiny_model_dir) -> Study:
    study = Study.objects.create(
        slug="mtb", title="MT-bench", completion_code="DONE", attention_check_rate=0.0,
        min_seconds_per_task=0.0, tasks_per_rater=10, redundancy=1,
    )
    assert import_prompts(study, FIXTURES / "mt_bench_question.jsonl").format == "mt-bench"
    answers = tmp_path / "teacher.jsonl"  # under the model roots the generation tests allow
    shutil.copy(FIXTURES / "mt_bench_answers_teacher.jsonl", answers)
    LanguageModel.objects.create(study=study, alias="teacher", role="teacher", backend="imported",
                                 model_path=str(answers))
    LanguageModel.objects.create(study=study, alias="imitation", role="imitation", backend="hf",
                                 model_path=str(tiny_model_dir), temperature=0.0, max_tokens=8)
    return study


def run_all(study):
    return [run_job(job.pk) for job in start_generation(study, enqueue=False)]


def test_second_turn_is_answered_on_the_models_own_first_answer(tmp_path, tiny_model_dir, client):
    study = mt_bench_study(tmp_path, tiny_model_dir)
    jobs = run_all(study)
    assert [j.status for j in jobs] == [GenerationJob.Status.DONE] * 2
    assert Response.objects.filter(error="").count() == 12
    teacher, imitation = study.models.get(alias="teacher"), study.models.get(alias="imitation")

    # The imported teacher's answers come from its MT-bench answer file, turn by turn.
    t2 = Response.objects.get(model=teacher, prompt__source_id="111:turn2")
    assert "**5**" in t2.text

    # The imitation's turn 2 was asked with its own turn-1 answer in the conversation.
    turn2 = study.prompts.get(source_id="111:turn2")
    own1 = Response.objects.get(model=imitation, prompt__source_id="111")
    history = history_for(turn2, imitation.pk)
    assert history == [{"role": "user", "content": turn2.parent.text}, {"role": "assistant", "content": own1.text}]
    backend = get_backend(imitation)
    params = DecodingParams.from_model(imitation).with_seed(imitation.seed)
    asked = ChatPrompt(turn2.text, "", turn2.source_id, 0, tuple((m["role"], m["content"]) for m in history))
    (again,) = backend.generate([asked], params)
    stored = Response.objects.get(model=imitation, prompt=turn2)
    assert stored.text == again.text and stored.prompt_tokens == again.prompt_tokens
    (alone,) = backend.generate([ChatPrompt(turn2.text)], params)
    assert stored.prompt_tokens > alone.prompt_tokens + own1.completion_tokens  # the whole first exchange

    # Each turn is compared on its own: 3 questions x 2 turns, teacher against imitation.
    assert build_comparisons(study) == 6
    study.refresh_from_db()
    assert study.status == Study.Status.READY  # every turn of every model answered
    lifecycle.launch(study)

    # A rater works through the tasks; a second turn's page shows the conversation so far.
    r = client.get(f"/r/{study.slug}/?PROLIFIC_PID=w1&STUDY_ID=s&SESSION_ID=x")
    r = client.post(r.url, {"agree": "yes"})
    seen_turn2 = 0
    for _ in range(6):
        page = client.get(r.url)
        html = page.content.decode()
        comparison = Comparison.objects.get(assignments__token=re.search(r'data-assignment="([^"]+)"', html).group(1))
        if comparison.prompt.turn == 2:
            seen_turn2 += 1
            check_conversation(html, comparison)
        else:
            assert 'id="conversation"' not in html and "<h2>Question</h2>" in html
        token = re.search(r'action="/r/[\w-]+/task/([\w-]+)/', html).group(1)
        r = client.post(f"/r/{study.slug}/task/{token}/", {**ANSWERED, "preference": "left"})
        assert r.status_code == 302
    assert seen_turn2 == 3


def check_conversation(html: str, comparison: Comparison) -> None:
    prompt = comparison.prompt
    assert 'id="conversation"' in html and "Conversation so far" in html
    assert "Last question (turn 2)" in html and render_markdown(prompt.text) in html
    assert render_markdown(prompt.parent.text) in html  # the user's first turn
    left_answer = re.search(r'id="text-left"[^>]*>(.*?)</div>', html, re.S).group(1)
    left = next(r for r in (comparison.response_a, comparison.response_b) if render_markdown(r.text) == left_answer)
    right = comparison.response_b if left == comparison.response_a else comparison.response_a
    for side, response in (("left", left), ("right", right)):
        own = Response.objects.get(model=response.model, prompt=prompt.parent, sample_index=0)
        pattern = rf'<details class="turn turn-assistant" data-side="{side}"[^>]*>.*?<div class="markdown">(.*?)</div>'
        shown = re.search(pattern, html, re.S).group(1)
        assert shown == render_markdown(own.text)
    # Ids and names the rater page's script relies on are all still there.
    for needle in ('id="rating-form"', 'id="prompt"', 'id="text-left"', 'id="text-right"', 'name="preference"'):
        assert needle in html


def test_a_later_turn_waits_for_the_earlier_answer(make_gen_study, tmp_path):
    """Turn 2 of a question whose turn-1 answer failed fails alone, saying why; the rest is kept."""
    study = Study.objects.create(slug="partial", title="Partial", completion_code="DONE")
    import_prompts(study, FIXTURES / "mt_bench_question.jsonl")
    lines = (FIXTURES / "mt_bench_answers_teacher.jsonl").read_text().splitlines()
    answers = tmp_path / "partial.jsonl"
    answers.write_text("\n".join(lines[:2]) + "\n" + '{"id": "131:turn2", "response": "Ana."}\n')
    LanguageModel.objects.create(study=study, alias="teacher", role="teacher", backend="imported",
                                 model_path=str(answers))
    (job,) = run_all(study)
    assert job.status == GenerationJob.Status.FAILED and job.done == 4 and job.failed == 2
    failed = Response.objects.get(prompt__source_id="131:turn2")
    assert failed.error.startswith("No answer to turn 1 ('131') yet")


@pytest.mark.slow
def test_vllm_on_cpu_answers_the_second_turn_like_transformers(tmp_path, tiny_model_dir, monkeypatch):
    """The same two-turn flow on vLLM (CPU, float32): its chat-templated conversation gives the
    greedy answer transformers gives for the same conversation."""
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # one process starts faster on CPU
    from workers.backends.hf import HFBackend

    study = mt_bench_study(tmp_path, tiny_model_dir)
    imitation = study.models.get(alias="imitation")
    imitation.backend = "vllm"
    imitation.engine_options = {"dtype": "float32", "enforce_eager": True, "max_model_len": 256, "batch_size": 4}
    imitation.save()
    assert [j.status for j in run_all(study)] == [GenerationJob.Status.DONE] * 2
    hf = HFBackend(str(tiny_model_dir), {"device": "cpu"})
    params = DecodingParams.from_model(imitation).with_seed(imitation.seed)
    for prompt in study.prompts.filter(turn=2):
        turns = tuple((m["role"], m["content"]) for m in history_for(prompt, imitation.pk))
        assert len(turns) == 2
        (expected,) = hf.generate([ChatPrompt(prompt.text, "", prompt.source_id, 0, turns)], params)
        stored = Response.objects.get(model=imitation, prompt=prompt)
        assert stored.backend == "vllm" and stored.prompt_tokens == expected.prompt_tokens
        assert stored.text.rstrip("\ufffd") == expected.text.rstrip("\ufffd")


def test_openai_endpoint_gets_the_conversation_as_messages(tmp_path, scripted_endpoint):
    """An OpenAI-compatible endpoint is sent the whole conversation in ``messages``: the second turn
    after the model's own first answer, and a conversation's own system turn after the model's."""
    base, server = scripted_endpoint()
    study = Study.objects.create(slug="oai", title="OpenAI", completion_code="DONE")
    import_prompts(study, FIXTURES / "mt_bench_question.jsonl")
    import_prompts(study, FIXTURES / "sharegpt.jsonl")
    LanguageModel.objects.create(study=study, alias="api", role="teacher", backend="openai", model_path="m",
                                 system_prompt="Be brief.", engine_options={"api_base": base, "max_retries": 0})
    (job,) = run_all(study)
    assert job.status == GenerationJob.Status.DONE
    bodies = {r["body"]["messages"][-1]["content"]: r["body"]["messages"] for r in server.requests}
    turn2 = study.prompts.get(source_id="81:turn2")
    assert bodies[turn2.text] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": turn2.parent.text},
        {"role": "assistant", "content": "echo: " + turn2.parent.text},
        {"role": "user", "content": turn2.text},
    ]
    teapot = bodies["What does HTTP status 418 mean?"]
    assert teapot == [{"role": "system", "content": "Be brief.\n\nYou are a concise assistant."},
                      {"role": "user", "content": "What does HTTP status 418 mean?"}]
    # Requests for second turns came after every first turn's.
    order = [r["body"]["messages"][-1]["content"] for r in server.requests]
    firsts = [p.text for p in study.prompts.filter(turn=1, history=[])]
    assert max(order.index(t) for t in firsts) < order.index(turn2.text)


def test_plain_text_conversation_without_a_chat_template(tiny_model_dir):
    from transformers import AutoTokenizer

    from workers.backends.templating import encode_chat

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = None
    asked = ChatPrompt("And B?", "Sys.", history=(("user", "A?"), ("assistant", "Yes.")))
    text = tokenizer.decode(encode_chat(tokenizer, asked))
    assert text == "Sys.\n\nUser: A?\n\nAssistant: Yes.\n\nUser: And B?\n\nAssistant:"
    single = tokenizer.decode(encode_chat(tokenizer, ChatPrompt("Hi", "Sys.")))
    assert single == "Sys.\n\nHi"  # single-turn prompts as before
