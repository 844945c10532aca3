"""The Redis replay store against a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
import redis.asyncio as aioredis

from dpop_guard.replay import ReplayStore, replay_store_from_url
from dpop_guard.replay.redis import RedisReplayStore
from tests._support.redis_server import free_port


@pytest.fixture(name="store")
async def _store(redis_url: str) -> AsyncIterator[RedisReplayStore]:
    store = RedisReplayStore.from_url(redis_url)
    yield store
    await store.aclose()


class TestRedisReplayStore:
    async def test_protocol_and_factory(self, redis_url: str) -> None:
        """It is a ReplayStore and the URL factory builds it."""
        store = replay_store_from_url(redis_url, maxsize=1)
        assert isinstance(store, RedisReplayStore) and isinstance(store, ReplayStore)
        await store.aclose()

    async def test_first_use_then_replay(self, store: RedisReplayStore) -> None:
        """First use True, second False."""
        assert await store.add_if_absent("k1", ttl=70) is True
        assert await store.add_if_absent("k1", ttl=70) is False
        assert await store.add_if_absent("k2", ttl=70) is True

    async def test_one_prefixed_key_with_ttl(self, store: RedisReplayStore, redis_url: str) -> None:
        """One key per proof, under the prefix, expiring after the TTL."""
        await store.add_if_absent("abc", ttl=70)
        client = aioredis.Redis.from_url(redis_url)
        assert await client.keys("*") == [b"dpop_guard:jti:abc"]
        assert 69_000 < await client.pttl("dpop_guard:jti:abc") <= 70_000
        await client.aclose()

    async def test_expiry(self, store: RedisReplayStore) -> None:
        """After the TTL the key is free again (Redis expires it)."""
        assert await store.add_if_absent("short", ttl=1) is True
        await anyio.sleep(1.1)
        assert await store.add_if_absent("short", ttl=1) is True

    async def test_concurrent_copies(self, redis_url: str) -> None:
        """40 concurrent uses through separate connections: exactly one wins."""
        stores = [RedisReplayStore.from_url(redis_url) for _ in range(4)]
        wins: list[bool] = []

        async def attempt(i: int) -> None:
            wins.append(await stores[i % 4].add_if_absent("race", ttl=70))

        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(attempt, i)
        assert wins.count(True) == 1 and len(wins) == 40
        for store in stores:
            await store.aclose()

    async def test_unreachable_raises(self) -> None:
        """No server: the store raises quickly (the middleware turns that into 503)."""
        store = RedisReplayStore.from_url(f"redis://127.0.0.1:{free_port()}/0")
        with anyio.fail_after(5), pytest.raises(aioredis.ConnectionError):
            await store.add_if_absent("k", ttl=70)
        await store.aclose()

    async def test_ping(self, store: RedisReplayStore) -> None:
        """ping() answers True when the server is up."""
        assert await store.ping() is True
