"""Closing an accepted websocket when its access token expires.

A websocket is authenticated once, at its handshake; without this option it outlives its
token (the app then checks ``websocket.auth.expires_at`` itself: see
``docs/hardening.md``). With it (``DPoPGuardMiddleware(close_websockets_at_expiry=True)``),
the guard, which already stands between the app and the server, ends the connection at
the token's ``expires_at`` by its own clock:

- a ``receive`` the app awaits is cut short at the expiry: the guard sends the server a
  ``websocket.close`` with code 1008 (policy violation) and reason ``token expired``, and
  the app receives ``websocket.disconnect`` with code 1008 (Starlette raises
  ``WebSocketDisconnect``), as if the client had gone;
- a message the app sends after the expiry is not sent: the connection is closed the
  same way instead, and every later message from the app is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import anyio
from starlette.types import Message, Receive, Send

__all__ = ["CLOSE_AT_EXPIRY", "close_at_expiry"]

CLOSE_AT_EXPIRY: Final[Message] = {
    "type": "websocket.close",
    "code": 1008,
    "reason": "token expired",
}
_DISCONNECT: Final[Message] = {"type": "websocket.disconnect", "code": 1008}


class _Expiring:
    __slots__ = ("_clock", "_closed", "_expires_at", "_receive", "_send")

    def __init__(
        self, receive: Receive, send: Send, expires_at: float, clock: Callable[[], float]
    ) -> None:
        self._receive = receive
        self._send = send
        self._expires_at = expires_at
        self._clock = clock
        self._closed = False

    async def receive(self) -> Message:
        if not self._closed:
            remaining = self._expires_at - self._clock()
            if remaining > 0:
                with anyio.move_on_after(remaining):
                    message = await self._receive()
                    if message["type"] == "websocket.disconnect":
                        self._closed = True
                    return message
            await self._close()
        return dict(_DISCONNECT)

    async def send(self, message: Message) -> None:
        if self._closed:
            return  # closed at the expiry: nothing more goes out
        if message["type"] != "websocket.close" and self._clock() >= self._expires_at:
            await self._close()
            return
        if message["type"] == "websocket.close":
            self._closed = True
        await self._send(message)

    async def _close(self) -> None:
        self._closed = True
        await self._send(dict(CLOSE_AT_EXPIRY))


def close_at_expiry(
    receive: Receive, send: Send, expires_at: float, clock: Callable[[], float]
) -> tuple[Receive, Send]:
    """``receive`` and ``send`` of an accepted websocket, wrapped to close it at
    ``expires_at`` (epoch seconds, by ``clock``)."""
    expiring = _Expiring(receive, send, expires_at, clock)
    return expiring.receive, expiring.send
