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

import itertools
import logging
import os
import random
import re
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Final

from starlette.types import Message, Send

__all__ = [
    "INTERACTION_ID",
    "DateHeader",
    "interaction_id_of",
    "mint_uuid",
    "stamp_responses",
]

logger = logging.getLogger("dpop_guard")

INTERACTION_ID: Final = "x-fapi-interaction-id"
_HEADER: Final = INTERACTION_ID.encode()
_HEADER_SIZE: Final = len(_HEADER)
Header = tuple[bytes, bytes]
_UUID: Final = re.compile(
    rb"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_STARTS: Final = frozenset(
    {"http.response.start", "websocket.accept", "websocket.http.response.start"}
)


# Interaction ids correlate logs; they must be unique, not secret. uuid.uuid4() reads
# os.urandom on every call (about 6 us here, more than the rest of a public request). So
# each process draws a random 74-bit prefix (version and variant bits set) and a random
# affine permutation of 48-bit numbers once, and the id's last 48 bits are that
# permutation of a counter: distinct for 2**48 ids, and no plain request count for a
# client to read off. Redrawn in every forked worker, so two workers never share ids.
_MASK48: Final = (1 << 48) - 1


class _Minter:
    __slots__ = ("prefix", "steps")

    def __init__(self) -> None:
        self.seed()

    def seed(self) -> None:
        draw = random.Random(os.urandom(32))  # noqa: S311 - correlation ids, not secrets
        # 20 hex digits: the 13th is the version (4), the 17th starts with the variant
        # bits 10 (RFC 4122 section 4.1.1).
        bits = draw.getrandbits(80) & ~(0xF << 28) & ~(0xC << 12)
        head = f"{bits | (0x4 << 28) | (0x8 << 12):020x}"
        self.prefix = f"{head[:8]}-{head[8:12]}-{head[12:16]}-{head[16:20]}-"
        factor = draw.getrandbits(48) | 1  # odd: a bijection modulo 2**48
        # add + n * factor for n = 0, 1, 2, ...: counted in C, one addition per id (the
        # multiplication per id cost about 600 instructions more), atomic under the GIL.
        self.steps = itertools.count(draw.getrandbits(48), factor)


_MINTER = _Minter()
os.register_at_fork(after_in_child=_MINTER.seed)


def mint_uuid() -> str:
    """A version 4, RFC 4122 variant UUID in its canonical form, unique in this process
    (and, with its random prefix, across processes)."""
    m = _MINTER
    # Twelve hex digits of the permuted counter: to_bytes().hex() costs about 900
    # instructions fewer than "%012x" formatting, and 2,000 fewer than an f-string.
    return m.prefix + (next(m.steps) & _MASK48).to_bytes(6, "big").hex()


def interaction_id_of(sent: bytes | None) -> str:
    """The request's interaction id from its first ``x-fapi-interaction-id`` value
    (``None``: none was sent; the middleware reads it in its one pass over the headers):
    that value if it is a UUID in its canonical form, else a new one (logged as a
    replacement when one was sent)."""
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


def stamp_responses(
    send: Send, sent: bytes | None, dates: DateHeader | None = None, websocket: bool = False
) -> tuple[str, Send]:
    """The request's interaction id (:func:`interaction_id_of` the first
    ``x-fapi-interaction-id`` value ``sent``), and ``send`` wrapped so each response head
    (HTTP, a websocket's ``accept`` or its HTTP denial) carries it, unless the app set one
    itself, and, with ``dates``, an HTTP response head a ``Date`` unless it has one. (One
    call for both, on every request.)

    :param websocket: the scope is a websocket's (its heads are ``websocket.accept`` and
        ``websocket.http.response.start``), not an HTTP request's.
    """
    interaction = mint_uuid() if sent is None else interaction_id_of(sent)
    pair = (_HEADER, interaction.encode("ascii"))
    if dates is None and not websocket:
        # The common case, on every request: an HTTP response and the server's own Date.
        # A plain function returning the server's own awaitable, not a coroutine function:
        # ``await send(message)`` then makes one coroutine per message, not two (about
        # 1,600 instructions per request fewer than a coroutine function). ``send`` and
        # ``pair`` are bound as defaults, not closed over: no cells to make per request
        # (about 500 instructions fewer); a server calls it with the message alone.
        def stamp_id(message: Message, send: Send = send, pair: Header = pair) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                headers = message.get("headers") or ()
                for name, _ in headers:
                    # Only a name of the right length can match: lower() just those.
                    if len(name) == _HEADER_SIZE and name.lower() == _HEADER:
                        break
                else:
                    # A new list: the app's own may belong to a response object it reuses.
                    message["headers"] = [*headers, pair]
            return send(message)

        return interaction, stamp_id

    async def stamped(
        message: Message, send: Send = send, pair: Header = pair, dates: DateHeader | None = dates
    ) -> None:
        kind = message["type"]
        if kind in _STARTS:
            headers = message.get("headers") or ()
            has_id = has_date = False
            for name, _ in headers:  # a loop, not a set: one response head per request
                size = len(name)
                if size == _HEADER_SIZE and name.lower() == _HEADER:
                    has_id = True
                elif size == 4 and name.lower() == b"date":
                    has_date = True
            added = [] if has_id else [pair]
            if dates is not None and kind != "websocket.accept" and not has_date:
                added.append((b"date", dates.value()))
            if added:
                message["headers"] = [*headers, *added]
        await send(message)

    return interaction, stamped
