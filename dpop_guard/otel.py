"""OpenTelemetry spans and metrics for the guard (``pip install dpop_guard[otel]``).

:class:`OpenTelemetrySpans`, a :class:`~dpop_guard.metrics.Metrics` hook: each decision
becomes a span
``dpop_guard.authenticate`` with the guard's start and end times and the attributes
``dpop_guard.outcome``, ``dpop_guard.reason``, ``dpop_guard.cache_hit`` and
``http.response.status_code`` (for refusals). Spans become children of whatever span is
current (a server span opened by an ASGI instrumentation, for instance).

For example::

    app.add_middleware(DPoPGuardMiddleware, ..., metrics=OpenTelemetrySpans())

:class:`OpenTelemetryMetrics`, a :class:`~dpop_guard.metrics.Metrics` and
:class:`~dpop_guard.metrics.DependencyMetrics` hook on a meter: the same series as
:mod:`dpop_guard.prometheus`, named the OpenTelemetry way (dots, units as metadata):

- ``dpop_guard.requests`` (counter; ``outcome``, ``reason``), ``dpop_guard.duration``
  (histogram, s; ``outcome``), ``dpop_guard.verification.duration`` and
  ``dpop_guard.introspection.duration`` (histograms, s), ``dpop_guard.introspection.cache``
  (counter; ``result``);
- ``dpop_guard.breaker.state`` (observable gauge: 0 closed, 1 half-open, 2 open;
  ``upstream``), ``dpop_guard.breaker.transitions`` (counter; ``upstream``, ``from``,
  ``to``);
- ``dpop_guard.upstream.requests`` (counter; ``upstream``, ``outcome``, ``cause``),
  ``dpop_guard.upstream.duration`` (histogram, s; ``upstream``, ``outcome``);
- ``dpop_guard.redis.duration`` (histogram, s; ``store``, ``operation``),
  ``dpop_guard.redis.errors`` (counter; ``store``, ``operation``, ``error``);
- ``dpop_guard.replay_store.records`` and ``dpop_guard.replay_store.capacity``
  (observable gauges), ``dpop_guard.replay_store.refusals`` (counter; ``kind``);
- ``dpop_guard.nonces`` (counter; ``result``).

Both at once: ``metrics=combine(OpenTelemetrySpans(), OpenTelemetryMetrics())``
(:func:`~dpop_guard.metrics.combine`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from ._extras import missing_extra

try:
    from opentelemetry import metrics, trace
    from opentelemetry.metrics import CallbackOptions, Meter, Observation
    from opentelemetry.trace import Status, StatusCode, Tracer
except ModuleNotFoundError as _exc:  # pragma: no cover - depends on the install
    raise missing_extra("otel", "dpop_guard.otel") from _exc

from .metrics import (
    DEPENDENCIES,
    BreakerTransition,
    Decision,
    DependencyEvent,
    NonceEvent,
    RedisCall,
    ReplayRefusal,
    UpstreamCall,
)

__all__ = ["OpenTelemetryMetrics", "OpenTelemetrySpans"]


class OpenTelemetrySpans:
    """Turns decisions into spans on ``tracer`` (default: the global provider's)."""

    def __init__(self, tracer: Tracer | None = None) -> None:
        self.tracer = tracer or trace.get_tracer("dpop_guard")

    def observe(self, decision: Decision) -> None:
        """Record ``decision`` as a finished span."""
        end = time.time_ns()
        start = end - int(decision.seconds * 1e9)
        span = self.tracer.start_span("dpop_guard.authenticate", start_time=start)
        span.set_attribute("dpop_guard.outcome", decision.outcome)
        if decision.reason is not None:
            span.set_attribute("dpop_guard.reason", decision.reason)
        if decision.cache_hit is not None:
            span.set_attribute("dpop_guard.cache_hit", decision.cache_hit)
        if decision.introspection_seconds is not None:
            span.set_attribute(
                "dpop_guard.introspection_ms", round(decision.introspection_seconds * 1000, 3)
            )
        if decision.status is not None:
            span.set_attribute("http.response.status_code", decision.status)
            if decision.status >= 500:
                span.set_status(Status(StatusCode.ERROR, decision.reason or ""))
        span.end(end_time=end)


class OpenTelemetryMetrics:
    """Decisions and dependency events as OpenTelemetry instruments on ``meter`` (default:
    the global provider's meter ``dpop_guard``); see the module for the names."""

    def __init__(self, meter: Meter | None = None) -> None:
        m = meter or metrics.get_meter("dpop_guard")
        self.requests = m.create_counter("dpop_guard.requests", description="Protected requests")
        self.duration = m.create_histogram(
            "dpop_guard.duration", unit="s", description="Time spent in the guard per request"
        )
        self.verification = m.create_histogram(
            "dpop_guard.verification.duration", unit="s", description="Proof verification"
        )
        self.introspection = m.create_histogram(
            "dpop_guard.introspection.duration",
            unit="s",
            description="Token lookup (cache hit or introspection), when it was made",
        )
        self.cache = m.create_counter(
            "dpop_guard.introspection.cache", description="Introspection cache lookups"
        )
        self.transitions = m.create_counter(
            "dpop_guard.breaker.transitions", description="Circuit breaker state changes"
        )
        self.upstream = m.create_counter(
            "dpop_guard.upstream.requests", description="Calls to the introspection endpoint"
        )
        self.upstream_duration = m.create_histogram(
            "dpop_guard.upstream.duration",
            unit="s",
            description="Latency of calls to the introspection endpoint, retries included",
        )
        self.redis_duration = m.create_histogram(
            "dpop_guard.redis.duration", unit="s", description="Latency of Redis round trips"
        )
        self.redis_errors = m.create_counter(
            "dpop_guard.redis.errors", description="Failed Redis round trips and commands"
        )
        self.replay_refusals = m.create_counter(
            "dpop_guard.replay_store.refusals",
            description="Proofs the replay store could not record",
        )
        self.nonces = m.create_counter(
            "dpop_guard.nonces", description="Server nonces issued, and refused"
        )
        m.create_observable_gauge(
            "dpop_guard.breaker.state",
            callbacks=[_breaker_states],
            description="Circuit breaker: 0 closed, 1 half-open, 2 open",
        )
        m.create_observable_gauge(
            "dpop_guard.replay_store.records",
            callbacks=[_store_size(0)],
            description="Live records in the in-memory replay stores",
        )
        m.create_observable_gauge(
            "dpop_guard.replay_store.capacity",
            callbacks=[_store_size(1)],
            description="Records the in-memory replay stores can hold",
        )

    def observe(self, decision: Decision) -> None:
        """Count and time one decision."""
        self.requests.add(1, {"outcome": decision.outcome, "reason": decision.reason or ""})
        self.duration.record(decision.seconds, {"outcome": decision.outcome})
        if decision.verification_seconds is not None:
            self.verification.record(decision.verification_seconds)
        if decision.introspection_seconds is not None:
            self.introspection.record(decision.introspection_seconds)
        if decision.cache_hit is not None:
            self.cache.add(1, {"result": "hit" if decision.cache_hit else "miss"})

    def dependency(self, event: DependencyEvent) -> None:
        """Count and time one dependency event."""
        match event:
            case UpstreamCall():
                where = {"upstream": event.upstream, "outcome": event.outcome}
                self.upstream.add(1, {**where, "cause": event.cause})
                self.upstream_duration.record(event.seconds, where)
            case RedisCall():
                where = {"store": event.store, "operation": event.operation}
                self.redis_duration.record(event.seconds, where)
                if event.error is not None:
                    self.redis_errors.add(1, {**where, "error": event.error})
                if event.reply_errors:
                    self.redis_errors.add(event.reply_errors, {**where, "error": "response"})
            case BreakerTransition():
                self.transitions.add(
                    1,
                    {"upstream": event.upstream, "from": event.from_state, "to": event.to_state},
                )
            case ReplayRefusal():
                self.replay_refusals.add(1, {"kind": event.kind})
            case NonceEvent():
                self.nonces.add(1, {"result": event.result})


def _breaker_states(options: CallbackOptions) -> Iterable[Observation]:
    return [
        Observation(value, {"upstream": upstream})
        for upstream, value in sorted(DEPENDENCIES.breakers().items())
    ]


def _store_size(index: int) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(options: CallbackOptions) -> Iterable[Observation]:
        stores = DEPENDENCIES.replay_stores()
        return [] if stores is None else [Observation(stores[index])]

    return observe
