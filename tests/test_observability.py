"""Structured logging and the metrics hook (with the Prometheus exporter)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from dpop_guard import ProofSigner
from dpop_guard.metrics import Decision
from dpop_guard.prometheus import PrometheusMetrics
from tests._support.harness import Harness


class Recorder:
    def __init__(self) -> None:
        self.decisions: list[Decision] = []

    def observe(self, decision: Decision) -> None:
        self.decisions.append(decision)


class TestMetricsHook:
    async def test_decisions(
        self, make_harness: Callable[..., Harness], signer: ProofSigner
    ) -> None:
        """A miss, a hit and a rejection, each with outcome, reason, timing and cache use."""
        recorder = Recorder()
        h = make_harness(metrics=recorder)
        token = h.token(signer)
        await h.call(token, signer)
        await h.call(token, signer)
        await h.call(token, signer, header={"typ": "JWT"})
        miss, hit, refused = recorder.decisions
        assert (miss.outcome, miss.cache_hit, miss.status) == ("accepted", False, None)
        assert miss.introspection_seconds is not None
        assert miss.introspection_seconds <= miss.seconds
        assert miss.verification_seconds is not None
        assert miss.verification_seconds <= miss.seconds
        assert (hit.outcome, hit.cache_hit) == ("accepted", True)
        assert (refused.outcome, refused.reason, refused.status) == ("rejected", "typ_invalid", 401)
        assert refused.introspection_seconds is None and refused.cache_hit is None

    async def test_remembered_dead_token_is_a_cache_hit(
        self, make_harness: Callable[..., Harness], signer: ProofSigner
    ) -> None:
        """A token refused once is refused again from the negative cache, and the second
        decision says so (a hit), as a live token's second use does."""
        recorder = Recorder()
        h = make_harness(metrics=recorder)
        for _ in range(2):
            response = await h.call("not-a-live-token", signer)
            assert response.status_code == 401
        first, second = recorder.decisions
        assert (first.reason, first.cache_hit) == ("authlete_unauthorized", False)
        assert (second.reason, second.cache_hit) == ("authlete_unauthorized", True)

    async def test_prometheus(
        self, make_harness: Callable[..., Harness], signer: ProofSigner
    ) -> None:
        """The exporter counts outcomes and reasons, cache hits and misses, and timings."""
        registry = CollectorRegistry()
        h = make_harness(metrics=PrometheusMetrics(registry))
        token = h.token(signer)
        for _ in range(3):
            await h.call(token, signer)
        await h.call(None)

        def value(name: str, **labels: str) -> Any:
            return registry.get_sample_value(name, labels)

        assert value("dpop_guard_requests_total", outcome="accepted", reason="") == 3
        assert (
            value("dpop_guard_requests_total", outcome="rejected", reason="authorization_missing")
            == 1
        )
        assert value("dpop_guard_introspection_cache_total", result="hit") == 2
        assert value("dpop_guard_introspection_cache_total", result="miss") == 1
        assert value("dpop_guard_introspection_seconds_count") == 3
        assert value("dpop_guard_verification_seconds_count") == 3
        assert value("dpop_guard_seconds_count", outcome="accepted") == 3


class TestLogging:
    async def test_structured_fields(
        self,
        make_harness: Callable[..., Harness],
        signer: ProofSigner,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Accepted requests log at DEBUG, rejections at INFO, with the same fields."""
        caplog.set_level(logging.DEBUG, logger="dpop_guard")
        recorder = Recorder()
        h = make_harness(metrics=recorder)
        token = h.token(signer)
        await h.call(token, signer)
        await h.call(token, signer, claims={"htm": "POST"})
        records = [r for r in caplog.records if hasattr(r, "dpop_guard_outcome")]
        accepted, rejected = records
        assert accepted.levelno == logging.DEBUG
        assert accepted.dpop_guard_outcome == "accepted"
        assert accepted.dpop_guard_cache_hit is False  # type: ignore[attr-defined]
        assert rejected.levelno == logging.INFO
        assert rejected.dpop_guard_reason == "htm_mismatch"  # type: ignore[attr-defined]
        assert rejected.dpop_guard_status == 401  # type: ignore[attr-defined]
        # the log's milliseconds are the metric's seconds
        latency = round(recorder.decisions[-1].seconds * 1000, 3)
        assert rejected.dpop_guard_latency_ms == latency  # type: ignore[attr-defined]
        assert token not in caplog.text


class TestOpenTelemetry:
    async def test_spans(self, make_harness: Callable[..., Harness], signer: ProofSigner) -> None:
        """One span per decision, with outcome, reason and cache use."""
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        from dpop_guard.otel import OpenTelemetrySpans

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        h = make_harness(metrics=OpenTelemetrySpans(provider.get_tracer("test")))
        token = h.token(signer)
        await h.call(token, signer)
        await h.call(None)
        accepted, rejected = exporter.get_finished_spans()
        assert accepted.name == "dpop_guard.authenticate"
        assert accepted.attributes is not None and rejected.attributes is not None
        assert accepted.attributes["dpop_guard.outcome"] == "accepted"
        assert accepted.attributes["dpop_guard.cache_hit"] is False
        assert rejected.attributes["dpop_guard.reason"] == "authorization_missing"
        assert rejected.attributes["http.response.status_code"] == 401
        assert accepted.end_time is not None and accepted.start_time is not None
        assert accepted.end_time >= accepted.start_time
