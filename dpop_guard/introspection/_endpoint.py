"""The one rule for the URLs of upstream services (Authlete, an RFC 7662 endpoint, a JWKS,
an issuer): an origin plus an optional path, nothing else.

Why each part is refused:

- A query or a fragment: a client appends the API path to the base URL, so
  ``https://host#x`` turns every call into a call to ``/`` of the host (the path lands in
  the fragment), and ``?x=1`` puts it in the query.
- User info: a second credential in a URL ends up in logs and error messages; the
  services' credentials have their own settings. It is never echoed back.
- ``http`` to a host that is not loopback: the service token, client secret or key set
  would cross the network in clear text (or could be swapped on the way). Loopback
  (``localhost``, ``127.0.0.0/8``, ``::1``) is allowed for development servers and sidecars,
  and so is a name under RFC 6761's ``.invalid``, which never resolves: such a URL can only
  be served in process (the embedded simulator's transport), never over a network.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

__all__ = ["check_header_secret", "check_service_url", "stays_local"]


def stays_local(host: str) -> bool:
    """Whether ``host`` (a URL's hostname, brackets removed) names this machine.

    :param host: ``localhost``, a name under ``.invalid`` (never resolves) or an IP
        literal; any other name is not loopback (a DNS name may resolve anywhere).
    """
    lowered = host.lower().rstrip(".")
    if lowered == "localhost" or lowered.endswith(".invalid") or lowered == "invalid":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_service_url(name: str, value: str) -> str:
    """Return ``value`` if it is an allowed service URL (see the module docstring).

    :param name: the setting's name, for the error message.
    :raises ValueError: naming ``name`` and what is wrong; the value is echoed only when it
        holds no user info.
    """
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be an absolute https URL")
    if "@" in value:  # before anything echoes the value: it may hold a password
        raise ValueError(f"{name} must not contain user info (credentials before an '@')")
    if not value.isascii() or any(c <= " " or c in "\x7f\\" for c in value):
        raise ValueError(
            f"{name} must be plain ASCII without spaces or control characters "
            "(write an internationalised host name in its xn-- form)"
        )
    if "?" in value or "#" in value:
        raise ValueError(f"{name} must not have a query or a fragment, got {value!r}")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{name} must be an absolute http(s) URL, got {value!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError(f"{name} has an invalid port, got {value!r}") from None
    if parts.scheme == "http" and not stays_local(parts.hostname):
        raise ValueError(
            f"{name} must use https (plain http only to a loopback host), got {value!r}"
        )
    return value


def check_header_secret(name: str, value: str | None) -> None:
    """Refuse a credential that cannot go into an HTTP header as it is.

    :param name: the setting's name, for the error message (never the value).
    :raises ValueError: the value is not latin-1 encodable or holds control characters.
    """
    if value is None:
        return
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{name} must be latin-1 text (it is sent in a header)") from None
    if any(c < " " or c == "\x7f" for c in value):
        raise ValueError(f"{name} must not contain control characters")
