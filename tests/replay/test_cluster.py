"""The Redis stores against a real three-primary Redis Cluster (``redis+cluster://``)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import anyio
import pytest
import redis.asyncio as aioredis

from dpop_guard.introspection import TokenInfo
from dpop_guard.introspection.redis_cache import RedisTokenCache
from dpop_guard.replay import replay_store_from_url
from dpop_guard.replay.redis import DEFAULT_PREFIX, RedisReplayStore
from tests._support.redis_cluster import RedisCluster
from tests.replay._cluster import durable

pytestmark = pytest.mark.redis


@pytest.fixture(name="cluster", scope="module")
def _cluster() -> Iterator[RedisCluster]:
    cluster = durable(RedisCluster().start())
    yield cluster
    cluster.stop()


def keys_on(cluster: RedisCluster, port: int, count: int, tag: str) -> list[str]:
    """Replay keys (as the store names them) whose slots live on the primary ``port``:
    the test chooses its data, production key names stay as they are."""
    found: list[str] = []
    for i in range(2000):
        if cluster.port_of(f"{DEFAULT_PREFIX}{tag}{i}") == port:
            found.append(f"{tag}{i}")
            if len(found) == count:
                return found
    raise LookupError(port)  # pragma: no cover - a third of the slots are on each


class TestClusterReplayStore:
    async def test_factory_and_first_use(self, cluster: RedisCluster) -> None:
        """The URL factory builds a cluster store; first use True, second False, on keys
        of every primary."""
        store = replay_store_from_url(cluster.url, maxsize=1)
        assert isinstance(store, RedisReplayStore)
        for port in cluster.ports:
            for key in keys_on(cluster, port, 2, "f"):
                assert await store.add_if_absent(key, ttl=70) is True
                assert await store.add_if_absent(key, ttl=70) is False
        await store.aclose()

    async def test_epoch_and_batch(self, cluster: RedisCluster) -> None:
        """One batch spread over the three primaries: each command goes to its key's node,
        and every caller reads the one epoch marker."""
        store = RedisReplayStore.from_url(cluster.url, connect_timeout=3, command_timeout=3)
        results: list[tuple[bool, int]] = []

        async def attempt(key: str) -> None:
            results.append(await store.add_with_epoch(key, ttl=70, now=1000))

        async with anyio.create_task_group() as tg:
            for i in range(30):
                tg.start_soon(attempt, f"b{i}")
        assert all(first for first, _ in results) and len(results) == 30
        assert len({epoch for _, epoch in results}) == 1
        await store.aclose()

    async def test_fleet_race(self, cluster: RedisCluster) -> None:
        """40 concurrent copies of one proof over 4 stores (4 workers): exactly one wins."""
        # A generous budget: this test is about atomicity (see test_fleet.TestRedisCluster).
        stores = [
            RedisReplayStore.from_url(cluster.url, connect_timeout=3, command_timeout=3)
            for _ in range(4)
        ]
        wins: list[bool] = []

        async def attempt(i: int) -> None:
            wins.append((await stores[i % 4].add_with_epoch("race", ttl=70, now=1000))[0])

        try:
            async with anyio.create_task_group() as tg:
                for i in range(40):
                    tg.start_soon(attempt, i)
        finally:
            for store in stores:
                await store.aclose()
        assert wins.count(True) == 1 and len(wins) == 40


class TestClusterTokenCache:
    async def test_shared_cache(self, cluster: RedisCluster) -> None:
        """The shared introspection cache stores and reads entries through the cluster."""
        cache = RedisTokenCache.from_url(cluster.url)
        info = TokenInfo(
            subject="alice", client_id="c", scopes=frozenset({"read"}), expires_at=None,
            jkt="thumb",
        )  # fmt: skip
        until = time.time() + 60
        for i in range(6):
            key = bytes([i]) * 32
            assert await cache.get(key) is None
            await cache.set(key, info, until, 60)
            got = await cache.get(key)
            assert got is not None and got[0].subject == "alice"
        await cache.aclose()


class TestPrimaryDown:
    async def test_one_primary_killed(self) -> None:
        """A primary killed mid-run: requests for its keys fail closed (raise, so 503),
        requests for keys on the other primaries keep passing, in the same batch."""
        cluster = durable(RedisCluster().start())
        # A clock that stands still: the store's safety check (INFO on every primary, which
        # fails once one is dead) is not due again during the test.
        store = RedisReplayStore.from_url(cluster.url, command_timeout=1.0, clock=lambda: 0.0)
        try:
            epoch_port = cluster.port_of(store.epoch_key)
            dead = next(p for p in cluster.ports if p != epoch_port)
            alive = [p for p in cluster.ports if p != dead]
            assert (await store.add_with_epoch("warm", ttl=70, now=1000))[0] is True
            dead_keys = keys_on(cluster, dead, 3, "d")
            live_keys = [k for p in alive for k in keys_on(cluster, p, 3, "l")]
            for key in dead_keys + live_keys:  # every node's connection open
                assert await store.add_if_absent(key + "x", ttl=70) is True
            cluster.kill(dead)
            outcome: dict[str, object] = {}

            async def attempt(key: str) -> None:
                try:
                    outcome[key] = await store.add_with_epoch(key, ttl=70, now=1001)
                except aioredis.RedisError as exc:
                    outcome[key] = exc

            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    for key in dead_keys + live_keys:
                        tg.start_soon(attempt, key)
            assert all(isinstance(outcome[k], aioredis.RedisError) for k in dead_keys)
            assert all(outcome[k] == (True, 1000) for k in live_keys)
        finally:
            await store.aclose()
            cluster.stop()
