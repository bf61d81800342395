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


def study_path(model, _depth: int = 0) -> str | None:
    """The ORM path from a row of ``model`` to its study: "" for Study, "study", "prompt__study" …

    None for a model that belongs to no study (users, say).
    """
    if model is Study:
        return ""
    if _depth > 3:
        return None
    foreign_keys = [f for f in model._meta.get_fields() if f.many_to_one and f.concrete]
    for field in foreign_keys:
        if field.related_model is Study:
            return field.name
    for field in foreign_keys:
        inner = study_path(field.related_model, _depth + 1)
        if inner:
            return f"{field.name}__{inner}"
    return None


def changeable_rows(user, model) -> QuerySet | None:
    """Rows of ``model`` in studies ``user`` may change (owned; all for a superuser).

    What a researcher may refer to from a row they write: a comparison's prompt, a response's
    model … None where ``model`` belongs to no study.
    """
    path = study_path(model)
    if path is None:
        return None
    rows = model._default_manager.all()
    if user.is_superuser:
        return rows
    if not (user.is_authenticated and user.is_staff):
        return rows.none()
    return rows.filter(**{f"{path}__owner" if path else "owner": user})
