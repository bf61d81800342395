"""Study ownership in the admin: the same rule as the API and the report pages.

A staff researcher sees the rows of studies they own or that are shared with them, and changes,
deletes or runs actions only on those they own; a superuser sees and changes everything.

Saves and deletes go through the apps' actions; an :class:`~.errors.ActionError` one of them raises
while the admin saves (a rule the form could not check beforehand, or a race) rolls the whole
save back and comes back as an error message on the page, never as a 500.

Nothing of another researcher's studies shows anywhere: the rows a form may refer to (selects
and raw-id fields alike) are those of studies the user owns, the raw-id and autocomplete lookups
go through the related admin's scoped ``get_queryset``, and the study filter of every changelist
(:func:`study_filter`) lists only the studies the user sees.
"""

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import ValidationError
from django.db import models
from django.http import HttpRequest, HttpResponseRedirect

from evalsite.edge import JSONFormField

from .access import can_change_study, changeable_rows, visible_studies
from .errors import ActionError
from .models import Study


def study_filter(path: str = "study") -> type[admin.SimpleListFilter]:
    """A changelist filter on the study at ``path`` listing only the studies the user sees.

    Django's own related-field filter lists every study's title; this one keeps the same query
    parameter (``study__id__exact``, ``model__study__id__exact`` …), so links to it still work.
    """

    class VisibleStudyFilter(admin.SimpleListFilter):
        title = "study"
        parameter_name = f"{path}__id__exact"
        is_study_filter = True  # its parameter is allowed however many relations it spans

        def lookups(self, request: HttpRequest, model_admin):
            studies = visible_studies(request.user).order_by("title", "pk").values_list("pk", "title")
            return [(str(pk), title) for pk, title in studies]

        def queryset(self, request: HttpRequest, queryset):
            if self.value() is None:
                return queryset
            try:
                return queryset.filter(**{f"{path}__pk": self.value()})
            except (ValueError, ValidationError) as exc:
                raise IncorrectLookupParameters(exc) from exc

    VisibleStudyFilter.__name__ = VisibleStudyFilter.__qualname__ = f"VisibleStudyFilter_{path}"
    return VisibleStudyFilter


def scope_choices(db_field, request: HttpRequest, kwargs: dict) -> None:
    """Limit a form field's choices to rows of studies the user may change (superusers: all).

    Raw-id fields validate against the same queryset, so a typed-in id of another study's row is
    a form error, not a silent reference.
    """
    if "queryset" in kwargs or request.user.is_superuser:
        return
    rows = changeable_rows(request.user, db_field.related_model)
    if rows is None:
        return  # users (owner, shared with): not a study's rows
    kwargs["queryset"] = rows
    opts = db_field.related_model._meta
    if db_field.related_model is Study:
        message = "Study %(value)s is not one you own: choose one of your studies."
    else:
        message = (
            f"{str(opts.verbose_name).capitalize()} %(value)s is not in a study you own: "
            f"choose one of your own studies' {opts.verbose_name_plural}."
        )
    kwargs.setdefault("error_messages", {"invalid_choice": message})


class StudyScopedAdmin(admin.ModelAdmin):
    study_path = "study"  # ORM path from a row to its study; "" for the Study admin itself
    # JSON typed into the admin meets the same rules as the API's bodies (finite numbers, bounded
    # depth, valid Unicode, no NUL): a value no store can hold is a form error, not a 500.
    formfield_overrides = {models.JSONField: {"form_class": JSONFormField}}

    def changeform_view(self, request: HttpRequest, object_id=None, form_url="", extra_context=None):
        try:
            # Django runs the save in a transaction: an error leaves the database as it was.
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ActionError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def delete_view(self, request: HttpRequest, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except ActionError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def _prefix(self) -> str:
        return f"{self.study_path}__" if self.study_path else ""

    def study_of(self, obj) -> Study:
        for part in filter(None, self.study_path.split("__")):
            obj = getattr(obj, part)
        return obj

    def get_queryset(self, request: HttpRequest):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{f"{self._prefix()}pk__in": visible_studies(request.user).values("pk")})

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        allowed = super().has_view_permission(request, obj)
        return allowed and (obj is None or visible_studies(request.user).filter(pk=self.study_of(obj).pk).exists())

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or can_change_study(request.user, self.study_of(obj)))

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or can_change_study(request.user, self.study_of(obj)))

    def get_action(self, action):
        """Actions (launch, close, block …) run only on rows of studies the user owns."""
        found = super().get_action(action)
        if found is None:
            return None
        func, name, description = found

        def scoped(modeladmin, request: HttpRequest, queryset):
            if not request.user.is_superuser:
                queryset = queryset.filter(**{f"{self._prefix()}owner": request.user})
            return func(modeladmin, request, queryset)

        return scoped, name, description

    def lookup_allowed(self, lookup, value, request=None) -> bool:
        # Django allows a query parameter spanning two relations (model__study__id__exact) only
        # when it names a list_filter entry; the study filter's parameter is one.
        filters = self.get_list_filter(request) if request is not None else self.list_filter
        if any(getattr(item, "is_study_filter", False) and item.parameter_name == lookup for item in filters):
            return True
        return super().lookup_allowed(lookup, value, request)

    def formfield_for_foreignkey(self, db_field, request: HttpRequest, **kwargs):
        scope_choices(db_field, request, kwargs)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request: HttpRequest, **kwargs):
        scope_choices(db_field, request, kwargs)
        return super().formfield_for_manytomany(db_field, request, **kwargs)
