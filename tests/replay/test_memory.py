"""The in-memory replay store."""

from __future__ import annotations

import hashlib

import anyio
import pytest

from dpop_guard.replay import MemoryReplayStore, ReplayStoreFull


def k(name: str) -> str:
    """A replay key (64 hex digits, as VerifiedProof.replay_key) named ``name``."""
    return hashlib.sha256(name.encode()).hexdigest()


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(name="clock")
def _clock() -> FakeMonotonic:
    return FakeMonotonic()


class TestMemoryReplayStore:
    async def test_first_use_then_replay(self, clock: FakeMonotonic) -> None:
        """First use True, any later use within the TTL False."""
        store = MemoryReplayStore(clock=clock)
        assert await store.add_if_absent(k("k"), ttl=10) is True
        assert await store.add_if_absent(k("k"), ttl=10) is False
        clock.now += 9.9
        assert await store.add_if_absent(k("k"), ttl=10) is False

    async def test_expiry(self, clock: FakeMonotonic) -> None:
        """After the TTL the key is free again and the old record is gone."""
        store = MemoryReplayStore(clock=clock)
        await store.add_if_absent(k("k"), ttl=10)
        clock.now += 10
        assert await store.add_if_absent(k("k"), ttl=10) is True
        clock.now += 5
        assert await store.add_if_absent(k("k"), ttl=10) is False  # the new record lives on
        assert len(store) == 1

    @pytest.mark.parametrize("ttl", [1, 70, 130])
    async def test_record_kept_exactly_ttl(self, clock: FakeMonotonic, ttl: int) -> None:
        """A record given ``ttl`` refuses copies until the last instant before ``ttl`` and
        frees the key at exactly ``ttl`` (the proof's replay_ttl is the caller's)."""
        store = MemoryReplayStore(clock=clock)
        start = clock.now
        assert await store.add_if_absent(k("k"), ttl=ttl) is True
        clock.now = start + ttl - 1e-6
        assert await store.add_if_absent(k("k"), ttl=ttl) is False
        clock.now = start + ttl
        assert await store.add_if_absent(k("k"), ttl=ttl) is True

    async def test_full_fails_closed(self, clock: FakeMonotonic) -> None:
        """When every slot is live, a new key raises instead of evicting; replays of
        recorded keys are still refused."""
        store = MemoryReplayStore(maxsize=3, clock=clock)
        for key in "abc":
            assert await store.add_if_absent(k(key), ttl=10) is True
        with pytest.raises(ReplayStoreFull):
            await store.add_if_absent(k("d"), ttl=10)
        assert await store.add_if_absent(k("a"), ttl=10) is False
        clock.now += 10
        assert await store.add_if_absent(k("d"), ttl=10) is True  # expired slots are reclaimed

    async def test_expired_records_are_purged_gradually(self, clock: FakeMonotonic) -> None:
        """Mass expiry is drained a few records per insertion, never all at once."""
        store = MemoryReplayStore(clock=clock)
        for i in range(1000):
            await store.add_if_absent(k(f"old{i}"), ttl=10)
        clock.now += 11
        await store.add_if_absent(k("new"), ttl=10)
        assert 990 <= len(store) < 1001  # only a handful were dropped by one call
        for i in range(400):
            await store.add_if_absent(k(f"new{i}"), ttl=10)
        assert len(store) == 401  # all 1000 expired records are gone after 400 inserts

    async def test_lifetimes_expire_independently(self, clock: FakeMonotonic) -> None:
        """Records of different lifetimes each expire at their own deadline, whatever the
        order they were added in (one queue per lifetime)."""
        store = MemoryReplayStore(clock=clock)
        assert await store.add_if_absent(k("long"), ttl=100) is True
        assert await store.add_if_absent(k("short"), ttl=10) is True
        clock.now += 50
        assert await store.add_if_absent(k("short"), ttl=10) is True  # expired: a new record
        assert await store.add_if_absent(k("long"), ttl=100) is False  # still alive
        clock.now += 51
        assert await store.add_if_absent(k("long"), ttl=100) is True

    async def test_ever_new_lifetimes_stay_bounded(self, clock: FakeMonotonic) -> None:
        """A caller passing a new lifetime on every call holds one expiry bucket per live
        second at most, and every record and bucket is gone once all have expired."""
        store = MemoryReplayStore(clock=clock)
        for i in range(500):
            await store.add_if_absent(k(f"k{i}"), ttl=1 + i % 250)
            clock.now += 1
        assert len(store._buckets) <= len(store)
        clock.now += 1000
        for i in range(200):
            await store.add_if_absent(k(f"late{i}"), ttl=7)
        assert len(store) == 200
        assert len(store._buckets) == 1

    @pytest.mark.slow  # 100,000 records under tracemalloc: about 30 s on a loaded machine
    async def test_bytes_per_record(self) -> None:
        """100,000 records held by the guard's path cost at most 120 bytes each
        (tracemalloc; the proofs themselves are dropped)."""
        from benchmarks.replay_memory import bytes_per_record

        assert bytes_per_record(100_000) <= 120

    async def test_lazily_expired_record_still_refuses(self, clock: FakeMonotonic) -> None:
        """Records are dropped a few per add: one past its second but not yet dropped
        refuses its key (a key that was really used), and is dropped in turn."""
        store = MemoryReplayStore(clock=clock)
        for i in range(100):
            await store.add_if_absent(k(f"k{i}"), ttl=10)
        clock.now += 11
        refused = [await store.add_if_absent(k(f"k{i}"), ttl=10) for i in range(10)]
        assert False in refused  # some copies came before their record was dropped
        for i in range(100):
            await store.add_if_absent(k(f"n{i}"), ttl=10)
        assert len(store) <= 110

    async def test_concurrent_same_key(self) -> None:
        """Of many concurrent tasks with one key, exactly one wins."""
        store = MemoryReplayStore()
        wins: list[bool] = []

        async def attempt() -> None:
            await anyio.sleep(0)
            wins.append(await store.add_if_absent(k("same"), ttl=60))

        async with anyio.create_task_group() as tg:
            for _ in range(200):
                tg.start_soon(attempt)
        assert wins.count(True) == 1 and len(wins) == 200

    @pytest.mark.parametrize("key", ["", "k", "ab" * 31, "ab" * 33, "zz" * 32, k("x") + "0"])
    async def test_only_replay_keys(self, key: str) -> None:
        """Every key is a replay key (64 hex digits); anything else raises (a 503 through
        the guard), on every path."""
        store = MemoryReplayStore()
        with pytest.raises(ValueError):
            store.try_add(key, ttl=10, now=0)
        with pytest.raises(ValueError):
            await store.add_if_absent(key, ttl=10)
        assert len(store) == 0

    def test_invalid_size(self) -> None:
        """maxsize must be positive."""
        with pytest.raises(ValueError):
            MemoryReplayStore(maxsize=0)
