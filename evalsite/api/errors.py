"""The API's exception handler: Django's own refusals of a request become JSON like DRF's."""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from rest_framework.exceptions import ParseError
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    """A body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` or with too many fields: a JSON 400 saying so,
    instead of Django's HTML page."""
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        exc = ParseError(f"The body is larger than {limit:,} bytes; send less at a time.")
    elif isinstance(exc, TooManyFieldsSent):
        exc = ParseError(f"The form has more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS:,} fields.")
    return drf_exception_handler(exc, context)
