"""A live two-turn MT-bench study built from the sample files: prompts and both models' answers imported."""

from pathlib import Path

import pytest

from evalsite.studies import lifecycle
from evalsite.studies.importers import import_prompts, import_responses
from evalsite.studies.models import LanguageModel, Study
from evalsite.studies.pairing import build_comparisons

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def mt_bench_live():
    """``build(slug)``: 3 two-turn questions, a teacher and an imitation (imported), 6 comparisons, live."""

    def build(slug: str = "mtb-live", **fields) -> Study:
        fields = {"attention_check_rate": 0.0, "min_seconds_per_task": 0.0, "tasks_per_rater": 10, "redundancy": 1,
                  **fields}
        study = Study.objects.create(slug=slug, title="MT-bench", completion_code="DONE", **fields)
        import_prompts(study, FIXTURES / "mt_bench_question.jsonl")
        for alias, role in (("teacher", "teacher"), ("imitation", "imitation")):
            model = LanguageModel.objects.create(study=study, alias=alias, role=role, backend="imported")
            import_responses(model, FIXTURES / f"mt_bench_answers_{alias}.jsonl")
        assert build_comparisons(study) == 6
        lifecycle.transition(study, Study.Status.READY)
        lifecycle.launch(study)
        return study

    return build
