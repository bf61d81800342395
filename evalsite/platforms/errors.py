"""What a platform call can end in, besides success, and how an action reports it.

The distinction that matters for money: :class:`Refused` means the platform answered and did not
do it (a 4xx), so doing it again later is safe; :class:`Unsure` means nobody knows (a timeout, a
dropped connection, a 5xx): the platform may have done it, so a call that is not idempotent
(Prolific's bonus payment) must not simply be repeated.
"""

from evalsite.studies.errors import ActionError


class PlatformError(Exception):
    """A platform call that did not succeed; ``str()`` is a message fit for the researcher."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


class Refused(PlatformError):
    """The platform answered and refused (HTTP 4xx, an AWS RequestError): nothing happened."""


class Unsure(PlatformError):
    """No answer, or a server error: the request may or may not have taken effect."""


class NotConfigured(Refused):
    """Credentials or settings are missing here (no token variable, no AWS credentials)."""


class PlatformActionFailed(ActionError):
    """An action stopped because the platform refused or did not answer (HTTP 502 in the API)."""

    status_code = 502
