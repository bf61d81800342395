"""A study's presence on a crowd platform, the submissions seen there, bonuses and the audit log.

Nothing secret is stored: the Prolific token is read from the environment variable the link names
(``token_env``), AWS credentials from the standard AWS environment.
"""

from django.conf import settings
from django.db import models


class Platform(models.TextChoices):
    PROLIFIC = "prolific", "Prolific"
    MTURK = "mturk", "MTurk"


class PlatformStudy(models.Model):
    """One study on one platform: the Prolific study or the MTurk HIT that sends raters to evalsite."""

    study = models.ForeignKey("studies.Study", on_delete=models.CASCADE, related_name="platform_links")
    platform = models.CharField(max_length=10, choices=Platform.choices)
    external_id = models.CharField(max_length=100, blank=True, help_text="Prolific study id or MTurk HIT id.")
    state = models.CharField(max_length=40, blank=True, help_text="The platform's own status, as last read.")
    places = models.PositiveIntegerField(default=0, help_text="Prolific places / MTurk MaxAssignments.")
    places_taken = models.PositiveIntegerField(default=0)
    reward_cents = models.PositiveIntegerField(default=0, help_text="Reward per submission, in cents/pence.")
    currency = models.CharField(max_length=3, blank=True)
    estimated_minutes = models.PositiveIntegerField(default=0)
    token_env = models.CharField(
        max_length=100, blank=True, help_text="Prolific: the environment variable holding the API token (never stored)."
    )
    sandbox = models.BooleanField(default=True, help_text="MTurk: the requester sandbox (no real money).")
    # MTurk's UniqueRequestToken of CreateHIT: a retried create never makes a second HIT.
    request_token = models.CharField(max_length=64, blank=True)
    config = models.JSONField(default=dict, blank=True)  # description, completion codes, lifetime …
    last_synced_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["study", "platform"]
        verbose_name = "platform study"
        constraints = [models.UniqueConstraint(fields=["study", "platform"], name="platform_study_once")]

    def __str__(self) -> str:
        return f"{self.study.slug} on {self.get_platform_display()} ({self.external_id or 'not created'})"


class PlatformSubmission(models.Model):
    """A Prolific submission or an MTurk assignment, as last read, and what evalsite decided about it."""

    class Decision(models.TextChoices):
        NONE = "", "Not decided"
        APPROVE = "approve", "Approve"
        REJECT = "reject", "Reject"
        RETURN = "return", "Ask to return"

    link = models.ForeignKey(PlatformStudy, on_delete=models.CASCADE, related_name="submissions")
    external_id = models.CharField(max_length=100, help_text="Prolific submission id (SESSION_ID) / assignmentId.")
    worker_id = models.CharField(max_length=100)
    rater = models.ForeignKey("rating.Rater", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=40, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # The decision is recorded before it is sent; ``decision_sent`` says the platform took it.
    decision = models.CharField(max_length=10, choices=Decision.choices, blank=True, default="")
    decision_reason = models.TextField(blank=True)
    decision_category = models.CharField(max_length=30, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_sent = models.BooleanField(default=False)
    decision_error = models.TextField(blank=True)
    lease_released_at = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["link", "id"]
        constraints = [models.UniqueConstraint(fields=["link", "external_id"], name="platform_submission_once")]

    def __str__(self) -> str:
        return f"{self.external_id} ({self.status})"


class Bonus(models.Model):
    """One bonus to one participation, recorded before anything is sent so it is never paid twice.

    ``pending``: recorded, not sent (or the platform refused it for sure: then ``failed``);
    ``sending``: a pay request went out and its outcome is not known (a timeout, a lost connection,
    a 5xx): it is never sent again automatically; a later check confirms it, or the researcher
    decides after looking at the platform; ``paid``: the platform accepted it.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sent, not confirmed"
        PAID = "paid", "Paid"
        FAILED = "failed", "Refused by the platform"

    link = models.ForeignKey(PlatformStudy, on_delete=models.CASCADE, related_name="bonuses")
    submission = models.ForeignKey(PlatformSubmission, on_delete=models.PROTECT, related_name="bonuses")
    key = models.CharField(max_length=200, help_text="Idempotency key within the platform study: label + submission.")
    amount_cents = models.PositiveIntegerField()
    reason = models.CharField(max_length=300, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING, db_index=True)
    # MTurk's UniqueRequestToken (and our reference on Prolific): the same for every retry.
    request_token = models.CharField(max_length=64, unique=True)
    batch_id = models.CharField(max_length=100, blank=True, help_text="Prolific bulk bonus payment id.")
    attempts = models.PositiveSmallIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["link", "id"]
        verbose_name_plural = "bonuses"
        constraints = [
            models.UniqueConstraint(fields=["link", "key"], name="bonus_once_per_key"),
            models.CheckConstraint(condition=models.Q(amount_cents__gt=0), name="bonus_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.amount_cents / 100:.2f} to {self.submission.external_id} ({self.state})"


class AuditEntry(models.Model):
    """One action on a crowd platform: who, what, the outcome and the platform's answer."""

    study = models.ForeignKey("studies.Study", on_delete=models.CASCADE, related_name="platform_audit")
    link = models.ForeignKey(PlatformStudy, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit")
    platform = models.CharField(max_length=10, choices=Platform.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    action = models.CharField(max_length=40)
    ok = models.BooleanField(default=True)
    message = models.TextField(blank=True)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        who = self.actor.get_username() if self.actor_id else "system"
        return f"{self.created_at:%Y-%m-%d %H:%M} {who} {self.platform} {self.action}: {'ok' if self.ok else 'failed'}"
