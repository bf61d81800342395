"""The OpenAPI schema documents every status code the API answers, errors included.

drf-spectacular documents the success codes and whatever a view declares; the refusals every
operation can give (a bad query string or body, missing credentials, no such object, a throttled
login) are added here, so a client (and the randomized schema test) can check each answer against
the schema.
"""

from drf_spectacular import openapi
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import AllowAny

ERROR_BODY = {
    "type": "object",
    "additionalProperties": {},
    "description": '{"detail": "..."} or, for invalid fields, {"field": ["message", ...]}',
}


class AutoSchema(openapi.AutoSchema):
    def _error_codes(self) -> dict[str, str]:
        codes = {"400": "Invalid input: the message says what to fix."}
        if not any(isinstance(p, AllowAny) for p in self.view.get_permissions()):
            codes["401"] = "No credentials, or invalid ones."
            codes["403"] = "Not a researcher, or not allowed to change this study."
        paginator = self._get_paginator()
        if "{" in self.path or isinstance(paginator, CursorPagination):
            codes["404"] = "No such object (or not visible to you), or an invalid cursor."
        if self.method in ("POST", "PUT", "PATCH"):
            codes["415"] = "Unsupported body media type."
        if getattr(self.view, "throttle_classes", None):
            codes["429"] = "Too many requests: retry after the Retry-After header's seconds."
        return codes

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code, description in self._error_codes().items():
            if code not in responses:
                responses[code] = {
                    "description": description,
                    "content": {"application/json": {"schema": ERROR_BODY}},
                }
        return responses
