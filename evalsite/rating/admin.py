"""Admin for raters (with per-rater quality statistics), and read-only assignments and ratings.

Assignments, ratings and the counters on raters belong to the lease engine: the admin shows them
and never writes them (``manage.py repair_counters`` recomputes the counters from the rows).
Blocking and unblocking go through :mod:`.actions`.
"""

from __future__ import annotations

import statistics
from collections import Counter

from django.contrib import admin, messages
from django.db.models import Count, Q

from evalsite.studies.admin_access import StudyScopedAdmin, study_filter
from evalsite.studies.errors import ActionError

from . import actions
from .models import Assignment, Rater, Rating


class ReadOnlyAdmin(StudyScopedAdmin):
    """Rows the engine writes: listed, filtered and viewed, never added, changed or deleted here."""

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Rater)
class RaterAdmin(StudyScopedAdmin):
    list_display = (
        "pseudonym",
        "study",
        "platform",
        "tasks_submitted",
        "attention_passed",
        "attention_failed",
        "too_fast",
        "n_flagged",
        "blocked",
        "consented_at",
        "completed_at",
    )
    list_filter = (study_filter(), "platform", "blocked", "is_expert")
    search_fields = ("pseudonym", "external_id")
    readonly_fields = (
        "study",  # a rater's assignments and ratings are that study's: the rater never moves
        "pseudonym",
        "platform_data",
        "blocked",  # through the block / unblock actions, which flag ratings and free the lease
        "blocked_reason",
        "unblocked_at",
        "attention_failures_forgiven",
        "tasks_submitted",
        "attention_passed",
        "attention_failed",
        "too_fast",
        "consented_at",
        "completed_at",
        "created_at",
        "median_seconds",
        "majority_agreement",
    )
    actions = ("block_raters", "unblock_raters")

    # Raw platform ids (Prolific/MTurk worker ids) are for superusers only; researchers work
    # with the per-study pseudonym, as in every export.
    def get_search_fields(self, request):
        fields = super().get_search_fields(request)
        return fields if request.user.is_superuser else tuple(f for f in fields if f != "external_id")

    def get_exclude(self, request, obj=None):
        excluded = tuple(super().get_exclude(request, obj) or ())
        return excluded if request.user.is_superuser else (*excluded, "external_id")

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("study")
            .annotate(_flagged=Count("ratings", filter=Q(ratings__flagged=True)))
        )

    @admin.display(description="flagged", ordering="_flagged")
    def n_flagged(self, obj: Rater) -> int:
        return obj._flagged

    @admin.display(description="median seconds per task (server)")
    def median_seconds(self, obj: Rater) -> str:
        times = list(obj.ratings.values_list("server_seconds", flat=True))
        return f"{statistics.median(times):.1f}" if times else "–"

    @admin.display(description="agreement with the other raters' majority")
    def majority_agreement(self, obj: Rater) -> str:
        """Share of this rater's verdicts that match the majority of the others on the same comparison."""
        mine = dict(obj.ratings.values_list("comparison_id", "winner"))
        others = Rating.objects.filter(comparison_id__in=mine).exclude(rater=obj).values_list("comparison_id", "winner")
        votes: dict[int, Counter] = {}
        for comparison_id, winner in others:
            votes.setdefault(comparison_id, Counter())[winner] += 1
        judged = [(mine[c], v.most_common(1)[0][0]) for c, v in votes.items()]
        if not judged:
            return "–"
        agree = sum(1 for own, majority in judged if own == majority)
        return f"{agree}/{len(judged)} ({100 * agree / len(judged):.0f}%)"

    def has_add_permission(self, request):
        return False  # raters come from the rater pages

    @admin.action(description="Block the selected raters (flags their ratings)")
    def block_raters(self, request, queryset):
        reason = f"Blocked by {request.user.get_username()}."
        done = self._each(request, queryset, lambda rater: actions.block_rater(rater, reason, request.user))
        if done:
            messages.success(request, f"Blocked {done} rater(s); their ratings are flagged.")

    @admin.action(description="Unblock the selected raters (their past attention failures are forgiven)")
    def unblock_raters(self, request, queryset):
        done = self._each(request, queryset, lambda rater: actions.unblock_rater(rater, request.user))
        if done:
            messages.success(request, f"Unblocked {done} rater(s).")

    def _each(self, request, queryset, action) -> int:
        done = 0
        for rater in queryset:
            try:
                action(rater)
            except ActionError as exc:
                messages.warning(request, str(exc))
            else:
                done += 1
        return done


@admin.register(Assignment)
class AssignmentAdmin(ReadOnlyAdmin):
    study_path = "comparison__study"

    list_display = (
        "id",
        "rater",
        "comparison",
        "status",
        "left_side",
        "leased_at",
        "expires_at",
        "submitted_at",
    )
    list_filter = ("status", study_filter("comparison__study"))
    search_fields = ("rater__pseudonym",)
    list_select_related = ("rater", "comparison__prompt")


@admin.register(Rating)
class RatingAdmin(ReadOnlyAdmin):
    """Ratings are evidence: readable and filterable here, never edited."""

    list_display = (
        "id",
        "study",
        "comparison",
        "rater",
        "winner",
        "strength",
        "correct_a",
        "correct_b",
        "attention_passed",
        "flagged",
        "server_seconds",
        "created_at",
    )
    list_filter = (
        study_filter(),
        "winner",
        "flagged",
        "attention_passed",
        "comparison__is_attention_check",
        "correct_a",
        "correct_b",
    )
    search_fields = ("rater__pseudonym", "rationale")
    list_select_related = ("study", "rater", "comparison__prompt")
