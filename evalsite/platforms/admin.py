"""Read-only admin pages: what is on the platforms, the bonuses, and the audit log.

Every change goes through :mod:`.actions` (the study page's buttons or the API), so nothing here
can be edited, added or deleted.
"""

from django.contrib import admin

from evalsite.studies.admin_access import StudyScopedAdmin

from .models import AuditEntry, Bonus, PlatformStudy, PlatformSubmission


class ReadOnly(StudyScopedAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(PlatformStudy)
class PlatformStudyAdmin(ReadOnly):
    list_display = ("study", "platform", "external_id", "state", "places", "reward_cents", "last_synced_at")
    list_filter = ("platform", "state")


@admin.register(PlatformSubmission)
class PlatformSubmissionAdmin(ReadOnly):
    study_path = "link__study"
    list_display = ("external_id", "link", "status", "decision", "decision_sent", "lease_released_at")
    list_filter = ("link__platform", "status", "decision")


@admin.register(Bonus)
class BonusAdmin(ReadOnly):
    study_path = "link__study"
    list_display = ("submission", "amount_cents", "state", "key", "sent_at", "paid_at")
    list_filter = ("state", "link__platform")


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnly):
    list_display = ("created_at", "study", "platform", "action", "ok", "actor", "message")
    list_filter = ("platform", "action", "ok")
