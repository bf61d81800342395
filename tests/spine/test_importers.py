"""Prompt and response imports: good files land, every bad file is refused whole with a clear message."""

import io
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from evalsite.studies import lifecycle
from evalsite.studies.datasets import koala_test_set
from evalsite.studies.importers import ImportFileError, ImportLimits, import_prompts, import_responses
from evalsite.studies.models import LanguageModel, Prompt, Response, Study
from evalsite.studies.pairing import build_comparisons

pytestmark = pytest.mark.django_db

# The shared data folder sits next to the checkout (../shared), as the issue describes.
KOALA = koala_test_set()


@pytest.fixture
def study(db):
    return Study.objects.create(slug="imp", title="Imports", completion_code="C0DE")


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def jsonl(*rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def snapshot():
    return (
        sorted(Prompt.objects.values_list("study_id", "source_id", "text")),
        sorted(Response.objects.values_list("prompt_id", "model_id", "sample_index", "text")),
    )


def refused(fn, *args, **kwargs) -> str:
    """Run an import that must fail; return its message and check the database did not change."""
    before = snapshot()
    with pytest.raises(ImportFileError) as info:
        fn(*args, **kwargs)
    assert snapshot() == before
    return str(info.value)


@pytest.mark.skipif(KOALA is None, reason="Koala test set not found (set KOALA_TEST_SET)")
def test_koala_test_set_imports_as_is(study):
    assert import_prompts(study, KOALA) == 180
    assert study.prompts.count() == 180
    first = study.prompts.order_by("position").first()
    assert first.source_id == "koala_0" and first.text.startswith("Can you list the top 20 films")
    assert list(study.prompts.order_by("position").values_list("position", flat=True)) == list(range(180))


def test_jsonl_with_all_fields(tmp_path, study):
    path = write(
        tmp_path,
        "p.jsonl",
        jsonl(
            {
                "id": "q1",
                "prompt": "Capital of France?",
                "category": "factual-qa",
                "reference_answers": ["Paris"],
            },
            {"id": 2, "text": "Write a poem.", "metadata": {"source": "me"}},
            "",
        ),
    )
    assert import_prompts(study, path) == 2
    q1, q2 = study.prompts.order_by("position")
    assert (q1.source_id, q1.category, q1.reference_answers) == ("q1", "factual-qa", ["Paris"])
    assert (q2.source_id, q2.text, q2.category, q2.metadata) == ("2", "Write a poem.", "", {"source": "me"})


def test_csv_with_json_list_and_pipe_separated_references(tmp_path, study):
    path = write(
        tmp_path,
        "p.csv",
        (
            "id,prompt,category,reference_answers\n"
            'a,"Largest planet?",factual-qa,"[""Jupiter""]"\n'
            'b,"Who wrote Hamlet?",factual-qa,Shakespeare | William Shakespeare\n'
            'c,"A multi-line\nprompt",open-ended,\n'
        ),
    )
    assert import_prompts(study, path) == 3
    rows = {p.source_id: p for p in study.prompts.all()}
    assert rows["a"].reference_answers == ["Jupiter"]
    assert rows["b"].reference_answers == ["Shakespeare", "William Shakespeare"]
    assert rows["c"].text == "A multi-line\nprompt" and rows["c"].reference_answers == []


def test_upload_like_file_object_and_positions_continue(study):
    import_prompts(study, io.BytesIO(jsonl({"id": "x", "prompt": "one"}).encode()), fmt="jsonl")
    upload = io.BytesIO(b"id,text\ny,two\n")
    upload.name = "more.csv"
    assert import_prompts(study, upload) == 1
    assert list(study.prompts.order_by("position").values_list("source_id", "position")) == [
        ("x", 0),
        ("y", 1),
    ]


def test_broken_json_line_names_file_and_line(tmp_path, study):
    path = write(
        tmp_path,
        "bad.jsonl",
        jsonl(
            {"id": "1", "prompt": "ok"},
            '{"id": "2", "prompt": "oops"',
        ),
    )
    message = refused(import_prompts, study, path)
    assert "bad.jsonl: line 2: broken JSON" in message


def test_non_object_json_line(tmp_path, study):
    message = refused(import_prompts, study, write(tmp_path, "arr.jsonl", '["a", "b"]\n'))
    assert "arr.jsonl: line 1: expected a JSON object, got list" in message


@pytest.mark.parametrize(
    "row, expected",
    [
        ({"id": "1"}, "line 1: missing prompt"),
        ({"id": "1", "prompt": "   "}, "line 1: empty prompt"),
        ({"id": "1", "prompt": 5}, "line 1: 'prompt' must be text"),
        ({"prompt": "no id"}, "line 1: missing id"),
        ({"id": "", "prompt": "x"}, "line 1: empty id"),
        ({"id": "1", "prompt": "x", "text": "y"}, "line 1: both 'prompt' and 'text' given"),
        (
            {"id": "1", "prompt": "x", "reference_answers": [1, 2]},
            "line 1: reference_answers must be a list of strings",
        ),
        ({"id": "1", "prompt": "x", "metadata": [1]}, "line 1: metadata must be a JSON object"),
    ],
)
def test_bad_prompt_rows(tmp_path, study, row, expected):
    message = refused(import_prompts, study, write(tmp_path, "rows.jsonl", jsonl(row)))
    assert f"rows.jsonl: {expected}" in message


def test_csv_missing_and_empty_prompt(tmp_path, study):
    path = write(tmp_path, "p.csv", "id,prompt\na,fine\nb,\n,orphan\n")
    message = refused(import_prompts, study, path)
    assert "p.csv: line 3: empty prompt" in message
    assert "p.csv: line 4: empty id" in message


def test_duplicate_ids_in_file(tmp_path, study):
    path = write(
        tmp_path,
        "dup.jsonl",
        jsonl({"id": "a", "prompt": "1"}, {"id": "b", "prompt": "2"}, {"id": "a", "prompt": "3"}),
    )
    assert "dup.jsonl: line 3: duplicate id 'a' (first on line 1)" in refused(import_prompts, study, path)


def test_duplicate_ids_against_existing_prompts(tmp_path, study):
    import_prompts(study, write(tmp_path, "first.jsonl", jsonl({"id": "a", "prompt": "1"})))
    path = write(tmp_path, "second.jsonl", jsonl({"id": "b", "prompt": "2"}, {"id": "a", "prompt": "again"}))
    assert "second.jsonl: line 2: id 'a' already exists in study 'imp'" in refused(
        import_prompts, study, path
    )
    assert study.prompts.count() == 1


def test_unknown_columns_jsonl_and_csv(tmp_path, study):
    message = refused(
        import_prompts, study, write(tmp_path, "u.jsonl", jsonl({"id": "1", "prompt": "x", "lang": "en"}))
    )
    assert "u.jsonl: line 1: unknown column(s) 'lang'" in message
    message = refused(import_prompts, study, write(tmp_path, "u.csv", "id,prompt,answer\n1,x,y\n"))
    assert "u.csv: line 1: unknown column(s) 'answer'" in message


def test_csv_row_with_wrong_number_of_fields(tmp_path, study):
    message = refused(import_prompts, study, write(tmp_path, "w.csv", "id,prompt\n1,x\n2,y,extra\n"))
    assert "w.csv: line 3: 3 fields, but the header has 2 columns" in message


def test_non_utf8_bytes(tmp_path, study):
    content = b'{"id": "1", "prompt": "ok"}\n{"id": "2", "prompt": "caf\xe9"}\n'
    message = refused(import_prompts, study, write(tmp_path, "latin1.jsonl", content))
    assert "latin1.jsonl: line 2: not UTF-8 text (byte 0xe9)" in message


def test_utf8_bom_is_accepted(tmp_path, study):
    assert import_prompts(study, write(tmp_path, "bom.csv", "\ufeffid,prompt\n1,héllo\n")) == 1


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_file(tmp_path, study, content):
    assert "empty.jsonl: file is empty" in refused(
        import_prompts, study, write(tmp_path, "empty.jsonl", content)
    )


def test_csv_header_only(tmp_path, study):
    assert "file has a header but no rows" in refused(
        import_prompts, study, write(tmp_path, "h.csv", "id,prompt\n")
    )


def test_huge_file_is_refused_by_size_and_by_rows(tmp_path, study):
    path = write(tmp_path, "big.jsonl", jsonl(*({"id": str(i), "prompt": "x" * 50} for i in range(100))))
    message = refused(import_prompts, study, path, limits=ImportLimits(max_bytes=1000))
    assert "big.jsonl: file is larger than the 1,000-byte limit" in message
    message = refused(import_prompts, study, path, limits=ImportLimits(max_rows=10))
    assert "big.jsonl: line 11: more than 10 rows" in message


def test_all_errors_reported_up_to_cap(tmp_path, study):
    path = write(tmp_path, "many.jsonl", jsonl(*({"id": str(i), "prompt": ""} for i in range(50))))
    with pytest.raises(ImportFileError) as info:
        import_prompts(study, path, limits=ImportLimits(max_errors=5))
    assert len(info.value.problems) == 5 and info.value.truncated
    assert "stopped after 5 errors" in str(info.value)
    assert not Prompt.objects.exists()


def test_live_study_prompts_are_frozen(tmp_path, make_study):
    live = make_study(slug="live")
    build_comparisons(live)
    lifecycle.transition(live, Study.Status.READY)
    lifecycle.launch(live)
    message = refused(import_prompts, live, write(tmp_path, "p.jsonl", jsonl({"id": "new", "prompt": "x"})))
    assert "study 'live' is live: its prompts cannot be edited" in message


# --- responses ------------------------------------------------------------------------------


@pytest.fixture
def imported_model(tmp_path, study):
    import_prompts(
        study,
        write(
            tmp_path,
            "prompts.jsonl",
            jsonl({"id": "a", "prompt": "A?"}, {"id": "b", "prompt": "B?"}, {"id": "c", "prompt": "C?"}),
        ),
    )
    return LanguageModel.objects.create(study=study, alias="gpt", role="teacher", backend="imported")


def test_import_responses_jsonl_and_csv(tmp_path, imported_model):
    path = write(
        tmp_path,
        "r.jsonl",
        jsonl(
            {"id": "a", "response": "Answer A"},
            {"id": "b", "output": "Answer B"},
            {"id": "a", "text": "A again", "sample_index": 1},
        ),
    )
    assert import_responses(imported_model, path) == 3
    path = write(tmp_path, "r.csv", "id,response,sample_index\nc,Answer C,\n")
    assert import_responses(imported_model, path) == 1
    got = {(r.prompt.source_id, r.sample_index): r for r in imported_model.responses.select_related("prompt")}
    assert (
        got[("a", 0)].text == "Answer A"
        and got[("a", 1)].text == "A again"
        and got[("c", 0)].text == "Answer C"
    )
    assert got[("b", 0)].backend == "imported" and len(got[("b", 0)].fingerprint) == 64


def test_responses_unknown_prompt_id_and_bad_rows(tmp_path, imported_model):
    path = write(
        tmp_path,
        "r.jsonl",
        jsonl(
            {"id": "a", "response": "ok"},
            {"id": "zzz", "response": "who?"},
            {"id": "b", "response": ""},
            {"id": "c", "response": "x", "sample_index": -1},
            {"id": "a", "response": "dup"},
            {"id": "b", "answer": "x"},
        ),
    )
    message = refused(import_responses, imported_model, path)
    assert "r.jsonl: line 2: unknown prompt id 'zzz': study 'imp' has no such prompt" in message
    assert "r.jsonl: line 3: empty response" in message
    assert "r.jsonl: line 4: sample_index must be a whole number" in message
    assert "r.jsonl: line 5: duplicate response for prompt 'a', sample 0 (first on line 1)" in message
    assert "r.jsonl: line 6: unknown column(s) 'answer'" in message


def test_responses_existing_answer_is_refused(tmp_path, imported_model):
    import_responses(imported_model, write(tmp_path, "r1.jsonl", jsonl({"id": "a", "response": "first"})))
    message = refused(
        import_responses, imported_model, write(tmp_path, "r2.jsonl", jsonl({"id": "a", "response": "2"}))
    )
    assert "r2.jsonl: line 1: model 'gpt' already has sample 0 for prompt 'a'" in message


def test_responses_only_for_imported_backend(tmp_path, imported_model):
    hf = LanguageModel.objects.create(study=imported_model.study, alias="small", backend="hf")
    message = refused(import_responses, hf, write(tmp_path, "r.jsonl", jsonl({"id": "a", "response": "x"})))
    assert "model 'small' has backend 'hf'; only 'imported' models take a file" in message


# --- management commands --------------------------------------------------------------------


def test_import_commands(tmp_path, study, capsys):
    prompts = write(tmp_path, "p.jsonl", jsonl({"id": "a", "prompt": "A?"}))
    call_command("import_prompts", "imp", str(prompts))
    LanguageModel.objects.create(study=study, alias="gpt", role="teacher", backend="imported")
    call_command("import_responses", "imp", "gpt", str(write(tmp_path, "r.csv", "id,response\na,yes\n")))
    out = capsys.readouterr().out
    assert "Imported 1 prompt" in out and "Imported 1 response" in out
    assert Response.objects.get().text == "yes"


def test_import_commands_fail_with_message(tmp_path, study):
    bad = write(tmp_path, "bad.jsonl", '{"id": 1,\n')
    with pytest.raises(CommandError, match="bad.jsonl: line 1: broken JSON"):
        call_command("import_prompts", "imp", str(bad))
    with pytest.raises(CommandError, match="No study with slug 'nope'"):
        call_command("import_prompts", "nope", str(bad))
    with pytest.raises(CommandError, match="No model 'ghost' in study 'imp'"):
        call_command("import_responses", "imp", "ghost", str(bad))
    with pytest.raises(CommandError, match="not found"):
        call_command("import_prompts", "imp", str(tmp_path / "missing.jsonl"))
    assert not Prompt.objects.exists()


# --- review fixes -----------------------------------------------------------------------------


@pytest.mark.parametrize("char", ["\u2028", "\u2029", "\u0085"])
def test_jsonl_line_separators_inside_strings_are_data(tmp_path, study, char):
    # json.dumps(ensure_ascii=False) leaves these unescaped, as JSON allows; only "\n" ends a line.
    rows = [{"id": "a", "prompt": f"one{char}two"}, {"id": "b", "prompt": "fine"}]
    content = "".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in rows)
    assert import_prompts(study, write(tmp_path, "sep.jsonl", content)) == 2
    assert study.prompts.get(source_id="a").text == f"one{char}two"
    # Line numbers still count "\n" only.
    bad = write(tmp_path, "sep2.jsonl", content.replace('"b"', "b"))
    assert "sep2.jsonl: line 2: broken JSON" in refused(import_prompts, study, bad)


@pytest.mark.parametrize(
    "row, field",
    [
        ({"id": "x1", "prompt": "a\u0000b"}, "prompt"),
        ({"id": "x\u00001", "prompt": "ab"}, "id"),
        ({"id": "x1", "prompt": "ab", "category": "c\u0000"}, "category"),
        ({"id": "x1", "prompt": "ab", "reference_answers": ["ok", "b\u0000d"]}, "reference_answers"),
        ({"id": "x1", "prompt": "ab", "metadata": {"k": ["v\u0000"]}}, "metadata"),
        ({"id": "x1", "prompt": "ab", "metadata": {"k\u0000": 1}}, "metadata"),
    ],
)
def test_nul_characters_are_refused_with_line(tmp_path, study, row, field):
    path = write(tmp_path, "nul.jsonl", jsonl({"id": "ok", "prompt": "fine"}, row))
    message = refused(import_prompts, study, path)
    assert f"nul.jsonl: line 2: {field} contains a NUL character" in message


def test_nul_in_csv_metadata_escape_and_in_responses(tmp_path, study, imported_model):
    path = write(tmp_path, "nul.csv", 'id,prompt,metadata\nz,fine,"{""k"": ""a\\u0000b""}"\n')
    assert "nul.csv: line 2: metadata contains a NUL character" in refused(import_prompts, study, path)
    path = write(tmp_path, "r.jsonl", jsonl({"id": "a", "response": "x\u0000"}))
    assert "r.jsonl: line 1: response contains a NUL character" in refused(
        import_responses, imported_model, path
    )


def test_nul_in_pipe_separated_reference_answers_is_a_line_numbered_error(tmp_path, study):
    # Regression: the "a|b" form returned before the NUL check, so the row reached jsonb and
    # PostgreSQL refused it at write time (a 500 in the admin upload).
    path = write(tmp_path, "refs.csv", "id,prompt,reference_answers\nok,fine,a|b\nbad,fine,ok|b\x00d\n")
    message = refused(import_prompts, study, path)
    assert "refs.csv: line 3: reference_answers contains a NUL character" in message
    good = write(tmp_path, "good.csv", "id,prompt,reference_answers\nok,fine, a | |b \n")
    assert import_prompts(study, good) == 1
    assert Prompt.objects.get(source_id="ok").reference_answers == ["a", "b"]


@pytest.mark.parametrize("value", ["²", "١", "1²", "9" * 5000])
def test_sample_index_accepts_only_ascii_digits(tmp_path, imported_model, value):
    path = write(tmp_path, "r.csv", f"id,response,sample_index\na,hello,{value}\n")
    assert "r.csv: line 2: sample_index must be a whole number" in refused(
        import_responses, imported_model, path
    )


def test_concurrent_duplicate_prompt_is_an_import_error(tmp_path, study, monkeypatch):
    # Another writer adds the same id after this upload was validated: the unique constraint
    # fires at bulk_create and must come back as an ImportFileError, not a 500.
    original = Prompt.objects.bulk_create

    def racing_bulk_create(objs, **kwargs):
        Prompt.objects.create(study=study, source_id="a", text="from the other upload", position=99)
        return original(objs, **kwargs)

    monkeypatch.setattr(Prompt.objects, "bulk_create", racing_bulk_create)
    path = write(tmp_path, "race.jsonl", jsonl({"id": "a", "prompt": "mine"}))
    with pytest.raises(ImportFileError, match="race.jsonl: .*at the same time"):
        import_prompts(study, path)
    assert not study.prompts.exists()


def test_concurrent_duplicate_response_is_an_import_error(tmp_path, imported_model, monkeypatch):
    original = Response.objects.bulk_create
    prompt = imported_model.study.prompts.get(source_id="a")

    def racing_bulk_create(objs, **kwargs):
        Response.objects.create(prompt=prompt, model=imported_model, sample_index=0, text="other")
        return original(objs, **kwargs)

    monkeypatch.setattr(Response.objects, "bulk_create", racing_bulk_create)
    path = write(tmp_path, "race.jsonl", jsonl({"id": "a", "response": "mine"}))
    with pytest.raises(ImportFileError, match="race.jsonl: .*at the same time"):
        import_responses(imported_model, path)
    assert not imported_model.responses.exists()


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_uploads_of_the_same_ids(tmp_path):
    # Both uploads validate under the study lock, so the second sees the first's rows and is
    # refused with a line number (with the old read-before-lock it could hit an IntegrityError).
    import threading

    from django.db import connection

    study = Study.objects.create(slug="race", title="Race", completion_code="C0DE")
    paths = [write(tmp_path, f"u{i}.jsonl", jsonl({"id": "a", "prompt": f"upload {i}"})) for i in range(2)]
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def upload(path):
        try:
            barrier.wait()
            outcomes.append(import_prompts(study, path))
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test checks
            outcomes.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=upload, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    # (an import's count is an int subclass that also names the format it read)
    assert sorted(("int" if isinstance(o, int) else type(o).__name__) for o in outcomes) == ["ImportFileError", "int"]
    (error,) = [o for o in outcomes if isinstance(o, ImportFileError)]
    assert "line 1: id 'a' already exists in study 'race'" in str(error)
    assert study.prompts.count() == 1
