"""Each built-in implementation is assignable to the protocol it implements. Only
type-checked (mypy compares every method's signature), never run: ``isinstance`` against a
``runtime_checkable`` protocol only looks for the method names, so a test asserting it
could not fail on a wrong signature."""

from __future__ import annotations

from dpop_guard.introspection import Introspector
from dpop_guard.introspection._http import AsyncioHTTPClient, HttpxTransport, PostTransport
from dpop_guard.introspection.authlete import AuthleteIntrospector
from dpop_guard.introspection.cached import CachingIntrospector, SharedTokenCache
from dpop_guard.introspection.jwt import JWTAccessTokenValidator
from dpop_guard.introspection.redis_cache import RedisTokenCache
from dpop_guard.introspection.rfc7662 import AuthleteStandardIntrospector, RFC7662Introspector
from dpop_guard.metrics import Metrics
from dpop_guard.mtls import (
    AsgiTlsCertificateSource,
    AwsAlbCertificateSource,
    ClientCertificateSource,
    EnvoyXfccCertificateSource,
    NginxCertificateSource,
    Rfc9440CertificateSource,
)
from dpop_guard.nonce import HMACNonceSource, NonceSource
from dpop_guard.otel import OpenTelemetrySpans
from dpop_guard.prometheus import PrometheusMetrics
from dpop_guard.replay import EpochReplayStore, ReplayStore
from dpop_guard.replay.memory import MemoryReplayStore
from dpop_guard.replay.redis import RedisReplayStore


def introspectors(
    authlete: AuthleteIntrospector,
    standard: AuthleteStandardIntrospector,
    rfc7662: RFC7662Introspector,
    jwt: JWTAccessTokenValidator,
    cached: CachingIntrospector,
) -> list[Introspector]:
    return [authlete, standard, rfc7662, jwt, cached]


def replay_stores(memory: MemoryReplayStore, redis: RedisReplayStore) -> list[ReplayStore]:
    with_epochs: list[EpochReplayStore] = [memory, redis]
    return [*with_epochs]


def shared_caches(redis: RedisTokenCache) -> SharedTokenCache:
    return redis


def nonce_sources(hmac: HMACNonceSource) -> NonceSource:
    return hmac


def metrics(prometheus: PrometheusMetrics, otel: OpenTelemetrySpans) -> list[Metrics]:
    return [prometheus, otel]


def transports(asyncio: AsyncioHTTPClient, httpx: HttpxTransport) -> list[PostTransport]:
    return [asyncio, httpx]


def certificate_sources(
    asgi: AsgiTlsCertificateSource,
    rfc9440: Rfc9440CertificateSource,
    nginx: NginxCertificateSource,
    alb: AwsAlbCertificateSource,
    envoy: EnvoyXfccCertificateSource,
) -> list[ClientCertificateSource]:
    return [asgi, rfc9440, nginx, alb, envoy]
