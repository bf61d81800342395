"""Who may use the API, and which studies each researcher sees.

Raters never hold a Django user (their session is a signed cookie), so to the API they are
anonymous and get 401 like anyone else without credentials. Only staff users ("researchers") may
call the API; each sees the studies they own or that are shared with them, a superuser sees all.
Reading is open to owners and collaborators; changing a study (editing it, adding models or
prompts, launching, closing, deleting) is for its owner and superusers.
"""

from rest_framework.permissions import SAFE_METHODS, BasePermission

from evalsite.studies.access import can_change_study, visible_studies
from evalsite.studies.models import Study

__all__ = ["IsResearcher", "StudyWriteAccess", "can_change_study", "visible_studies"]


class IsResearcher(BasePermission):
    """An authenticated staff user. Everyone else: 401 without credentials, 403 with them."""

    message = "The API is for researchers (staff users). Ask an administrator for staff access."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_staff)


class StudyWriteAccess(BasePermission):
    """Object-level check: reads need visibility (enforced by the queryset), writes need ownership."""

    message = "Only the study's owner can change it; it is shared with you read-only."

    def has_object_permission(self, request, view, obj) -> bool:
        if request.method in SAFE_METHODS:
            return True
        study = obj if isinstance(obj, Study) else obj.study
        return can_change_study(request.user, study)
