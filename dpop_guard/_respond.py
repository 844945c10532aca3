"""The answers the guard sends itself: an error response over HTTP, or the refusal of a
websocket handshake before ``accept``."""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from .challenges import ErrorResponse

__all__ = ["refuse_websocket", "send_response"]


async def send_response(response: ErrorResponse, send: Send, prefix: str) -> None:
    """Send ``response`` as ``{prefix}.start`` and ``{prefix}.body`` messages
    (``http.response`` or ``websocket.http.response``)."""
    headers = [*response.headers, (b"content-length", str(len(response.body)).encode())]
    await send({"type": f"{prefix}.start", "status": response.status, "headers": headers})
    await send({"type": f"{prefix}.body", "body": response.body})


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
