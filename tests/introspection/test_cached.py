"""The binding-safe introspection cache."""

from __future__ import annotations

import anyio
import pytest

from dpop_guard.errors import IntrospectionUnavailable, InvalidDPoPProof, InvalidToken
from dpop_guard.introspection import RequestFacts, TokenInfo
from dpop_guard.introspection.cached import CachingIntrospector
from tests._support.clock import Clock

FACTS = RequestFacts(method="GET", htu="https://rs/a", proof="p", jkt="JKT")


def info(expires_at: int | None = None, jkt: str | None = "JKT") -> TokenInfo:
    return TokenInfo(
        subject="alice", client_id="c", scopes=frozenset({"read"}), expires_at=expires_at, jkt=jkt
    )


class Scripted:
    """An inner introspector that answers from a script and counts calls."""

    def __init__(self, *answers: TokenInfo | Exception, delay: float = 0.0) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.delay = delay

    async def introspect(self, token: str, *, request: RequestFacts) -> TokenInfo:
        self.calls += 1
        if self.delay:
            await anyio.sleep(self.delay)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


class TestCachingIntrospector:
    async def test_hit_after_miss(self) -> None:
        """The second call for a token makes no inner call and returns the same facts."""
        inner = Scripted(info())
        cache = CachingIntrospector(inner, ttl=60)
        first = await cache.introspect("t", request=FACTS)
        second = await cache.introspect("t", request=FACTS)
        assert first is second and inner.calls == 1
        assert (cache.hits, cache.misses) == (1, 1)

    async def test_keyed_by_token_hash(self) -> None:
        """Different tokens are different entries; the raw token is not a key."""
        inner = Scripted(info())
        cache = CachingIntrospector(inner, ttl=60)
        await cache.introspect("t1", request=FACTS)
        await cache.introspect("t2", request=FACTS)
        assert inner.calls == 2
        assert all(isinstance(k, bytes) and len(k) == 32 for k in cache._cache)
        assert cache.peek("t1") is not None and cache.peek("nope") is None

    async def test_ttl(self) -> None:
        """Entries expire after ttl."""
        clock = Clock(1000.0)
        inner = Scripted(info())
        cache = CachingIntrospector(inner, ttl=30, clock=clock)
        await cache.introspect("t", request=FACTS)
        clock.now += 29
        await cache.introspect("t", request=FACTS)
        clock.now += 2
        await cache.introspect("t", request=FACTS)
        assert inner.calls == 2

    async def test_capped_at_token_expiry(self) -> None:
        """An entry never outlives its token."""
        clock = Clock(1000.0)
        inner = Scripted(info(expires_at=1010))
        cache = CachingIntrospector(inner, ttl=300, clock=clock)
        await cache.introspect("t", request=FACTS)
        clock.now = 1009
        await cache.introspect("t", request=FACTS)
        clock.now = 1010
        await cache.introspect("t", request=FACTS)
        assert inner.calls == 2

    async def test_nearly_expired_not_cached(self) -> None:
        """A token with under a second left is not cached at all."""
        clock = Clock(1000.0)
        inner = Scripted(info(expires_at=1000))
        cache = CachingIntrospector(inner, ttl=60, clock=clock)
        await cache.introspect("t", request=FACTS)
        assert len(cache) == 0

    async def test_rejections_not_cached(self) -> None:
        """A rejection is not remembered: the next call asks again."""
        inner = Scripted(InvalidToken("authlete_unauthorized"), info())
        cache = CachingIntrospector(inner, ttl=60)
        with pytest.raises(InvalidToken):
            await cache.introspect("t", request=FACTS)
        assert (await cache.introspect("t", request=FACTS)).subject == "alice"
        assert inner.calls == 2

    async def test_outages_not_cached(self) -> None:
        """An outage is not remembered either."""
        inner = Scripted(IntrospectionUnavailable("authlete_http_500"), info())
        cache = CachingIntrospector(inner, ttl=60)
        with pytest.raises(IntrospectionUnavailable):
            await cache.introspect("t", request=FACTS)
        await cache.introspect("t", request=FACTS)
        assert inner.calls == 2

    async def test_single_flight(self) -> None:
        """Concurrent misses for one token make one inner call."""
        inner = Scripted(info(), delay=0.05)
        cache = CachingIntrospector(inner, ttl=60)
        results: list[TokenInfo] = []

        async def call() -> None:
            results.append(await cache.introspect("t", request=FACTS))

        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(call)
        assert inner.calls == 1 and len(results) == 50

    async def test_single_flight_shares_outage(self) -> None:
        """During an outage, concurrent callers share the leader's failure: no stampede."""
        inner = Scripted(IntrospectionUnavailable("authlete_timeout"), delay=0.05)
        cache = CachingIntrospector(inner, ttl=60)
        failures: list[str] = []

        async def call() -> None:
            try:
                await cache.introspect("t", request=FACTS)
            except IntrospectionUnavailable as exc:
                failures.append(exc.reason)

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(call)
        assert inner.calls == 1 and failures == ["authlete_timeout"] * 20

    async def test_followers_retry_after_rejection(self) -> None:
        """A rejection of the leader's proof does not fail the followers' requests."""
        inner = Scripted(InvalidDPoPProof("authlete_unauthorized"), info(), delay=0.05)
        cache = CachingIntrospector(inner, ttl=60)
        outcomes: list[str] = []

        async def call() -> None:
            try:
                await cache.introspect("t", request=FACTS)
                outcomes.append("ok")
            except InvalidDPoPProof:
                outcomes.append("rejected")

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(call)
        assert sorted(outcomes) == ["ok"] * 9 + ["rejected"]
        assert inner.calls == 2

    async def test_invalidate(self) -> None:
        """invalidate() forgets a token."""
        inner = Scripted(info())
        cache = CachingIntrospector(inner, ttl=60)
        await cache.introspect("t", request=FACTS)
        cache.invalidate("t")
        await cache.introspect("t", request=FACTS)
        assert inner.calls == 2

    def test_ttl_must_be_positive(self) -> None:
        """A zero TTL is a configuration error (do not wrap instead)."""
        with pytest.raises(ValueError):
            CachingIntrospector(Scripted(info()), ttl=0)
