"""An in-process replay store: atomic within one event loop, bounded, and fail-closed
when full. Safe for a single process only; a fleet needs a shared store."""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable

__all__ = ["MemoryReplayStore", "ReplayStoreFull"]

# Expired records removed per insertion. More than one, so the heap drains faster than it
# fills; a small constant, so no single request pays for a mass expiry (a TTL cache that
# sweeps everything at once stalls the event loop for tens of milliseconds).
_PURGE_PER_ADD = 4


class ReplayStoreFull(RuntimeError):
    """Every slot holds a live record. Evicting one would silently reopen a replay."""


class MemoryReplayStore:
    """A dict of live keys plus a min-heap of expiry times.

    ``add_if_absent`` contains no ``await``, so under asyncio or trio it runs to completion
    without interleaving: the check and the set are atomic for every task of the process.

    Full means fail closed: when ``maxsize`` live records exist, :class:`ReplayStoreFull`
    is raised (the middleware answers 503) rather than evicting a record that may still be
    needed. Size it as ``peak requests/s x replay TTL`` with headroom. Each record costs
    roughly 250 bytes (the ``jkt:jti`` key of about 80 characters, a dict slot, a heap tuple
    and a float; a ``jti`` of the maximum 256 characters adds about 200).

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
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._epoch: int | None = epoch

    def __len__(self) -> int:
        return len(self._expiry)

    def _purge(self, now: float, limit: int | None) -> None:
        heap, expiry = self._heap, self._expiry
        removed = 0
        while heap and heap[0][0] <= now and (limit is None or removed < limit):
            deadline, key = heapq.heappop(heap)
            # A key re-added after expiry has a newer deadline; leave that record alone.
            if expiry.get(key) == deadline:
                del expiry[key]
            removed += 1

    async def add_if_absent(self, key: str, *, ttl: int) -> bool:
        """Record ``key`` for ``ttl`` seconds; ``True`` on first use.

        :raises ReplayStoreFull: if no slot is free even after dropping expired records.
        """
        return self.add_if_absent_sync(key, ttl)

    async def add_with_epoch(self, key: str, *, ttl: int, now: int) -> tuple[bool, int]:
        """Record ``key``; the epoch is the wall-clock ``now`` of the first call.

        :raises ReplayStoreFull: as :meth:`add_if_absent`.
        """
        return self.add_with_epoch_sync(key, ttl=ttl, now=now)

    def add_with_epoch_sync(self, key: str, ttl: int, now: int) -> tuple[bool, int]:
        """:meth:`add_with_epoch` without a coroutine: what
        :meth:`~dpop_guard.replay._guard.ReplayGuard.record` calls for this store on the
        request path. Atomic for the same reason (no ``await`` between check and set).
        The check-and-set is here rather than in a helper: one call per request, not two
        (about 1,200 instructions).

        :raises ReplayStoreFull: as :meth:`add_if_absent`.
        """
        epoch = self._epoch
        if epoch is None:
            epoch = self._epoch = now
        clock = self._clock()
        heap = self._heap
        if heap and heap[0][0] <= clock:  # skip the call when nothing has expired
            self._purge(clock, _PURGE_PER_ADD)
        expiry = self._expiry
        deadline = expiry.get(key)
        if deadline is not None and deadline > clock:
            return False, epoch
        if deadline is None and len(expiry) >= self.maxsize:
            self._purge(clock, None)
            if len(expiry) >= self.maxsize:
                raise ReplayStoreFull("replay store is full")
        deadline = expiry[key] = clock + ttl
        heapq.heappush(heap, (deadline, key))
        return True, epoch

    def add_if_absent_sync(self, key: str, ttl: int) -> bool:
        """The same, for synchronous callers (a first use sets the epoch to the wall-clock
        second, as :meth:`add_with_epoch` would)."""
        return self.add_with_epoch_sync(key, ttl, int(time.time()))[0]
