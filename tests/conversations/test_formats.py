"""The field's file formats import as they are, say which format they were read as, and keep the
all-or-nothing, line-numbered errors; a file in no known format is refused clearly."""

import json
from pathlib import Path

import pytest

from evalsite.studies.importers import ImportFileError, import_prompts, import_responses
from evalsite.studies.models import LanguageModel, Prompt, Response, Study

pytestmark = pytest.mark.django_db
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def study(db):
    return Study.objects.create(slug="fmt", title="Formats", completion_code="C0DE")


def model(study, alias="teacher", role="teacher"):
    return LanguageModel.objects.create(study=study, alias=alias, role=role, backend="imported")


def prompts(study):
    return {p.source_id: p for p in study.prompts.select_related("parent")}


def refused(fn, *args) -> str:
    before = (Prompt.objects.count(), Response.objects.count())
    with pytest.raises(ImportFileError) as info:
        fn(*args)
    assert (Prompt.objects.count(), Response.objects.count()) == before
    return str(info.value)


def write(tmp_path, name, rows) -> Path:
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# --- prompts ------------------------------------------------------------------------------------


def test_mt_bench_questions_become_two_turn_chains(study):
    result = import_prompts(study, FIXTURES / "mt_bench_question.jsonl")
    assert result == 6 and result.format == "mt-bench" and result.format_label == "MT-bench questions"
    got = prompts(study)
    first, second = got["111"], got["111:turn2"]
    assert (first.turn, first.parent, first.category) == (1, None, "math")
    assert (second.turn, second.parent_id, second.category) == (2, first.pk, "math")
    assert second.text == "How long is the side opposite the right angle?"
    assert first.reference_answers == ["The area is 4 * 3 / 2 = 6."]
    assert second.reference_answers == ["The hypotenuse is sqrt(4^2 + 3^2) = 5."]
    assert got["81"].reference_answers == [] and got["81:turn2"].history == []
    # Positions keep a question's turns together, in file order.
    order = list(study.prompts.order_by("position").values_list("source_id", flat=True))
    assert order == ["81", "81:turn2", "111", "111:turn2", "131", "131:turn2"]


def test_arena_hard_questions_v01_and_v2(study):
    result = import_prompts(study, FIXTURES / "arena_hard_questions.jsonl")
    assert (result, result.format) == (2, "arena-hard")
    p = prompts(study)["a1f3c9d2e4b5"]
    assert p.text.startswith("Write a Python function") and p.category == "arena-hard-v0.1"
    assert p.metadata == {"cluster": "Python scripting"} and p.turn == 1
    result = import_prompts(study, FIXTURES / "arena_hard_v2_questions.jsonl")
    assert (result, result.format) == (2, "arena-hard")
    p = prompts(study)["9d0f2e7c"]
    assert p.category == "creative_writing" and p.metadata == {"subcategory": "poetry"}


def test_alpaca_eval_set_and_alpaca_with_input(study):
    result = import_prompts(study, FIXTURES / "alpaca_eval.jsonl")
    assert (result, result.format, result.format_label) == (3, "alpaca", "Alpaca / AlpacaEval instructions")
    p = study.prompts.get(text="How many minutes are in a week?")
    assert p.category == "selfinstruct" and p.source_id.startswith("alpaca-")
    assert p.metadata == {"dataset_answer": "There are 7 × 24 × 60 = 10,080 minutes in a week.",
                          "generator": "text_davinci_003"}
    # The same file again: the same ids, so it is refused as a duplicate rather than doubled.
    assert "already exists" in refused(import_prompts, study, FIXTURES / "alpaca_eval.jsonl")
    assert import_prompts(study, FIXTURES / "alpaca.jsonl").format == "alpaca"
    p = study.prompts.get(text__startswith="Translate the sentence")
    assert p.text == "Translate the sentence into French.\n\nThe library opens at nine."
    assert study.prompts.filter(text="Give two tips for staying focused while studying.").exists()


def test_alpaca_csv(study):
    result = import_prompts(study, FIXTURES / "alpaca.csv")
    assert (result, result.format) == (2, "alpaca")
    assert study.prompts.filter(text="List three primary colours.").exists()


def test_csv_with_list_columns_as_json_text(study, tmp_path):
    path = tmp_path / "questions.csv"
    path.write_text('question_id,category,turns\n7,writing,"[""Write a haiku."", ""Now make it rhyme.""]"\n')
    result = import_prompts(study, path)
    assert (result, result.format) == (2, "mt-bench")
    assert prompts(study)["7:turn2"].text == "Now make it rhyme." and prompts(study)["7:turn2"].turn == 2


def test_sharegpt_conversations(study):
    result = import_prompts(study, FIXTURES / "sharegpt.jsonl")
    assert (result, result.format, result.format_label) == (2, "sharegpt", "ShareGPT conversations")
    running = prompts(study)["sg-0001"]
    # The compared answers are the next assistant turn: the dataset's own last answer is put aside.
    assert running.text == "And how long should each run be?" and running.turn == 2
    assert running.history == [
        {"role": "user", "content": "I want to start running. How often should I run in the first month?"},
        {"role": "assistant", "content": "Three short runs a week, with a rest day between them, is a good start."},
    ]
    assert running.metadata["dataset_answer"].startswith("Begin with 20 minutes")
    teapot = prompts(study)["sg-0002"]
    assert teapot.history == [{"role": "system", "content": "You are a concise assistant."}] and teapot.turn == 1


def test_openai_messages(study):
    result = import_prompts(study, FIXTURES / "openai_messages.jsonl")
    assert (result, result.format) == (2, "openai-messages")
    sky = prompts(study)["chat-1"]
    assert sky.text == "Why is the sky blue?"
    assert sky.history == [{"role": "system", "content": "You answer in one sentence."}]
    other = study.prompts.get(text="Name another one.")
    assert other.source_id.startswith("chat-") and other.turn == 2 and len(other.history) == 2


def test_parquet_saved_by_datasets(study, tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [json.loads(line) for line in (FIXTURES / "mt_bench_question.jsonl").read_text().splitlines()]
    # A ragged column (reference on some rows only) comes back as nulls: they count as absent.
    # (from_list takes its columns from the first row: start with one that has a reference.)
    datasets.Dataset.from_list(rows[1:] + rows[:1]).to_parquet(tmp_path / "mt_bench.parquet")
    result = import_prompts(study, tmp_path / "mt_bench.parquet")
    assert (result, result.format) == (6, "mt-bench")
    assert prompts(study)["81"].reference_answers == [] and prompts(study)["131:turn2"].reference_answers


def test_chat_messages_in_parquet_saved_by_datasets(study, tmp_path):
    """A chat dataset's ``messages`` column (a list of structs in Parquet) reads as OpenAI messages."""
    datasets = pytest.importorskip("datasets")
    rows = [json.loads(line) for line in (FIXTURES / "openai_messages.jsonl").read_text().splitlines()]
    datasets.Dataset.from_list(rows).to_parquet(tmp_path / "chat.parquet")  # the second row's id: null
    result = import_prompts(study, tmp_path / "chat.parquet")
    assert (result, result.format) == (2, "openai-messages")
    assert prompts(study)["chat-1"].history == [{"role": "system", "content": "You answer in one sentence."}]
    other = study.prompts.get(text="Name another one.")
    assert other.source_id.startswith("chat-") and other.turn == 2


def test_our_own_rows_can_carry_a_history_and_a_parent(study, tmp_path):
    path = write(tmp_path, "own.jsonl", [
        {"id": "q1", "prompt": "Name a fruit."},
        {"id": "q1-2", "prompt": "Now a vegetable.", "parent": "q1"},
        {"id": "h", "prompt": "And in German?", "history": [
            {"role": "user", "content": "Say hello in French."}, {"role": "assistant", "content": "Bonjour."}]},
    ])
    result = import_prompts(study, path)
    assert (result, result.format) == (3, "evalsite")
    got = prompts(study)
    assert got["q1-2"].parent == got["q1"] and got["q1-2"].turn == 2 and got["h"].turn == 2
    # A later file may continue a stored conversation.
    import_prompts(study, write(tmp_path, "more.jsonl", [{"id": "q1-3", "prompt": "And a nut?", "parent": "q1-2"}]))
    assert prompts(study)["q1-3"].turn == 3


def test_bad_conversations_are_refused_with_line_numbers(study, tmp_path):
    path = write(tmp_path, "bad.jsonl", [
        {"id": "a", "prompt": "ok"},
        {"id": "b", "prompt": "x", "parent": "nowhere"},
        {"id": "c", "prompt": "x", "history": [{"role": "user", "content": "hi"}]},
        {"id": "d", "prompt": "x", "history": [{"role": "robot", "content": "beep"}]},
        {"id": "e", "prompt": "x", "parent": "a", "history": [
            {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
    ])
    message = refused(import_prompts, study, path)
    assert "bad.jsonl: line 2: parent 'nowhere' is neither an earlier row of this file nor a prompt" in message
    assert "bad.jsonl: line 3: history must end with an assistant turn" in message
    assert "bad.jsonl: line 4: history turn 1 has role 'robot'" in message
    assert "bad.jsonl: line 5: a later turn (with parent) takes its history from its parent" in message
    mt = write(tmp_path, "q.jsonl", [
        {"question_id": 1, "category": "x", "turns": ["fine", "also fine"]},
        {"question_id": 2, "category": "x", "turns": []},
        {"question_id": 3, "category": "x", "turns": ["ok", ""]},
    ])
    message = refused(import_prompts, study, mt)
    assert "q.jsonl: line 2: turns must be a non-empty list of the user's turns" in message
    assert "q.jsonl: line 3: empty prompt" in message
    sg = write(tmp_path, "s.jsonl", [{"conversations": [{"from": "gpt", "value": "hello"}]}])
    assert "s.jsonl: line 1: conversations must end with a user turn" in refused(import_prompts, study, sg)


def test_unknown_and_mixed_formats_are_refused_clearly(study, tmp_path):
    message = refused(import_prompts, study, FIXTURES / "unknown.jsonl")
    assert "unknown.jsonl: line 1: this row is in none of the formats looked for:" in message
    for name in ("evalsite prompts", "OpenAI chat messages", "ShareGPT conversations", "MT-bench questions",
                 "Arena-Hard questions", "Alpaca / AlpacaEval instructions"):
        assert name in message
    assert "its columns: answer, query" in message
    mixed = write(tmp_path, "mixed.jsonl", [
        {"question_id": 1, "category": "x", "turns": ["a"]},
        {"instruction": "b"},
        {"something": "else"},
    ])
    message = refused(import_prompts, study, mixed)
    expected = "mixed.jsonl: line 2: this row is Alpaca / AlpacaEval instructions, but line 1 is MT-bench questions"
    assert expected in message
    assert "mixed.jsonl: line 3: not a row of MT-bench questions" in message
    both = write(tmp_path, "both.jsonl", [{"messages": [{"role": "user", "content": "a"}],
                                            "conversations": [{"from": "human", "value": "a"}]}])
    assert "line 1: this row is in none of the formats" in refused(import_prompts, study, both)


def test_an_ambiguous_file_is_refused_naming_the_formats(study, tmp_path):
    """A file whose every row fits two formats: the first such line, the formats it fits, all looked for."""
    chat = [{"role": "user", "content": "Hi"}]
    path = write(tmp_path, "ambiguous.jsonl", [
        {"id": "x", "prompt": "Hi", "messages": chat},
        {"id": "y", "prompt": "Hello", "messages": chat},
    ])
    message = refused(import_prompts, study, path)
    assert ("ambiguous.jsonl: line 1: ambiguous row: it fits evalsite prompts and OpenAI chat messages, so the "
            "file's format is unclear") in message
    assert "formats looked for: evalsite prompts (id + prompt or text); OpenAI chat messages" in message
    assert "its columns: id, messages, prompt" in message
    assert "line 2" not in message  # the first line that fits no one format is named
    # In a file whose format is clear, an ambiguous row is named on its own line.
    mixed = write(tmp_path, "mixed.jsonl", [{"id": "x", "prompt": "Hi"}, {"id": "y", "prompt": "Hi", "messages": chat}])
    message = refused(import_prompts, study, mixed)
    assert "mixed.jsonl: line 2: ambiguous row: it fits evalsite prompts and OpenAI chat messages" in message


# --- answers ------------------------------------------------------------------------------------


def test_our_own_answer_rows(study, tmp_path):
    import_prompts(study, FIXTURES / "mt_bench_question.jsonl")
    path = write(tmp_path, "ours.jsonl", [
        {"id": "81", "response": "Tokyo trip."},
        {"id": "81:turn2", "text": "Tokyo trip, in t-words."},
        {"id": "81", "output": "Another sample.", "sample_index": 1},
    ])
    result = import_responses(model(study), path)
    assert (result, result.format, result.format_label) == (3, "evalsite", "evalsite answers")
    assert Response.objects.get(prompt__source_id="81:turn2").text == "Tokyo trip, in t-words."


def test_mt_bench_answers_fill_every_turn(study):
    import_prompts(study, FIXTURES / "mt_bench_question.jsonl")
    teacher = model(study)
    result = import_responses(teacher, FIXTURES / "mt_bench_answers_teacher.jsonl")
    assert (result, result.format) == (6, "mt-bench-answers")
    answer = Response.objects.get(model=teacher, prompt__source_id="111:turn2")
    assert "**5**" in answer.text and answer.generation_params["format"] == "mt-bench-answers"
    assert answer.generation_params["model_in_file"] == "teacher-13b"
    # MT-bench reference answers are model answers too (e.g. a "reference" model).
    ref = model(study, "gpt4-reference", "other")
    assert import_responses(ref, FIXTURES / "mt_bench_reference.jsonl") == 4


def test_a_later_turn_needs_the_models_own_earlier_answer(study, tmp_path):
    import_prompts(study, FIXTURES / "mt_bench_question.jsonl")
    teacher = model(study)
    path = write(tmp_path, "turn2.jsonl", [{"id": "81:turn2", "response": "T-words only."}])
    message = refused(import_responses, teacher, path)
    assert "turn2.jsonl: line 1: answer to '81:turn2' (a later turn) but none to its previous turn '81'" in message


def test_one_model_per_answer_file(study, tmp_path):
    import_prompts(study, FIXTURES / "mt_bench_question.jsonl")
    rows = [json.loads(line) for line in (FIXTURES / "mt_bench_answers_teacher.jsonl").read_text().splitlines()]
    rows[2]["model_id"] = "someone-else"
    message = refused(import_responses, model(study), write(tmp_path, "two.jsonl", rows))
    assert "two.jsonl: line 3: model_id 'someone-else' differs from 'teacher-13b' on line 1" in message


def test_arena_hard_answers(study):
    import_prompts(study, FIXTURES / "arena_hard_questions.jsonl")
    result = import_responses(model(study), FIXTURES / "arena_hard_answers.jsonl")
    assert (result, result.format) == (2, "mt-bench-answers")
    import_prompts(study, FIXTURES / "arena_hard_v2_questions.jsonl")
    result = import_responses(model(study, "imitation", "imitation"), FIXTURES / "arena_hard_v2_answers.jsonl")
    assert (result, result.format) == (2, "arena-hard-v2-answers")
    assert Response.objects.get(prompt__source_id="9d0f2e7c").text.startswith("One last turn")


def test_alpaca_eval_outputs_match_prompts_by_instruction(study):
    import_prompts(study, FIXTURES / "alpaca_eval.jsonl")
    result = import_responses(model(study, "imitation", "imitation"), FIXTURES / "alpaca_eval_outputs.jsonl")
    assert (result, result.format, result.format_label) == (3, "alpaca-eval-outputs", "AlpacaEval outputs")
    answer = Response.objects.get(prompt__text="How many minutes are in a week?")
    assert answer.text == "A week has 1,440 minutes."


def test_openai_messages_answers_match_by_id_or_conversation(study):
    import_prompts(study, FIXTURES / "openai_messages.jsonl")
    result = import_responses(model(study), FIXTURES / "openai_answers.jsonl")
    assert (result, result.format) == (2, "openai-messages")
    assert Response.objects.get(prompt__text="Name another one.").text == "29 is another."


def test_openai_messages_answer_a_chain_turn_by_turn(study, tmp_path):
    """A whole two-turn conversation in ``messages`` answers both turns of an MT-bench question."""
    import_prompts(study, FIXTURES / "mt_bench_question.jsonl")
    q = prompts(study)
    path = write(tmp_path, "conv.jsonl", [{"messages": [
        {"role": "user", "content": q["131"].text}, {"role": "assistant", "content": "No."},
        {"role": "user", "content": q["131:turn2"].text}, {"role": "assistant", "content": "Ana."},
    ]}])
    teacher = model(study)
    assert import_responses(teacher, path) == 2
    texts = dict(teacher.responses.values_list("prompt__source_id", "text"))
    assert texts == {"131": "No.", "131:turn2": "Ana."}


def test_answers_in_no_known_format_or_unmatched(study, tmp_path):
    import_prompts(study, FIXTURES / "alpaca_eval.jsonl")
    teacher = model(study)
    message = refused(import_responses, teacher, FIXTURES / "unknown.jsonl")
    assert "line 1: this row is in none of the formats looked for:" in message
    for name in ("evalsite answers", "MT-bench / Arena-Hard model answers", "AlpacaEval outputs",
                 "OpenAI chat messages", "Arena-Hard v2 answers"):
        assert name in message
    path = write(tmp_path, "o.jsonl", [{"instruction": "Never asked", "output": "x", "generator": "m"}])
    assert "o.jsonl: line 1: no prompt of study 'fmt' has this conversation" in refused(import_responses, teacher, path)
