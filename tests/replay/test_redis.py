"""The Redis replay store against a real redis-server."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator

import anyio
import pytest
import redis.asyncio as aioredis

from dpop_guard.devtools.demo import free_port
from dpop_guard.replay import replay_store_from_url
from dpop_guard.replay.redis import RedisReplayStore
from tests._support.redis_server import RedisServer


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
        assert b"dpop_guard:jti:abc" in await client.keys("*")
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


async def _command_calls(url: str, command: str) -> int:
    client = aioredis.Redis.from_url(url)
    stats = await client.info("commandstats")
    await client.aclose()
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def _reset_stats(url: str) -> None:
    client = aioredis.Redis.from_url(url)
    await client.config_resetstat()
    await client.aclose()


class TestBatching:
    async def test_concurrent_copies_in_one_batch(self, redis_url: str) -> None:
        """40 concurrent uses of one proof on one store go out as one pipeline (one shared
        epoch read): the first SET NX of the batch wins, exactly one True."""
        store = RedisReplayStore.from_url(redis_url)
        await store.add_with_epoch("warm", ttl=70, now=1000)  # marker written, pool open
        await _reset_stats(redis_url)
        results: list[tuple[bool, int]] = []

        async def attempt() -> None:
            results.append(await store.add_with_epoch("race", ttl=70, now=1001))

        async with anyio.create_task_group() as tg:
            for _ in range(40):
                tg.start_soon(attempt)
        assert [first for first, _ in results].count(True) == 1 and len(results) == 40
        assert {epoch for _, epoch in results} == {1000}
        assert await _command_calls(redis_url, "set") == 40
        assert await _command_calls(redis_url, "get") == 1  # one batch, one marker read
        await store.aclose()

    async def test_distinct_keys_in_one_batch(self, store: RedisReplayStore) -> None:
        """Each command of a batch gets its own answer."""
        assert await store.add_if_absent("d0", ttl=70) is True
        results: dict[str, bool] = {}

        async def attempt(key: str) -> None:
            results[key] = await store.add_if_absent(key, ttl=70)

        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(attempt, f"d{i}")
        assert results == {f"d{i}": i != 0 for i in range(10)}

    async def test_failed_batch_fails_every_request(self) -> None:
        """A Redis that stops answering (SIGSTOP): every request of the batch raises
        within the command timeout (the middleware answers each with 503); none passes."""
        server = RedisServer().start()
        store = RedisReplayStore.from_url(server.url, command_timeout=0.2)
        try:
            assert (await store.add_with_epoch("before", ttl=70, now=1000))[0] is True
            assert server.proc is not None
            server.proc.send_signal(signal.SIGSTOP)
            errors: list[BaseException] = []

            async def attempt(i: int) -> None:
                try:
                    await store.add_with_epoch(f"h{i}", ttl=70, now=1001)
                except aioredis.RedisError as exc:
                    errors.append(exc)

            with anyio.fail_after(5):  # a hang would be the bug; the timeout is 0.2 s
                async with anyio.create_task_group() as tg:
                    for i in range(10):
                        tg.start_soon(attempt, i)
            assert len(errors) == 10
            assert all(isinstance(e, aioredis.TimeoutError) for e in errors)
        finally:
            if server.proc is not None:
                server.proc.send_signal(signal.SIGCONT)
            await store.aclose()
            server.stop()

    async def test_unreachable_batch_fails_every_request(self) -> None:
        """Connection refused: every request of the batch raises ConnectionError."""
        store = RedisReplayStore.from_url(f"redis://127.0.0.1:{free_port()}/0")
        errors: list[BaseException] = []

        async def attempt(i: int) -> None:
            try:
                await store.add_if_absent(f"u{i}", ttl=70)
            except aioredis.ConnectionError as exc:
                errors.append(exc)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                for i in range(5):
                    tg.start_soon(attempt, i)
        assert len(errors) == 5
        await store.aclose()


class TestRecovery:
    async def test_restart_costs_no_request(self) -> None:
        """Redis restarted: every pooled connection is stale, and the first batch on each
        is sent again on a new connection (nothing of it reached Redis), so no request
        fails once Redis answers again."""
        server = RedisServer().start()
        store = RedisReplayStore.from_url(server.url)
        try:
            # Open several pooled connections: batches of different ticks in flight at once.
            async def add(key: str) -> None:
                await store.add_if_absent(key, ttl=70)

            async def batch(tag: str) -> None:
                async with anyio.create_task_group() as tg:
                    for i in range(5):
                        tg.start_soon(add, f"{tag}{i}")

            await add("warm")  # the store's safety check, before the batches

            async with anyio.create_task_group() as tg:
                for n in range(6):
                    tg.start_soon(batch, f"p{n}-")
                    await anyio.sleep(0)
            assert isinstance(store.client, aioredis.Redis)
            pooled = len(store.client.connection_pool._available_connections)
            assert pooled >= 2
            server.stop()
            server.start()
            for i in range(2 * pooled):
                assert await store.add_if_absent(f"after{i}", ttl=70) is True
        finally:
            await store.aclose()
            server.stop()
