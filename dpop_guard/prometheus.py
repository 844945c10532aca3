"""Prometheus metrics for the guard (``pip install dpop_guard[prometheus]``).

For example::

    metrics = PrometheusMetrics()
    app.add_middleware(DPoPGuardMiddleware, ..., metrics=metrics)
    app.mount("/metrics", prometheus_client.make_asgi_app())

Per request (:class:`~dpop_guard.metrics.Decision`):
``dpop_guard_requests_total{outcome,reason}``, ``dpop_guard_seconds{outcome}`` (time in the
guard), ``dpop_guard_verification_seconds``, ``dpop_guard_introspection_seconds`` and
``dpop_guard_introspection_cache_total{result="hit"|"miss"}`` (the hit ratio is
``hit / (hit + miss)``).

Per dependency (:data:`~dpop_guard.metrics.DependencyEvent`, received once the middleware
is built with these metrics, or after ``DEPENDENCIES.listen(metrics)``):

- ``dpop_guard_breaker_state{upstream}``: 0 closed, 1 half-open, 2 open (read at scrape);
- ``dpop_guard_breaker_transitions_total{upstream,from,to}``;
- ``dpop_guard_upstream_requests_total{upstream,outcome,cause}`` and
  ``dpop_guard_upstream_request_seconds{upstream,outcome}``;
- ``dpop_guard_redis_round_trip_seconds{store,operation}`` and
  ``dpop_guard_redis_errors_total{store,operation,error}``;
- ``dpop_guard_replay_store_records`` and ``dpop_guard_replay_store_capacity`` (the
  in-memory stores, read at scrape) and ``dpop_guard_replay_store_refusals_total{kind}``;
- ``dpop_guard_nonces_total{result="issued"|"invalid"|"expired"}``.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._extras import missing_extra

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
    from prometheus_client.core import GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector
except ModuleNotFoundError as _exc:  # pragma: no cover - depends on the install
    raise missing_extra("prometheus", "dpop_guard.prometheus") from _exc

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

__all__ = ["PrometheusMetrics"]

_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)


class _States(Collector):
    """The gauges read when a scrape asks: breaker states, in-memory replay store fill."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        p = self.prefix
        return (
            GaugeMetricFamily(
                f"{p}_breaker_state",
                "Introspection circuit breaker: 0 closed, 1 half-open, 2 open",
                labels=["upstream"],
            ),
            GaugeMetricFamily(
                f"{p}_replay_store_records", "Live records in the in-memory replay stores"
            ),
            GaugeMetricFamily(
                f"{p}_replay_store_capacity", "Records the in-memory replay stores can hold"
            ),
        )

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        state, records, capacity = self._families()
        for upstream, value in sorted(DEPENDENCIES.breakers().items()):
            state.add_metric([upstream], value)
        stores = DEPENDENCIES.replay_stores()
        if stores is not None:
            records.add_metric([], stores[0])
            capacity.add_metric([], stores[1])
        return (state, records, capacity)


class PrometheusMetrics:
    """A :class:`~dpop_guard.metrics.Metrics` and
    :class:`~dpop_guard.metrics.DependencyMetrics` hook backed by ``prometheus_client``."""

    def __init__(
        self, registry: CollectorRegistry = REGISTRY, *, prefix: str = "dpop_guard"
    ) -> None:
        self.requests = Counter(
            f"{prefix}_requests",
            "Protected requests by outcome and reason",
            ["outcome", "reason"],
            registry=registry,
        )
        self.seconds = Histogram(
            f"{prefix}_seconds",
            "Time spent in the guard per request",
            ["outcome"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.verification = Histogram(
            f"{prefix}_verification_seconds",
            "Time spent verifying DPoP proofs",
            buckets=_BUCKETS,
            registry=registry,
        )
        self.introspection = Histogram(
            f"{prefix}_introspection_seconds",
            "Time spent introspecting, when it was called",
            buckets=_BUCKETS,
            registry=registry,
        )
        self.cache = Counter(
            f"{prefix}_introspection_cache",
            "Introspection cache lookups",
            ["result"],
            registry=registry,
        )
        self.transitions = Counter(
            f"{prefix}_breaker_transitions",
            "Introspection circuit breaker state changes",
            ["upstream", "from", "to"],
            registry=registry,
        )
        self.upstream = Counter(
            f"{prefix}_upstream_requests",
            "Calls to the introspection endpoint by outcome and cause",
            ["upstream", "outcome", "cause"],
            registry=registry,
        )
        self.upstream_seconds = Histogram(
            f"{prefix}_upstream_request_seconds",
            "Latency of calls to the introspection endpoint, retries included",
            ["upstream", "outcome"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.redis_seconds = Histogram(
            f"{prefix}_redis_round_trip_seconds",
            "Latency of Redis round trips (a batch of commands)",
            ["store", "operation"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.redis_errors = Counter(
            f"{prefix}_redis_errors",
            "Failed Redis round trips (timeout, connection, error) and refused commands (response)",
            ["store", "operation", "error"],
            registry=registry,
        )
        self.replay_refusals = Counter(
            f"{prefix}_replay_store_refusals",
            "Proofs the replay store could not record (full, unsafe, error): each a 503",
            ["kind"],
            registry=registry,
        )
        self.nonces = Counter(
            f"{prefix}_nonces",
            "Server nonces issued, and refused as invalid or expired",
            ["result"],
            registry=registry,
        )
        registry.register(_States(prefix))

    def observe(self, decision: Decision) -> None:
        """Count and time one decision."""
        self.requests.labels(decision.outcome, decision.reason or "").inc()
        self.seconds.labels(decision.outcome).observe(decision.seconds)
        if decision.verification_seconds is not None:
            self.verification.observe(decision.verification_seconds)
        if decision.introspection_seconds is not None:
            self.introspection.observe(decision.introspection_seconds)
        if decision.cache_hit is not None:
            self.cache.labels("hit" if decision.cache_hit else "miss").inc()

    def dependency(self, event: DependencyEvent) -> None:
        """Count and time one dependency event."""
        match event:
            case UpstreamCall():
                self.upstream.labels(event.upstream, event.outcome, event.cause).inc()
                self.upstream_seconds.labels(event.upstream, event.outcome).observe(event.seconds)
            case RedisCall():
                self.redis_seconds.labels(event.store, event.operation).observe(event.seconds)
                if event.error is not None:
                    self.redis_errors.labels(event.store, event.operation, event.error).inc()
                if event.reply_errors:
                    errors = self.redis_errors.labels(event.store, event.operation, "response")
                    errors.inc(event.reply_errors)
            case BreakerTransition():
                self.transitions.labels(event.upstream, event.from_state, event.to_state).inc()
            case ReplayRefusal():
                self.replay_refusals.labels(event.kind).inc()
            case NonceEvent():
                self.nonces.labels(event.result).inc()
