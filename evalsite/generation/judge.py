"""LLM-as-judge: ask a judge model to compare each pair, in both orders.

The judge is any LanguageModel of the study (any generation backend). Each comparison is asked
twice, with A first and with B first; verdicts are stored in the judge's own terms and combined
by :func:`evalsite.analysis.judge.combine_orders` (inconsistent orders count as ties). Runs in the
Celery task ``workers.tasks.judge_study``; the admin sends it with :func:`.jobs.enqueue_judge`.
"""

from __future__ import annotations

import logging
import re

from django.db import transaction

from evalsite.dashboard.models import JudgeVerdict
from evalsite.studies.models import Comparison, LanguageModel
from workers.backends.base import ChatPrompt, DecodingParams, get_backend

log = logging.getLogger(__name__)

JUDGE_SYSTEM = (
    "You are an impartial judge. Compare two assistant answers to the user's question. "
    "Judge factual correctness first, then helpfulness; do not let length, formatting or a "
    "confident tone sway you, and ignore the order in which the answers appear."
)
JUDGE_TEMPLATE = """[Question]
{question}

[Answer A]
{first}

[Answer B]
{second}

Explain briefly, then end with exactly one verdict: [[A]] if answer A is better, [[B]] if answer B
is better, or [[C]] for a tie."""

_VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")


def judge_prompt(question: str, first: str, second: str, key: str = "") -> ChatPrompt:
    """The chat prompt for one presentation order."""
    text = JUDGE_TEMPLATE.format(question=question, first=first, second=second)
    return ChatPrompt(text=text, system=JUDGE_SYSTEM, key=key)


def parse_verdict(output: str) -> str:
    """"A", "B" or "tie" from the judge's last ``[[X]]`` marker; "" when there is none."""
    found = _VERDICT.findall(output or "")
    if not found:
        return ""
    return {"A": "A", "B": "B", "C": "tie"}[found[-1]]


def pending_judgements(study_id: int, judge: LanguageModel) -> list[tuple[Comparison, str]]:
    """(comparison, order) pairs this judge has not answered yet; attention checks are skipped."""
    done = set(JudgeVerdict.objects.filter(judge=judge, comparison__study_id=study_id)
               .values_list("comparison_id", "order"))
    comparisons = (Comparison.objects.filter(study_id=study_id, is_attention_check=False)
                   .select_related("prompt", "response_a", "response_b").order_by("id"))
    return [(c, order) for c in comparisons for order in ("AB", "BA") if (c.pk, order) not in done]


def run_judge(study_id: int, judge_id: int, batch_size: int = 16) -> int:
    """Judge every pending (comparison, order) of a study; returns how many verdicts were stored.

    Re-running only asks what is missing; a verdict is written once per (comparison, judge, order).
    """
    judge = LanguageModel.objects.get(pk=judge_id, study_id=study_id)
    backend = get_backend(judge)
    # Greedy and short: the verdict should not depend on sampling luck.
    params = DecodingParams(temperature=0.0, top_p=1.0, max_tokens=min(judge.max_tokens, 512), seed=judge.seed)
    todo = pending_judgements(study_id, judge)
    stored = 0
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        prompts = []
        for comparison, order in batch:
            a, b = comparison.response_a.text, comparison.response_b.text
            first, second = (a, b) if order == "AB" else (b, a)
            prompts.append(judge_prompt(comparison.prompt.text, first, second, key=f"{comparison.pk}:{order}"))
        results = backend.generate(prompts, params)
        rows = [
            JudgeVerdict(comparison=comparison, judge=judge, order=order,
                         verdict=parse_verdict(result.text) if not result.error else "",
                         raw_output=result.text, error=result.error)
            for (comparison, order), result in zip(batch, results, strict=True)
        ]
        with transaction.atomic():
            JudgeVerdict.objects.bulk_create(rows, ignore_conflicts=True)
        stored += len(rows)
        log.info("judge %s on study %s: %d/%d", judge.alias, study_id, start + len(batch), len(todo))
    return stored
