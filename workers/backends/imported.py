"""Imported backend: answers read from a JSONL file instead of generated.

``model_path`` is the file. Each line is an object with the prompt's id (``source_id``, ``prompt_id``
or ``id``), the answer (``response``, ``output``, ``text`` or ``completion``) and optionally
``sample_index``; lines without an id are matched on the prompt text (``prompt``). MT-bench /
Arena-Hard answer files (``question_id``, ``choices[i].turns``) work as they are: turn k answers the
prompt of the question's k-th turn.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from evalsite import edge
from evalsite.studies.formats import mt_bench_answer_rows
from evalsite.studies.model_paths import check_model_path

from .base import (
    ChatPrompt,
    DecodingParams,
    GenerationBackend,
    GenerationError,
    GenerationResult,
    ModelNotFound,
)

ID_KEYS = ("source_id", "prompt_id", "id")
TEXT_KEYS = ("response", "output", "text", "completion")


class ImportedBackend(GenerationBackend):
    name = "imported"

    def __init__(self, model_path: str, engine_options: dict[str, Any] | None = None) -> None:
        super().__init__(model_path, engine_options)
        # As for local models: only files under the model roots (evalsite.studies.model_paths).
        if problem := check_model_path(self.name, model_path):
            raise ModelNotFound(problem)
        path = Path(model_path)
        if not path.is_file():
            raise ModelNotFound(
                f"Answer file {model_path!r} does not exist: upload it or fix the model path."
            )
        self.file_name = path.name
        self.digest = hashlib.sha256(path.read_bytes()).hexdigest()
        self.by_id: dict[tuple[str, int], str] = {}
        self.by_text: dict[tuple[str, int], str] = {}
        # Split on "\n" only: str.splitlines() also splits on U+2028, U+2029, U+0085 and other
        # characters that JSON allows unescaped inside strings, breaking valid answers apart.
        for n, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
            line = line.removesuffix("\r")
            if not line.strip():
                continue
            try:
                row = edge.loads(line, f"{path.name} line {n}")
                if isinstance(row, dict) and "choices" in row and ("question_id" in row or "uid" in row):
                    self._add_turns(row, path.name, n)  # MT-bench / Arena-Hard answers: one row per question
                    continue
                text = next(str(row[k]) for k in TEXT_KEYS if k in row)
                sample = int(row.get("sample_index", 0))
            except (ValueError, StopIteration, TypeError, AttributeError) as exc:
                raise GenerationError(
                    f"{path.name} line {n} is not an answer object with one of {', '.join(TEXT_KEYS)} "
                    "and an integer sample_index."
                ) from exc
            key = next((str(row[k]) for k in ID_KEYS if k in row), None)
            if key is not None:
                self.by_id[(key, sample)] = text
            if "prompt" in row:
                self.by_text[(str(row["prompt"]).strip(), sample)] = text

    def _add_turns(self, row: dict, file_name: str, line: int) -> None:
        """``choices[i].turns[k]`` answers the question's turn k+1 (prompt id ``81``, ``81:turn2``…), sample i."""

        def refuse(message: str) -> None:
            raise GenerationError(f"{file_name} line {line}: {message}")

        for answer in mt_bench_answer_rows(row, refuse):
            self.by_id[(answer["id"], answer["sample_index"])] = answer["response"]

    def version(self) -> str:
        return "1"

    def fingerprint(self) -> str:
        return self.digest

    def default_batch_size(self) -> int:
        return int(self.engine_options.get("batch_size", 500))

    def generate(self, prompts: list[ChatPrompt], params: DecodingParams) -> list[GenerationResult]:
        results = []
        for p in prompts:
            text = self.by_id.get((p.key, p.sample_index))
            if text is None:
                text = self.by_text.get((p.text.strip(), p.sample_index))
            if text is None:
                results.append(
                    GenerationResult(
                        error=f"No answer for prompt {p.key!r} (sample {p.sample_index}) in {self.file_name}."
                    )
                )
            else:
                results.append(GenerationResult(text=text, finish_reason="imported", latency_ms=0.0))
        return results
