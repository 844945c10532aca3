"""The replay guard: one use per proof, and no proof the store cannot vouch for, with an
injected clock (no sleeps), on the memory store and on a real redis-server."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from dpop_guard.errors import InvalidDPoPProof, ReplayStoreUnavailable
from dpop_guard.proof import ProofPolicy, VerifiedProof
from dpop_guard.replay import EpochReplayStore, MemoryReplayStore, ReplayStoreFull, SyncReplayStore
from dpop_guard.replay._guard import DEFAULT_FLEET_SKEW, ReplayGuard
from dpop_guard.replay.redis import RedisReplayStore, ReplayStoreUnsafe
from tests._support.redis_server import RedisServer

T0 = 1_800_000_000  # wall-clock seconds
NONCE_TTL = 130  # a nonce-route proof: nonce lifetime 120 + 2 x leeway 5
PLAIN_TTL = 70  # iat window 60 + 2 x leeway 5


class FakeMonotonic:
    """An injectable monotonic clock (the memory store's TTL clock)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def proof(jti: str, *, iat: int, ttl: int = PLAIN_TTL, jkt: str = "JKT") -> VerifiedProof:
    return VerifiedProof(jkt, jti, iat, "GET", "https://rs/a", None, ttl)


async def reason_of(guard: ReplayGuard, p: VerifiedProof, now: int) -> str | None:
    """``None`` if the guard accepts ``p`` at ``now``, else the refusal's reason."""
    try:
        await guard.record(p, now=now)
    except InvalidDPoPProof as exc:
        return exc.reason
    return None


class Switchable:
    """A real memory store behind a switch: while ``down``, every call raises, as a store
    does during an outage. (It has no epoch: it stands for a third-party store.)"""

    def __init__(self, store: MemoryReplayStore) -> None:
        self.store = store
        self.down = False

    async def add_if_absent(self, key: str, *, ttl: int) -> bool:
        if self.down:
            raise ConnectionError("store down")
        return await self.store.add_if_absent(key, ttl=ttl)


class TestRecord:
    async def test_first_use_then_replay(self) -> None:
        """The first use passes, a second is jti_replayed."""
        guard = ReplayGuard(MemoryReplayStore())
        assert await reason_of(guard, proof("a", iat=T0), T0) is None
        assert await reason_of(guard, proof("a", iat=T0), T0 + 1) == "jti_replayed"
        assert await reason_of(guard, proof("b", iat=T0), T0 + 1) is None

    async def test_record_lives_exactly_its_ttl(self) -> None:
        """The store keeps the record for the TTL the proof carries, to the boundary: a
        130 s nonce-route record refuses the copy at 129.999 s and is gone at 130 s."""
        mono = FakeMonotonic()
        guard = ReplayGuard(MemoryReplayStore(clock=mono), fleet_skew=0)
        p = proof("n", iat=T0, ttl=NONCE_TTL)
        await guard.record(p, now=T0)
        mono.now += NONCE_TTL - 0.001
        assert await reason_of(guard, p, T0 + NONCE_TTL - 1) == "jti_replayed"
        mono.now += 0.001
        # The record is gone: only the verifier's iat window refuses such a proof now.
        assert await reason_of(guard, p, T0 + NONCE_TTL) is None

    @pytest.mark.parametrize("skew", [0, 1, 10, 30])
    async def test_a_node_behind_by_the_tolerated_skew_still_refuses(self, skew: int) -> None:
        """Node A accepts a proof stamped at the policy's future limit; node B, whose wall
        clock is ``skew`` seconds behind A's, shares A's store. At the last second B's own
        iat window still accepts the proof (its clock says iat + max_age), the record is
        still there: jti_replayed. One second of skew beyond the tolerance is not covered
        (the test shows the boundary is the configured figure, not luck)."""
        policy = ProofPolicy()
        mono = FakeMonotonic()
        store = MemoryReplayStore(clock=mono, epoch=T0 - 3600)
        node_a = ReplayGuard(store, fleet_skew=skew)
        node_b = ReplayGuard(store, fleet_skew=skew)
        iat = T0 + policy.max_future_skew  # a client clock running fast, at the limit
        p = VerifiedProof("JKT", "j", iat, "GET", "https://rs/a", None, policy.replay_ttl())
        await node_a.record(p, now=T0)
        start = mono.now
        for lag in (skew, skew + 1):
            # The real second at which B (its clock `lag` behind) last accepts iat: its
            # wall clock then reads iat + max_age.
            last_real = iat + policy.max_age + lag
            mono.now = start + (last_real - T0)
            b_now = last_real - lag
            assert b_now - iat <= policy.max_age  # B's verifier would accept it
            reason = await reason_of(
                node_b, p._replace(jti=f"j{lag}" if lag > skew else "j"), b_now
            )
            if lag == skew:
                assert reason == "jti_replayed"
        # Beyond the tolerance: the record of "j" is gone at that second.
        mono.now = start + (iat + policy.max_age + skew + 1 - T0)
        assert await reason_of(node_b, p, iat + policy.max_age) is None

    async def test_outage_is_503(self) -> None:
        """A failing store is ReplayStoreUnavailable (503), never a pass."""
        store = Switchable(MemoryReplayStore())
        guard = ReplayGuard(store)
        store.down = True
        with pytest.raises(ReplayStoreUnavailable) as caught:
            await guard.record(proof("a", iat=T0), now=T0)
        assert caught.value.reason == "replay_store_error"

    @pytest.mark.parametrize(
        ("error", "reason"),
        [
            (ReplayStoreFull("full"), "replay_store_full"),
            (ReplayStoreUnsafe("evicting"), "replay_store_unsafe"),
            (TimeoutError(), "replay_store_error"),
        ],
    )
    async def test_each_failure_its_reason(self, error: Exception, reason: str) -> None:
        """A full store, one that cannot show it keeps records, and an outage are each a
        503 with their own internal reason (the operator's fix differs)."""

        class Failing:
            async def add_if_absent(self, key: str, *, ttl: int) -> bool:
                raise error

        guard = ReplayGuard(Failing())
        with pytest.raises(ReplayStoreUnavailable) as caught:
            await guard.record(proof("a", iat=T0), now=T0)
        assert caught.value.reason == reason


class TestUncertainty:
    async def test_not_disarmed_by_a_short_lived_proof(self) -> None:
        """After a failure at F, a plain proof used at F+71 (past its own 70 s lifetime)
        does not lift the uncertainty: a nonce-route proof issued before F (it lives
        130 s) is still refused at F+82, and at F+10000 (no timer to run out)."""
        store = Switchable(MemoryReplayStore())
        guard = ReplayGuard(store)
        assert await reason_of(guard, proof("warm", iat=T0), T0) is None
        failure = T0 + 100
        store.down = True
        with pytest.raises(ReplayStoreUnavailable):
            await guard.record(proof("x", iat=failure), now=failure)
        store.down = False  # back, and maybe empty
        assert await reason_of(guard, proof("fresh", iat=failure + 71), failure + 71) is None
        old_nonce_proof = proof("nonce", iat=failure - 48, ttl=NONCE_TTL)
        reason = await reason_of(guard, old_nonce_proof, failure + 82)
        assert reason == "replay_state_uncertain"
        later = proof("nonce2", iat=failure, ttl=NONCE_TTL)
        assert await reason_of(guard, later, failure + 10_000) == "replay_state_uncertain"

    async def test_proofs_made_after_the_failure_pass(self) -> None:
        """Only proofs issued at or before the failure second are refused."""
        store = Switchable(MemoryReplayStore())
        guard = ReplayGuard(store)
        await guard.record(proof("warm", iat=T0), now=T0)
        store.down = True
        with pytest.raises(ReplayStoreUnavailable):
            await guard.record(proof("x", iat=T0 + 5), now=T0 + 5)
        store.down = False
        assert await reason_of(guard, proof("y", iat=T0 + 5), T0 + 6) == "replay_state_uncertain"
        assert await reason_of(guard, proof("z", iat=T0 + 6), T0 + 6) is None

    async def test_memory_store_epoch_is_its_first_use(self) -> None:
        """A fresh memory store (a restarted process) cannot vouch for proofs issued before
        it began: they are refused; proofs of that second or later pass."""
        guard = ReplayGuard(MemoryReplayStore())
        assert await reason_of(guard, proof("now", iat=T0), T0) is None
        assert await reason_of(guard, proof("old", iat=T0 - 2), T0) == "replay_state_uncertain"
        # Signed in the second before the epoch began, first used after: in flight.
        assert await reason_of(guard, proof("in-flight", iat=T0 - 1), T0 + 1) is None
        assert await reason_of(guard, proof("skewed", iat=T0 + 3), T0) is None

    async def test_store_without_epoch_is_guarded_per_process(self) -> None:
        """A store without add_with_epoch: the guard's first use stands in for the epoch."""
        store = Switchable(MemoryReplayStore())
        assert not isinstance(store, EpochReplayStore)
        guard = ReplayGuard(store)
        assert await reason_of(guard, proof("a", iat=T0), T0) is None
        assert await reason_of(guard, proof("b", iat=T0 - 2), T0 + 1) == "replay_state_uncertain"
        assert await reason_of(guard, proof("c", iat=T0 - 1), T0 + 1) is None

    def test_built_in_stores_have_epochs(self) -> None:
        """Both built-in stores pass the guard's runtime check for the optional epoch
        method (the guard dispatches on it: failing it silently drops fleet-wide epochs),
        and a store without the method does not."""
        assert issubclass(MemoryReplayStore, EpochReplayStore)
        assert issubclass(RedisReplayStore, EpochReplayStore)

        class Plain:
            async def add_if_absent(self, key: str, *, ttl: int) -> bool:
                return True

        assert not issubclass(Plain, EpochReplayStore)


@pytest.fixture(name="server")
def _server() -> RedisServer:
    return RedisServer()


class TestFleetOnRealRedis:
    """A redis-server of its own per test, restarted without persistence."""

    @pytest.fixture(autouse=True)
    async def _stop(self, server: RedisServer) -> AsyncIterator[None]:
        server.start()
        yield
        server.stop()

    async def test_marker_written_once_without_expiry(self, server: RedisServer) -> None:
        """The first use writes the epoch marker with no expiry; later uses read it."""
        store = RedisReplayStore.from_url(server.url)
        guard = ReplayGuard(store)
        await guard.record(proof("a", iat=T0), now=T0)
        await guard.record(proof("b", iat=T0 + 5), now=T0 + 5)
        admin = aioredis.Redis.from_url(server.url)
        assert await admin.get(store.epoch_key) == str(T0).encode()
        assert await admin.pttl(store.epoch_key) == -1  # never expires
        await admin.aclose()
        await store.aclose()

    async def test_record_ttl_in_redis(self, server: RedisServer) -> None:
        """The record's expiry in Redis is the proof's replay_ttl plus the fleet skew
        (PTTL, not a sleep)."""
        store = RedisReplayStore.from_url(server.url)
        p = proof("n", iat=T0, ttl=NONCE_TTL)
        await ReplayGuard(store, fleet_skew=7).record(p, now=T0)
        admin = aioredis.Redis.from_url(server.url)
        pttl = await admin.pttl(store.prefix + p.replay_key)
        assert (NONCE_TTL + 7) * 1000 - 2000 < pttl <= (NONCE_TTL + 7) * 1000
        await admin.aclose()
        await store.aclose()

    async def test_restart_without_persistence(
        self, server: RedisServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Redis restarted empty: a proof used before the restart is refused by the worker
        that used it, and by a worker started after the restart that never saw the store
        fail; fresh proofs pass on both; the marker is written again."""
        caplog.set_level(logging.WARNING, logger="dpop_guard")
        a = ReplayGuard(RedisReplayStore.from_url(server.url))
        used, used2 = proof("used", iat=T0), proof("used2", iat=T0)
        assert await reason_of(a, used, T0) is None
        assert await reason_of(a, used2, T0) is None
        assert await reason_of(a, used, T0 + 1) == "jti_replayed"

        server.stop()
        server.start()  # no persistence: every record and the marker are gone
        restart = T0 + 20

        b = ReplayGuard(RedisReplayStore.from_url(server.url))  # a worker started now
        assert await reason_of(b, used, restart) == "replay_state_uncertain"
        assert await reason_of(b, proof("fresh-b", iat=restart), restart) is None
        # Worker A's pooled connection died with the old server: its first command may
        # fail (503, never a pass); then it reads the new marker and refuses the old proof.
        try:
            outcome = await reason_of(a, used2, restart + 1)
        except ReplayStoreUnavailable:
            outcome = await reason_of(a, used2, restart + 1)
        assert outcome == "replay_state_uncertain"
        logged = [getattr(r, "dpop_guard_reason", None) for r in caplog.records]
        assert "replay_epoch_started" in logged  # B found no marker and wrote one
        assert "replay_store_reset" in logged  # A saw the epoch change under it
        assert await reason_of(a, proof("fresh-a", iat=restart + 2), restart + 2) is None
        admin = aioredis.Redis.from_url(server.url)
        assert await admin.get(a.store.epoch_key) == str(restart).encode()  # type: ignore[attr-defined]
        await admin.aclose()
        for guard in (a, b):
            await guard.store.aclose()  # type: ignore[attr-defined]

    async def test_worker_after_restart_alone(self, server: RedisServer) -> None:
        """Only a worker started after the restart: it refuses a proof that another,
        now gone, worker accepted before the restart (today's per-process rule accepted
        it: that worker never saw a failure)."""
        gone = ReplayGuard(RedisReplayStore.from_url(server.url))
        used = proof("used", iat=T0)
        assert await reason_of(gone, used, T0) is None
        await gone.store.aclose()  # type: ignore[attr-defined]
        server.stop()
        server.start()
        fresh = ReplayGuard(RedisReplayStore.from_url(server.url))
        assert await reason_of(fresh, used, T0 + 30) == "replay_state_uncertain"
        assert await reason_of(fresh, used, T0 + 31) == "jti_replayed"  # and it is spent
        await fresh.store.aclose()  # type: ignore[attr-defined]


class TestSyncRecord:
    """A store that declares SyncReplayStore is recorded without a coroutine, through its
    one check-and-set; same record, checks and errors as the async path."""

    def test_sync_path_is_declared(self) -> None:
        """The memory store declares the sync path; a wrapper offering only the async
        methods does not, and is awaited."""
        assert isinstance(MemoryReplayStore(), SyncReplayStore)
        assert ReplayGuard(MemoryReplayStore()).is_sync
        wrapper = Switchable(MemoryReplayStore())
        assert not isinstance(wrapper, SyncReplayStore)
        assert not ReplayGuard(wrapper).is_sync
        with pytest.raises(RuntimeError):
            ReplayGuard(wrapper).record_sync(proof("a", iat=T0), now=T0)

    def test_overriding_an_async_face_is_refused(self) -> None:
        """A subclass cannot add a check to an async face only (the guard would never call
        it): defining one is a TypeError that names try_add."""
        for face in ("add_if_absent", "add_with_epoch"):
            with pytest.raises(TypeError, match="try_add"):
                type("Wrapped", (MemoryReplayStore,), {face: lambda self: None})

    async def test_a_subclass_check_and_set_is_called_on_every_path(self) -> None:
        """A subclass that overrides try_add (fault injection here) is called on the
        guard's sync path, its async path and the store's async faces: its failure is a
        503, and a replay and a proof older than the epoch are still refused."""
        calls: list[str] = []

        class Flaky(MemoryReplayStore):
            down = False

            def try_add(self, key: str, *, ttl: int, now: int) -> tuple[bool, int]:
                calls.append(key)
                if self.down:
                    raise ConnectionError("injected")
                return super().try_add(key, ttl=ttl, now=now)

        store = Flaky(epoch=T0)
        guard = ReplayGuard(store)
        guard.record_sync(proof("a", iat=T0), T0)
        await guard.record(proof("b", iat=T0), now=T0)
        with pytest.raises(InvalidDPoPProof) as refused:
            guard.record_sync(proof("b", iat=T0), T0)
        assert refused.value.reason == "jti_replayed"
        with pytest.raises(InvalidDPoPProof) as refused:
            guard.record_sync(proof("old", iat=T0 - 2), T0 + 1)
        assert refused.value.reason == "replay_state_uncertain"
        assert await store.add_if_absent(proof("a", iat=T0).replay_key, ttl=10) is False
        store.down = True
        with pytest.raises(ReplayStoreUnavailable):
            guard.record_sync(proof("c", iat=T0 + 1), T0 + 1)
        with pytest.raises(ReplayStoreUnavailable):
            await guard.record(proof("d", iat=T0 + 1), now=T0 + 1)
        expected = [proof(j, iat=T0).replay_key for j in ("a", "b", "b", "old", "a", "c", "d")]
        assert calls == expected

    def test_a_store_that_forgets_is_asked_for_its_epoch_every_time(self) -> None:
        """A sync store may lose its records and start a new epoch (a restart): the guard
        never takes the epoch it saw for granted, so a proof used before the restart is
        refused after it."""

        class Restartable(MemoryReplayStore):
            def restart(self) -> None:
                self.__init__()  # type: ignore[misc]

        store = Restartable()
        guard = ReplayGuard(store)
        guard.record_sync(proof("x", iat=T0), T0)
        store.restart()
        with pytest.raises(InvalidDPoPProof) as refused:
            guard.record_sync(proof("x", iat=T0), T0 + 5)
        assert refused.value.reason == "replay_state_uncertain"

    async def test_one_key_format(self) -> None:
        """The guard's sync path records a proof under its replay_key, the key the store's
        async faces and a Redis store use: a proof recorded one way is a replay the
        other way."""
        store = MemoryReplayStore(epoch=T0)
        ReplayGuard(store).record_sync(proof("a", iat=T0), T0)
        assert await store.add_with_epoch(proof("a", iat=T0).replay_key, ttl=10, now=T0) == (
            False,
            T0,
        )
        assert await store.add_if_absent(proof("b", iat=T0).replay_key, ttl=10) is True
        with pytest.raises(InvalidDPoPProof) as refused:
            ReplayGuard(store).record_sync(proof("b", iat=T0), T0)
        assert refused.value.reason == "jti_replayed"

    async def test_guards_sharing_one_store_see_each_others_proofs(self) -> None:
        """Two guards on one memory store record under the same key: a proof used through
        one is a replay through the other, on the sync and the async path alike."""
        store = MemoryReplayStore(epoch=T0)
        one, two = ReplayGuard(store), ReplayGuard(store)
        one.record_sync(proof("a", iat=T0), T0)
        assert await reason_of(two, proof("a", iat=T0), T0) == "jti_replayed"
        await two.record(proof("b", iat=T0), now=T0)
        with pytest.raises(InvalidDPoPProof) as refused:
            one.record_sync(proof("b", iat=T0), T0)
        assert refused.value.reason == "jti_replayed"

    async def test_same_reasons_as_async_path(self) -> None:
        """A sequence of uses gets the same answers through record_sync as through a
        store only reachable by awaiting (first use, replay, too old for the epoch)."""
        sync_guard = ReplayGuard(MemoryReplayStore(epoch=T0))

        class AsyncOnly:
            def __init__(self, store: MemoryReplayStore) -> None:
                self.store = store

            async def add_with_epoch(self, key: str, *, ttl: int, now: int) -> tuple[bool, int]:
                return await self.store.add_with_epoch(key, ttl=ttl, now=now)

            async def add_if_absent(self, key: str, *, ttl: int) -> bool:
                return await self.store.add_if_absent(key, ttl=ttl)

        async_guard = ReplayGuard(AsyncOnly(MemoryReplayStore(epoch=T0)))
        assert not async_guard.is_sync
        uses = [("a", T0), ("a", T0), ("b", T0 - 5), ("c", T0 + 1), ("c", T0 + 1)]

        def sync_reason(p: VerifiedProof) -> str | None:
            try:
                sync_guard.record_sync(p, now=T0 + 2)
            except InvalidDPoPProof as exc:
                return exc.reason
            return None

        got_sync = [sync_reason(proof(j, iat=iat)) for j, iat in uses]
        got_async = [await reason_of(async_guard, proof(j, iat=iat), T0 + 2) for j, iat in uses]
        assert (
            got_sync
            == got_async
            == [
                None,
                "jti_replayed",
                "replay_state_uncertain",
                None,
                "jti_replayed",
            ]
        )

    async def test_concurrent_uses_exactly_one_passes(self) -> None:
        """Fifty tasks present the same proof at once, through record (which takes the
        sync path) and record_sync alike: exactly one is accepted."""
        import anyio

        guard = ReplayGuard(MemoryReplayStore())
        p = proof("race", iat=T0)
        outcomes: list[str | None] = []

        async def via_record() -> None:
            await anyio.lowlevel.checkpoint()
            outcomes.append(await reason_of(guard, p, T0))

        async def via_sync() -> None:
            await anyio.lowlevel.checkpoint()
            try:
                guard.record_sync(p, now=T0)
                outcomes.append(None)
            except InvalidDPoPProof as exc:
                outcomes.append(exc.reason)

        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(via_record if i % 2 else via_sync)
        assert outcomes.count(None) == 1
        assert outcomes.count("jti_replayed") == 49

    def test_full_store_fails_closed(self) -> None:
        """A full memory store is a 503 through the sync path, and later proofs issued at
        or before that second are refused as uncertain."""
        guard = ReplayGuard(MemoryReplayStore(maxsize=1, clock=FakeMonotonic()))
        guard.record_sync(proof("one", iat=T0), now=T0)
        with pytest.raises(ReplayStoreUnavailable):
            guard.record_sync(proof("two", iat=T0), now=T0)
        store = guard.store
        assert isinstance(store, MemoryReplayStore)
        store._clock = lambda: 1e9  # the first record expired
        with pytest.raises(InvalidDPoPProof) as refused:
            guard.record_sync(proof("three", iat=T0), now=T0 + 1)
        assert refused.value.reason == "replay_state_uncertain"
        store._clock = lambda: 2e9  # "three"'s record expired
        guard.record_sync(proof("four", iat=T0 + 1), now=T0 + 1)  # issued after the failure


class TestFleetSkewSetting:
    def test_read_from_the_environment(self) -> None:
        """DPOP_GUARD_REPLAY_FLEET_SKEW sets the tolerated skew; the default is stated."""
        from dpop_guard.settings import GuardSettings

        assert GuardSettings().replay_fleet_skew == DEFAULT_FLEET_SKEW == 10
        settings = GuardSettings.from_env({"DPOP_GUARD_REPLAY_FLEET_SKEW": "30"})
        assert settings.replay_fleet_skew == 30

    @pytest.mark.parametrize("value", ["-1", "3601", "ten", "1e3", "nan"])
    def test_out_of_range_is_refused(self, value: str) -> None:
        """A negative, huge or non-integer skew is refused, naming the variable."""
        from dpop_guard.settings import GuardSettings

        with pytest.raises(ValueError, match=r"REPLAY_FLEET_SKEW|replay_fleet_skew"):
            GuardSettings.from_env({"DPOP_GUARD_REPLAY_FLEET_SKEW": value})
        with pytest.raises(ValueError):
            ReplayGuard(MemoryReplayStore(), fleet_skew=int(value) if value == "-1" else 3601)
