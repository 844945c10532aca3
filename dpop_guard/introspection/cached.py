"""A binding-safe introspection cache, as a wrapper around any :class:`Introspector`.

Why caching is safe here although Authlete returns no ``cnf.jkt``: on a miss the inner
introspector establishes the binding (Authlete checks the proof against the token's key,
and the probe tells bound from unbound), and the resulting :class:`TokenInfo` carries the
thumbprint of the proof key that passed. On a hit, the middleware has already verified the
new proof locally (signature, ``htm``, ``htu``, ``iat``, ``ath`` tying it to this very
token) and then requires its thumbprint to equal the cached one, checks scopes and expiry
from the cached facts, and records the ``jti``. So a hit admits exactly the requests a
miss would, except that a revocation is seen up to ``ttl`` late.

Why it cannot be turned into an amplifier:

- The facts are cached per token whatever the route (introspectors never see a route's
  scopes; the caller checks :attr:`TokenInfo.scopes`), so a token lacking a route's scope
  costs one round of calls, not one per request.
- Answers about the token alone (:class:`~dpop_guard.introspection.InactiveToken`:
  Authlete's "does not exist" and "has expired", RFC 7662 ``active: false``, a JWT that
  fails validation) are remembered for ``negative_ttl`` seconds, so a junk token resent
  any number of times costs one round of calls per ``negative_ttl``. Rejections that
  depend on the proof or the request (binding, proof, nonce) are never remembered.

Why thieves with a stolen token cannot queue its owner (a thief has the token, not its
key, and can make proofs with any number of keys of its own):

- Calls are bounded per token *and proof key* (``max_concurrent``, first in, first out):
  callers with one key wait only behind calls with that key, which only its holder can
  make. No caller ever waits behind another key's calls.
- At most ``max_keys`` (8) distinct keys of a token may have calls in flight at once; a
  caller with a further key is refused at once with a 503
  (``introspection_token_contested``, ``Retry-After``), never queued. This bounds what a
  thief can make the introspection endpoint do for one token (``max_keys`` x
  ``max_concurrent`` calls at most, in practice ``max_keys`` rounds: a thief's calls for
  one key are single-flighted), where a single FIFO bound per token made the owner wait
  behind every thief.
- The token's key, once known, is exempt, so the owner's call can always start: a
  successful introspection reveals which key the token is bound to, and that binding never
  changes, so it is remembered until the token expires (longer than the facts, ``ttl``):
  after that, a caller with another key is refused locally (``jkt_mismatch``, as the
  middleware would refuse it on a hit) without a call or a slot, and the owner's key skips
  the bound. That covers every cold request but the very first use of a token: before
  any success nothing tells the owner's key from a thief's (Authlete returns no
  ``cnf.jkt``), and a thief holding a token that its owner has never used could keep the
  owner's first call refused (503, with ``Retry-After``, never hung) while it keeps
  ``max_keys`` flights going. Refusing is the price of a bound; queueing (the former
  design) cost the owner as much and bounded nothing per key.

Why the default ``negative_ttl`` is 5 s: these answers are final for a real token (an
expired token never comes back, a revoked one neither), so the only client a negative
entry can wrong is one that presents a token in the instant before the authorization
server knows it (replication lag at issuance); 5 s bounds that harm to a retry or two,
while it already cuts a junk-token flood at 1000 requests/s to one round of calls per
5 s (0.4 Authlete calls/s instead of 2000). Negative entries live in their own, smaller
LRU, so junk tokens cannot evict real ones. They are kept per process (the shared level
holds positive facts only), so a fleet of N processes makes at most N rounds per
``negative_ttl`` for one junk token.

JWT access tokens (the inner introspector a
:class:`~dpop_guard.introspection.jwt.JWTAccessTokenValidator`): what is cached is what the
signature proved (the claims, ``cnf``), keyed by the token's digest, so a hit costs the proof's
verification alone. Such an answer rests on a key as well as on the token: the validator is a
:class:`KeyWithdrawals`, and when a JWKS refresh withdraws a key (removed, or replaced under
its ``kid``) every positive entry is dropped, since any may rest on that key (the entries
of the keys that stay cost one verification each to come back: at most what the next
``ttl`` would have cost). An answer computed across a withdrawal is not stored. No shared
level: a local verification is cheaper than a Redis round trip.
"""

from __future__ import annotations

import itertools
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Generic, Protocol, TypeVar, runtime_checkable

import anyio

from .._binding import check_token_binding
from .._bounded import Memo
from .._digest import token_digest
from .._reasons import Reason
from ..errors import DPoPGuardError, IntrospectionUnavailable, ServiceUnavailable
from . import (
    CacheScope,
    InactiveToken,
    Introspector,
    RequestFacts,
    ScopedIntrospector,
    TokenInfo,
)

__all__ = [
    "DEFAULT_KEYS_IN_FLIGHT",
    "DEFAULT_NEGATIVE_TTL",
    "DEFAULT_TOKEN_CONCURRENCY",
    "CachingIntrospector",
    "KeyWithdrawals",
    "SharedTokenCache",
]

logger = logging.getLogger("dpop_guard.introspection")

DEFAULT_NEGATIVE_TTL: Final = 5.0
MAX_NEGATIVE_TTL: Final = 60.0
DEFAULT_TOKEN_CONCURRENCY: Final = 64
"""Inner calls at once per token and proof key."""
DEFAULT_KEYS_IN_FLIGHT: Final = 8
"""Distinct proof keys of one token with calls in flight at once (the token's own key,
once known, not counted)."""
BINDING_TTL: Final = 86_400.0
"""Seconds a token's binding is remembered when the token states no expiry."""
FLEET_LOCK_TTL: Final = 2.0
"""Seconds a fleet-wide lead on one token lasts if its holder never releases it."""
FLEET_POLL_INTERVAL: Final = 0.01
FLEET_POLLS: Final = 100
"""Polls of the shared level by a worker that waits for another's answer (at most about
one second), before it asks the introspector itself."""


class SharedTokenCache(Protocol):
    """A second cache level shared by a fleet (e.g.
    :class:`~dpop_guard.introspection.redis_cache.RedisTokenCache`). Failures raise; the
    caching introspector then falls back to the inner introspector.

    A ``key`` is the inner introspector's 16-byte :attr:`CacheScope.namespace` followed by
    the 32-byte SHA-256 of the token: configurations that answer differently never share
    an entry. What comes back is untrusted input: an implementation parses it strictly and
    returns ``None`` for anything it cannot vouch for."""

    async def get(self, key: bytes) -> tuple[TokenInfo, float] | None:
        """The facts cached under ``key`` and their wall-clock deadline."""
        ...

    async def set(self, key: bytes, info: TokenInfo, until: float, ttl: float) -> None:
        """Cache ``info`` under ``key`` until ``until``, which is ``ttl`` seconds away."""
        ...

    async def delete(self, key: bytes) -> None:
        """Forget what is cached under ``key`` (a revocation)."""
        ...


@runtime_checkable
class KeyWithdrawals(Protocol):
    """An introspector whose answers hold only while the key that vouched for them is
    published: the JWT validator, whose answers rest on the token's signing key in the
    JWKS. It calls every subscriber when a key is withdrawn (gone from a refreshed key
    set, or replaced under its ``kid``); a :class:`CachingIntrospector` subscribes and drops
    the answers it holds."""

    def subscribe_withdrawals(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (no arguments, synchronously) after each withdrawal."""
        ...


@dataclass(frozen=True, slots=True)
class _Negative:
    """A remembered :class:`InactiveToken`, rebuilt on each use (re-raising one instance
    would grow its traceback without bound)."""

    deadline: float
    reason: Reason
    description: str
    status: int
    challenge_params: Mapping[str, str]

    def error(self) -> InactiveToken:
        return InactiveToken(
            self.reason,
            self.description,
            status=self.status,
            challenge_params=self.challenge_params,
        )


@dataclass(slots=True)
class _Flight:
    done: anyio.Event = field(default_factory=anyio.Event)
    result: TokenInfo | None = None
    outage: ServiceUnavailable | None = None
    inactive: _Negative | None = None


@dataclass(slots=True)
class _Slots:
    """The bound on concurrent inner calls for one token and one proof key (FIFO, so
    every waiter is served after at most ``ahead / limit`` rounds of its own key's calls:
    bounded waiting, never starvation)."""

    limiter: anyio.CapacityLimiter
    users: int = 0
    counted: bool = False  # whether it counts towards the token's max_keys


_V = TypeVar("_V")
_EVICT_SCAN: Final = 8


class _Expiring(Generic[_V]):
    """At most ``maxsize`` entries, each with its own wall-clock deadline; the least
    recently used goes first when full.

    A plain dict in use order (a hit moves its entry to the end): a lookup is two dict
    operations and one clock read, where ``cachetools.TLRUCache`` spends about as much
    again as the rest of a cache hit on its timer context and linked-list bookkeeping.
    An entry is dead once ``clock() >= deadline``; a dead entry is dropped when looked up
    or when it reaches the front, so it can never be returned (it may hold a slot until
    then, which only costs a re-introspection of the least recently used token).
    """

    __slots__ = ("_clock", "_data", "maxsize")

    def __init__(self, maxsize: int, clock: Callable[[], float]) -> None:
        self.maxsize = maxsize
        self._clock = clock
        self._data: dict[bytes, tuple[float, _V]] = {}

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._data)

    def get(self, key: bytes) -> _V | None:
        """The live value under ``key``, marked as just used; ``None`` if absent or dead."""
        data = self._data
        # Taken out and put back at the end (use order): one lookup, not a get and a del.
        entry = data.pop(key, None)
        if entry is None:
            return None
        if self._clock() >= entry[0]:
            return None
        data[key] = entry
        return entry[1]

    def set(self, key: bytes, value: _V, deadline: float) -> None:
        """Store ``value`` under ``key`` until ``deadline``, evicting dead entries at the
        front, then the least recently used, to make room."""
        data = self._data
        data.pop(key, None)
        if len(data) >= self.maxsize:
            now = self._clock()
            # The front is the least recently used: drop it, and any dead entry among
            # the few behind it (bounded work per insertion, never a sweep).
            for old in list(itertools.islice(data, _EVICT_SCAN)):
                if len(data) >= self.maxsize or data[old][0] <= now:
                    del data[old]
        data[key] = (deadline, value)

    def pop(self, key: bytes) -> None:
        """Forget ``key``."""
        self._data.pop(key, None)

    def clear(self) -> None:
        """Forget every entry."""
        self._data.clear()


def _key(token: str) -> bytes:
    """The local cache key of ``token``: its SHA-256."""
    return token_digest(token)


def _digest_cost(token: str, key: bytes) -> int:
    return sys.getsizeof(token) + sys.getsizeof(key)


_Binding = tuple[str | None, str | None]
"""What a token is bound to: its DPoP key thumbprint and its certificate thumbprint."""

_Group = tuple[bytes, str | None, str | None]
"""A single-flight group: the token's key, and the proof key and certificate presented."""


def _admit_any(resources: object) -> None:
    """The audience rule of an introspector that states none: nothing to check again."""


def _presented(request: RequestFacts) -> tuple[str | None, str | None]:
    """The proof key and certificate thumbprints a request presents."""
    certificate = request.client_certificate
    return request.jkt, None if certificate is None else certificate.thumbprint


def _seconds(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be finite and above 0, got {value!r}")
    return float(value)


def _size(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a whole number above 0, got {value!r}")
    return value


class CachingIntrospector:
    """Cache ``inner``'s answers by SHA-256 of the token.

    - An entry lives for ``ttl`` seconds, or until the token expires if that is sooner;
      tokens already expired (or expiring within a second) are not cached.
    - At most ``maxsize`` entries; the least recently used goes first (a lost entry only
      costs a new introspection).
    - :class:`~dpop_guard.introspection.InactiveToken` answers are remembered for
      ``negative_ttl`` seconds in a separate LRU of ``negative_maxsize`` (and drop any
      positive entry for the token: a revocation seen anywhere is believed at once). Other
      rejections and outages are never cached.
    - Single flight per token *and proof key*: concurrent misses with one key make one
      inner call and share its outcome (success, outage, inactive token). A caller with
      another key never waits for that call: only the holder of a private key can make
      proofs for its thumbprint, so a thief with a stolen token cannot hold up the
      owner's request. If a call is rejected for a reason that may be specific to its
      proof, its followers then call concurrently, each with its own proof.
    - At most ``max_concurrent`` inner calls per token and proof key at once (64 by
      default, far beyond one client's needs); further calls with that key wait first in,
      first out. At most ``max_keys`` distinct keys per token have calls in flight; a
      further key is refused at once (503), and the token's own key, known from an
      earlier success, is never refused and never counted. A key other than the one a
      token is known to be bound to is refused locally (see the module docstring).
    - With ``shared``, a miss asks the shared level before the inner introspector and
      fills it after, so a fleet makes one round of calls per token per ``ttl``. A shared
      level that can lock (``claim``/``poll``/``release``, as RedisTokenCache) makes that
      exact for concurrent misses too: one worker takes a short lock and asks, the others
      poll the shared level for its answer (about a second at most, then they ask). An entry
      keeps its original deadline when copied between levels, so a revocation is never seen
      later than ``ttl`` after the first introspection. A failing shared level is skipped
      (logged), never trusted for more than it says: the binding check stays the same.
    - An inner introspector with a ``requires_fresh(request) -> bool`` method (the JWT
      validator on its revocation paths) is asked directly whenever that returns ``True``:
      no cached answer stands in for a revocation check.
    - An inner introspector that is a :class:`KeyWithdrawals` (the JWT validator) has
      every positive entry dropped when it withdraws a key, and an answer it gave across a
      withdrawal is not stored.

    :param ttl: seconds a positive answer is reused (finite, above 0).
    :param negative_ttl: seconds an inactive-token answer is reused (finite, above 0, at
        most 60); see the module docstring for the default of 5.
    :param max_keys: distinct proof keys of one token with calls in flight at once (8).
    :param clock: wall-clock seconds (token expiry is wall-clock).
    :raises ValueError: a setting out of range.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass that overrides :meth:`introspect` overrides :meth:`cached_sync` too.

        The middleware answers a cache hit through :meth:`cached_sync` alone (the
        :class:`~dpop_guard.introspection.SyncTokenLookup` seam), so a check added to
        ``introspect`` only (a revocation list, an audit) would be skipped on every hit.
        Refused when the class is defined, never discovered per request.

        :raises TypeError: ``introspect`` overridden without ``cached_sync``.
        """
        super().__init_subclass__(**kwargs)
        if "introspect" in cls.__dict__ and "cached_sync" not in cls.__dict__:
            raise TypeError(
                f"{cls.__name__} overrides introspect but not cached_sync: cache hits are "
                "answered by cached_sync alone; override both (cached_sync may return None "
                "to send every request through introspect)"
            )

    def __init__(
        self,
        inner: Introspector,
        *,
        ttl: float = 60.0,
        maxsize: int = 100_000,
        negative_ttl: float = DEFAULT_NEGATIVE_TTL,
        negative_maxsize: int = 10_000,
        max_concurrent: int = DEFAULT_TOKEN_CONCURRENCY,
        max_keys: int = DEFAULT_KEYS_IN_FLIGHT,
        clock: Callable[[], float] = time.time,
        shared: SharedTokenCache | None = None,
        scope: CacheScope | None = None,
    ) -> None:
        self.ttl = _seconds("ttl", ttl)
        self.negative_ttl = _seconds("negative_ttl", negative_ttl)
        if self.negative_ttl > MAX_NEGATIVE_TTL:
            raise ValueError(f"negative_ttl must be at most {MAX_NEGATIVE_TTL:g} s")
        self.max_concurrent = _size("max_concurrent", max_concurrent)
        self.inner = inner
        self._clock = clock
        self._cache: _Expiring[TokenInfo] = _Expiring(_size("maxsize", maxsize), clock)
        self._negative: _Expiring[_Negative] = _Expiring(
            _size("negative_maxsize", negative_maxsize), clock
        )
        self.max_keys = _size("max_keys", max_keys)
        self._flights: dict[_Group, _Flight] = {}
        self._slots: dict[_Group, _Slots] = {}
        self._keys_in_flight: dict[bytes, int] = {}  # token: groups with slots (not its own)
        # Token: the key and certificate it is bound to, learnt from a success; kept until
        # the token expires (a binding never changes), longer than the facts.
        self._bindings: _Expiring[_Binding] = _Expiring(self._cache.maxsize, clock)
        self.contested = 0  # callers refused by the max_keys bound
        self.binding_refusals = 0  # callers refused locally for another token's key
        self.withdrawals = 0  # key withdrawals seen (each dropped every positive entry)
        # Token: revoked here (revoke()) within the TTL: an answer to a call that was in
        # flight at the time, or a shared entry written before it, is not taken in.
        self._revoked: _Expiring[bool] = _Expiring(self._cache.maxsize, clock)
        if isinstance(inner, KeyWithdrawals):
            if shared is not None:
                # A withdrawal clears this process's memory, not the fleet's: the next miss
                # would read the withdrawn key's answers back from the shared level.
                raise ValueError(
                    "an introspector whose answers rest on published keys (the JWT "
                    "validator) cannot have a shared cache level"
                )
            inner.subscribe_withdrawals(self._withdrawn)
        fresh = getattr(inner, "requires_fresh", None)
        self._requires_fresh: Callable[[RequestFacts], bool] | None = (
            fresh if callable(fresh) else None
        )
        if scope is None and isinstance(inner, ScopedIntrospector):
            scope = inner.cache_scope
        if shared is not None and scope is None:
            raise ValueError(
                "a shared cache needs the inner introspector's cache_scope (or scope=): "
                "without it, entries of different configurations would mix"
            )
        self.scope = scope
        # Every answer given from memory or from the shared level passes this API's
        # audience rule, as the inner introspector's own miss would (whoever wrote the
        # entry); raises InactiveToken with the inner introspector's reason.
        self._admit: Callable[[object], None] = (
            _admit_any if scope is None else scope.audience.check
        )
        self._namespace = b"" if scope is None else scope.namespace
        self.shared = shared
        self.fleet_polls = FLEET_POLLS
        # Token: its cache key. A client presents the same token on every request, and a
        # SHA-256 costs about 0.6% of an ES256 verification for a 43-character token and 4%
        # for a 1,000-character one (measured here), against 0.03% for this lookup.
        # Remembered within a byte budget (_bounded.Memo): a token over MAX_REMEMBERED
        # characters has its key computed on every request.
        self._digests: Memo[str, bytes] = Memo(_key, _digest_cost)
        self.hits = 0
        self.misses = 0
        self.shared_hits = 0
        self.negative_hits = 0

    def __len__(self) -> int:
        return len(self._cache)

    def _key(self, token: str) -> bytes:
        """The cache key of ``token`` (:func:`_key`), remembered (bounded in bytes)."""
        return self._digests.remember(token, len(token))

    def peek(self, token: str) -> TokenInfo | None:
        """The cached facts for ``token``, if any (for diagnostics and tests)."""
        return self._cache.get(_key(token))

    def invalidate(self, token: str) -> None:
        """Forget ``token`` in this process's memory. With a shared level, a revocation
        event calls :meth:`revoke` instead, or another worker's answer is read back."""
        self._cache.pop(_key(token))
        self._negative.pop(_key(token))

    async def revoke(self, token: str) -> None:
        """Forget ``token`` here and in the fleet's shared level (on a revocation event):
        no worker reads it from the shared level again. Each other worker's own memory
        keeps it until that entry expires (at most the TTL), unless it is told as well.

        An answer to a lookup of ``token`` still in flight, or an entry of the shared level,
        is not taken into this process's memory for the TTL that follows.

        :raises Exception: the shared level failed: the revocation is not complete (retry).
        """
        self._revoked.set(_key(token), True, self._clock() + self.ttl)
        self.invalidate(token)
        if self.shared is not None:
            await self.shared.delete(self._namespace + _key(token))

    def _withdrawn(self) -> None:
        """The inner introspector withdrew a key: every positive entry may rest on it."""
        self.withdrawals += 1
        self._cache.clear()

    def cached_sync(self, token: str, request: RequestFacts | None = None) -> TokenInfo | None:
        """The answer :meth:`introspect` would give from memory, without a coroutine: the
        cached facts on a hit, ``None`` when the caller must await :meth:`introspect`
        (a miss, a call in flight, or an inner introspector that must see the request
        first: ``requires_fresh``, which needs ``request``). What the caller does with the
        facts is the same either way (binding, expiry and scopes are checked on every
        request, hit or miss).

        :param request: the request facts, if the caller has built them (a hit then sets
            ``request.lookup.cache_hit``); without them a hit is the caller's to report.
        :raises InactiveToken: a remembered inactive-token answer, as :meth:`introspect`.
        """
        if self._requires_fresh is not None and (request is None or self._requires_fresh(request)):
            return None
        key = self._digests.get(token) or self._key(token)
        # Most of the time no token is remembered as inactive: skip the lookup then.
        negative = self._negative.get(key) if self._negative._data else None
        if negative is not None:
            self.negative_hits += 1
            if request is not None:
                request.lookup.cache_hit = True
            raise negative.error()
        info = self._cache.get(key)
        if info is not None:
            self.hits += 1
            if request is not None:
                request.lookup.cache_hit = True
            self._admit(info.resources)
        return info

    async def introspect(self, token: str, *, request: RequestFacts) -> TokenInfo:
        """Answer from the cache, or introspect once for all concurrent callers with the
        same proof key."""
        key = self._key(token)
        if self._requires_fresh is not None and self._requires_fresh(request):
            self._raise_if_negative(key, request)
            self._check_binding(key, request)
            self.misses += 1
            request.lookup.cache_hit = False
            return await self._call(key, token, request, fresh=True)
        self._raise_if_negative(key, request)
        if (info := self._hit(key, request)) is not None:
            return info
        self._check_binding(key, request)
        group = (key, *_presented(request))
        flight = self._flights.get(group)
        if flight is not None:
            return await self._follow(flight, key, token, request)
        self.misses += 1
        request.lookup.cache_hit = False
        flight = self._flights[group] = _Flight()
        try:
            info = await self._call(key, token, request, flight)
            flight.result = info
            return info
        except ServiceUnavailable as exc:
            flight.outage = exc
            raise
        finally:
            del self._flights[group]
            flight.done.set()

    async def _follow(
        self, flight: _Flight, key: bytes, token: str, request: RequestFacts
    ) -> TokenInfo:
        """Wait for the call of a caller with the same proof key, and share its outcome;
        if it was rejected for a reason that may be its proof's alone (or cancelled), ask
        for ourselves, now, alongside the other followers (never one after the other)."""
        await flight.done.wait()
        if flight.result is not None:
            self.hits += 1
            request.lookup.cache_hit = True
            return flight.result
        if flight.outage is not None:
            raise flight.outage
        if flight.inactive is not None:
            self.negative_hits += 1
            request.lookup.cache_hit = True
            raise flight.inactive.error()
        self._raise_if_negative(key, request)
        if (info := self._hit(key, request)) is not None:
            return info
        self.misses += 1
        request.lookup.cache_hit = False
        return await self._call(key, token, request)

    def _check_binding(self, key: bytes, request: RequestFacts) -> bool:
        """Refuse, without a call, a request that does not present what the token is known
        to be bound to (its proof key, its certificate, or both), by the token's half of
        the binding rule (:func:`~dpop_guard._binding.check_token_binding`), which the
        middleware runs again on the answer.

        :returns: whether the request is known to be the token's owner's (a binding is
            known and the request presents it).
        :raises InvalidDPoPProof: ``jkt_mismatch``.
        :raises InvalidToken: ``bound_token_as_bearer``, ``certificate_missing``,
            ``certificate_mismatch``.
        """
        bound = self._bindings.get(key)
        if bound is None:
            return False
        try:
            check_token_binding(*bound, *_presented(request))
        except DPoPGuardError:
            self.binding_refusals += 1
            raise
        return True

    def _hit(self, key: bytes, request: RequestFacts) -> TokenInfo | None:
        info = self._cache.get(key)
        if info is None:
            return None
        self.hits += 1
        request.lookup.cache_hit = True
        self._admit(info.resources)
        return info

    def _raise_if_negative(self, key: bytes, request: RequestFacts) -> None:
        negative = self._negative.get(key)
        if negative is not None:
            self.negative_hits += 1
            request.lookup.cache_hit = True
            raise negative.error()

    async def _call(
        self,
        key: bytes,
        token: str,
        request: RequestFacts,
        flight: _Flight | None = None,
        *,
        fresh: bool = False,
    ) -> TokenInfo:
        """One inner call (after the shared level, unless ``fresh``) within the token's
        concurrency bound; caches what it learns."""
        group = (key, *_presented(request))
        slots = self._slots.get(group)
        counted = False
        if slots is None:
            # A binding learnt while this caller waited is checked here too.
            own = self._check_binding(key, request)
            if not own:
                keys = self._keys_in_flight.get(key, 0)
                if keys >= self.max_keys:
                    # Refused now rather than queued: a queue here is what let thieves
                    # with many keys hold up the owner (see the module docstring).
                    self.contested += 1
                    raise IntrospectionUnavailable("introspection_token_contested")
                self._keys_in_flight[key] = keys + 1
                counted = True
            slots = self._slots[group] = _Slots(anyio.CapacityLimiter(self.max_concurrent))
            slots.counted = counted
        slots.users += 1
        led = False
        try:
            async with slots.limiter:
                if not fresh:
                    # While we waited for a slot, another call may have answered.
                    self._raise_if_negative(key, request)
                    if (cached := self._cache.get(key)) is not None:
                        self._admit(cached.resources)
                        return cached
                info = None if fresh else await self._from_shared(key)
                if info is not None:
                    return info
                if not fresh:
                    led, info = await self._fleet_flight(key)
                    if info is not None:
                        return info
                withdrawals = self.withdrawals
                try:
                    info = await self.inner.introspect(token, request=request)
                except InactiveToken as exc:
                    negative = self._remember_inactive(key, exc)
                    if flight is not None:
                        flight.inactive = negative
                    raise
            if self.withdrawals != withdrawals:
                return info  # its key may be the one withdrawn meanwhile: not stored
            deadline = self._store(key, info)
            if deadline is not None and self.shared is not None:
                await self._to_shared(key, info, deadline)
            return info
        finally:
            if led:
                await self._fleet_release(key)
            slots.users -= 1
            if slots.users == 0:
                del self._slots[group]
                if slots.counted:
                    left = self._keys_in_flight[key] - 1
                    if left:
                        self._keys_in_flight[key] = left
                    else:
                        del self._keys_in_flight[key]

    async def _fleet_flight(self, key: bytes) -> tuple[bool, TokenInfo | None]:
        """Single flight across the fleet, with a shared level that can lock (``claim``,
        ``poll``, ``release``, as RedisTokenCache): ``(True, None)`` if this worker leads
        (it calls the inner introspector, then releases); ``(False, info)`` if another
        worker's answer arrived in the shared level; ``(False, None)`` to call the inner
        introspector anyway: the lead released without an entry (it failed, or the token
        is inactive: negative answers stay per process), the bounded wait ran out, or the
        shared level failed."""
        claim = getattr(self.shared, "claim", None)
        poll = getattr(self.shared, "poll", None)
        if claim is None or poll is None:
            return False, None
        try:
            if await claim(self._namespace + key, ttl=FLEET_LOCK_TTL):
                return True, None
            for _ in range(self.fleet_polls):
                await anyio.sleep(FLEET_POLL_INTERVAL)
                found, held = await poll(self._namespace + key)
                if found is not None:
                    info, until = found
                    if self._adopt(key, info, until):
                        self.shared_hits += 1
                        return False, info
                if not held:
                    break
        except DPoPGuardError:  # an entry refused by this API's rule: a refusal, not an outage
            raise
        except Exception as exc:
            logger.warning(
                "shared introspection cache unavailable: %s",
                type(exc).__name__,
                extra={"dpop_guard_reason": "shared_cache_error"},
            )
        return False, None

    async def _fleet_release(self, key: bytes) -> None:
        try:
            await self.shared.release(self._namespace + key)  # type: ignore[union-attr]
        except Exception as exc:  # the lock lapses by itself
            logger.warning(
                "shared introspection cache unavailable: %s",
                type(exc).__name__,
                extra={"dpop_guard_reason": "shared_cache_error"},
            )

    def _remember_inactive(self, key: bytes, exc: InactiveToken) -> _Negative:
        negative = _Negative(
            self._clock() + self.negative_ttl,
            exc.reason,
            exc.description,
            exc.status,
            exc.challenge_params,
        )
        self._negative.set(key, negative, negative.deadline)
        self._cache.pop(key)  # the token is dead: forget what we knew of it
        return negative

    def _store(self, key: bytes, info: TokenInfo, deadline: float | None = None) -> float | None:
        """Cache ``info`` locally; returns the deadline, or ``None`` if not cached (a token
        revoked here within the TTL included)."""
        if self._revoked.get(key) is not None:
            return None
        now = self._clock()
        deadline = now + self.ttl if deadline is None else min(deadline, now + self.ttl)
        if info.expires_at is not None:
            deadline = min(deadline, float(info.expires_at))
        if info.jkt is not None or info.x5t_s256 is not None:
            # The binding outlives the facts: it never changes while the token lives.
            until = float(info.expires_at) if info.expires_at is not None else now + BINDING_TTL
            if until > now:
                self._bindings.set(key, (info.jkt, info.x5t_s256), until)
        if deadline - now < 1.0:
            return None
        self._cache.set(key, info, deadline)
        return deadline

    async def _from_shared(self, key: bytes) -> TokenInfo | None:
        if self.shared is None:
            return None
        try:
            found = await self.shared.get(self._namespace + key)
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
        if not self._adopt(key, info, until):
            return None
        self.shared_hits += 1
        return info

    def _adopt(self, key: bytes, info: TokenInfo, until: float) -> bool:
        """Take an entry of the shared level into memory: checked first (:meth:`_admit`),
        then stored; ``False`` if it is too close to its end to keep."""
        self._admit(info.resources)
        return self._store(key, info, until) is not None

    async def _to_shared(self, key: bytes, info: TokenInfo, deadline: float) -> None:
        assert self.shared is not None
        try:
            await self.shared.set(self._namespace + key, info, deadline, deadline - self._clock())
        except Exception as exc:
            logger.warning(
                "shared introspection cache unavailable: %s",
                type(exc).__name__,
                extra={"dpop_guard_reason": "shared_cache_error"},
            )
