"""A binding-safe introspection cache, as a wrapper around any :class:`Introspector`.

Why caching is safe here although Authlete returns no ``cnf.jkt``: on a miss the inner
introspector establishes the binding (Authlete checks the proof against the token's key,
and the probe tells bound from unbound), and the resulting :class:`TokenInfo` carries the
thumbprint of the proof key that passed. On a hit, the middleware has already verified the
new proof locally (signature, ``htm``, ``htu``, ``iat``, ``ath`` tying it to this very
token) and then requires its thumbprint to equal the cached one, checks scopes and expiry
from the cached facts, and records the ``jti``. So a hit admits exactly the requests a
miss would, except that a revocation is seen up to ``ttl`` late.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import anyio
from cachetools import TLRUCache

from ..errors import ServiceUnavailable
from . import Introspector, RequestFacts, TokenInfo

__all__ = ["CachingIntrospector", "SharedTokenCache"]

logger = logging.getLogger("dpop_guard.introspection")


class SharedTokenCache(Protocol):
    """A second cache level shared by a fleet (e.g.
    :class:`~dpop_guard.introspection.redis_cache.RedisTokenCache`). Failures raise; the
    caching introspector then falls back to the inner introspector."""

    async def get(self, key: bytes) -> tuple[TokenInfo, float] | None:
        """The facts cached under ``key`` and their wall-clock deadline."""
        ...

    async def set(self, key: bytes, info: TokenInfo, until: float, ttl: float) -> None:
        """Cache ``info`` under ``key`` until ``until``, which is ``ttl`` seconds away."""
        ...


@dataclass(slots=True)
class _Flight:
    done: anyio.Event = field(default_factory=anyio.Event)
    result: TokenInfo | None = None
    outage: ServiceUnavailable | None = None


def _key(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class CachingIntrospector:
    """Cache ``inner``'s answers by SHA-256 of the token.

    - An entry lives for ``ttl`` seconds, or until the token expires if that is sooner;
      tokens already expired (or expiring within a second) are not cached.
    - At most ``maxsize`` entries; the least recently used goes first (a lost entry only
      costs a new introspection).
    - Concurrent misses for one token make one inner call. The others wait for it: on
      success they use its result (their own proof is still checked against the cached
      ``jkt``); on an outage they share the outage instead of stampeding the server; on a
      rejection, which may be specific to the first caller's proof or route, they try
      themselves.
    - Rejections and outages are never cached.

    - With ``shared``, a miss asks the shared level before the inner introspector and
      fills it after, so a fleet makes one round of calls per token per ``ttl``. An entry
      keeps its original deadline when copied between levels, so a revocation is never seen
      later than ``ttl`` after the first introspection. A failing shared level is skipped
      (logged), never trusted for more than it says: the binding check stays the same.

    :param clock: wall-clock seconds (token expiry is wall-clock).
    """

    def __init__(
        self,
        inner: Introspector,
        *,
        ttl: float = 60.0,
        maxsize: int = 100_000,
        clock: Callable[[], float] = time.time,
        shared: SharedTokenCache | None = None,
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.inner = inner
        self.ttl = ttl
        self._clock = clock
        self._cache: TLRUCache[bytes, tuple[float, TokenInfo]] = TLRUCache(
            maxsize=maxsize, ttu=lambda _key, value, _now: value[0], timer=clock
        )
        self._flights: dict[bytes, _Flight] = {}
        self.shared = shared
        self.hits = 0
        self.misses = 0
        self.shared_hits = 0

    def __len__(self) -> int:
        return len(self._cache)

    def peek(self, token: str) -> TokenInfo | None:
        """The cached facts for ``token``, if any (for diagnostics and tests)."""
        entry = self._cache.get(_key(token))
        return None if entry is None else entry[1]

    def invalidate(self, token: str) -> None:
        """Forget ``token`` (e.g. on a revocation event)."""
        self._cache.pop(_key(token), None)

    async def introspect(self, token: str, *, request: RequestFacts) -> TokenInfo:
        """Answer from the cache, or introspect once for all concurrent callers."""
        key = _key(token)
        while True:
            entry = self._cache.get(key)
            if entry is not None:
                self.hits += 1
                request.lookup.cache_hit = True
                return entry[1]
            flight = self._flights.get(key)
            if flight is None:
                break
            await flight.done.wait()
            if flight.result is not None:
                self.hits += 1
                request.lookup.cache_hit = True
                return flight.result
            if flight.outage is not None:
                raise flight.outage
            # The leader was rejected; that may be about its proof, not ours. Try again.

        self.misses += 1
        request.lookup.cache_hit = False
        flight = _Flight()
        self._flights[key] = flight
        try:
            info = await self._from_shared(key)
            if info is None:
                info = await self.inner.introspect(token, request=request)
                deadline = self._store(key, info)
                if deadline is not None and self.shared is not None:
                    await self._to_shared(key, info, deadline)
            flight.result = info
            return info
        except ServiceUnavailable as exc:
            flight.outage = exc
            raise
        finally:
            del self._flights[key]
            flight.done.set()

    def _store(self, key: bytes, info: TokenInfo, deadline: float | None = None) -> float | None:
        """Cache ``info`` locally; returns the deadline, or ``None`` if not cached."""
        now = self._clock()
        deadline = now + self.ttl if deadline is None else min(deadline, now + self.ttl)
        if info.expires_at is not None:
            deadline = min(deadline, float(info.expires_at))
        if deadline - now < 1.0:
            return None
        self._cache[key] = (deadline, info)
        return deadline

    async def _from_shared(self, key: bytes) -> TokenInfo | None:
        if self.shared is None:
            return None
        try:
            found = await self.shared.get(key)
        except Exception as exc:
            logger.warning(
                "shared introspection cache unavailable: %s",
                type(exc).__name__,
                extra={"dpop_guard_reason": "shared_cache_error"},
            )
            return None
        if found is None:
            return None
        info, until = found
        if self._store(key, info, until) is None:
            return None
        self.shared_hits += 1
        return info

    async def _to_shared(self, key: bytes, info: TokenInfo, deadline: float) -> None:
        assert self.shared is not None
        try:
            await self.shared.set(key, info, deadline, deadline - self._clock())
        except Exception as exc:
            logger.warning(
                "shared introspection cache unavailable: %s",
                type(exc).__name__,
                extra={"dpop_guard_reason": "shared_cache_error"},
            )
