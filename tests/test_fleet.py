"""Fleets: nonces across instances, a shared replay store and a shared introspection
cache on a real Redis, Redis outages, and uvicorn --workers 2."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from dpop_guard import DPoPAuth, ProofSigner, Route
from dpop_guard.devtools.demo import free_port
from dpop_guard.devtools.simulator import (
    DEFAULT_SERVICE_ID,
    DEFAULT_SERVICE_TOKEN,
    SimulatorState,
)
from dpop_guard.introspection.redis_cache import RedisTokenCache
from dpop_guard.proof import ProofPolicy
from dpop_guard.replay import MemoryReplayStore
from dpop_guard.replay._guard import DEFAULT_FLEET_SKEW
from dpop_guard.replay.redis import RedisReplayStore
from dpop_guard.testing import make_proof
from tests._support.clock import Clock
from tests._support.harness import ORIGIN, ROUTES, Harness, assert_rejected
from tests._support.redis_cluster import RedisCluster
from tests._support.redis_server import RedisServer
from tests.replay._cluster import durable

SECRET = b"fleet-secret-0123456789abcdefghij"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(name="make_harness")
async def _make_harness(
    simulator: SimulatorState, simulator_url: str
) -> AsyncIterator[Callable[..., Harness]]:
    made: list[Harness] = []
    closers: list[Any] = []

    def make(**options: Any) -> Harness:
        for name in ("replay_store", "shared"):
            if hasattr(options.get(name), "aclose"):
                closers.append(options[name])
        harness = Harness(simulator, simulator_url, **options)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        await harness.aclose()
    for closer in closers:
        await closer.aclose()


async def get(h: Harness, auth: DPoPAuth, path: str = "/accounts") -> httpx.Response:
    return await h.client.get(path, auth=auth)


class TestNonces:
    async def test_round_trip_with_client_helper(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, reasons: list[str]
    ) -> None:
        """A nonce-requiring API: the first call is answered use_dpop_nonce, the helper
        retries once with the nonce, and later calls reuse it without a 401."""
        h = make_harness(nonce="required", nonce_secret=SECRET)
        token = h.token(signer)
        auth = DPoPAuth(signer, token)
        statuses: list[int] = []

        async def hook(response: httpx.Response) -> None:
            statuses.append(response.status_code)

        h.client.event_hooks["response"] = [hook]
        assert (await get(h, auth)).status_code == 200
        assert statuses == [401, 200]
        assert reasons[-1] == "nonce_missing"
        assert (await get(h, auth)).status_code == 200
        assert statuses == [401, 200, 200]

    async def test_challenge_shape(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, reasons: list[str]
    ) -> None:
        """use_dpop_nonce: 401, the DPoP-Nonce header, and a key-bound nonce."""
        h = make_harness(nonce="required", nonce_secret=SECRET)
        response = await h.call(h.token(signer), signer)
        params = assert_rejected(response, 401, "use_dpop_nonce", "nonce_missing", reasons)
        assert params["error_description"]
        from dpop_guard.nonce import HMACNonceSource

        nonce = response.headers["dpop-nonce"]
        assert HMACNonceSource(SECRET).check(nonce, signer.jkt, int(time.time())) == "current"

    async def test_nonce_from_one_instance_accepted_by_another(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, reasons: list[str]
    ) -> None:
        """Instances sharing the secret accept each other's nonces; another secret does not."""
        a = make_harness(nonce="required", nonce_secret=SECRET)
        b = make_harness(nonce="required", nonce_secret=SECRET)
        c = make_harness(nonce="required", nonce_secret=b"another-secret-0123456789abcdef")
        token = a.token(signer)
        nonce = (await a.call(token, signer)).headers["dpop-nonce"]
        assert (await b.call(token, signer, claims={"nonce": nonce})).status_code == 200
        response = await c.call(token, signer, claims={"nonce": nonce})
        assert_rejected(response, 401, "use_dpop_nonce", "nonce_invalid", reasons)

    async def test_stale_and_foreign(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, reasons: list[str]
    ) -> None:
        """A nonce two steps old, or issued to another key, is refused with a fresh one."""
        clock = Clock(time.time())
        h = make_harness(nonce="required", nonce_secret=SECRET, clock=clock)
        token = h.token(signer)
        nonce = (await h.call(token, signer)).headers["dpop-nonce"]
        other = ProofSigner.generate("ES256")
        foreign = (await h.call(h.token(other), other)).headers["dpop-nonce"]
        response = await h.call(token, signer, claims={"nonce": foreign})
        assert_rejected(response, 401, "use_dpop_nonce", "nonce_invalid", reasons)
        clock.now += 125
        response = await h.call(token, signer, claims={"nonce": nonce}, iat=clock.now)
        assert_rejected(response, 401, "use_dpop_nonce", "nonce_invalid", reasons)
        assert response.headers["dpop-nonce"] != nonce

    async def test_next_nonce_on_success(
        self, make_harness: Callable[..., Harness], signer: ProofSigner
    ) -> None:
        """When the nonce used is about to expire, the 200 carries the next one."""
        clock = Clock(time.time())
        h = make_harness(nonce="required", nonce_secret=SECRET, clock=clock)
        token = h.token(signer)
        nonce = (await h.call(token, signer)).headers["dpop-nonce"]
        first = await h.call(token, signer, claims={"nonce": nonce})
        assert first.status_code == 200 and "dpop-nonce" not in first.headers
        clock.now += 60
        second = await h.call(token, signer, claims={"nonce": nonce}, iat=clock.now)
        assert second.status_code == 200
        assert second.headers["dpop-nonce"] not in ("", nonce)
        assert second.json()["subject"] == "alice"

    async def test_per_route(
        self, make_harness: Callable[..., Harness], signer: ProofSigner
    ) -> None:
        """A route can require nonces while the rest do not."""
        routes = (Route("/accounts", scopes=("read:accounts",), nonce=True), *ROUTES)
        h = make_harness(routes=routes, nonce_secret=SECRET)
        token = h.token(signer, scopes=("read:accounts", "read:transactions"))
        assert (await h.call(token, signer)).status_code == 401
        assert (await h.call(token, signer, path="/accounts/a/transactions")).status_code == 200


class TestSharedReplay:
    async def test_replay_across_instances(
        self,
        make_harness: Callable[..., Harness],
        signer: ProofSigner,
        redis_url: str,
        reasons: list[str],
    ) -> None:
        """A proof used at one instance is refused at another sharing Redis."""
        a = make_harness(replay_store=RedisReplayStore.from_url(redis_url))
        b = make_harness(replay_store=RedisReplayStore.from_url(redis_url))
        token = a.token(signer)
        assert (await b.call(token, signer)).status_code == 200  # B's cache is warm, so
        proof = make_proof(signer, htu=ORIGIN + "/accounts", access_token=token)  # only the
        assert (await a.call(token, proof=proof)).status_code == 200  # replay store can
        response = await b.call(token, proof=proof)  # refuse the copy
        assert_rejected(response, 401, "invalid_dpop_proof", "jti_replayed", reasons)

    async def test_memory_store_is_per_process(
        self, make_harness: Callable[..., Harness], signer: ProofSigner
    ) -> None:
        """Why fleets need the shared store: two memory stores both accept one proof."""
        a = make_harness(replay_store=MemoryReplayStore())
        b = make_harness(replay_store=MemoryReplayStore())
        token = a.token(signer)
        assert (await b.call(token, signer)).status_code == 200  # warm B's cache
        proof = make_proof(signer, htu=ORIGIN + "/accounts", access_token=token)
        assert (await a.call(token, proof=proof)).status_code == 200
        assert (await b.call(token, proof=proof)).status_code == 200

    async def test_concurrent_copies_across_instances(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, redis_url: str
    ) -> None:
        """40 concurrent copies spread over 4 instances: exactly one 200."""
        instances = [
            make_harness(replay_store=RedisReplayStore.from_url(redis_url)) for _ in range(4)
        ]
        token = instances[0].token(signer)
        proof = make_proof(signer, htu=ORIGIN + "/accounts", access_token=token)
        statuses: list[int] = []

        async def one(i: int) -> None:
            statuses.append((await instances[i % 4].call(token, proof=proof)).status_code)

        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(one, i)
        assert statuses.count(200) == 1 and statuses.count(401) == 39

    async def test_concurrent_copies_batched(
        self,
        make_harness: Callable[..., Harness],
        signer: ProofSigner,
        redis_url: str,
    ) -> None:
        """40 concurrent copies through one instance, so their SET NX commands share
        pipelines (fewer epoch reads than requests, counted by Redis): exactly one 200."""
        import redis.asyncio as aioredis

        h = make_harness(replay_store=RedisReplayStore.from_url(redis_url))
        token = h.token(signer)
        assert (await h.call(token, signer)).status_code == 200  # warm cache and pool
        admin = aioredis.Redis.from_url(redis_url)
        await admin.config_resetstat()
        proof = make_proof(signer, htu=ORIGIN + "/accounts", access_token=token)
        statuses: list[int] = []

        async def one() -> None:
            statuses.append((await h.call(token, proof=proof)).status_code)

        async with anyio.create_task_group() as tg:
            for _ in range(40):
                tg.start_soon(one)
        stats = await admin.info("commandstats")
        await admin.aclose()
        assert statuses.count(200) == 1 and statuses.count(401) == 39
        assert stats["cmdstat_set"]["calls"] == 40
        assert stats["cmdstat_get"]["calls"] < 40  # one marker read per batch

    async def test_restart_under_load(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, reasons: list[str]
    ) -> None:
        """Redis restarted while 8 clients keep sending: 503s while it is down, and not
        one once it answers again (stale pooled connections are replaced, not failed)."""
        clock = Clock(time.time())
        server = RedisServer().start()
        try:
            h = make_harness(replay_store=RedisReplayStore.from_url(server.url), clock=clock)
            token = h.token(signer)
            assert (await h.call(token, signer, iat=clock.now)).status_code == 200
            phase = ["before"]
            # Statuses by the phase each request started in; requests in flight when Redis
            # was stopped are counted as "down" (they may fail closed).
            seen: dict[str, list[int]] = {"before": [], "down": [], "back": []}

            async def client() -> None:
                for _ in range(30):
                    started = phase[0]
                    response = await h.call(token, signer, iat=clock.now)
                    seen["down" if phase[0] != started else started].append(response.status_code)
                    await anyio.sleep(0)

            async def operator() -> None:
                while len(seen["before"]) < 24:
                    await anyio.sleep(0.001)
                server.stop()
                phase[0] = "down"
                while len(seen["down"]) < 8:
                    await anyio.sleep(0.001)
                server.start()
                clock.now += 1  # fresh proofs have an iat after the failure
                phase[0] = "back"

            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(operator)
                    for _ in range(8):
                        tg.start_soon(client)
            assert set(seen["before"]) == {200}
            assert 503 in seen["down"]
            assert len(seen["back"]) >= 8 and set(seen["back"]) == {200}
        finally:
            server.stop()

    async def test_redis_outage_and_recovery(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, reasons: list[str]
    ) -> None:
        """Redis killed: 503 and never a 200 for a replay. Restarted (empty): fresh proofs
        pass again, and proofs made before the outage are still refused."""
        clock = Clock(time.time())
        server = RedisServer().start()
        try:
            h = make_harness(replay_store=RedisReplayStore.from_url(server.url), clock=clock)
            token = h.token(signer)
            assert (await h.call(token, signer, iat=clock.now)).status_code == 200
            clock.now += 2
            used = make_proof(
                signer, htu=ORIGIN + "/accounts", access_token=token, iat=clock.now - 1
            )
            assert (await h.call(token, proof=used)).status_code == 200
            server.stop()
            assert_rejected(
                await h.call(token, proof=used), 503, None, "replay_store_error", reasons
            )
            response = await h.call(token, signer, iat=clock.now)
            assert_rejected(response, 503, None, "replay_store_error", reasons)
            server.start()
            clock.now += 1  # fresh proofs have an iat after the failure
            assert (await h.call(token, signer, iat=clock.now)).status_code == 200
            response = await h.call(token, proof=used)
            assert_rejected(response, 401, "invalid_dpop_proof", "replay_state_uncertain", reasons)
        finally:
            server.stop()

    async def test_worker_started_after_restart(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, reasons: list[str]
    ) -> None:
        """A proof accepted by worker A, then Redis restarted without persistence, then
        worker B started: B never saw a failure, and still refuses the proof (the store's
        epoch marker is gone, so B learns the store forgot); B's fresh proofs pass."""
        clock = Clock(time.time())
        server = RedisServer().start()
        try:
            a = make_harness(replay_store=RedisReplayStore.from_url(server.url), clock=clock)
            token = a.token(signer)
            used = make_proof(signer, htu=ORIGIN + "/accounts", access_token=token, iat=clock.now)
            assert (await a.call(token, proof=used)).status_code == 200
            server.stop()
            server.start()
            clock.now += 5  # the restart took a few seconds
            b = make_harness(replay_store=RedisReplayStore.from_url(server.url), clock=clock)
            # A fresh proof passes (and warms B's introspection cache, so that the copy
            # below reaches the replay guard, not Authlete, which has its own jti memory).
            assert (await b.call(token, signer, iat=clock.now)).status_code == 200
            response = await b.call(token, proof=used)
            assert_rejected(response, 401, "invalid_dpop_proof", "replay_state_uncertain", reasons)
        finally:
            server.stop()

    async def test_redis_hangs(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, reasons: list[str]
    ) -> None:
        """A Redis that stops answering (SIGSTOP): 503 (the command timeout ends the wait),
        never a pass; it answers again (SIGCONT): fresh requests pass."""
        import signal

        clock = Clock(time.time())
        server = RedisServer().start()
        try:
            h = make_harness(replay_store=RedisReplayStore.from_url(server.url), clock=clock)
            token = h.token(signer)
            assert (await h.call(token, signer, iat=clock.now)).status_code == 200
            assert server.proc is not None
            server.proc.send_signal(signal.SIGSTOP)
            with anyio.fail_after(10):  # a hang would be the bug; the timeout is 0.5 s
                response = await h.call(token, signer, iat=clock.now)
            assert_rejected(response, 503, None, "replay_store_error", reasons)
            server.proc.send_signal(signal.SIGCONT)
            clock.now += 1  # fresh proofs have an iat after the failure
            assert (await h.call(token, signer, iat=clock.now)).status_code == 200
        finally:
            if server.proc is not None:
                server.proc.send_signal(signal.SIGCONT)
            server.stop()


class TestFleetClockSkew:
    @pytest.mark.parametrize("lag", [0, 5, DEFAULT_FLEET_SKEW])
    async def test_node_behind_by_the_tolerated_skew_refuses_the_replay(
        self,
        make_harness: Callable[..., Harness],
        signer: ProofSigner,
        reasons: list[str],
        lag: int,
    ) -> None:
        """Two nodes share one store; B's wall clock is ``lag`` seconds behind A's (up to
        the default tolerated fleet skew). A client stamps its proof at the policy's
        future limit and uses it at A. At the last real second B's own iat window accepts
        that proof (a fresh control proof with the same iat gets 200 there), the copy is
        refused as a replay: the record, timed on the store's monotonic clock, outlives
        every node's window."""
        policy = ProofPolicy()
        T0 = int(time.time())  # the simulator's tokens live on real time
        mono = Clock(5000.0)
        store = MemoryReplayStore(clock=mono, epoch=T0 - 3600)
        wall_a, wall_b = Clock(T0), Clock(T0 - lag)
        a = make_harness(replay_store=store, clock=wall_a)
        b = make_harness(replay_store=store, clock=wall_b)
        token = a.token(signer)
        iat = T0 + policy.max_future_skew
        used = make_proof(signer, htu=ORIGIN + "/accounts", access_token=token, iat=iat)
        assert (await a.call(token, proof=used)).status_code == 200
        # The last real second at which B's clock reads iat + max_age.
        elapsed = iat + policy.max_age + lag - T0
        mono.now += elapsed
        wall_a.now, wall_b.now = T0 + elapsed, T0 + elapsed - lag
        control = make_proof(signer, htu=ORIGIN + "/accounts", access_token=token, iat=iat)
        assert (await b.call(token, proof=control)).status_code == 200
        response = await b.call(token, proof=used)
        assert_rejected(response, 401, "invalid_dpop_proof", "jti_replayed", reasons)


class TestSharedIntrospectionCache:
    async def test_reads_of_one_tick_share_a_round_trip(self, redis_url: str) -> None:
        """Concurrent reads of one key (a burst of misses for one token) go out once; each
        caller gets the entry."""
        import redis.asyncio as aioredis

        from dpop_guard.introspection import TokenInfo

        cache = RedisTokenCache.from_url(redis_url)
        info = TokenInfo(
            subject="s", client_id="c", scopes=frozenset({"a"}), expires_at=None, jkt="j"
        )
        await cache.set(b"k" * 32, info, time.time() + 60, 60)
        admin = aioredis.Redis.from_url(redis_url)
        await admin.config_resetstat()
        found: list[object] = []

        async def read() -> None:
            found.append(await cache.get(b"k" * 32))

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(read)
        stats = await admin.info("commandstats")
        await admin.aclose()
        await cache.aclose()
        assert len(found) == 10 and all(f is not None and f[0] == info for f in found)  # type: ignore[index]
        assert stats["cmdstat_getrange"]["calls"] == 1  # a bounded read (GETRANGE)

    async def test_one_round_for_the_fleet(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, redis_url: str
    ) -> None:
        """Two instances sharing the Redis cache: one round of Authlete calls per token."""
        a = make_harness(shared=RedisTokenCache.from_url(redis_url))
        b = make_harness(shared=RedisTokenCache.from_url(redis_url))
        token = a.token(signer)
        assert (await a.call(token, signer)).status_code == 200
        assert (await b.call(token, signer)).status_code == 200
        assert (await b.call(token, signer)).status_code == 200
        assert a.simulator.calls["auth/introspection"] == 2
        assert b.introspector.shared_hits == 1

    async def test_one_round_for_concurrent_misses(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, redis_url: str
    ) -> None:
        """16 concurrent first uses of one token over 8 cold instances: one instance takes
        the fleet's lock and asks Authlete, the others wait for its entry (one round)."""
        fleet = [make_harness(shared=RedisTokenCache.from_url(redis_url)) for _ in range(8)]
        token = fleet[0].token(signer)
        statuses: list[int] = []

        async def one(i: int) -> None:
            statuses.append((await fleet[i % 8].call(token, signer)).status_code)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for i in range(16):
                    tg.start_soon(one, i)
        assert statuses == [200] * 16
        assert fleet[0].simulator.calls["auth/introspection"] == 2  # one round: two calls
        assert sum(h.introspector.shared_hits for h in fleet) == 7

    async def test_lock_of_a_vanished_lead(
        self,
        make_harness: Callable[..., Harness],
        signer: ProofSigner,
        redis_url: str,
    ) -> None:
        """A lock whose holder died (held, never released, no entry): the wait is bounded
        and the instance asks Authlete itself."""
        import redis.asyncio as aioredis

        from dpop_guard.introspection.cached import _key

        shared = RedisTokenCache.from_url(redis_url)
        h = make_harness(shared=shared)
        h.introspector.fleet_polls = 3
        token = h.token(signer)
        admin = aioredis.Redis.from_url(redis_url)
        # The lock of this configuration's namespace and this token.
        scope = h.introspector.scope
        await admin.set(shared._lock(scope.namespace + _key(token)), b"1", px=60_000)
        await admin.aclose()
        with anyio.fail_after(10):  # 3 polls, not the lock's 60 s
            assert (await h.call(token, signer)).status_code == 200
        assert h.simulator.calls["auth/introspection"] == 2

    async def test_binding_still_checked_on_shared_hit(
        self,
        make_harness: Callable[..., Harness],
        signer: ProofSigner,
        redis_url: str,
        reasons: list[str],
    ) -> None:
        """A shared entry carries the verified thumbprint; another key is refused."""
        a = make_harness(shared=RedisTokenCache.from_url(redis_url))
        b = make_harness(shared=RedisTokenCache.from_url(redis_url))
        token = a.token(signer)
        assert (await a.call(token, signer)).status_code == 200
        response = await b.call(token, ProofSigner.generate("ES256"))
        assert_rejected(response, 401, "invalid_dpop_proof", "jkt_mismatch", reasons)

    async def test_redis_down_degrades_to_authlete(
        self, make_harness: Callable[..., Harness], signer: ProofSigner
    ) -> None:
        """No Redis for the cache: requests still pass, via Authlete."""
        h = make_harness(shared=RedisTokenCache.from_url(f"redis://127.0.0.1:{free_port()}/0"))
        token = h.token(signer)
        assert (await h.call(token, signer)).status_code == 200
        assert h.simulator.calls["auth/introspection"] == 2

    async def test_entries_hold_no_token(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, redis_url: str
    ) -> None:
        """Redis holds a token hash and the facts, never the token."""
        import redis.asyncio as aioredis

        h = make_harness(shared=RedisTokenCache.from_url(redis_url))
        token = h.token(signer)
        assert (await h.call(token, signer)).status_code == 200
        client = aioredis.Redis.from_url(redis_url)
        keys = await client.keys("dpop_guard:introspection:*")
        assert len(keys) == 1 and token.encode() not in keys[0]
        value = await client.get(keys[0])
        assert isinstance(value, bytes)
        assert token.encode() not in value and signer.jkt.encode() in value
        assert 50_000 < await client.pttl(keys[0]) <= 60_000
        await client.aclose()


@pytest.fixture(name="cluster", scope="module")
def _cluster() -> Iterator[RedisCluster]:
    cluster = durable(RedisCluster().start())  # the replay store refuses one without
    yield cluster
    cluster.stop()


@pytest.mark.redis
class TestRedisCluster:
    """The fleet through a real three-primary Redis Cluster (``redis+cluster://``)."""

    async def test_concurrent_copies_across_instances(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, cluster: RedisCluster
    ) -> None:
        """40 concurrent copies spread over 4 instances: exactly one 200."""
        # A generous budget: this test is about atomicity, on a loaded machine the first
        # round trip also opens a connection to every node.
        instances = [
            make_harness(replay_store=RedisReplayStore.from_url(cluster.url, command_timeout=3))
            for _ in range(4)
        ]
        token = instances[0].token(signer)
        proof = make_proof(signer, htu=ORIGIN + "/accounts", access_token=token)
        statuses: list[int] = []

        async def one(i: int) -> None:
            statuses.append((await instances[i % 4].call(token, proof=proof)).status_code)

        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(one, i)
        assert statuses.count(200) == 1 and statuses.count(401) == 39

    async def test_nonces_shared_cache_and_replay(
        self,
        make_harness: Callable[..., Harness],
        signer: ProofSigner,
        cluster: RedisCluster,
        reasons: list[str],
    ) -> None:
        """Nonce-requiring instances on one cluster: a nonce from one is accepted by the
        other, the token costs one Authlete round for both, and a proof used on one is a
        replay on the other."""
        a, b = (
            make_harness(
                nonce="required",
                nonce_secret=SECRET,
                replay_store=RedisReplayStore.from_url(cluster.url, command_timeout=3),
                shared=RedisTokenCache.from_url(cluster.url, command_timeout=3),
            )
            for _ in range(2)
        )
        token = a.token(signer)
        nonce = (await a.call(token, signer)).headers["dpop-nonce"]
        proof = make_proof(
            signer, htu=ORIGIN + "/accounts", access_token=token, claims={"nonce": nonce}
        )
        assert (await a.call(token, proof=proof)).status_code == 200
        response = await b.call(token, proof=proof)
        assert_rejected(response, 401, "invalid_dpop_proof", "jti_replayed", reasons)
        assert (await b.call(token, signer, claims={"nonce": nonce})).status_code == 200
        assert a.simulator.calls["auth/introspection"] == 2
        assert b.introspector.shared_hits == 1


@pytest.fixture(name="workers", scope="module")
def _workers(simulator_server: Any, redis_server: RedisServer) -> Iterator[str]:
    """The accounts API under `uvicorn --workers 2`, with Redis for replay and cache."""
    server, _ = simulator_server
    port = free_port()
    env = dict(
        os.environ,
        AUTHLETE_BASE_URL=server.url,
        AUTHLETE_API_VERSION="V3",
        AUTHLETE_SERVICE_APIKEY=DEFAULT_SERVICE_ID,
        AUTHLETE_SERVICE_ACCESSTOKEN=DEFAULT_SERVICE_TOKEN,
        DPOP_GUARD_REPLAY_STORE=redis_server.url,
        DPOP_GUARD_INTROSPECTION_CACHE=redis_server.url,
        DPOP_GUARD_PUBLIC_URL=f"http://127.0.0.1:{port}",
    )
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter
        [
            sys.executable,
            "-m",
            "uvicorn",
            "dpop_guard.devtools.demo.accounts:app",
            "--workers",
            "2",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        pids: set[int] = set()
        while len(pids) < 2:  # wait until both workers answer
            try:
                with httpx.Client(base_url=url, headers={"Connection": "close"}) as client:
                    pids.add(client.get("/health").json()["worker"])
            except httpx.TransportError:
                time.sleep(0.1)
            if time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn --workers 2 did not come up ({len(pids)} seen)")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.mark.e2e
class TestWorkers:
    async def test_race_over_two_workers(self, workers: str, simulator: SimulatorState) -> None:
        """40 concurrent copies of one proof against uvicorn --workers 2 with the Redis
        store: exactly one 200, and both workers took part."""
        signer = ProofSigner.generate("ES256")
        token = simulator.create_token(subject="alice", scopes=["read:accounts"], jkt=signer.jkt)
        proof = signer.sign(htm="GET", htu=f"{workers}/accounts", access_token=token)
        statuses: list[int] = []
        async with httpx.AsyncClient(
            base_url=workers, limits=httpx.Limits(max_connections=40)
        ) as client:

            async def one() -> None:
                response = await client.get(
                    "/accounts",
                    headers={
                        "Authorization": f"DPoP {token}",
                        "DPoP": proof,
                        "Connection": "close",
                    },
                )
                statuses.append(response.status_code)

            async with anyio.create_task_group() as tg:
                for _ in range(40):
                    tg.start_soon(one)
        assert sorted(statuses) == [200] + [401] * 39

    async def test_shared_cache_over_two_workers(
        self, workers: str, simulator: SimulatorState, redis_server: RedisServer
    ) -> None:
        """Concurrent requests on new connections reach both workers; the fleet makes one
        round of Authlete calls for the token, the other worker reading the shared cache."""
        import redis as sync_redis

        admin = sync_redis.Redis.from_url(redis_server.url)
        admin.config_resetstat()
        signer = ProofSigner.generate("ES256")
        token = simulator.create_token(subject="alice", scopes=["read:accounts"], jkt=signer.jkt)
        statuses: list[int] = []
        async with httpx.AsyncClient(
            base_url=workers, auth=DPoPAuth(signer, token), headers={"Connection": "close"}
        ) as client:
            statuses.append((await client.get("/accounts")).status_code)

            async def one() -> None:
                statuses.append((await client.get("/accounts")).status_code)

            for _ in range(5):
                async with anyio.create_task_group() as tg:
                    for _ in range(8):
                        tg.start_soon(one)
        assert statuses == [200] * 41
        assert simulator.calls["auth/introspection"] == 2
        hits = int(admin.info("stats")["keyspace_hits"])
        admin.close()
        assert hits >= 1  # the second worker found the entry in Redis


class TestStartupWarnings:
    def test_memory_store_under_several_workers(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """With WEB_CONCURRENCY > 1 the memory store logs a clear warning."""
        from dpop_guard import DPoPGuardMiddleware, GuardSettings

        class Never:
            async def introspect(self, token: str, *, request: Any) -> Any:
                raise AssertionError

        async def app(scope: Any, receive: Any, send: Any) -> None:
            raise AssertionError

        monkeypatch.setenv("WEB_CONCURRENCY", "4")
        DPoPGuardMiddleware(app, introspector=Never())
        assert "DPOP_GUARD_REPLAY_STORE=redis://" in caplog.text
        caplog.clear()
        monkeypatch.setenv("WEB_CONCURRENCY", "1")
        DPoPGuardMiddleware(app, introspector=Never(), settings=GuardSettings(nonce="required"))
        assert "replay store" not in caplog.text
        assert "DPOP_GUARD_NONCE_SECRET is not set" in caplog.text
