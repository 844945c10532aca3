"""OpenTelemetry spans for the guard (``pip install dpop_guard[otel]``).

A :class:`~dpop_guard.metrics.Metrics` hook: each decision becomes a span
``dpop_guard.authenticate`` with the guard's start and end times and the attributes
``dpop_guard.outcome``, ``dpop_guard.reason``, ``dpop_guard.cache_hit`` and
``http.response.status_code`` (for refusals). Spans become children of whatever span is
current (a server span opened by an ASGI instrumentation, for instance).

For example::

    app.add_middleware(DPoPGuardMiddleware, ..., metrics=OpenTelemetrySpans())
"""

from __future__ import annotations

import time

from ._extras import missing_extra

try:
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode, Tracer
except ModuleNotFoundError as _exc:  # pragma: no cover - depends on the install
    raise missing_extra("otel", "dpop_guard.otel") from _exc

from .metrics import Decision

__all__ = ["OpenTelemetrySpans"]


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
