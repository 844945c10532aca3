"""The adapter: a check request from a trusted proxy becomes the original request's ASGI
scope, handed to the guard (see :mod:`dpop_guard.forward_auth`)."""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, unquote

from starlette.types import ASGIApp, Receive, Scope, Send

from .._fapi import INTERACTION_ID
from .._proxy import Network, parse_networks, peer_is_trusted
from .._respond import send_response
from ..challenges import challenge_for
from ..errors import DPoPGuardError, InvalidRequest, ServiceUnavailable
from ..routes import has_control_characters, has_dot_segments, route_for, route_path
from ..settings import GuardSettings
from ._answers import for_nginx, with_next_nonce
from ._settings import CONTRACTS, ForwardAuthSettings

__all__ = ["MAX_TARGET_BYTES", "ForwardAuth"]

logger = logging.getLogger("dpop_guard")

MAX_TARGET_BYTES: Final = 8192
"""Bytes in the original request target (nginx's default large header buffer)."""
_METHOD: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,32}")
# In a raw path: path parameters, a backslash, an encoded separator, percent sign, "?" or
# "#" (decoded and split again by some).
_AMBIGUOUS: Final = re.compile(rb"[;\\]|%(?:2[fF]|5[cC]|25|3[fF]|23)|%(?![0-9A-Fa-f]{2})")
# A decoded segment that Windows servers trim: trailing dots or white space, leading white
# space ("/admin." and "/admin%20" are "/admin" there, "/..%20" is "/.."). A leading dot
# is a name (".well-known").
_TRIMMED: Final = re.compile(r"(?:^|/)(?:\s[^/]*|[^/]*[.\s])(?=/|$)")


def _ambiguous(raw_path: bytes, path: str) -> bool:
    """Whether routers could read the origin-form ``raw_path`` (decoded: ``path``) as
    another path than the route rules do: path parameters, a backslash, an encoded
    separator, ``%``, ``?`` or ``#``; an empty or dot segment; a segment with leading or
    trailing dots or white space; percent-encoded octets that are not UTF-8 (overlong
    forms such as ``%C0%AE``); or characters that Unicode compatibility folding changes
    (``%EF%BC%8E``, a fullwidth ``.``, is ``.`` to a server that folds)."""
    if _AMBIGUOUS.search(raw_path) or "//" in path or has_dot_segments(path):
        return True  # (a "%" without two hex digits too: IIS reads "%u002e" as ".")
    try:
        raw_path.decode("utf-8")
    except UnicodeDecodeError:  # raw octets that are not UTF-8 ("\xc0\xae", an overlong ".")
        return True
    if b" " in raw_path or has_control_characters(path):
        return False  # refused by the middleware's own rules, with their own reasons
    if _TRIMMED.search(path) is not None or "\ufffd" in path:  # (unquote's stand-in for
        return True  # octets that are not UTF-8)
    return not path.isascii() and unicodedata.normalize("NFKC", path) != path


@dataclass(frozen=True, slots=True)
class _Original:
    """The original request, as the proxy reported it (each part still bytes)."""

    method: bytes
    target: bytes
    host: bytes | None
    proto: bytes | None


class ForwardAuth:
    """The adapter: a check request from a trusted proxy becomes the original request's
    scope, handed to ``guard`` (a :class:`~dpop_guard.middleware.DPoPGuardMiddleware`).

    :param guard: the middleware, wrapping :class:`IdentityApp`.
    :param settings: the guard's settings (trusted proxies, public URL, policy).
    :param forward: this adapter's settings.
    :param certificate_headers: the client-certificate headers to hand on (lower case).
    """

    def __init__(
        self,
        guard: ASGIApp,
        *,
        settings: GuardSettings,
        forward: ForwardAuthSettings,
        certificate_headers: Sequence[bytes] = (),
    ) -> None:
        if not settings.trusted_proxies:
            raise ValueError(
                "the forward-auth server needs trusted_proxies: the addresses its proxies "
                "connect from (every other peer is refused)"
            )
        self.guard = guard
        self.settings = settings
        self.forward = forward
        self.contract = CONTRACTS[forward.proxy]
        self._networks: tuple[Network, ...] = parse_networks(settings.trusted_proxies)
        self._prefix = forward.path_prefix.encode()
        self._hand_on = frozenset(
            {b"authorization", b"dpop", INTERACTION_ID.encode(), *certificate_headers}
        )
        # With a public URL the guard never reads the host or scheme: neither is asked for.
        self._needs_origin = settings.public_url is None
        self._refuse_unmatched = forward.unmatched == "refuse"

    def _unmatched(self, scope: Scope) -> bool:
        """Whether no route rule covers the rebuilt request (the middleware's own matcher)."""
        return route_for(self.settings.routes, route_path(scope), scope["method"]) is None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.guard(scope, receive, send)
            return
        if kind != "http":
            logger.warning("dpop_guard forward-auth: refusing an ASGI scope of type %r", kind)
            return
        send = for_nginx(send) if self.forward.proxy == "nginx" else with_next_nonce(send)
        try:
            if not peer_is_trusted(scope, self._networks):
                raise InvalidRequest(
                    "forward_auth_peer_untrusted",
                    "This service answers its proxies only.",
                    status=403,
                )
            original = self.original(scope)
            rebuilt = self.rebuild(scope, original)
            if self._refuse_unmatched and self._unmatched(rebuilt):
                raise InvalidRequest(
                    "forward_auth_path_unmatched", "No rule covers this request.", status=403
                )
        except DPoPGuardError as exc:
            await self._refuse(exc, send)
            return
        await self.guard(rebuilt, receive, send)

    def original(self, scope: Scope) -> _Original:
        """The original request's parts, from only the contract's headers.

        :raises ServiceUnavailable: ``forward_auth_header_missing``, the proxy did not send
            a header its contract names (a misconfigured proxy: fail closed).
        :raises InvalidRequest: ``forward_auth_header_invalid``: a contract header sent
            twice, a method that is not an HTTP token, a target over
            :data:`MAX_TARGET_BYTES`.
        """
        contract = self.contract
        wanted = {contract.method, contract.target}
        if self._needs_origin:
            wanted |= {contract.host, contract.proto}
        wanted.discard(None)
        found: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if name in wanted:
                if name in found:
                    raise _invalid()
                if len(value) > MAX_TARGET_BYTES:
                    raise _invalid()
                found[name] = value
        if contract.method is None:
            method: bytes = scope["method"].encode("latin-1")
        else:
            method = _required(found, contract.method)
        if not _METHOD.fullmatch(method):
            raise _invalid()
        if contract.target is None:
            target = self._below_prefix(scope)
        else:
            target = _required(found, contract.target)
        host = proto = None
        if self._needs_origin:
            host = _required(found, contract.host)
            proto = _required(found, contract.proto).lower()
            if proto not in (b"http", b"https"):
                raise _invalid()
        return _Original(method, target, host, proto)

    def _below_prefix(self, scope: Scope) -> bytes:
        """Envoy: the check request's own target, with the configured prefix cut off."""
        raw: bytes = scope.get("raw_path") or quote(scope["path"]).encode()
        query: bytes = scope.get("query_string", b"")
        prefix = self._prefix
        if not raw.startswith(prefix):  # the proxy is not configured as the contract says
            raise ServiceUnavailable(
                "forward_auth_header_missing", "The service is temporarily unavailable."
            )
        if raw == prefix + b"*":  # the client's own asterisk-form target (OPTIONS *)
            raise InvalidRequest("request_target_invalid", "The request target is not valid.")
        if raw[len(prefix) : len(prefix) + 1] != b"/":
            raise ServiceUnavailable(
                "forward_auth_header_missing", "The service is temporarily unavailable."
            )
        target = raw[len(prefix) :] + (b"?" + query if query else b"")
        if len(target) > MAX_TARGET_BYTES:
            raise _invalid()
        return target

    def rebuild(self, scope: Scope, original: _Original) -> Scope:
        """The ASGI scope of the original request: method, path (decoded as servers do),
        raw path, query, scheme, and only the headers the guard reads.

        :raises InvalidRequest: ``forward_auth_target_ambiguous``, a path that routers read
            differently (see the module's docstring).
        """
        raw_path, _, query = original.target.partition(b"?")
        path = unquote(raw_path.decode("latin-1"))
        # (A target that is not origin-form is the middleware's to refuse, by its own rule.)
        if raw_path.startswith(b"/") and _ambiguous(raw_path, path):
            raise InvalidRequest(
                "forward_auth_target_ambiguous", "The request target is not valid."
            )
        headers = [(n, v) for n, v in scope["headers"] if n in self._hand_on]
        if original.host is not None:
            headers.append((b"host", original.host))
        proto = original.proto
        return {
            "type": "http",
            "asgi": scope.get("asgi", {"version": "3.0"}),
            "http_version": scope.get("http_version", "1.1"),
            "method": original.method.decode("ascii"),
            "scheme": proto.decode("ascii") if proto is not None else scope.get("scheme", "http"),
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": headers,
            "client": scope.get("client"),
            "server": scope.get("server"),
            "state": {},
            "extensions": {},
        }

    async def _refuse(self, exc: DPoPGuardError, send: Send) -> None:
        settings = self.settings
        response = challenge_for(exc, algs=settings.policy.algorithms, realm=settings.realm)
        logger.info(
            "dpop_guard rejected a request: %s (%s)",
            exc.reason,
            response.status,
            extra={
                "dpop_guard_outcome": "rejected",
                "dpop_guard_reason": exc.reason,
                "dpop_guard_status": response.status,
            },
        )
        await send_response(response, send, "http.response")


def _required(found: Mapping[bytes, bytes], name: bytes) -> bytes:
    """The value of a contract header, as sent (never trimmed into another value).

    :raises ServiceUnavailable: ``forward_auth_header_missing``, absent or blank.
    """
    value = found.get(name)
    if value is None or not value.strip():
        raise ServiceUnavailable(
            "forward_auth_header_missing", "The service is temporarily unavailable."
        )
    return value


def _invalid() -> InvalidRequest:
    return InvalidRequest("forward_auth_header_invalid", "The request is not valid.")
