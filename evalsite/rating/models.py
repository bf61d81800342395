"""Raters, their leases on comparisons (assignments) and their ratings."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from evalsite.studies.models import Comparison, Study, other_study, refuse_move, related_or_none


class Rater(models.Model):
    """One person's participation in one study (a Prolific/MTurk worker, a link visitor, or staff)."""

    class Platform(models.TextChoices):
        PROLIFIC = "prolific", "Prolific"
        MTURK = "mturk", "MTurk"
        LINK = "link", "Direct link"
        STAFF = "staff", "Staff (expert)"
        EXPERT = "expert", "Invited expert"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="raters")
    platform = models.CharField(max_length=10, choices=Platform.choices)
    external_id = models.CharField(max_length=200, help_text="Platform worker id; never exported raw.")
    pseudonym = models.CharField(max_length=32, db_index=True, help_text="Stable per study, safe to export.")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    is_expert = models.BooleanField(default=False)
    platform_data = models.JSONField(default=dict, blank=True)  # session/study/assignment/hit ids, turkSubmitTo
    consented_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    blocked = models.BooleanField(default=False)
    blocked_reason = models.CharField(max_length=200, blank=True)
    tasks_submitted = models.PositiveIntegerField(default=0)
    attention_passed = models.PositiveIntegerField(default=0)
    attention_failed = models.PositiveIntegerField(default=0)
    too_fast = models.PositiveIntegerField(default=0)
    # A researcher's unblock overrides the attention rule for the failures seen so far: only
    # failures beyond these count towards blocking again (quality.apply).
    attention_failures_forgiven = models.PositiveIntegerField(default=0)
    unblocked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "created_at"]
        constraints = [
            models.UniqueConstraint(fields=["study", "platform", "external_id"], name="rater_unique_in_study")
        ]

    def __str__(self) -> str:
        return f"{self.platform}:{self.pseudonym}"

    def clean(self) -> None:
        super().clean()
        errors: dict = {}
        refuse_move(self, errors, "study", self.study_id, "study_id", "A rater")
        if errors:
            raise ValidationError(errors)


class Assignment(models.Model):
    """A rater's lease on a comparison. The token is the only handle the page ever sees."""

    class Status(models.TextChoices):
        LIVE = "live", "Live"
        SUBMITTED = "submitted", "Submitted"
        EXPIRED = "expired", "Expired"

    class Side(models.TextChoices):
        A = "A", "Response A on the left"
        B = "B", "Response B on the left"

    rater = models.ForeignKey(Rater, on_delete=models.CASCADE, related_name="assignments")
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="assignments")
    token = models.CharField(max_length=43, unique=True)
    left_side = models.CharField(max_length=1, choices=Side.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.LIVE)
    leased_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    submitted_at = models.DateTimeField(null=True, blank=True)
    # Which kind of slot the lease holds: an expert's (n_expert_*) or the crowd's (n_live/n_submitted).
    expert = models.BooleanField(default=False, db_default=False)
    # Adaptive allocation only: the probability, at lease time, that this comparison's model pair
    # was drawn (assignment.py). None: the uniform path (attention checks, experts, uniform studies).
    selection_probability = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["rater", "comparison"], name="assignment_once_per_rater"),
            models.UniqueConstraint(
                fields=["rater"], condition=Q(status="live"), name="assignment_one_live_lease_per_rater"
            ),
        ]
        indexes = [models.Index(fields=["status", "expires_at"], name="assignment_expiry_idx")]

    def __str__(self) -> str:
        return f"{self.rater} → {self.comparison_id} ({self.status})"

    def clean(self) -> None:
        """The rater and the comparison are of one study (the lease engine picks them so)."""
        super().clean()
        rater, comparison = related_or_none(self, "rater"), related_or_none(self, "comparison")
        if rater is not None and comparison is not None and comparison.study_id != rater.study_id:
            raise ValidationError({"comparison": other_study("comparison") + " (not the rater's)"})


class Rating(models.Model):
    """One verdict. ``winner`` refers to the comparison's stored A/B, not to the screen sides."""

    class Winner(models.TextChoices):
        A = "A", "A better"
        B = "B", "B better"
        TIE = "tie", "Tie"
        BOTH_BAD = "both_bad", "Both bad"

    class Correctness(models.TextChoices):
        CORRECT = "correct", "Factually correct"
        ERROR = "error", "Contains an error"
        UNSURE = "unsure", "Can't tell"

    assignment = models.OneToOneField(Assignment, on_delete=models.CASCADE, related_name="rating")
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="ratings")
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="ratings")
    rater = models.ForeignKey(Rater, on_delete=models.CASCADE, related_name="ratings")
    winner = models.CharField(max_length=8, choices=Winner.choices)
    strength = models.PositiveSmallIntegerField(null=True, blank=True)  # 1..5
    # {"A": {"fluent": 1-5, "confident": 1-5}, "B": {...}}
    style = models.JSONField(default=dict, blank=True)
    correct_a = models.CharField(max_length=8, choices=Correctness.choices, blank=True)
    correct_b = models.CharField(max_length=8, choices=Correctness.choices, blank=True)
    # [{"response": "A"|"B", "start": int, "end": int, "text": str}], offsets into the response's raw text
    error_spans = models.JSONField(default=list, blank=True)
    rationale = models.TextField(blank=True)
    server_seconds = models.FloatField()
    client_seconds = models.FloatField(null=True, blank=True)
    attention_passed = models.BooleanField(null=True, blank=True)
    flagged = models.BooleanField(default=False, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(strength__isnull=True) | Q(strength__gte=1, strength__lte=5), name="rating_strength_1_5"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rater} on {self.comparison_id}: {self.winner}"

    def clean(self) -> None:
        """The rating's study, comparison and rater are its assignment's."""
        super().clean()
        errors: dict = {}
        for name in ("comparison", "rater"):
            row = related_or_none(self, name)
            if row is not None and self.study_id is not None and row.study_id != self.study_id:
                errors[name] = other_study(name)
        assignment = related_or_none(self, "assignment")
        if assignment is not None:
            if self.comparison_id is not None and assignment.comparison_id != self.comparison_id:
                errors.setdefault("comparison", "Not the comparison of the rating's assignment.")
            if self.rater_id is not None and assignment.rater_id != self.rater_id:
                errors.setdefault("rater", "Not the rater of the rating's assignment.")
        if errors:
            raise ValidationError(errors)
