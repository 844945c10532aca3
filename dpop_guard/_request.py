"""What the shell reads from a request and what it hands on: small pure helpers of
:mod:`dpop_guard.middleware`, one per step, so the shell reads as its story."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from starlette.types import Message, Send

from ._fapi import INTERACTION_ID
from ._memo import Shape
from .facts import Lookup, RequestFacts

if TYPE_CHECKING:
    from .mtls import ClientCertificate

__all__ = ["facts_for", "read_headers", "with_nonce"]

_INTERACTION_ID = INTERACTION_ID.encode()


def read_headers(
    headers: Iterable[tuple[bytes, bytes]],
) -> tuple[bytes, int, bytes, int, bytes | None]:
    """One pass over the headers (ASGI allows any iterable) for what the guard reads:
    ``(authorization, how many, dpop, how many, x-fapi-interaction-id)``, the last value
    of each (none or several of the first two are refused by their number alone)."""
    authorization = dpop = b""
    authorizations = proofs = 0
    sent_id: bytes | None = None
    for name, value in headers:
        if name == b"authorization":
            authorization = value
            authorizations += 1
        elif name == b"dpop":
            dpop = value
            proofs += 1
        elif name == _INTERACTION_ID and sent_id is None:
            sent_id = value
    return authorization, authorizations, dpop, proofs, sent_id


def facts_for(
    method: str,
    htu: str,
    proof: str | None,
    jkt: str | None,
    shape: Shape,
    certificate: ClientCertificate | None,
) -> RequestFacts:
    """What the introspector may need about the request besides the token (built on a
    miss only), with a fresh :class:`~dpop_guard.introspection.Lookup` for it to report on."""
    policy = shape.policy
    assert policy is not None
    return RequestFacts(
        method=method,
        htu=htu,
        proof=proof,
        jkt=jkt,
        scopes=policy.scopes,
        path=shape.path,
        lookup=Lookup(),
        client_certificate=certificate,
        acr_values=policy.acr_values,
        max_age=policy.max_age,
    )


def with_nonce(send: Send, next_nonce: str, websocket: bool) -> Send:
    """``send`` with ``DPoP-Nonce: next_nonce`` on the response head (the body streams
    through untouched)."""
    start = "websocket.accept" if websocket else "http.response.start"
    nonce = next_nonce.encode("ascii")

    async def send_with_nonce(message: Message) -> None:
        if message["type"] == start:
            # A websocket accept may carry no headers list at all.
            message["headers"] = [*message.get("headers", ()), (b"dpop-nonce", nonce)]
        await send(message)

    return send_with_nonce
