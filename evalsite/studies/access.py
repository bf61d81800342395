"""Who sees and who changes a study: one rule for the admin, the API and the report pages."""

from django.db.models import Q, QuerySet

from .models import Study


def visible_studies(user) -> QuerySet[Study]:
    """The studies ``user`` may read through the API: owned or shared, all for a superuser."""
    if not (user and user.is_authenticated and user.is_staff):
        return Study.objects.none()
    if user.is_superuser:
        return Study.objects.all()
    # A subquery instead of a join keeps the result free of duplicates without DISTINCT,
    # which would otherwise get in the way of ordering and streaming.
    shared = Study.shared_with.through.objects.filter(user=user).values("study_id")
    return Study.objects.filter(Q(owner=user) | Q(pk__in=shared))


def can_change_study(user, study: Study) -> bool:
    """Only the owner (or a superuser) changes a study; collaborators it is shared with only read."""
    return bool(user.is_superuser or (study.owner_id is not None and study.owner_id == user.pk))
