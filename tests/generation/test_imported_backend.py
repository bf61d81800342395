"""The imported backend reads answer files line by line, where only "\\n" ends a line."""

import json

import pytest

from workers.backends.base import ChatPrompt, DecodingParams, GenerationError
from workers.backends.imported import ImportedBackend


@pytest.mark.parametrize("char", ["\u2028", "\u2029", "\u0085"])
def test_unicode_line_separators_inside_answers(tmp_path, char):
    rows = [{"id": "p0", "response": f"first{char}second"}, {"id": "p1", "response": "plain"}]
    path = tmp_path / "answers.jsonl"
    # ensure_ascii=False writes the separator unescaped, which JSON allows; CRLF endings too.
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in rows), encoding="utf-8")
    backend = ImportedBackend(str(path))
    results = backend.generate([ChatPrompt("?", key="p0"), ChatPrompt("?", key="p1")], DecodingParams())
    assert [r.text for r in results] == [f"first{char}second", "plain"]


def test_bad_sample_index_is_a_clear_error(tmp_path):
    path = tmp_path / "answers.jsonl"
    path.write_text('{"id": "p1", "text": "fine"}\n{"id": "p2", "text": "x", "sample_index": "two"}\n')
    with pytest.raises(GenerationError, match="line 2 .* integer sample_index"):
        ImportedBackend(str(path))
