"""An in-process replay store: atomic within one event loop, bounded, and fail-closed
when full. Safe for a single process only; a fleet needs a shared store."""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from math import ceil
from typing import Any, Final, final

from ..metrics import DEPENDENCIES

__all__ = ["MemoryReplayStore", "ReplayStoreFull"]

# Expired records removed per insertion. More than one, so the store drains faster than it
# fills; a small constant, so no single request pays for a mass expiry (a TTL cache that
# sweeps everything at once stalls the event loop for tens of milliseconds).
_PURGE_PER_ADD = 4
# Hex digits of the replay key kept per record: 128 bits, so two live proofs never share
# one (the key is already a SHA-256 digest: its first half is as good as any other hash).
_KEPT_DIGITS = 32
_KEY_LENGTH = 64


class ReplayStoreFull(RuntimeError):
    """Every slot holds a live record. Evicting one would silently reopen a replay."""

    replay_refusal: Final = "full"  # its kind, for the metrics (ReplayRefusal)


class MemoryReplayStore:
    """A set of 128-bit digests of the live keys, and their expiry in buckets of one second.

    One key format: every method takes the proof's ``replay_key`` (64 hex digits of
    SHA-256, the same string a Redis store records; anything else raises, so a misuse
    fails closed), and the store keeps its first 128 bits, as an integer in a ``set``.
    Expiry is by whole second: the bucket of second ``s`` lists the digests that expire at
    ``s`` (the deadline rounded up, so a record lives at least its TTL and less than one
    second more), and a heap orders the buckets. A record costs a set slot, the integer
    and a list slot: 95 bytes over 100,000 records (``python -m benchmarks.replay_memory``;
    282 with the previous tuple keys, expiry dict and queue of deadlines), whatever the
    ``jti``'s length.

    Expired records are dropped a few per add (no request pays for a mass expiry), so one
    may outlive its bucket for a moment: it then refuses a second use of a proof that was
    really used, which is never a wrong answer.

    ``try_add`` contains no ``await``, so under asyncio or trio it runs to completion
    without interleaving: the check and the set are atomic for every task of the process.
    It is the store's one check-and-set: the async methods of
    :class:`~dpop_guard.replay.ReplayStore` are thin faces of it, and the replay guard calls
    it directly (the store declares :class:`~dpop_guard.replay.SyncReplayStore`). A
    subclass that intercepts records (fault injection, instrumentation) overrides
    ``try_add``; overriding an async face instead is refused when the class is defined, so
    no check can be added to one path and silently skipped on another.

    Full means fail closed: when ``maxsize`` live records exist, :class:`ReplayStoreFull`
    is raised (the middleware answers 503) rather than evicting a record that may still be
    needed. Size it as ``peak requests/s x record lifetime`` with headroom.

    Its epoch (see :class:`~dpop_guard.replay.EpochReplayStore`) is the wall-clock second
    of its first use: its memory is the process's, so proofs issued before this process
    began recording cannot be vouched for, and are refused by the replay guard (a restart
    of a single-process server does not reopen the proofs used before it).

    :param maxsize: live records at most.
    :param clock: a monotonic clock in seconds (tests pass their own).
    :param epoch: the wall-clock second from which this store's memory is complete; by
        default the ``now`` of its first use. Pass an earlier second only when the records
        really reach back that far (a test standing in for a long-running process).
    """

    def __init__(
        self,
        maxsize: int = 1_000_000,
        *,
        clock: Callable[[], float] = time.monotonic,
        epoch: int | None = None,
    ) -> None:
        if maxsize <= 0:
            raise ValueError("maxsize must be positive")
        self.maxsize = maxsize
        self._clock = clock
        self._live: set[int] = set()
        self._buckets: dict[int, list[int]] = {}  # expiry second: digests
        self._seconds: list[int] = []  # heap of the buckets' seconds
        self._epoch: int | None = epoch
        DEPENDENCIES.track_replay_store(self)  # its size, read on each scrape

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for face in ("add_if_absent", "add_with_epoch"):
            if face in cls.__dict__:
                raise TypeError(
                    f"{cls.__name__}.{face} overrides an async face of MemoryReplayStore; "
                    "override try_add, the one check-and-set every path goes through"
                )

    def __len__(self) -> int:
        return len(self._live)

    def _purge(self, now: float, limit: int | None) -> None:
        """Drop records whose bucket's second has passed, at most ``limit`` of them
        (``None``: all)."""
        live, buckets, seconds = self._live, self._buckets, self._seconds
        removed = 0
        while seconds and seconds[0] <= now:
            bucket = buckets[seconds[0]]
            while bucket and (limit is None or removed < limit):
                live.discard(bucket.pop())
                removed += 1
            if bucket:
                return  # the limit was reached
            del buckets[heapq.heappop(seconds)]

    def try_add(self, key: str, *, ttl: int, now: int) -> tuple[bool, int]:
        """Record ``key`` for at least ``ttl`` seconds, and read the epoch.

        :param key: the proof's ``replay_key``.
        :param ttl: seconds, on this store's monotonic clock.
        :raises ValueError: ``key`` is not 64 hex digits.
        :param now: wall-clock seconds; the epoch if this is the store's first use.
        :returns: ``(first_use, epoch)``.
        :raises ReplayStoreFull: if no slot is free even after dropping expired records.
        """
        clock = self._clock()
        seconds = self._seconds
        if seconds and seconds[0] <= clock:  # something has expired
            self._purge(clock, _PURGE_PER_ADD)
        if len(key) != _KEY_LENGTH:
            raise ValueError("a replay key is 64 hex digits (VerifiedProof.replay_key)")
        digest = int(key[:_KEPT_DIGITS], 16)
        live = self._live
        if digest in live:
            first = False
        else:
            if len(live) >= self.maxsize:
                self._purge(clock, None)
                if len(live) >= self.maxsize:
                    raise ReplayStoreFull("replay store is full")
            live.add(digest)
            expires = ceil(clock + ttl)  # the deadline's second, rounded up
            bucket = self._buckets.get(expires)
            if bucket is None:
                bucket = self._buckets[expires] = []
                heapq.heappush(seconds, expires)
            bucket.append(digest)
            first = True
        epoch = self._epoch
        if epoch is None:
            epoch = self._epoch = now
        return first, epoch

    @final
    async def add_if_absent(self, key: str, *, ttl: int) -> bool:
        """:meth:`try_add` as a :class:`~dpop_guard.replay.ReplayStore`: ``True`` on
        first use (the epoch starts now if this is the first use).

        :raises ReplayStoreFull: as :meth:`try_add`.
        """
        return self.try_add(key, ttl=ttl, now=int(time.time()))[0]

    @final
    async def add_with_epoch(self, key: str, *, ttl: int, now: int) -> tuple[bool, int]:
        """:meth:`try_add` as an :class:`~dpop_guard.replay.EpochReplayStore`.

        :raises ReplayStoreFull: as :meth:`try_add`.
        """
        return self.try_add(key, ttl=ttl, now=now)
