"""The API's exception handler: Django's own refusals of a request become JSON like DRF's."""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from rest_framework.exceptions import ParseError
from rest_framework.renderers import JSONRenderer
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    """A body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` or with too many fields: a JSON 400 saying so,
    instead of Django's HTML page.

    Every refusal is ``application/json``, as the schema documents it, also where the request
    chose an export's format (``?format=jsonl``, ``Accept: text/csv``): the export renderers would
    otherwise label the JSON error as CSV, JSON Lines or Parquet.
    """
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        exc = ParseError(f"The body is larger than {limit:,} bytes; send less at a time.")
    elif isinstance(exc, TooManyFieldsSent):
        exc = ParseError(f"The form has more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS:,} fields.")
    response = drf_exception_handler(exc, context)
    request = context.get("request")
    renderer = getattr(request, "accepted_renderer", None)
    if response is not None and renderer is not None and not isinstance(renderer, JSONRenderer):
        if renderer.media_type != "text/html":  # the browsable API renders its own error page
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type
    return response
