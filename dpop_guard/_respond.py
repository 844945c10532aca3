"""The answers the guard sends itself: an error response over HTTP, as a Starlette
``Response`` for the endpoint helpers, or the refusal of a websocket handshake before
``accept``. The status, headers and body are :func:`~dpop_guard.challenges.challenge_for`'s;
this module only puts them on the wire."""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .challenges import ErrorResponse

__all__ = ["as_response", "refuse_websocket", "send_response"]


async def send_response(response: ErrorResponse, send: Send, prefix: str) -> None:
    """Send ``response`` as ``{prefix}.start`` and ``{prefix}.body`` messages
    (``http.response`` or ``websocket.http.response``)."""
    headers = [*response.headers, (b"content-length", str(len(response.body)).encode())]
    await send({"type": f"{prefix}.start", "status": response.status, "headers": headers})
    await send({"type": f"{prefix}.body", "body": response.body})


def as_response(error: ErrorResponse) -> Response:
    """``error`` as a Starlette ``Response``: the same status, headers (every
    ``WWW-Authenticate`` kept, none merged) and body the middleware sends. Sent on a
    websocket handshake (an exception handler's answer there), it refuses the handshake as
    :func:`refuse_websocket` does."""
    return _ErrorAnswer(error)


class _ErrorAnswer(Response):
    def __init__(self, error: ErrorResponse) -> None:
        super().__init__(error.body, status_code=error.status)
        # Response set content-length (and no content-type, the body being bytes); the
        # error's own headers carry the content-type.
        self.raw_headers.extend(error.headers)
        self.error = error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await refuse_websocket(self.error, scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


async def refuse_websocket(
    response: ErrorResponse, scope: Scope, receive: Receive, send: Send
) -> None:
    """Refuse a handshake before ``accept``: with the HTTP error response where the server
    offers ``websocket.http.response``, else by closing (the server answers 403)."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return  # the client went away first
    if "websocket.http.response" in (scope.get("extensions") or {}):
        await send_response(response, send, "websocket.http.response")
    else:
        await send({"type": "websocket.close", "code": 1008})
