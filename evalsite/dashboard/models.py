"""Cached analysis reports and LLM-as-judge verdicts."""

from django.core.exceptions import ValidationError
from django.db import models

from evalsite.studies.models import Comparison, LanguageModel, Study, other_study, related_or_none


class StudyReport(models.Model):
    """The last computed report of a study (the analysis is a Celery task; pages read this)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="reports")
    # Options the report was computed with (include_flagged, include_attention, n_boot, seed).
    options = models.JSONField(default=dict)
    options_key = models.CharField(max_length=64)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    payload = models.JSONField(null=True, blank=True)
    svgs = models.JSONField(default=dict, blank=True)  # plot name -> SVG text
    n_ratings = models.PositiveIntegerField(default=0)
    # What it was computed from (reports.source_fingerprint): the page compares it with the study
    # as it is now and says when the report is out of date.
    sources = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    computed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["study", "options_key"], name="report_unique_options")]

    def __str__(self) -> str:
        return f"report of {self.study.slug} ({self.status})"


class JudgeVerdict(models.Model):
    """One LLM judge's verdict on one comparison in one presentation order."""

    class Order(models.TextChoices):
        AB = "AB", "A shown first"
        BA = "BA", "B shown first"

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="judge_verdicts")
    judge = models.ForeignKey(LanguageModel, on_delete=models.CASCADE, related_name="verdicts")
    order = models.CharField(max_length=2, choices=Order.choices)
    # In the judge's own terms: "A" = the answer it was shown first, "B" = second, or "tie";
    # empty when the output could not be parsed. analysis.judge.combine_orders maps them back.
    verdict = models.CharField(max_length=4, blank=True)
    raw_output = models.TextField(blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["comparison", "judge", "order"], name="judge_verdict_once_per_order")
        ]

    def __str__(self) -> str:
        return f"{self.judge.alias} on {self.comparison_id} ({self.order}): {self.verdict or '?'}"

    def clean(self) -> None:
        super().clean()
        judge, comparison = related_or_none(self, "judge"), related_or_none(self, "comparison")
        if judge is not None and comparison is not None and judge.study_id != comparison.study_id:
            raise ValidationError({"judge": other_study("judge") + " (not the comparison's)"})
