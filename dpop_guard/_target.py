"""The URL the proof is checked against (``htu``): a pure function of the ASGI scope, the
request's own ``Host`` and proxy headers, and the settings.

The URL is composed from parts that were each validated, never concatenated and parsed
again: a ``#`` or a control character in the request target is refused (a fragment would
otherwise cut the path short when the verifier parses the URL), and so is a ``Host`` that
is not ``host[:port]`` (a ``/``, ``?`` or ``#`` there would smuggle a path into ``htu``).

A websocket handshake is checked like the HTTP ``GET`` it is: its ``htu`` is the
``http``/``https`` form of the ``ws``/``wss`` URL.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Collection
from typing import Final
from urllib.parse import quote, urlsplit, urlunsplit

from starlette.types import Scope

from ._proxy import Network, forwarded_origin
from .errors import InvalidRequest
from .routes import strip_root

__all__ = ["PROXY_HEADERS", "check_host", "public_target", "request_target_path", "target_url"]

PROXY_HEADERS: Final = frozenset(
    {
        b"forwarded",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-prefix",
    }
)
_HTTP_SCHEME: Final = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
# RFC 3986 reg-name without pct-encoding (a DNS name never needs it); IPv4 fits it too.
_REG_NAME: Final = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=]+")
_PORT: Final = re.compile(r"[0-9]{1,5}")
# A request target's path: printable ASCII except "#" (RFC 9112 section 3.2: no fragment).
_TARGET: Final = re.compile(r"[\x21-\x22\x24-\x7e]*")


def check_host(value: str) -> str:
    """Validate a ``Host`` value as ``host[:port]`` (RFC 9110 section 7.2).

    :returns: the value unchanged.
    :raises InvalidRequest: reason ``host_invalid``, for anything else (an empty host, a
        path, query or fragment character, user info, a port that is not 0-65535 digits,
        a bracketed literal that is not IPv6).
    """
    if value.startswith("["):
        literal, sep, rest = value[1:].partition("]")
        try:
            if not sep or not isinstance(ipaddress.ip_address(literal), ipaddress.IPv6Address):
                raise ValueError(literal)
        except ValueError:
            raise _bad_host() from None
        port = rest[1:] if rest.startswith(":") else None
        if rest and port is None:
            raise _bad_host()
    else:
        host, sep, port_text = value.partition(":")
        if not _REG_NAME.fullmatch(host):
            raise _bad_host()
        port = port_text if sep else None
    if port is not None and (not _PORT.fullmatch(port) or int(port) > 65535):
        raise _bad_host()
    return value


def _bad_host() -> InvalidRequest:
    return InvalidRequest("host_invalid", "The Host header is not valid.")


def request_target_path(scope: Scope) -> str:
    """The path of the request target as sent (still percent-encoded), query removed.

    :raises InvalidRequest: reason ``request_target_invalid`` when it is not origin-form
        (RFC 9112 section 3.2.1: it must start with ``/``; the asterisk-form ``*`` of
        ``OPTIONS *`` and an absolute-form target name no resource here), or holds ``#``,
        a space, a control character or a non-ASCII byte.
    """
    raw: bytes | None = scope.get("raw_path")
    if raw:
        path = raw.decode("latin-1").partition("?")[0]
    else:
        path = quote(scope["path"])
    if not path.startswith("/") or not _TARGET.fullmatch(path):
        raise InvalidRequest("request_target_invalid", "The request target is not valid.")
    return path


@functools.lru_cache(maxsize=8)
def _public_parts(public_url: str) -> tuple[str, str, str]:
    """Scheme, authority and path prefix of the (start-up validated) public URL; split
    once per setting, not per request (keyed by the setting alone: no client reaches it)."""
    public = urlsplit(public_url)
    return public.scheme, public.netloc, public.path


def public_target(public_url: str, root: str, path: str) -> str:
    """``htu`` under a configured public URL: a pure function of the (validated) public
    URL, the server's ``root_path`` and the (validated) request target path. Not
    remembered here: the request shape that holds it is (:class:`dpop_guard._memo.RequestShapes`,
    bounded in bytes)."""
    # The app's mount point is cut at a segment boundary only (the router's rule): the
    # rest is "" or starts with "/", so it can only extend public_url's path.
    rest = strip_root(path, quote(root)) if root else path
    scheme, netloc, prefix = _public_parts(public_url)
    return urlunsplit((scheme, netloc, prefix + rest, "", ""))


def target_url(
    scope: Scope,
    *,
    public_url: str | None,
    networks: tuple[Network, ...],
    proxy_headers: Collection[str],
    target: str | None = None,
) -> str:
    """The URL the client addressed: the configured public URL, else what trusted
    proxies report, else the request's own scheme and ``Host``.

    :param public_url: the validated public origin and optional prefix (no trailing ``/``).
    :param networks: the trusted proxies; their headers are read only without
        ``public_url``.
    :param proxy_headers: which forwarding headers those proxies set (the others are
        ignored even from them); see :attr:`GuardSettings.proxy_headers`.
    :param target: :func:`request_target_path` of this scope, when the caller has it.
    :raises InvalidRequest: a request target or ``Host`` that is not valid, or more than
        one ``Host``.
    """
    path = request_target_path(scope) if target is None else target
    if public_url is not None:
        return public_target(public_url, scope.get("root_path", ""), path)
    hosts: list[str] = []
    forwarded: dict[bytes, list[str]] = {}
    for name, value in scope["headers"]:
        if name == b"host":
            hosts.append(value.decode("latin-1"))
        elif networks and name in PROXY_HEADERS:
            forwarded.setdefault(name, []).append(value.decode("latin-1"))
    if len(hosts) > 1:
        raise InvalidRequest("host_multiple", "Exactly one Host header is allowed.")
    host = hosts[0] if hosts else None
    scheme = _HTTP_SCHEME.get(scope.get("scheme", "http"), "http")
    if networks:
        client = scope.get("client")
        origin = forwarded_origin(
            client[0] if client else None, forwarded, networks, proxy_headers=proxy_headers
        )
        if origin is not None:
            scheme = _HTTP_SCHEME.get(origin.scheme or scheme, scheme)
            host = origin.host or host
            # A trusted proxy that reports a prefix has stripped it: the public path is
            # always prefix + path. Prepending "only when missing" would give the routed
            # paths /accounts and /api/accounts (public /api/api/accounts) one htu.
            path = origin.prefix + path
    if host is None:
        server = scope.get("server")
        if server is None:
            host = "localhost"
        else:
            name, port = server[0], server[1]
            name = f"[{name}]" if ":" in name else name
            host = f"{name}:{port}" if port is not None else name
    return urlunsplit((scheme, check_host(host), path, "", ""))
