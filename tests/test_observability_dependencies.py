"""Metrics for the guard's dependencies: the circuit breaker, the introspection endpoint,
Redis, the replay store and server nonces, through the real exporters (a
``prometheus_client`` registry, an OpenTelemetry in-memory reader), real servers (the
Authlete simulator over HTTP, ``redis-server``) and a real breaker against a dead port."""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
import redis
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route as Endpoint

from dpop_guard import AuthleteIntrospector, ProofSigner
from dpop_guard._b64 import b64url_encode
from dpop_guard.errors import DPoPGuardError
from dpop_guard.introspection import RequestFacts
from dpop_guard.introspection._breaker import CircuitBreaker
from dpop_guard.introspection.jwt import JWTAccessTokenSettings, JWTAccessTokenValidator
from dpop_guard.introspection.redis_cache import RedisTokenCache
from dpop_guard.metrics import (
    DEPENDENCIES,
    DependencyEvent,
    DependencyEvents,
    NonceEvent,
    ReplayRefusal,
    combine,
)
from dpop_guard.nonce import HMACNonceSource
from dpop_guard.prometheus import PrometheusMetrics
from dpop_guard.replay import MemoryReplayStore
from dpop_guard.replay.redis import RedisReplayStore
from tests._support.harness import Harness, authlete_settings
from tests._support.redis_server import RedisServer
from tests._support.servers import ServerThread

FACTS = RequestFacts(method="GET", htu="https://rs/a", proof="p", jkt="j", path="/a")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Scrape:
    """A :class:`PrometheusMetrics` on its own registry, and its samples."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.metrics = PrometheusMetrics(self.registry)

    def value(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def samples(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        """Every sample called ``name``, by its sorted labels."""
        found = {}
        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name == name:
                    found[tuple(sorted(sample.labels.items()))] = sample.value
        return found


@pytest.fixture(name="scrape")
def _scrape() -> Scrape:
    return Scrape()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _breaker_harness(
    make_harness: Callable[..., Harness],
    scrape: Scrape,
    url: str,
    breaker: CircuitBreaker,
    **options: Any,
) -> Harness:
    """A harness whose introspector calls ``url`` through ``breaker`` (no cache)."""
    http = httpx.AsyncClient()
    introspector = AuthleteIntrospector(http, authlete_settings(url), breaker=breaker)
    h = make_harness(introspector=introspector, metrics=scrape.metrics, **options)
    h.http = http  # closed with the harness
    return h


class TestUpstreamCalls:
    @pytest.mark.parametrize(
        ("setup", "outcome", "cause"),
        [
            ("ok", "ok", "ok"),
            ("http_500", "error", "server_error"),
            ("wrong_credentials", "error", "credentials_refused"),
            ("hang", "error", "timeout"),
            ("dead_port", "error", "unreachable"),
            ("no_such_host", "error", "dns"),
        ],
    )
    async def test_by_outcome_and_cause(
        self,
        make_harness: Callable[..., Harness],
        simulator_url: str,
        signer: ProofSigner,
        scrape: Scrape,
        setup: str,
        outcome: str,
        cause: str,
    ) -> None:
        """Each call to Authlete is counted by outcome and cause (the same classification
        as the refusal's reason) and timed; a failed call is a 503 either way."""
        url = {
            "dead_port": f"http://127.0.0.1:{_closed_port()}",
            "no_such_host": "http://authlete.invalid",
        }.get(setup, simulator_url)
        http = httpx.AsyncClient()
        settings = authlete_settings(url, timeout=0.5)
        if setup == "wrong_credentials":
            settings = replace(settings, access_token="not-the-service-token")
        h = make_harness(
            introspector=AuthleteIntrospector(http, settings, breaker=None),
            metrics=scrape.metrics,
        )
        h.http = http
        if setup in ("http_500", "hang"):
            h.simulator.set_fault(setup)
        token = h.token(signer)
        response = await h.call(token, signer)
        h.simulator.set_fault(None)
        assert response.status_code == (200 if outcome == "ok" else 503)
        calls = scrape.samples("dpop_guard_upstream_requests_total")
        assert set(calls) == {(("cause", cause), ("outcome", outcome), ("upstream", "authlete"))}
        count = scrape.value(
            "dpop_guard_upstream_request_seconds_count", upstream="authlete", outcome=outcome
        )
        assert count == sum(calls.values()) >= 1


class TestJWKSFetches:
    @pytest.mark.parametrize(
        ("path", "outcome", "cause"),
        [
            ("/jwks", "ok", "ok"),
            ("/broken", "error", "server_error"),
            ("/refused", "error", "credentials_refused"),
            ("/garbage", "error", "bad_response"),
            (None, "error", "unreachable"),
        ],
    )
    async def test_by_outcome_and_cause(
        self, scrape: Scrape, signer: ProofSigner, path: str | None, outcome: str, cause: str
    ) -> None:
        """A JWT validator's key-set fetch is an upstream call too (upstream ``jwks``),
        classified the same way, against a real HTTP server or a dead port."""

        async def jwks(request: Request) -> Response:
            return JSONResponse({"keys": [{**signer.public_jwk, "kid": "k"}]})

        app = Starlette(
            routes=[
                Endpoint("/jwks", jwks),
                Endpoint("/broken", lambda r: PlainTextResponse("down", 500)),
                Endpoint("/refused", lambda r: PlainTextResponse("no", 401)),
                Endpoint("/garbage", lambda r: PlainTextResponse("not json")),
            ]
        )
        stop = DEPENDENCIES.listen(scrape.metrics)
        header = b64url_encode(json.dumps({"alg": "ES256", "typ": "at+jwt", "kid": "k"}).encode())
        with ServerThread(app) as issuer:
            url = f"{issuer.url}{path}" if path else f"http://127.0.0.1:{_closed_port()}/jwks"
            settings = JWTAccessTokenSettings(
                issuer="https://as", audience="https://rs", jwks_uri=url
            )
            async with httpx.AsyncClient() as http:
                validator = JWTAccessTokenValidator(http, settings)
                with pytest.raises(DPoPGuardError):  # a forged token, or no keys (503)
                    await validator.introspect(f"{header}.e30.AAAA", request=FACTS)
        stop()
        assert scrape.samples("dpop_guard_upstream_requests_total") == {
            (("cause", cause), ("outcome", outcome), ("upstream", "jwks")): 1.0
        }


class TestBreaker:
    async def test_dead_port_opens_the_breaker(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, scrape: Scrape
    ) -> None:
        """Against a dead port: two refused connections open the breaker (gauge 2, one
        closed->open transition); while open no call goes out; after the cooldown the
        gauge reads half-open, and the failed trial is open->half-open->open."""
        clock = Clock()
        breaker = CircuitBreaker(threshold=2, cooldown=30, clock=clock, upstream="dead-port")
        url = f"http://127.0.0.1:{_closed_port()}"
        h = _breaker_harness(make_harness, scrape, url, breaker)
        token = h.token(signer)
        assert scrape.value("dpop_guard_breaker_state", upstream="dead-port") == 0
        for _ in range(3):
            assert (await h.call(token, signer)).status_code == 503
        assert scrape.value("dpop_guard_breaker_state", upstream="dead-port") == 2
        assert scrape.samples("dpop_guard_breaker_transitions_total") == {
            (("from", "closed"), ("to", "open"), ("upstream", "dead-port")): 1.0
        }
        unreachable = {"upstream": "authlete", "outcome": "error", "cause": "unreachable"}
        assert scrape.value("dpop_guard_upstream_requests_total", **unreachable) == 2
        clock.now += 31
        assert scrape.value("dpop_guard_breaker_state", upstream="dead-port") == 1
        assert (await h.call(token, signer)).status_code == 503
        assert scrape.value("dpop_guard_breaker_state", upstream="dead-port") == 2
        transitions = scrape.samples("dpop_guard_breaker_transitions_total")
        assert transitions == {
            (("from", "closed"), ("to", "open"), ("upstream", "dead-port")): 1.0,
            (("from", "half-open"), ("to", "open"), ("upstream", "dead-port")): 1.0,
            (("from", "open"), ("to", "half-open"), ("upstream", "dead-port")): 1.0,
        }
        assert scrape.value("dpop_guard_upstream_requests_total", **unreachable) == 3

    async def test_recovery_closes_it(
        self,
        make_harness: Callable[..., Harness],
        simulator_url: str,
        signer: ProofSigner,
        scrape: Scrape,
    ) -> None:
        """Authlete answering 500 opens the breaker; once it answers again, the trial
        call closes it: half-open->closed, gauge 0."""
        clock = Clock()
        breaker = CircuitBreaker(threshold=1, cooldown=5, clock=clock, upstream="recovering")
        h = _breaker_harness(make_harness, scrape, simulator_url, breaker)
        token = h.token(signer)
        h.simulator.set_fault("http_500")
        assert (await h.call(token, signer)).status_code == 503
        h.simulator.set_fault(None)
        assert scrape.value("dpop_guard_breaker_state", upstream="recovering") == 2
        clock.now += 6
        assert (await h.call(token, signer)).status_code == 200
        assert scrape.value("dpop_guard_breaker_state", upstream="recovering") == 0
        closed = {"upstream": "recovering", "from": "half-open", "to": "closed"}
        assert scrape.value("dpop_guard_breaker_transitions_total", **closed) == 1

    async def test_breaker_named_by_its_first_call(
        self, make_harness: Callable[..., Harness], simulator_url: str, signer: ProofSigner
    ) -> None:
        """An unnamed breaker is labelled with the upstream it serves."""
        breaker = CircuitBreaker()
        scrape = Scrape()
        h = _breaker_harness(make_harness, scrape, simulator_url, breaker)
        assert (await h.call(h.token(signer), signer)).status_code == 200
        assert breaker.upstream == "authlete"


class TestReplayStore:
    async def test_memory_store_size_and_full_refusals(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, scrape: Scrape
    ) -> None:
        """The in-memory store's records and capacity are read at each scrape; a full
        store's refusal (503) is counted as kind full."""
        gc.collect()  # stores of earlier tests, if any, are gone or stay constant
        before = (
            scrape.value("dpop_guard_replay_store_records") or 0,
            scrape.value("dpop_guard_replay_store_capacity") or 0,
        )
        store = MemoryReplayStore(maxsize=2, epoch=int(time.time()) - 3600)
        h = make_harness(replay_store=store, metrics=scrape.metrics)
        token = h.token(signer)
        for _ in range(2):
            assert (await h.call(token, signer)).status_code == 200
        assert scrape.value("dpop_guard_replay_store_records") == before[0] + 2
        assert scrape.value("dpop_guard_replay_store_capacity") == before[1] + 2
        assert (await h.call(token, signer)).status_code == 503
        assert scrape.samples("dpop_guard_replay_store_refusals_total") == {
            (("kind", "full"),): 1.0
        }

    async def test_redis_round_trips(
        self,
        make_harness: Callable[..., Harness],
        signer: ProofSigner,
        scrape: Scrape,
        redis_url: str,
    ) -> None:
        """Each round trip to a real Redis is timed, by store and by the commands sent."""
        store = RedisReplayStore.from_url(redis_url)
        h = make_harness(replay_store=store, metrics=scrape.metrics)
        token = h.token(signer)
        try:
            for _ in range(3):
                assert (await h.call(token, signer)).status_code == 200
        finally:
            await store.aclose()
        trips = scrape.samples("dpop_guard_redis_round_trip_seconds_count")
        sets = {k: v for k, v in trips.items() if "SET" in dict(k)["operation"].split("+")}
        assert {dict(k)["store"] for k in trips} == {"replay"}
        assert sum(sets.values()) >= 3  # a SET NX per proof (and the epoch marker's)
        assert scrape.samples("dpop_guard_redis_errors_total") == {}

    async def test_redis_down(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, scrape: Scrape
    ) -> None:
        """Redis killed: the next record fails closed (503), counted as a connection
        error of the round trip and a replay-store refusal of kind error."""
        server = RedisServer().start()
        store = RedisReplayStore.from_url(server.url, command_timeout=0.5)
        h = make_harness(replay_store=store, metrics=scrape.metrics)
        token = h.token(signer)
        try:
            assert (await h.call(token, signer)).status_code == 200
            server.stop()
            assert (await h.call(token, signer)).status_code == 503
        finally:
            server.stop()
            await store.aclose()
        errors = scrape.samples("dpop_guard_redis_errors_total")
        assert {dict(k)["error"] for k in errors} == {"connection"}
        assert {dict(k)["store"] for k in errors} == {"replay"}
        assert scrape.samples("dpop_guard_replay_store_refusals_total") == {
            (("kind", "error"),): 1.0
        }

    async def test_redis_stalled(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, scrape: Scrape
    ) -> None:
        """A Redis that stops answering (the process paused): the round trip times out, a
        503 counted as a timeout."""
        server = RedisServer().start()
        store = RedisReplayStore.from_url(server.url, command_timeout=0.2)
        h = make_harness(replay_store=store, metrics=scrape.metrics)
        token = h.token(signer)
        assert server.proc is not None
        try:
            assert (await h.call(token, signer)).status_code == 200
            os.kill(server.proc.pid, signal.SIGSTOP)
            try:
                assert (await h.call(token, signer)).status_code == 503
            finally:
                os.kill(server.proc.pid, signal.SIGCONT)
        finally:
            await store.aclose()
            server.stop()
        errors = scrape.samples("dpop_guard_redis_errors_total")
        assert {dict(k)["error"] for k in errors} == {"timeout"}

    async def test_shared_introspection_cache(
        self,
        make_harness: Callable[..., Harness],
        signer: ProofSigner,
        scrape: Scrape,
        redis_url: str,
    ) -> None:
        """The shared introspection cache's round trips are timed under their own store
        label."""
        cache = RedisTokenCache.from_url(redis_url)
        h = make_harness(shared=cache, metrics=scrape.metrics)
        token = h.token(signer)
        try:
            assert (await h.call(token, signer)).status_code == 200
        finally:
            await cache.aclose()
        trips = scrape.samples("dpop_guard_redis_round_trip_seconds_count")
        assert {dict(k)["store"] for k in trips} == {"introspection_cache"}
        assert sum(trips.values()) >= 2  # a read on the miss, the write of the answer

    async def test_redis_at_maxmemory(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, scrape: Scrape
    ) -> None:
        """A Redis at maxmemory (noeviction) refuses the SET with OOM: a 503, counted as
        a refused command (error response) and a replay-store refusal of kind full."""
        server = RedisServer().start()
        store = RedisReplayStore.from_url(server.url)
        h = make_harness(replay_store=store, metrics=scrape.metrics)
        token = h.token(signer)
        admin = redis.Redis(host="127.0.0.1", port=server.port)
        try:
            assert (await h.call(token, signer)).status_code == 200
            admin.config_set("maxmemory", "1")  # every write is now over the limit
            assert (await h.call(token, signer)).status_code == 503
        finally:
            admin.close()
            await store.aclose()
            server.stop()
        errors = scrape.samples("dpop_guard_redis_errors_total")
        assert {dict(k)["error"] for k in errors} == {"response"}
        assert scrape.samples("dpop_guard_replay_store_refusals_total") == {
            (("kind", "full"),): 1.0
        }


class TestNonces:
    def test_issued_invalid_expired(self, scrape: Scrape) -> None:
        """The nonce source reports what it issues and what it refuses: a forged, foreign
        or malformed nonce is invalid; a genuine one past its two steps is expired."""
        stop = DEPENDENCIES.listen(scrape.metrics)
        source = HMACNonceSource(b"s" * 32, step=60)
        try:
            nonce = source.issue("jkt-a", 6000)
            assert source.check(nonce, "jkt-a", 6000) == "current"
            assert source.check(nonce, "jkt-b", 6000) == "invalid"  # foreign
            assert source.check("not base64!", "jkt-a", 6000) == "invalid"
            assert source.check("x" * 65, "jkt-a", 6000) == "invalid"
            assert source.check(nonce, "jkt-a", 6000 + 120) == "invalid"  # expired
        finally:
            stop()
        assert scrape.samples("dpop_guard_nonces_total") == {
            (("result", "issued"),): 1.0,
            (("result", "invalid"),): 3.0,
            (("result", "expired"),): 1.0,
        }

    async def test_through_the_guard(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, scrape: Scrape
    ) -> None:
        """A route requiring nonces: a proof without one is refused with a fresh nonce
        (issued), a stale one is refused as expired."""
        h = make_harness(nonce="required", metrics=scrape.metrics)
        token = h.token(signer)
        first = await h.call(token, signer)
        assert first.status_code == 401
        assert scrape.value("dpop_guard_nonces_total", result="issued") == 1
        source = h.app.nonce_source
        assert source is not None
        stale = source.issue(signer.jkt, int(time.time()) - 3 * 3600)
        assert (await h.call(token, signer, claims={"nonce": stale})).status_code == 401
        assert scrape.value("dpop_guard_nonces_total", result="expired") == 1


class TestOpenTelemetry:
    async def test_dependency_instruments(
        self, make_harness: Callable[..., Harness], signer: ProofSigner
    ) -> None:
        """The OpenTelemetry exporter maps the same facts onto a meter: read with the
        SDK's in-memory reader after a breaker opened against a dead port."""
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        from dpop_guard.otel import OpenTelemetryMetrics, OpenTelemetrySpans

        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        metrics = OpenTelemetryMetrics(provider.get_meter("test"))
        clock = Clock()
        breaker = CircuitBreaker(threshold=1, cooldown=30, clock=clock, upstream="otel-dead")
        http = httpx.AsyncClient()
        url = f"http://127.0.0.1:{_closed_port()}"
        h = make_harness(
            introspector=AuthleteIntrospector(http, authlete_settings(url), breaker=breaker),
            metrics=combine(OpenTelemetrySpans(), metrics),
        )
        h.http = http
        assert (await h.call(h.token(signer), signer)).status_code == 503
        points = _otel_points(reader)
        assert points[("dpop_guard.breaker.state", (("upstream", "otel-dead"),))] == 2
        transition = (("from", "closed"), ("to", "open"), ("upstream", "otel-dead"))
        assert points[("dpop_guard.breaker.transitions", transition)] == 1
        cause = (("cause", "unreachable"), ("outcome", "error"), ("upstream", "authlete"))
        assert points[("dpop_guard.upstream.requests", cause)] == 1
        duration = (("outcome", "error"), ("upstream", "authlete"))
        assert points[("dpop_guard.upstream.duration", duration)] == 1  # one observation
        refused = (("outcome", "rejected"), ("reason", "authlete_unreachable"))
        assert points[("dpop_guard.requests", refused)] == 1
        assert points[("dpop_guard.verification.duration", ())] == 1
        assert points[("dpop_guard.introspection.duration", ())] == 1
        provider.shutdown()


def _otel_points(reader: Any) -> dict[tuple[str, tuple[tuple[str, Any], ...]], float]:
    """Each data point by metric name and sorted attributes: a sum's or gauge's value,
    a histogram's count."""
    points: dict[tuple[str, tuple[tuple[str, Any], ...]], float] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    key = (metric.name, tuple(sorted((point.attributes or {}).items())))
                    count = getattr(point, "count", None)  # a histogram's; else a sum or gauge
                    points[key] = float(count if count is not None else point.value)
    return points


class TestHub:
    def test_listeners_held_weakly(self) -> None:
        """A listener nobody else holds stops listening; stop() ends a live one."""
        hub = DependencyEvents()
        heard: list[DependencyEvent] = []

        class Listener:
            def dependency(self, event: DependencyEvent) -> None:
                heard.append(event)

        listener = Listener()
        stop = hub.listen(listener)
        assert hub.listening
        hub.emit(NonceEvent("issued"))
        stop()
        assert not hub.listening
        hub.emit(NonceEvent("invalid"))
        hub.listen(Listener())  # held by nobody
        gc.collect()
        assert not hub.listening
        assert heard == [NonceEvent("issued")]

    def test_a_failing_listener_is_ignored_and_logged_once(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A listener that raises never breaks the caller; one WARNING per exception
        type, and the other listeners still hear every event."""
        hub = DependencyEvents()
        heard: list[DependencyEvent] = []

        class Broken:
            def dependency(self, event: DependencyEvent) -> None:
                raise RuntimeError("exporter bug")

        class Good:
            def dependency(self, event: DependencyEvent) -> None:
                heard.append(event)

        broken, good = Broken(), Good()
        hub.listen(broken)
        hub.listen(good)
        with caplog.at_level(logging.WARNING, logger="dpop_guard"):
            for _ in range(3):
                hub.emit(ReplayRefusal("full"))
        assert len(heard) == 3
        warnings = [r for r in caplog.records if "metrics listener" in r.getMessage()]
        assert len(warnings) == 1 and "RuntimeError" in warnings[0].getMessage()


@pytest.fixture(autouse=True)
def _no_leftover_listeners() -> Iterator[None]:
    yield
    gc.collect()  # this module's metrics objects stop listening with their tests
