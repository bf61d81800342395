"""Where the platforms' credentials come from: the environment, never the database.

A Prolific API token is read from the environment variable the platform study names
(``PlatformStudy.token_env``). The name follows the rule of model endpoint keys
(:mod:`evalsite.studies.api_keys`): it starts with ``EVALSITE_API_KEY_`` or is listed in
``EVALSITE_API_KEY_VARS``, so a link can never have ``SECRET_KEY`` or ``DATABASE_URL`` sent to
Prolific. The default name is per study: ``EVALSITE_API_KEY_PROLIFIC_<SLUG>`` (the slug upper-cased,
``-`` as ``_``), so two studies can use two workspaces' tokens.

MTurk uses boto3's standard AWS environment (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE``, a web-identity or container role); the EC2 instance role is only consulted when
``EVALSITE_MTURK_INSTANCE_ROLE=1`` (otherwise a missing key would make every call probe the
instance metadata address first).
"""

from __future__ import annotations

import os
import re

from evalsite.studies.api_keys import PREFIX, check_api_key_env

__all__ = ["check_token_env", "default_token_env", "read_token"]


def default_token_env(slug: str) -> str:
    return f"{PREFIX}PROLIFIC_{re.sub(r'[^A-Z0-9]', '_', slug.upper())}"


def check_token_env(name: str) -> str | None:
    """None if ``name`` may hold a Prolific token, else what is wrong (the model-key rule)."""
    problem = check_api_key_env(name)
    return problem.replace("api_key_env", "The Prolific token variable") if problem else None


def read_token(name: str) -> str | None:
    """The token in ``name``, or None when the name is not allowed or the variable is unset/empty."""
    if check_token_env(name):
        return None
    value = os.environ.get(name, "").strip()
    return value or None
