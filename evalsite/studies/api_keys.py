"""Which environment variables a model's ``api_key_env`` may name, and which hosts ``api_base`` may.

A worker sends the named variable as a bearer token to the model's ``api_base``. Were any name
allowed, a researcher could have ``SECRET_KEY`` or ``DATABASE_URL`` sent to a host of their
choosing; so only variables meant to hold endpoint keys qualify: names starting with
``EVALSITE_API_KEY_`` and those listed in the comma-separated ``EVALSITE_API_KEY_VARS``
(default ``OPENAI_API_KEY``). Where ``EVALSITE_API_HOSTS`` is set (comma-separated host names),
``api_base`` must point at one of them, so prompts and keys go nowhere else.
"""

import os
from urllib.parse import urlsplit

PREFIX = "EVALSITE_API_KEY_"


def allowed_key_variables() -> set[str]:
    listed = os.environ.get("EVALSITE_API_KEY_VARS", "OPENAI_API_KEY")
    return {name.strip() for name in listed.split(",") if name.strip()}


def check_api_key_env(name: str) -> str | None:
    """None if ``name`` may be sent to an endpoint, else the message saying why not and what to do."""
    if not isinstance(name, str) or not name:
        return "api_key_env must be the name of an environment variable."
    if name.startswith(PREFIX) or name in allowed_key_variables():
        return None
    return (
        f"api_key_env {name!r} is not an API-key variable: use a name starting with {PREFIX} "
        "(e.g. EVALSITE_API_KEY_TEACHER) or list it in EVALSITE_API_KEY_VARS on the workers and web server."
    )


def check_api_base(url: str) -> str | None:
    """None if ``url`` is an http(s) URL on an allowed host, else the message saying what to do."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in {"http", "https"} or not parts.hostname:
        return f"api_base must be an http(s) URL such as http://host:8000/v1, not {url!r}."
    allowed = {h.strip().lower() for h in os.environ.get("EVALSITE_API_HOSTS", "").split(",") if h.strip()}
    if allowed and parts.hostname.lower() not in allowed:
        return (
            f"api_base host {parts.hostname!r} is not in EVALSITE_API_HOSTS ({', '.join(sorted(allowed))}): "
            "ask an administrator to add it."
        )
    return None
