"""The Redis replay store against a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
import redis.asyncio as aioredis

from dpop_guard.replay import replay_store_from_url
from dpop_guard.replay.redis import RedisReplayStore
from tests._support.redis_server import free_port


@pytest.fixture(name="store")
async def _store(redis_url: str) -> AsyncIterator[RedisReplayStore]:
    store = RedisReplayStore.from_url(redis_url)
    yield store
    await store.aclose()


class TestRedisReplayStore:
    async def test_protocol_and_factory(self, redis_url: str) -> None:
        """The URL factory builds a RedisReplayStore."""
        store = replay_store_from_url(redis_url, maxsize=1)
        assert isinstance(store, RedisReplayStore)
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

    @pytest.mark.parametrize("ttl", [1, 70, 130])
    async def test_expiry_is_the_ttl(
        self, store: RedisReplayStore, redis_url: str, ttl: int
    ) -> None:
        """Redis is told to expire the record after exactly the TTL given (PTTL, read at
        once: no sleep); a key with a TTL already elapsed is free again."""
        assert await store.add_if_absent(f"k{ttl}", ttl=ttl) is True
        client = aioredis.Redis.from_url(redis_url)
        pttl = await client.pttl(f"dpop_guard:jti:k{ttl}")
        assert ttl * 1000 - 1000 < pttl <= ttl * 1000
        # Redis's own expiry, without waiting for it: PEXPIRE to 1 ms in the past deletes.
        await client.pexpireat(f"dpop_guard:jti:k{ttl}", 1)
        assert await store.add_if_absent(f"k{ttl}", ttl=ttl) is True
        await client.aclose()

    async def test_epoch_marker(self, redis_url: str) -> None:
        """add_with_epoch: the first call writes the marker (now), later calls and other
        stores on the same Redis read it; concurrent first uses agree on one epoch."""
        stores = [RedisReplayStore.from_url(redis_url) for _ in range(4)]
        results: list[tuple[bool, int]] = []

        async def first_use(i: int) -> None:
            results.append(await stores[i % 4].add_with_epoch(f"e{i}", ttl=70, now=1000 + i))

        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(first_use, i)
        epochs = {epoch for _, epoch in results}
        assert len(epochs) == 1 and all(first for first, _ in results)
        assert await stores[0].add_with_epoch("e0", ttl=70, now=5000) == (False, epochs.pop())
        for store in stores:
            await store.aclose()

    async def test_epoch_marker_lost_with_the_data(
        self, store: RedisReplayStore, redis_url: str
    ) -> None:
        """FLUSHALL (the data is gone): the next use starts a new epoch at its now."""
        assert await store.add_with_epoch("a", ttl=70, now=1000) == (True, 1000)
        client = aioredis.Redis.from_url(redis_url)
        await client.flushall()
        await client.aclose()
        assert await store.add_with_epoch("a", ttl=70, now=1500) == (True, 1500)

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
