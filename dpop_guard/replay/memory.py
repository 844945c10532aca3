"""An in-process replay store: atomic within one event loop, bounded, and fail-closed
when full. Safe for a single process only; a fleet needs a shared store."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Hashable

__all__ = ["MemoryReplayStore", "ReplayStoreFull"]

# Expired records removed per insertion. More than one, so the queues drain faster than it
# fills; a small constant, so no single request pays for a mass expiry (a TTL cache that
# sweeps everything at once stalls the event loop for tens of milliseconds).
_PURGE_PER_ADD = 4
# Empty expiry queues kept for lifetimes no longer in use, at most.
_IDLE_QUEUES = 4


class ReplayStoreFull(RuntimeError):
    """Every slot holds a live record. Evicting one would silently reopen a replay."""


class MemoryReplayStore:
    """A dict of live keys plus, per record lifetime, a first-in-first-out queue of expiry
    times.

    The clock is monotonic and a lifetime is the same for every record given it, so each
    queue is in deadline order by construction: adding is an append and expiring a
    ``popleft``, both constant time, where a heap costs a sift per add and a logarithmic
    one per expiry (in a steady state of 100,000 live records, one expiring per add:
    9,200 instructions per add against 13,300 with a heap).
    Lifetimes are few (they come from the proof policy: one without nonces, one per nonce
    lifetime), so the earliest deadline is one of a few queue heads, kept up to date: an add
    purges only once something has expired.

    ``add_if_absent`` contains no ``await``, so under asyncio or trio it runs to completion
    without interleaving: the check and the set are atomic for every task of the process.

    Full means fail closed: when ``maxsize`` live records exist, :class:`ReplayStoreFull`
    is raised (the middleware answers 503) rather than evicting a record that may still be
    needed. Size it as ``peak requests/s x replay TTL`` with headroom. Each record costs
    roughly 250 bytes (the key: under the replay guard the pair ``(jkt, jti)``, the ``jti``
    of about 20-40 characters; a dict slot, a queued tuple and a float; a ``jti`` of the
    maximum 256 characters adds about 220).

    The replay guard the middleware uses calls it directly and records each proof under the
    pair ``(jkt, jti)``; through the plain :class:`~dpop_guard.replay.ReplayStore` methods
    (``add_if_absent``, ``add_with_epoch``: a wrapper, a subclass that overrides them) a
    proof is recorded under its ``replay_key`` instead. Guards that share one store
    therefore see each other's proofs when each reaches it the same way (both directly, or
    both through one wrapper), as the middleware's do.

    Its epoch (see :class:`~dpop_guard.replay.EpochReplayStore`) is the wall-clock second
    of its first use: its memory is the process's, so proofs issued before this process
    began recording cannot be vouched for, and are refused by the replay guard (a restart
    of a single-process server does not reopen the proofs used before it). Once set, the
    epoch never changes (nothing here forgets a live record), and the replay guard relies
    on that: after its first record it calls :meth:`add_if_absent_sync` itself.

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
        self._expiry: dict[Hashable, float] = {}
        self._queues: dict[int, deque[tuple[float, Hashable]]] = {}  # lifetime: (deadline, key)
        self._earliest = math.inf  # no queue head is earlier
        self._epoch: int | None = epoch

    def __len__(self) -> int:
        return len(self._expiry)

    def _purge(self, now: float, limit: int | None) -> None:
        """Drop records dead at ``now``, at most ``limit`` of them (``None``: all), and
        note the earliest deadline left."""
        expiry = self._expiry
        queues = self._queues
        removed = 0
        earliest = math.inf
        for queue in queues.values():
            while queue and queue[0][0] <= now and (limit is None or removed < limit):
                deadline, key = queue.popleft()
                # A key re-added after expiry has a newer deadline; leave that record alone.
                if expiry.get(key) == deadline:
                    del expiry[key]
                removed += 1
            if queue and queue[0][0] < earliest:
                earliest = queue[0][0]
        self._earliest = earliest
        if len(queues) > _IDLE_QUEUES:
            # A caller with ever new lifetimes must not grow the queues without bound: drop
            # the empty ones (the policy's one or two are kept, never rebuilt).
            for ttl in [ttl for ttl, queue in queues.items() if not queue]:
                del queues[ttl]

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

    def add_with_epoch_sync(self, key: Hashable, ttl: int, now: int) -> tuple[bool, int]:
        """:meth:`add_with_epoch` without a coroutine: what
        :meth:`~dpop_guard.replay._guard.ReplayGuard.record` calls for this store on the
        request path. Atomic for the same reason (no ``await`` between check and set).
        The check-and-set is :meth:`add_if_absent_sync`'s, so a subclass that overrides it
        (fault injection, instrumentation) is called on every path.

        :raises ReplayStoreFull: as :meth:`add_if_absent`.
        """
        first = self.add_if_absent_sync(key, ttl)
        epoch = self._epoch
        if epoch is None:
            epoch = self._epoch = now
        return first, epoch

    def add_if_absent_sync(self, key: Hashable, ttl: int) -> bool:
        """The check-and-set itself, for synchronous callers: :meth:`add_if_absent` without
        a coroutine.

        :raises ReplayStoreFull: as :meth:`add_if_absent`.
        """
        clock = self._clock()
        if self._earliest <= clock:  # skip the call when nothing has expired
            self._purge(clock, _PURGE_PER_ADD)
        expiry = self._expiry
        deadline = expiry.get(key)
        if deadline is not None and deadline > clock:
            return False
        if deadline is None and len(expiry) >= self.maxsize:
            self._purge(clock, None)
            if len(expiry) >= self.maxsize:
                raise ReplayStoreFull("replay store is full")
        deadline = expiry[key] = clock + ttl
        queue = self._queues.get(ttl)
        if not queue:  # a new or drained queue: its head may now be the earliest deadline
            queue = self._queues.setdefault(ttl, deque())
            if deadline < self._earliest:
                self._earliest = deadline
        queue.append((deadline, key))
        return True
