"""``HTTPSignatureMiddleware``: RFC 9421 request verification and response signing for
any ASGI app, per path prefix.

The story of a request:

1. ``lifespan`` passes; a ``websocket`` handshake on a route that is not ``off`` is
   refused (closed before ``accept``: a handshake carries no signature this profile
   defines); any other scope type is refused.
2. The route's mode (the longest matching path prefix): ``off`` passes untouched;
   ``optional`` verifies a signature when ``Signature-Input`` is present; ``required``
   refuses a request without one.
3. :func:`dpop_guard.httpsig.verify_request` checks the headers before the app
   runs; the key is looked up by ``keyid`` and, when a guard in front set
   ``scope["auth"]`` (``DPoPGuardMiddleware(HTTPSignatureMiddleware(app, ...))``), by
   the token's ``client_id`` too; a declared body larger than ``max_body_bytes`` is
   refused (413) up front.
4. The body streams through to the app, hashed chunk by chunk (nothing is buffered).
   The chunk that ends the body is handed over only after the digest matched: on a
   mismatch, a body byte that no covered ``Content-Digest`` vouches for, or a body past
   ``max_body_bytes``, the app receives ``http.disconnect`` instead, so it never sees the
   end of an unverified body; every later message it sends is dropped, and the client
   gets the 401/413 (or, if the app had already started its response, the connection is
   cut short). An app that acts on a body before reading it to the end acts on
   unverified bytes: read the whole body (as ``await request.body()`` does) first.
5. With a ``signing_key``, the app's response is held (up to ``max_response_bytes``) to
   compute its ``Content-Digest``, then sent with ``Signature-Input`` and ``Signature``
   (:func:`dpop_guard.httpsig.sign_response`). A response larger than the bound is **not** sent
   unsigned: the client gets a 500 and the log says which bound to raise, unless the route
   is listed in ``unsigned_responses`` (declared streaming routes). An unsigned answer on
   a signed route is either refused by a careful client (the same outcome, later and less
   clearly) or accepted by a careless one (a silent downgrade), so failing loudly is the
   safer default. Refusals the middleware sends itself are not signed.

Refusals carry ``Cache-Control: no-store``, a JSON body ``{"error", "error_description"}``,
and on 401 an ``Accept-Signature`` field (RFC 9421 section 5.1) naming what the profile
wants covered. The internal reason is logged, never sent.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Collection, Mapping
from typing import Final, Literal

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as ASGIMessage

from .._target import check_host, request_target_path
from ..errors import DPoPGuardError
from ..replay import ReplayStore
from ..replay.memory import MemoryReplayStore
from ._components import Message
from ._digest import DigestChecker, content_digest
from ._keys import KeySource, SigningKey
from ._reasons import HTTPSignatureError
from ._sign import sign_response, with_status
from ._verify import (
    VerifiedSignature,
    VerifyPolicy,
    required_components,
    verify_request,
)

__all__ = ["SCOPE_KEY", "HTTPSignatureMiddleware", "Mode"]

Mode = Literal["required", "optional", "off"]
SCOPE_KEY: Final = "dpop_guard.httpsig"
"""The scope key holding the :class:`VerifiedSignature` (``None`` for an unsigned request
on an ``optional`` route)."""

logger = logging.getLogger("dpop_guard.httpsig")
_MODES: Final = frozenset({"required", "optional", "off"})
_DEFAULT_PORTS: Final = {"http": "80", "https": "443"}
_DISCONNECT: Final = {"type": "http.disconnect"}
# Response message types that bypass the body (a file sent by the server): not signable.
_UNSIGNABLE_EXTENSIONS: Final = ("http.response.pathsend", "http.response.zerocopysend")


def _prefix_match(path: str, prefix: str) -> bool:
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/") or not prefix


class HTTPSignatureMiddleware:
    """Verify RFC 9421 request signatures and sign responses, per path prefix.

    :param app: the ASGI app.
    :param key_source: where clients' public keys are found by ``keyid``.
    :param signing_key: the key responses are signed with; ``None`` signs nothing.
    :param mode: one mode for every path, or ``{prefix: mode}``; a path no prefix matches
        is ``required`` (fail closed). Prefixes match at segment boundaries.
    :param max_body_bytes: the largest request body a verified request may stream.
    :param max_response_bytes: the largest response body held to be signed.
    :param unsigned_responses: path prefixes whose responses are never signed (routes
        that stream more than ``max_response_bytes``).
    :param public_url: ``scheme://host[:port]`` the clients address, for ``@target-uri``
        and ``@authority`` behind a proxy; ``None`` takes the scope's scheme and ``Host``.
    :param replay_store: where seen signatures are recorded; a process-local
        :class:`~dpop_guard.replay.memory.MemoryReplayStore` by default (use a shared one,
        Redis, for several processes).
    :param policy: the verifier's bounds and window.
    :param clock: wall-clock seconds, read once per request.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        key_source: KeySource,
        signing_key: SigningKey | None = None,
        mode: Mode | Mapping[str, Mode] = "required",
        max_body_bytes: int = 1 << 20,
        max_response_bytes: int = 1 << 20,
        unsigned_responses: Collection[str] = (),
        public_url: str | None = None,
        replay_store: ReplayStore | None = None,
        policy: VerifyPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        modes = {"": mode} if isinstance(mode, str) else dict(mode)
        if not _MODES.issuperset(modes.values()):
            raise ValueError(f"mode must be one of {sorted(_MODES)}")
        if max_body_bytes < 0 or max_response_bytes < 0:
            raise ValueError("body bounds must not be negative")
        self.app = app
        self._key_source = key_source
        self._signing_key = signing_key
        # longest prefix first
        self._modes = sorted(modes.items(), key=lambda item: -len(item[0].rstrip("/")))
        self._max_body = max_body_bytes
        self._max_response = max_response_bytes
        self._unsigned = tuple(unsigned_responses)
        self._public: tuple[str, str] | None = None
        if public_url is not None:
            scheme, sep, authority = public_url.partition("://")
            try:
                if scheme not in _DEFAULT_PORTS or not sep:
                    raise ValueError(public_url)
                self._public = scheme, _authority(check_host(authority.rstrip("/")), scheme)
            except (ValueError, DPoPGuardError):
                raise ValueError("public_url must be http(s)://host[:port]") from None
        self._replay: ReplayStore = MemoryReplayStore() if replay_store is None else replay_store
        self._policy = VerifyPolicy() if policy is None else policy
        self._clock = clock

    def mode_for(self, path: str) -> Mode:
        """The mode of ``path``: the longest matching prefix's, else ``required``."""
        for prefix, mode in self._modes:
            if _prefix_match(path, prefix):
                return mode
        return "required"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, receive, send)
            return
        if kind not in ("http", "websocket"):
            logger.warning("dpop_guard.httpsig: refusing an ASGI scope of type %r", kind)
            return
        mode = self.mode_for(scope["path"])
        if mode == "off":
            await self.app(scope, receive, send)
            return
        if kind == "websocket":
            if (await receive())["type"] == "websocket.connect":
                await send({"type": "websocket.close", "code": 1008})
            return
        await _Exchange(self, scope, receive, send, mode).run()

    # -- helpers used by _Exchange -------------------------------------------------

    def _message(self, scope: Scope) -> Message:
        try:
            path = request_target_path(scope)
            hosts = [v for k, v in scope["headers"] if k == b"host"]
            if self._public is not None:
                scheme, authority = self._public
            else:
                if len(hosts) > 1:
                    raise HTTPSignatureError("request_invalid", status=400)
                scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
                host = hosts[0].decode("latin-1") if hosts else _server_host(scope)
                authority = _authority(check_host(host), scheme)
        except DPoPGuardError as exc:
            raise HTTPSignatureError("request_invalid", status=400) from exc
        query = scope.get("query_string", b"").decode("latin-1") or None
        return Message(
            method=scope["method"],
            scheme=scheme,
            authority=authority,
            path=path,
            query=query,
            headers=tuple((bytes(k), bytes(v)) for k, v in scope["headers"]),
        )

    def _signs(self, path: str) -> bool:
        return self._signing_key is not None and not any(
            _prefix_match(path, p) for p in self._unsigned
        )


def _client_id(scope: Scope) -> str | None:
    """The client the access token was issued to, when a guard in front set
    ``scope["auth"]`` (:class:`dpop_guard.credentials.DPoPCredentials`)."""
    client_id = getattr(scope.get("auth"), "client_id", None)
    return client_id if isinstance(client_id, str) else None


def _server_host(scope: Scope) -> str:
    """The authority without a ``Host`` header (an HTTP/2 server that keeps
    ``:authority`` to itself): the server's address, as :func:`dpop_guard._target.target_url`
    does."""
    server = scope.get("server")
    if server is None:
        return "localhost"
    name, port = server[0], server[1]
    name = f"[{name}]" if ":" in name else name
    return name if port is None else f"{name}:{port}"


def _authority(host: str, scheme: str) -> str:
    host = host.lower()
    name, sep, port = host.rpartition(":")
    if sep and "]" not in port and port == _DEFAULT_PORTS[scheme]:
        return name
    return host


def _declared_length(message: Message) -> tuple[bool, int | None]:
    """(has a body, its declared length): RFC 9112 section 6.3."""
    if message.field_lines(b"transfer-encoding"):
        return True, None
    lengths = message.field_lines(b"content-length")
    if not lengths:
        return False, None
    if len(lengths) != 1 or not lengths[0].isdigit() or len(lengths[0]) > 18:
        raise HTTPSignatureError("request_invalid", status=400)
    length = int(lengths[0])
    return length > 0, length


class _Exchange:
    """One HTTP request through the middleware: its state and its three ASGI callables."""

    def __init__(
        self, guard: HTTPSignatureMiddleware, scope: Scope, receive: Receive, send: Send, mode: Mode
    ) -> None:
        self.guard, self.scope, self.mode = guard, scope, mode
        self.receive, self.send = receive, send
        self.refusal: HTTPSignatureError | None = None
        self.accept: tuple[str, ...] = required_components(dpop=False, body=False)
        self.started = False  # the client has been sent a response start
        self.checker: DigestChecker | None = None
        self.received = 0
        self.request: Message | None = None
        self.verified: VerifiedSignature | None = None
        self.signing = False
        self.held_start: ASGIMessage | None = None
        self.held_body: list[bytes] = []
        self.held_size = 0

    async def run(self) -> None:
        guard, scope = self.guard, self.scope
        now = int(guard._clock())
        try:
            request = self.request = guard._message(scope)
            has_body, length = _declared_length(request)
            self.accept = required_components(
                dpop=bool(request.field_lines(b"dpop")), body=has_body
            )
            if request.field_lines(b"signature-input") or self.mode == "required":
                if length is not None and length > guard._max_body:
                    raise HTTPSignatureError("body_too_large", status=413)
                self.verified = await verify_request(
                    request,
                    key_source=guard._key_source,
                    now=now,
                    has_body=has_body,
                    policy=guard._policy,
                    replay_store=guard._replay,
                    client_id=_client_id(scope),
                )
        except HTTPSignatureError as exc:
            await self._refuse(exc)
            return
        self.signing = guard._signs(scope["path"])
        app_scope = dict(scope)
        app_scope[SCOPE_KEY] = self.verified
        if self.signing and scope.get("extensions"):
            app_scope["extensions"] = {
                k: v for k, v in scope["extensions"].items() if k not in _UNSIGNABLE_EXTENSIONS
            }
        receive = self.receive if self.verified is None else self._receive
        try:
            await guard.app(app_scope, receive, self._send)
        except Exception:
            if self.refusal is None:
                raise
            logger.debug("dpop_guard.httpsig: the app raised after a refusal", exc_info=True)
        if self.refusal is not None:
            if not self.started:
                await self._refuse(self.refusal)
            return
        if self.held_start is not None and not self.started:
            # The app returned without finishing its body: it has nothing signable to send.
            await self._refuse(HTTPSignatureError("response_not_signable", status=500))

    async def _refuse(self, error: HTTPSignatureError) -> None:
        logger.info(
            "dpop_guard.httpsig refused: %s (%d)",
            error.reason,
            error.status,
            extra={"dpop_guard_reason": error.reason, "dpop_guard_status": error.status},
        )
        body = json.dumps(
            {"error": error.error, "error_description": error.description}, separators=(",", ":")
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"cache-control", b"no-store"),
            (b"content-length", str(len(body)).encode()),
        ]
        if error.status == 401:
            covered = " ".join(f'"{name}"' for name in self.accept)
            value = f'sig1=({covered});created;tag="{self.guard._policy.tag}"'
            headers.append((b"accept-signature", value.encode()))
        self.started = True
        await self.send({"type": "http.response.start", "status": error.status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})

    def _fail(self, error: HTTPSignatureError) -> ASGIMessage:
        if self.refusal is None:
            self.refusal = error
        return _DISCONNECT

    async def _receive(self) -> ASGIMessage:
        if self.refusal is not None:
            return _DISCONNECT
        message = await self.receive()
        if message["type"] != "http.request":
            return message
        body: bytes = message.get("body", b"")
        self.received += len(body)
        if self.received > self.guard._max_body:
            return self._fail(HTTPSignatureError("body_too_large", status=413))
        assert self.verified is not None
        expected = self.verified.content_digest
        if expected is None:
            if body:
                return self._fail(HTTPSignatureError("content_digest_not_covered"))
            return message
        if self.checker is None:
            self.checker = DigestChecker(expected)
        self.checker.update(body)
        if not message.get("more_body", False) and not self.checker.matches():
            return self._fail(HTTPSignatureError("content_digest_mismatch"))
        return message

    async def _send(self, message: ASGIMessage) -> None:
        if self.refusal is not None:
            return  # the app's answer to a refused request is dropped
        kind = message["type"]
        if self.started and self.signing:
            return  # the signed response is complete; nothing may follow it
        if not self.signing:
            if kind == "http.response.start":
                self.started = True
            await self.send(message)
            return
        if kind == "http.response.start":
            self.held_start = message
            return
        if kind != "http.response.body" or self.held_start is None:
            self.refusal = HTTPSignatureError("response_not_signable", status=500)
            logger.error("dpop_guard.httpsig: a %r message cannot be signed", kind)
            return
        chunk: bytes = message.get("body", b"")
        self.held_size += len(chunk)
        if self.held_size > self.guard._max_response:
            self.refusal = HTTPSignatureError("response_too_large_to_sign", status=500)
            logger.error(
                "dpop_guard.httpsig: a response on %s is larger than max_response_bytes=%d; "
                "raise it or list the route in unsigned_responses",
                self.scope["path"],
                self.guard._max_response,
            )
            return
        self.held_body.append(chunk)
        if message.get("more_body", False):
            return
        await self._send_signed(b"".join(self.held_body))

    async def _send_signed(self, body: bytes) -> None:
        start = self.held_start
        assert start is not None and self.request is not None
        key = self.guard._signing_key
        assert key is not None
        headers: list[tuple[bytes, bytes]] = [
            (bytes(k).lower(), bytes(v))
            for k, v in start.get("headers", ())
            if bytes(k).lower() not in (b"content-digest", b"signature", b"signature-input")
        ]
        if body and self.request.method != "HEAD":
            headers.append((b"content-digest", content_digest(body).encode("ascii")))
        response = with_status(self.request, int(start["status"]), tuple(headers))
        label = None if self.verified is None else self.verified.label
        try:
            headers += sign_response(
                response, key=key, now=int(self.guard._clock()), request_label=label
            )
        except HTTPSignatureError as exc:
            logger.error("dpop_guard.httpsig: the response cannot be signed: %s", exc.reason)
            self.refusal = HTTPSignatureError("response_not_signable", status=500)
            return
        self.started = True
        await self.send({**start, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})
