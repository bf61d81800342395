"""The errors an action raises when its rules refuse a write.

Every ``actions.py`` (studies, rating, generation) raises these, so each caller maps them the
same way: the admin shows the message, the API answers ``status_code`` with it, a command stops
with it. They are :class:`~django.core.exceptions.ValidationError` subclasses, so raised from a
form's or a serializer's validation they become that form's (or that 400's) error as they are.
This module imports nothing of the project, so any app's actions can use it.
"""

from django.core.exceptions import ValidationError


class ActionError(ValidationError):
    """A write the rules refuse; the message says why and what to do instead (HTTP 400)."""

    status_code = 400

    def __str__(self) -> str:
        if hasattr(self, "error_dict"):
            return "\n".join(
                f"{field}: {message}" if field != "__all__" else message
                for field, errors in self.message_dict.items()
                for message in errors
            )
        return "\n".join(self.messages)


class ActionConflict(ActionError):
    """The object's current state forbids the write (a live study, an already blocked rater): 409."""

    status_code = 409


class ActionForbidden(ActionError):
    """The person may see the object but not change it (a study shared read-only): 403."""

    status_code = 403


class StudyFrozen(ActionConflict):
    """A live or closed study's models and rating form cannot change: ratings refer to them."""


class ImportRefused(ActionError):
    """An uploaded file was refused whole; ``messages`` lists every problem, file and line."""
