"""FAPI headers on every response the guard fronts (FAPI 1.0 section 6.2.1, the UK, Brazil,
CDR and ConnectID profiles; FAPI 2.0 keeps them as implementation advice).

- ``x-fapi-interaction-id``: the client's value when it is an RFC 4122 UUID, else a fresh
  UUID (the replacement is logged, the client's value is not), echoed on every response,
  2xx and errors alike, put on the decision's log record and exposed to the app as
  ``scope["state"]["fapi_interaction_id"]`` (``request.state.fapi_interaction_id``).
- ``Date`` (RFC 9110 section 6.6.1) on every response, when ``GuardSettings.date_header``
  asks for it: uvicorn, hypercorn and daphne send their own, and a second ``Date`` would
  break the field's single value, so it is for servers that send none.
- ``x-fapi-customer-ip-address`` and ``x-fapi-auth-date`` are never read, so never refused.
"""

from __future__ import annotations

import logging
import os
import random
import re
from collections.abc import Callable
from email.utils import formatdate
from typing import Final

from starlette.types import Message, Scope, Send

__all__ = [
    "INTERACTION_ID",
    "DateHeader",
    "interaction_id",
    "mint_uuid",
    "stamp_responses",
]

logger = logging.getLogger("dpop_guard")

INTERACTION_ID: Final = "x-fapi-interaction-id"
_HEADER: Final = INTERACTION_ID.encode()
_UUID: Final = re.compile(
    rb"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_STARTS: Final = frozenset(
    {"http.response.start", "websocket.accept", "websocket.http.response.start"}
)


# Interaction ids correlate logs; they must be unique, not secret. uuid.uuid4() reads
# os.urandom on every call (about 6 us here, more than the rest of a public request), so
# ids come from a generator seeded from os.urandom, reseeded in every forked worker so
# that two workers never share a sequence.
_RANDOM = random.Random(os.urandom(32))  # noqa: S311 - correlation ids, not secrets
os.register_at_fork(after_in_child=lambda: _RANDOM.seed(os.urandom(32)))
_VERSION_MASK: Final = ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_BITS: Final = (0x4000 << 64) | (0x8000 << 48)


def mint_uuid() -> str:
    """A random (version 4, RFC 4122 variant) UUID in its canonical form."""
    text = f"{(_RANDOM.getrandbits(128) & _VERSION_MASK) | _VERSION_BITS:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def interaction_id(scope: Scope) -> str:
    """The request's interaction id: the first ``x-fapi-interaction-id`` if it is a UUID
    in its canonical form, else a new one (logged as a replacement when one was sent)."""
    sent: bytes | None = None
    for name, value in scope["headers"]:
        if name == _HEADER:
            sent = value
            break
    if sent is not None and _UUID.fullmatch(sent):
        # Echoed exactly as sent: conformance suites compare the echo byte for byte.
        return sent.decode("ascii")
    minted = mint_uuid()
    if sent is not None:
        logger.info(
            "dpop_guard: replaced an x-fapi-interaction-id that is not a UUID",
            extra={"dpop_guard_interaction_id": minted, "dpop_guard_replaced_length": len(sent)},
        )
    return minted


class DateHeader:
    """``Date`` values from ``clock``, formatted once per second."""

    __slots__ = ("_clock", "_second", "_value")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._second = -1
        self._value = b""

    def value(self) -> bytes:
        """The current ``Date`` value (IMF-fixdate)."""
        second = int(self._clock())
        if second != self._second:
            self._second, self._value = second, formatdate(second, usegmt=True).encode()
        return self._value


def stamp_responses(send: Send, interaction: str, dates: DateHeader | None = None) -> Send:
    """Wrap ``send`` so each response head (HTTP, a websocket's ``accept`` or its HTTP
    denial) carries the interaction id, unless the app set one itself, and, with
    ``dates``, an HTTP response head a ``Date`` unless it has one."""
    pair = (_HEADER, interaction.encode("ascii"))

    async def stamped(message: Message) -> None:
        kind = message["type"]
        if kind in _STARTS:
            headers = message.get("headers") or ()
            names = {name.lower() for name, _ in headers}
            added = [] if _HEADER in names else [pair]
            if dates is not None and kind != "websocket.accept" and b"date" not in names:
                added.append((b"date", dates.value()))
            if added:
                # A new list: the app's own may belong to a response object it reuses.
                message["headers"] = [*headers, *added]
        await send(message)

    return stamped
