"""Observability: one :class:`Decision` per protected request, and one event per thing a
dependency did, both handed to a metrics object.

**Decisions.** The middleware hands each protected request's :class:`Decision` to its
``metrics=`` object (:class:`Metrics`), and logs the same facts as structured ``extra``
fields on the ``dpop_guard`` logger (:mod:`dpop_guard._decision`). Never a token.

**Dependencies.** What the guard's dependencies do reaches :data:`DEPENDENCIES`, one small
process-wide hub, as :data:`DependencyEvent` values:

- :class:`BreakerTransition`: the introspection circuit breaker changed state;
- :class:`UpstreamCall`: one call to the introspection endpoint (Authlete, RFC 7662), its
  outcome, its cause (the outage's classification, as in the refusal's reason) and latency;
- :class:`RedisCall`: one round trip to Redis (a batch of commands), its latency and error;
- :class:`ReplayRefusal`: the replay store could not record a proof (full, unsafe, failed);
- :class:`NonceEvent`: a server nonce issued, or refused as invalid or expired.

A metrics object that also has a ``dependency(event)`` method
(:class:`DependencyMetrics`) receives them: the middleware subscribes its ``metrics=`` to
the hub when it is built, and anyone may call :meth:`DependencyEvents.listen`. Two values
are states rather than events, and are read when a scrape asks for them (no work per
request): the breakers' states (:meth:`DependencyEvents.breakers`) and the in-memory
replay stores' sizes (:meth:`DependencyEvents.replay_stores`). The size of a Redis replay
store is not sampled: its keys share the server with others, counting them costs a scan,
and Redis's own exporter already reports keys and memory per database.

When nobody listens, a dependency pays one attribute read per event it would have sent
(``DEPENDENCIES.listening``), and builds nothing; nothing is sent from the cache-hit path.
The hub holds its listeners and tracked objects weakly: a listener lives as long as
whoever uses it (the middleware holds its ``metrics``), and a test's breaker or store does
not outlive the test. An exporter that raises is logged once per exception type and
otherwise ignored: metrics never change an answer.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol, TypeAlias, runtime_checkable

__all__ = [
    "BREAKER_STATE_VALUES",
    "DEPENDENCIES",
    "BreakerState",
    "BreakerTransition",
    "Decision",
    "DependencyEvent",
    "DependencyEvents",
    "DependencyMetrics",
    "Metrics",
    "NonceEvent",
    "RedisCall",
    "RefusalKind",
    "ReplayRefusal",
    "UpstreamCall",
    "combine",
]

logger = logging.getLogger("dpop_guard")


@dataclass(frozen=True, slots=True)
class Decision:
    """What the guard decided about one protected request."""

    outcome: Literal["accepted", "rejected"]
    reason: str | None
    """The internal reason of a rejection (``htu_mismatch``, ...); ``None`` when accepted."""
    status: int | None
    """The status the guard answered, or ``None`` when the app answers."""
    seconds: float
    """Time spent in the guard (verification, introspection, replay record)."""
    introspection_seconds: float | None
    """Time spent introspecting, when the introspector was called."""
    verification_seconds: float | None
    """Time spent verifying the proof, when there was one to verify."""
    cache_hit: bool | None
    """``True`` when a caching introspector answered from its cache, ``False`` on a miss,
    ``None`` when nothing was cached or looked up."""


@runtime_checkable
class Metrics(Protocol):
    """Receives every decision; must be fast and must not raise."""

    def observe(self, decision: Decision) -> None:
        """Record ``decision``."""
        ...


BreakerState: TypeAlias = Literal["closed", "open", "half-open"]

BREAKER_STATE_VALUES: Final[Mapping[BreakerState, int]] = {"closed": 0, "half-open": 1, "open": 2}
"""The number a gauge shows for each breaker state (the worse, the higher)."""


@dataclass(frozen=True, slots=True)
class BreakerTransition:
    """The circuit breaker of ``upstream`` went from ``from_state`` to ``to_state``:
    ``closed -> open`` (outages in a row), ``open -> half-open`` (a trial call let
    through), ``half-open -> closed`` (it succeeded), ``half-open -> open`` (it failed)."""

    upstream: str
    from_state: BreakerState
    to_state: BreakerState


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    """One introspection sent to the endpoint: its HTTP requests (Authlete's check and
    probe run together), retries and time limit included. A call the open circuit breaker
    refuses is not one (nothing goes out; the breaker's state tells it).

    :ivar upstream: ``authlete`` or ``introspection`` (an RFC 7662 endpoint).
    :ivar cause: ``ok`` when the endpoint answered (a token it refused included), else the
        outage's reason less the ``<upstream>_`` prefix: ``dns``, ``unreachable``
        (connect), ``tls``, ``proxy``, ``timeout``, ``transport_error``,
        ``credentials_refused`` (401/403), ``server_error`` (5xx), ``http_error`` (another
        status), ``bad_response`` (a 200 that is not the JSON expected): the
        :data:`~dpop_guard._reasons.Outage` words; and Authlete's own ``internal_error``
        and ``probe_inconclusive``. A closed set: the outage reasons.
    :ivar seconds: from the call's start to its answer or failure.
    :ivar status: the HTTP status of a failed answer, if any.
    """

    upstream: str
    cause: str
    seconds: float
    status: int | None = None

    @property
    def outcome(self) -> Literal["ok", "error"]:
        return "ok" if self.cause == "ok" else "error"


@dataclass(frozen=True, slots=True)
class RedisCall:
    """One round trip to Redis (one batch of commands sent together).

    :ivar store: ``replay`` or ``introspection_cache``: who sent it.
    :ivar operation: the commands' names, sorted and joined by ``+`` (``SET``,
        ``GET+SET``): a small closed set, the commands the guard sends.
    :ivar error: ``None``, or what failed the whole round trip: ``timeout``,
        ``connection`` or ``error``.
    :ivar reply_errors: commands of an answered round trip that Redis refused one by one
        (an ``OOM`` reply at ``maxmemory``, ...).
    """

    store: str
    operation: str
    seconds: float
    error: Literal["timeout", "connection", "error"] | None = None
    reply_errors: int = 0


RefusalKind = Literal["full", "unsafe", "error"]
"""Why a replay store could not record a proof (:class:`ReplayRefusal`)."""


@dataclass(frozen=True, slots=True)
class ReplayRefusal:
    """The replay store could not record a proof, so its request was refused (503).

    :ivar kind: ``full`` (no free slot: the in-memory store at ``maxsize``, a Redis at
        ``maxmemory`` refusing writes), ``unsafe`` (a Redis that may evict or lose
        records) or ``error`` (any other failure: a timeout, a lost connection).
    """

    kind: RefusalKind


@dataclass(frozen=True, slots=True)
class NonceEvent:
    """What the server-nonce source did (:class:`~dpop_guard.nonce.HMACNonceSource`).

    :ivar result: ``issued`` (a fresh nonce handed out, in a ``use_dpop_nonce`` challenge
        or to replace one about to expire), ``invalid`` (a nonce refused as forged,
        foreign or malformed) or ``expired`` (refused: genuine, but too old).
    """

    result: Literal["issued", "invalid", "expired"]


DependencyEvent: TypeAlias = (
    BreakerTransition | UpstreamCall | RedisCall | ReplayRefusal | NonceEvent
)


@runtime_checkable
class DependencyMetrics(Protocol):
    """Receives every :data:`DependencyEvent`; must be fast and must not raise."""

    def dependency(self, event: DependencyEvent) -> None:
        """Record ``event``."""
        ...


class _Breaker(Protocol):
    upstream: str

    @property
    def state(self) -> BreakerState: ...


class _SizedStore(Protocol):
    maxsize: int

    def __len__(self) -> int: ...


class DependencyEvents:
    """The hub dependencies report to (one per process: :data:`DEPENDENCIES`).

    :ivar listening: whether anyone listens; a dependency reads it before building an
        event, so nobody pays for events nobody hears.
    """

    __slots__ = ("_breakers", "_failed", "_listeners", "_stores", "listening")

    def __init__(self) -> None:
        self._listeners: dict[int, weakref.ref[DependencyMetrics]] = {}
        self._breakers: weakref.WeakSet[Any] = weakref.WeakSet()
        self._stores: weakref.WeakSet[Any] = weakref.WeakSet()
        self._failed: set[type[BaseException]] = set()
        self.listening = False

    def listen(self, listener: DependencyMetrics) -> Callable[[], None]:
        """Send every event to ``listener`` from now on (held weakly; once is enough).

        :returns: a function that stops it.
        """
        key = id(listener)

        def gone(_: object) -> None:
            self._listeners.pop(key, None)
            self.listening = bool(self._listeners)

        self._listeners[key] = weakref.ref(listener, gone)
        self.listening = True

        def stop() -> None:
            gone(None)

        return stop

    def emit(self, event: DependencyEvent) -> None:
        """Hand ``event`` to every listener; a listener that raises is logged (once per
        exception type) and skipped."""
        for ref in list(self._listeners.values()):
            listener = ref()
            if listener is None:
                continue
            try:
                listener.dependency(event)
            except Exception as exc:
                if type(exc) not in self._failed:
                    self._failed.add(type(exc))
                    logger.warning(
                        "dpop_guard: a metrics listener raised %s; ignored",
                        type(exc).__name__,
                        extra={"dpop_guard_reason": "metrics_error"},
                    )

    def track_breaker(self, breaker: _Breaker) -> None:
        """Report ``breaker``'s state on every scrape, while it lives."""
        self._breakers.add(breaker)

    def track_replay_store(self, store: _SizedStore) -> None:
        """Report ``store``'s size and capacity on every scrape, while it lives."""
        self._stores.add(store)

    def breakers(self) -> dict[str, int]:
        """Each upstream's breaker state now, as :data:`BREAKER_STATE_VALUES` (the worst,
        when several breakers serve one upstream)."""
        states: dict[str, int] = {}
        for breaker in list(self._breakers):
            value = BREAKER_STATE_VALUES[breaker.state]
            states[breaker.upstream] = max(value, states.get(breaker.upstream, 0))
        return states

    def replay_stores(self) -> tuple[int, int] | None:
        """``(records, capacity)`` over the live in-memory replay stores, or ``None`` when
        there is none (a Redis store is not sampled: see the module)."""
        stores = list(self._stores)
        if not stores:
            return None
        return sum(len(s) for s in stores), sum(s.maxsize for s in stores)


DEPENDENCIES = DependencyEvents()
"""The process's dependency hub."""


class _Combined:
    __slots__ = ("__weakref__", "_dependents", "_observers")

    def __init__(self, hooks: tuple[object, ...]) -> None:
        self._observers = tuple(h for h in hooks if isinstance(h, Metrics))
        self._dependents = tuple(h for h in hooks if isinstance(h, DependencyMetrics))

    def observe(self, decision: Decision) -> None:
        for hook in self._observers:
            hook.observe(decision)

    def dependency(self, event: DependencyEvent) -> None:
        for hook in self._dependents:
            hook.dependency(event)


def combine(*hooks: Metrics | DependencyMetrics) -> Metrics:
    """One ``metrics=`` object for several (Prometheus and OpenTelemetry spans, say): each
    decision goes to those with ``observe``, each dependency event to those with
    ``dependency``."""
    return _Combined(hooks)
