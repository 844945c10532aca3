"""URLs: ``htu`` normalisation (RFC 9449 section 4.3 step 9, RFC 3986 section
6.2.2-6.2.3), and which URLs name a Redis server (read by the settings without importing
redis-py)."""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

REDIS_CLUSTER_SCHEMES: Final = ("redis+cluster", "rediss+cluster")
REDIS_SCHEMES: Final = ("redis", "rediss", "unix", *REDIS_CLUSTER_SCHEMES)


def is_redis_url(url: str) -> bool:
    """Whether ``url`` names a Redis server or cluster (``redis://``, ``rediss://``,
    ``unix://``, ``redis+cluster://``, ``rediss+cluster://``)."""
    return urlsplit(url).scheme in REDIS_SCHEMES


_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_htu(url: str) -> str:
    """Return ``scheme://host[:port]/path`` for comparison.

    Scheme and host are lower-cased, a default port is dropped, an empty path becomes
    ``/``, and query and fragment are removed (RFC 9449: "without query and fragment
    parts"). The path is kept exactly, including percent-encoding and a trailing slash:
    servers may route ``/a`` and ``/A`` or ``/a/`` differently.

    :raises ValueError: if ``url`` is not an absolute http(s) URL without user info.
    """
    if not url.isascii() or any(c in url for c in " \t\r\n\\"):
        raise ValueError("not an absolute http(s) URL")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.netloc:
        raise ValueError("not an absolute http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("user info is not allowed")
    host = parts.hostname
    port = parts.port  # raises ValueError for a bad port
    if not host:
        raise ValueError("no host")
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    authority = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    return f"{scheme}://{authority}{parts.path or '/'}"
