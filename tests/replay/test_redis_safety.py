"""The Redis replay store refuses to serve while it cannot show that it keeps every record
(issue 19 section 5), against a real redis-server with live configuration changes, and a
real Redis Cluster without persistence. An injected monotonic clock stands in for the
seconds between checks (no sleeps)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import redis

from dpop_guard.errors import InvalidDPoPProof, ReplayStoreUnavailable
from dpop_guard.proof import VerifiedProof
from dpop_guard.replay._guard import ReplayGuard
from dpop_guard.replay.redis import SAFETY_INTERVAL, RedisReplayStore
from tests._support.redis_cluster import RedisCluster
from tests._support.redis_server import RedisServer

pytestmark = pytest.mark.redis

T0 = 1_800_000_000


class Mono:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def proof(jti: str, iat: int = T0) -> VerifiedProof:
    return VerifiedProof("JKT", jti, iat, "GET", "https://rs/a", None, 71)


async def outcome(guard: ReplayGuard, p: VerifiedProof, now: int) -> str:
    """``accepted``, ``503`` or the refusal's reason."""
    try:
        await guard.record(p, now=now)
    except ReplayStoreUnavailable:
        return "503"
    except InvalidDPoPProof as exc:
        return exc.reason
    return "accepted"


def fill(port: int) -> None:
    """Another client of the same Redis writes expiring keys until memory is full (what
    a volatile-* policy evicts, like the replay records)."""
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        for batch in range(40):
            pipe = client.pipeline(transaction=False)
            for i in range(500):
                pipe.set(f"other:{batch}:{i}", b"x" * 1000, ex=600)
            pipe.execute(raise_on_error=False)
        assert int(client.info("stats")["evicted_keys"]) > 0
    finally:
        client.close()


@pytest.fixture(name="server")
def _server() -> Iterator[RedisServer]:
    server = RedisServer(args=("--maxmemory", "4mb", "--maxmemory-policy", "volatile-lru"))
    yield server
    server.stop()


class TestEviction:
    async def test_guard_started_before_an_evicting_redis(
        self, server: RedisServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The guard starts while Redis is down (503); Redis comes up with maxmemory and
        volatile-lru and is filled by another client: every record is refused (503), the
        first use and every replay alike, with one ERROR line naming the policy."""
        caplog.set_level(logging.WARNING, logger="dpop_guard")
        mono = Mono()
        guard = ReplayGuard(RedisReplayStore.from_url(server.url, clock=mono))
        assert await outcome(guard, proof("early"), T0) == "503"  # Redis not up yet
        server.start()
        used = [proof(f"p{i}") for i in range(5)]
        assert [await outcome(guard, p, T0 + 1) for p in used] == ["503"] * 5
        fill(server.port)
        for step in range(3):
            mono.now += SAFETY_INTERVAL
            got = [await outcome(guard, p, T0 + 2 + step) for p in used]
            assert got == ["503"] * 5
        unsafe = [
            r
            for r in caplog.records
            if getattr(r, "dpop_guard_reason", "") == "replay_store_unsafe"
        ]
        assert len(unsafe) == 1 and "volatile-lru" in unsafe[0].getMessage()
        assert guard.store.unsafe_refusals >= 20  # type: ignore[attr-defined]
        await guard.store.aclose()  # type: ignore[attr-defined]

    @pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-lru", "volatile-ttl"])
    async def test_policy_changed_at_run_time(self, policy: str) -> None:
        """Redis without a memory limit: proofs are accepted. Then CONFIG SET maxmemory
        and an evicting policy at run time, and another client fills it: within one
        check interval every record is refused (503); set back to noeviction (and room
        made), the
        proofs used before are refused as uncertain (the evictions started a new epoch),
        never accepted again, and fresh proofs pass."""
        server = RedisServer().start()
        mono = Mono()
        guard = ReplayGuard(RedisReplayStore.from_url(server.url, clock=mono))
        other = ReplayGuard(RedisReplayStore.from_url(server.url, clock=mono))
        try:
            used = [proof(f"p{i}") for i in range(5)]
            assert [await outcome(guard, p, T0) for p in used] == ["accepted"] * 5
            admin = redis.Redis(host="127.0.0.1", port=server.port)
            admin.config_set("maxmemory", "4mb")
            admin.config_set("maxmemory-policy", policy)
            fill(server.port)
            mono.now += SAFETY_INTERVAL
            assert [await outcome(guard, p, T0 + 1) for p in used] == ["503"] * 5
            assert await outcome(guard, proof("new"), T0 + 1) == "503"
            admin.config_set("maxmemory-policy", "noeviction")
            admin.config_set("maxmemory", "0")  # room again for records (full, it is OOM)
            admin.close()
            mono.now += SAFETY_INTERVAL
            for g in (guard, other):  # the worker that saw it, and one that did not
                got = [await outcome(g, p, T0 + 3) for p in used]
                assert set(got) <= {"replay_state_uncertain", "jti_replayed"}
            assert await outcome(guard, proof("fresh", T0 + 3), T0 + 3) == "accepted"
        finally:
            for g in (guard, other):
                await g.store.aclose()  # type: ignore[attr-defined]
            server.stop()


class TestCluster:
    async def test_cluster_without_persistence_is_refused(self) -> None:
        """A Redis Cluster whose primaries run without appendonly (one restarted empty
        would forget its share of the records): a guard, started before or after such a
        restart, refuses every record (503); with appendonly set on every primary it
        serves."""
        cluster = RedisCluster().start()
        try:
            mono = Mono()
            guard = ReplayGuard(RedisReplayStore.from_url(cluster.url, clock=mono))
            assert await outcome(guard, proof("a"), T0) == "503"
            cluster.kill(cluster.ports[0])  # a primary gone (it would restart empty)
            late = ReplayGuard(RedisReplayStore.from_url(cluster.url, clock=mono))
            assert await outcome(late, proof("a"), T0 + 1) == "503"
            await late.store.aclose()  # type: ignore[attr-defined]
            await guard.store.aclose()  # type: ignore[attr-defined]
        finally:
            cluster.stop()
        cluster = RedisCluster().start()
        try:
            for port in cluster.ports:
                node = redis.Redis(host="127.0.0.1", port=port)
                node.config_set("appendonly", "yes")
                node.close()
            guard = ReplayGuard(RedisReplayStore.from_url(cluster.url, clock=Mono()))
            assert await outcome(guard, proof("a"), T0) == "accepted"
            assert await outcome(guard, proof("a"), T0) == "jti_replayed"
            await guard.store.aclose()  # type: ignore[attr-defined]
        finally:
            cluster.stop()
