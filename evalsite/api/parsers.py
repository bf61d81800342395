"""Request-body parsers that apply the edge rules (:mod:`evalsite.edge`) before any view sees the data.

DRF's own JSON parser accepts lone surrogates, NUL, integers of any size and nesting deep enough
to crash the decoder, and reads a body of any length; these refuse each with a 400 that says what
to fix. The form parsers refuse NUL in a field (PostgreSQL cannot store it).
"""

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError

from evalsite import edge


def _max_body_bytes() -> int:
    return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)


class JSONParser(parsers.JSONParser):
    """JSON within the edge rules, at most ``DATA_UPLOAD_MAX_MEMORY_SIZE`` bytes."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = _max_body_bytes()
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise ParseError(f"The body is larger than {limit:,} bytes; send less at a time.")
        try:
            return edge.loads(raw, "The JSON body")
        except edge.EdgeError as exc:
            raise ParseError(str(exc)) from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


class FormParser(parsers.FormParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        try:
            edge.check_query(data, "The form")
        except edge.EdgeError as exc:
            raise ParseError(str(exc)) from None
        return data


class MultiPartParser(parsers.MultiPartParser):
    def parse(self, stream, media_type=None, parser_context=None):
        result = super().parse(stream, media_type, parser_context)
        try:
            edge.check_query(result.data, "The form")
        except edge.EdgeError as exc:
            raise ParseError(str(exc)) from None
        return result
