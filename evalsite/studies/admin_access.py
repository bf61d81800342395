"""Study ownership in the admin: the same rule as the API and the report pages.

A staff researcher sees the rows of studies they own or that are shared with them, and changes,
deletes or runs actions only on those they own; a superuser sees and changes everything.
"""

from django.contrib import admin
from django.http import HttpRequest

from .access import can_change_study, visible_studies
from .models import Study


class StudyScopedAdmin(admin.ModelAdmin):
    study_path = "study"  # ORM path from a row to its study; "" for the Study admin itself

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

    def formfield_for_foreignkey(self, db_field, request: HttpRequest, **kwargs):
        if db_field.related_model is Study and not request.user.is_superuser:
            kwargs["queryset"] = Study.objects.filter(owner=request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)
