"""Edge validation: the rules every input a user controls meets before any other code sees it.

One rule set for rater forms, import files, API bodies and query strings, and URLs:

- text is valid Unicode and holds no NUL character (PostgreSQL can store neither a lone surrogate
  nor ``\\u0000``);
- JSON numbers are finite (no ``NaN`` / ``Infinity``) and integers lie within ±(2**53 - 1), the
  range every JSON reader keeps exactly;
- JSON values nest at most :data:`MAX_JSON_DEPTH` levels.

A refusal is an :class:`EdgeError` whose message says what to fix; the callers turn it into a 400
(the middleware below, the API's parsers, the rater pages) or a line-numbered import error. This
module imports nothing of the project's, so every layer can use it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.forms.fields import InvalidJSONInput
from django.http import HttpRequest, HttpResponse, JsonResponse

MAX_JSON_DEPTH = 32
MAX_JSON_INT = 2**53 - 1
_SURROGATE = re.compile("[\ud800-\udfff]")


class EdgeError(ValueError):
    """An input breaks an edge rule; ``str()`` says which and what to do about it."""


def check_text(value: str, where: str) -> str:
    """``value`` if it has no NUL and no lone surrogate, else :class:`EdgeError` naming ``where``."""
    if "\x00" in value:
        raise EdgeError(f"{where} contains a NUL character (\\u0000); remove it.")
    if match := _SURROGATE.search(value):
        raise EdgeError(
            f"{where} contains a lone surrogate (U+{ord(match.group()):04X}), which is not valid Unicode; "
            "send UTF-8 text."
        )
    return value


def check_json(value: Any, where: str) -> Any:
    """``value`` (a decoded JSON value) if it meets the edge rules, else :class:`EdgeError`.

    Walks the value without recursion, so a deep value is refused rather than crashing the check.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            check_text(item, where)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if abs(item) > MAX_JSON_INT:
                raise EdgeError(
                    f"{where} has a number too large ({str(item)[:12]}…); whole numbers must lie within "
                    f"±{MAX_JSON_INT:,}."
                )
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise EdgeError(f"{where} has a number that is not finite ({item}); use finite numbers only.")
        elif isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise EdgeError(f"{where} is nested more than {MAX_JSON_DEPTH} levels deep; flatten it.")
            if isinstance(item, dict):
                for key, inner in item.items():
                    check_text(str(key), where)
                    stack.append((inner, depth + 1))
            else:
                stack.extend((inner, depth + 1) for inner in item)
        else:  # not a JSON value at all (a programming error upstream); refuse rather than store it
            raise EdgeError(f"{where} holds a {type(item).__name__}, which is not a JSON value.")
    return value


def _refuse_constant(name: str):
    raise EdgeError(f"{name} is not a number JSON allows; use finite numbers only.")


def decode(text: str | bytes, where: str) -> Any:
    """Decode JSON, refusing what :func:`json.loads` would accept or crash on but no store can hold.

    Broken syntax raises :class:`json.JSONDecodeError` (as :func:`json.loads` does, so callers can
    point at the column); ``NaN`` / ``Infinity``, a number of thousands of digits, nesting deep
    enough to exhaust the parser and bytes that are not UTF-8 raise :class:`EdgeError`. The decoded
    value is not otherwise checked: :func:`loads` does both.
    """
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise EdgeError(f"{where} is nested more than {MAX_JSON_DEPTH} levels deep; flatten it.") from None
    except EdgeError as exc:
        raise EdgeError(f"{where}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise EdgeError(f"{where} is not UTF-8 text ({exc.reason}).") from None
    except ValueError:  # an integer of more digits than Python converts
        raise EdgeError(f"{where} has a number too large; whole numbers must lie within ±{MAX_JSON_INT:,}.") from None


def loads(text: str | bytes, where: str) -> Any:
    """:func:`decode`, then :func:`check_json` on the value."""
    return check_json(decode(text, where), where)


class JSONFormField(forms.JSONField):
    """A form's JSON field held to the edge rules: NaN / Infinity, an integer of thousands of
    digits, deep nesting, a lone surrogate or NUL is a form error that says so, not a traceback or
    a database error. For every JSON field a form shows, e.g. on a ``ModelAdmin``:
    ``formfield_overrides = {models.JSONField: {"form_class": edge.JSONFormField}}``."""

    def to_python(self, value):
        try:
            converted = super().to_python(value)
        except RecursionError:
            raise ValidationError(f"Nested more than {MAX_JSON_DEPTH} levels deep; flatten it.") from None
        except ValueError:  # an integer of more digits than Python converts
            raise ValidationError(
                f"A number is too large; whole numbers must lie within ±{MAX_JSON_INT:,}."
            ) from None
        if self.disabled:
            return converted
        try:
            return check_json(converted, "This field")
        except EdgeError as exc:
            raise ValidationError(str(exc)) from None

    def bound_data(self, data, initial):
        # A refused value is shown again as typed: decoded, a lone surrogate could not be sent.
        try:
            value = super().bound_data(data, initial)
        except (RecursionError, ValueError):
            return InvalidJSONInput(data)
        if not self.disabled and not isinstance(value, InvalidJSONInput):
            try:
                check_json(value, "This field")
            except EdgeError:
                return InvalidJSONInput(data)
        return value


def check_fields(values: dict) -> None:
    """A row of named values (an import file's row): each value checked under its own name."""
    for key, value in values.items():
        check_text(str(key), "a column name")
        check_json(value, str(key)[:40])


def check_query(query, where: str) -> None:
    """Every key and value of a ``QueryDict`` (a query string or a form body) meets :func:`check_text`."""
    for key, values in query.lists():
        check_text(key, f"{where} field name {key[:40]!r}")
        for value in values:
            check_text(value, f"{where} field {key[:40]!r}")


def _refusal(request: HttpRequest, message: str) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message}, status=400)
    return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")


class EdgeMiddleware:
    """Refuses (400) a request whose path, query string or credentials break the edge rules.

    Django decodes paths and query strings leniently (invalid UTF-8 becomes U+FFFD) but keeps NUL,
    which PostgreSQL refuses at query time: a NUL anywhere in a URL would otherwise be a 500 in
    whichever view looks it up. Bodies are checked where they are parsed (the API's parsers, the
    rater pages, the importers), after the size caps there.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            check_text(request.path, "The address")
            check_query(request.GET, "The query string")
            check_text(request.META.get("HTTP_AUTHORIZATION", ""), "The Authorization header")
        except EdgeError as exc:
            return _refusal(request, str(exc))
        return self.get_response(request)


def client_address(request) -> str | None:
    """The caller's IP address: ``REMOTE_ADDR``, or behind the proxy (``BEHIND_PROXY=1``) the address
    the proxy appended last to ``X-Forwarded-For`` (earlier entries are the client's to forge).
    None when there is no request address (a login made in code)."""
    import ipaddress

    from django.conf import settings

    meta = getattr(request, "META", None) or {}
    candidates = [meta.get("REMOTE_ADDR", "")]
    if getattr(settings, "BEHIND_PROXY", False):
        candidates.insert(0, meta.get("HTTP_X_FORWARDED_FOR", "").split(",")[-1].strip())
    for candidate in candidates:
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    return None


def page_not_found(request, exception):
    """``handler404``: an address no route matches (a slug with characters a slug cannot have, say)
    answers JSON under ``/api/``, like every other API answer; elsewhere Django's page."""
    from django.views import defaults

    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def bad_request(request, exception):
    """``handler400`` (a body over the size limit, too many fields …): JSON under ``/api/``."""
    from django.views import defaults

    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Bad request: " + (str(exception) or "the request could not be read.")},
                            status=400)
    return defaults.bad_request(request, exception)
