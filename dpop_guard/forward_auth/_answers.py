"""What the forward-auth server answers: the allow answer with the identity headers
(:class:`IdentityApp`, behind the guard), and the per-proxy shaping of every answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final
from urllib.parse import quote

from starlette.types import Message, Receive, Scope, Send

from ..credentials import DPoPCredentials

__all__ = ["IdentityApp", "for_nginx", "with_next_nonce"]

# Visible ASCII and space, "%" excepted: what an identity value keeps as it is.
_SAFE: Final = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")
_STATUS_HEADER: Final = b"x-dpop-guard-status"
_BODY_HEADER: Final = b"x-dpop-guard-body"
_NONCE_HEADER: Final = b"x-dpop-guard-nonce"
_MAX_BODY_HEADER: Final = 1024


def _identity_value(value: object) -> bytes:
    """A fact as a header value: text percent-encoded outside visible ASCII (and ``%``),
    so that nothing an authorization server returns can split or fold a header."""
    return quote(str(value), safe=_SAFE).encode("ascii")


class IdentityApp:
    """The app behind the guard: ``200`` with the identity headers built from
    ``scope["auth"]`` (a public path: all empty), empty body."""

    def __init__(self, identity_headers: Sequence[tuple[str, str]]) -> None:
        self._headers = [(fact, header.lower().encode()) for fact, header in identity_headers]

    def headers(self, credentials: DPoPCredentials | None) -> list[tuple[bytes, bytes]]:
        """The identity headers for ``credentials``: every configured one, empty where
        the fact has no value (a public path: all empty). A proxy that copies a header
        whether or not the answer has it (Caddy 2.6 writes its unresolved placeholder)
        then copies an empty value, never the client's or a placeholder."""
        found: list[tuple[bytes, bytes]] = []
        for fact, name in self._headers:
            value: object = None
            if credentials is None:
                pass
            elif fact == "scope":
                value = " ".join(sorted(credentials.scopes))
            else:
                value = getattr(credentials, fact)
            found.append((name, b"" if value is None else _identity_value(value)))
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        headers = [
            (b"cache-control", b"no-store"),
            (b"content-length", b"0"),
            *self.headers(scope.get("auth")),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


async def _lifespan(receive: Receive, send: Send) -> None:
    """The lifespan protocol, completed: the server then sends shutdown, on which the
    guard's clients are closed (:class:`~dpop_guard.guard.OperationsMiddleware`)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def for_nginx(send: Send) -> Send:
    """``send`` for nginx's ``auth_request``, which passes 2xx, 401 and 403 only: every
    refusal travels as a 401 carrying its real status and (small) body in headers
    (``deploy/forward-auth/nginx.conf`` answers the client with the status and body those
    headers name)."""
    start: Message | None = None
    body = b""

    async def send_for_nginx(message: Message) -> None:
        nonlocal start, body
        if message["type"] == "http.response.start":
            if message["status"] < 300:
                await send(message)
            else:
                start = message  # held until the body is known
            return
        if start is None or message["type"] != "http.response.body":
            await send(message)
            return
        body += message.get("body", b"")
        if message.get("more_body", False):
            return
        status: int = start["status"]
        headers = [*start.get("headers", ()), (_STATUS_HEADER, str(status).encode())]
        if len(body) <= _MAX_BODY_HEADER and all(0x20 <= b < 0x7F for b in body):
            headers.append((_BODY_HEADER, body))
        # 401 whatever the status: nginx then also copies WWW-Authenticate (the only
        # header it passes back itself), which the configuration cannot add without
        # doubling it.
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        start = None

    return send_for_nginx


def with_next_nonce(send: Send) -> Send:
    """``send`` adding ``X-Dpop-Guard-Nonce`` to an allow answer: the next nonce, or empty.
    A proxy that copies a header onto the request whether or not the answer has it (Caddy
    2.6 writes its unresolved placeholder) copies an empty value instead."""

    async def send_with_next_nonce(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] < 300:
            headers = list(message.get("headers", ()))
            nonce = next((v for n, v in headers if n == b"dpop-nonce"), b"")
            message["headers"] = [*headers, (_NONCE_HEADER, nonce)]
        await send(message)

    return send_with_next_nonce
