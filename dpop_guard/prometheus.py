"""Prometheus metrics for the guard (``pip install dpop_guard[prometheus]``).

For example::

    metrics = PrometheusMetrics()
    app.add_middleware(DPoPGuardMiddleware, ..., metrics=metrics)
    app.mount("/metrics", prometheus_client.make_asgi_app())

Series: ``dpop_guard_requests_total{outcome,reason}``, ``dpop_guard_seconds{outcome}``
(time in the guard), ``dpop_guard_verification_seconds``, ``dpop_guard_introspection_seconds``
and
``dpop_guard_introspection_cache_total{result="hit"|"miss"}`` (the hit ratio is
``hit / (hit + miss)``).
"""

from __future__ import annotations

from ._extras import missing_extra

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
except ModuleNotFoundError as _exc:  # pragma: no cover - depends on the install
    raise missing_extra("prometheus", "dpop_guard.prometheus") from _exc

from .metrics import Decision

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


class PrometheusMetrics:
    """A :class:`~dpop_guard.metrics.Metrics` hook backed by ``prometheus_client``."""

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
