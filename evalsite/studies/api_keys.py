"""Which environment variables a model's ``api_key_env`` may name, and which hosts ``api_base`` may.

A worker sends the named variable as a bearer token to the model's ``api_base``. Were any name
allowed, a researcher could have ``SECRET_KEY`` or ``DATABASE_URL`` sent to a host of their
choosing; so only variables meant to hold endpoint keys qualify: names starting with
``EVALSITE_API_KEY_`` and those listed in the comma-separated ``EVALSITE_API_KEY_VARS``
(default ``OPENAI_API_KEY``). Where ``EVALSITE_API_HOSTS`` is set (comma-separated host names),
``api_base`` must point at one of them, so prompts and keys go nowhere else.

``api_base`` never reaches the server's own network unless an administrator says so: a host that is
or resolves to a loopback, private, link-local (the cloud metadata service, 169.254.169.254),
shared, reserved or multicast address is refused unless it is listed in ``EVALSITE_API_HOSTS``
(a local vLLM server: ``EVALSITE_API_HOSTS=127.0.0.1``, plus any public hosts the models use). It
is checked when a model is saved and again when a worker connects, so a name that later resolves
elsewhere is caught too.
"""

import ipaddress
import os
import socket
from urllib.parse import urlsplit

METADATA_HOSTS = {
    "metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal"
}

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


def allowed_hosts() -> set[str]:
    return {h.strip().lower().strip("[]") for h in os.environ.get("EVALSITE_API_HOSTS", "").split(",") if h.strip()}


def _internal(address: str) -> bool:
    """True for an address of the server's own networks: anything not globally routable."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return True  # not an address we can judge: refuse rather than guess
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def resolve(host: str, port: int) -> list[str] | None:
    """The addresses ``host`` resolves to, or None when it does not resolve (here, now)."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError, ValueError):
        return None
    return sorted({info[4][0] for info in infos})


def check_api_base(url: str) -> str | None:
    """None if ``url`` is an http(s) URL on an allowed host, else the message saying what to do.

    A name that does not resolve here passes (the web server may not see the workers' DNS, and a
    worker cannot connect to it anyway); the worker checks again before it connects.
    """
    parts = urlsplit(url) if isinstance(url, str) else None
    try:
        port = parts.port if parts is not None else None
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in {"http", "https"} or not parts.hostname:
        return f"api_base must be an http(s) URL such as http://host:8000/v1, not {url!r}."
    if parts.username or parts.password:
        return "api_base must not carry a user name or password; name the key's variable in api_key_env."
    host = parts.hostname.lower()
    allowed = allowed_hosts()
    if host in allowed:
        return None  # an administrator vouched for it, a local vLLM server included
    if allowed:
        return (
            f"api_base host {parts.hostname!r} is not in EVALSITE_API_HOSTS ({', '.join(sorted(allowed))}): "
            "ask an administrator to add it."
        )
    internal = (
        f"api_base host {parts.hostname!r} is on this server's own network ({{}}); such hosts need an "
        "administrator to list them in EVALSITE_API_HOSTS (a local vLLM server: EVALSITE_API_HOSTS=127.0.0.1)."
    )
    if host in METADATA_HOSTS or host == "localhost" or host.endswith((".localhost", ".internal", ".local")):
        return internal.format("a local or metadata name")
    addresses = resolve(host, port or (443 if parts.scheme == "https" else 80))
    if addresses is None:
        return None
    inside = [a for a in addresses if _internal(a)]
    if inside:
        return internal.format(f"it resolves to {', '.join(inside[:3])}")
    return None
