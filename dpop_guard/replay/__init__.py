"""Replay detection: remember each proof's ``replay_key`` (a digest of ``jkt:jti``) for as
long as any node of the fleet could accept it, and refuse a second use (RFC 9449 section
11.1).

Three declared seams, and nothing else decides how a store is called:

- :class:`ReplayStore`: the async check-and-set every store has.
- :class:`EpochReplayStore`: one that also says since when it remembers everything.
- :class:`SyncReplayStore`: one that answers without awaiting (the in-memory store); the
  replay guard then calls its ``try_add`` and nothing else, on every request.

Every store is keyed by one format, the proof's ``replay_key``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .memory import MemoryReplayStore, ReplayStoreFull

__all__ = [
    "EpochReplayStore",
    "MemoryReplayStore",
    "ReplayStore",
    "ReplayStoreFull",
    "SyncReplayStore",
    "replay_store_from_url",
]


@runtime_checkable
class ReplayStore(Protocol):
    """Where used proofs are recorded.

    Implementations must make the check-and-set atomic: of any number of concurrent calls
    with one ``key``, across every process that shares the store, exactly one returns
    ``True``. They must fail closed: an outage, a timeout or a full store raises (the
    middleware answers 503); it never returns ``True`` without recording.
    """

    async def add_if_absent(self, key: str, *, ttl: int) -> bool:
        """Record ``key`` for ``ttl`` seconds.

        :param key: an opaque, fixed-length string (the proof's ``replay_key``).
        :param ttl: seconds to remember it; at least the proof acceptance window.
        :returns: ``True`` if ``key`` was not recorded yet (first use), ``False`` if it was.
        :raises Exception: any failure; the caller treats it as unavailability.
        """
        ...


@runtime_checkable
class EpochReplayStore(ReplayStore, Protocol):
    """A replay store that can tell since when it has remembered everything (optional).

    The *epoch* is the wall-clock second at which the store's current memory began. The
    store keeps a marker holding it, written once with no expiry; if the marker is gone,
    the store has lost its memory (a Redis restarted without persistence, a flush), so
    it writes a new marker holding ``now``, and every process sharing the store reads the
    same new epoch. A store that learns it may have lost records otherwise (the Redis
    store, from its servers' eviction counters) moves the marker to ``now`` the same way.
    :class:`~dpop_guard.replay._guard.ReplayGuard` then refuses proofs
    issued before it, fleet-wide. A store without this method gets a per-process guess.
    """

    async def add_with_epoch(self, key: str, *, ttl: int, now: int) -> tuple[bool, int]:
        """Record ``key`` as :meth:`ReplayStore.add_if_absent` does, and read the epoch.

        :param now: wall-clock seconds; the new epoch if the marker is missing.
        :returns: ``(first_use, epoch)``.
        :raises Exception: any failure, as for ``add_if_absent``.
        """
        ...


@runtime_checkable
class SyncReplayStore(Protocol):
    """A replay store that answers without awaiting: a declared synchronous fast path.

    A store that has this method is called through it alone by
    :class:`~dpop_guard.replay._guard.ReplayGuard`, on every request (the guard decides
    once, when it is built, by this protocol; never by looking at classes or instances).
    So ``try_add`` must be the store's one check-and-set: if the store also offers the
    async methods, they must be faces of ``try_add``, and a wrapper or subclass that adds
    a check adds it to ``try_add`` (a wrapper that only offers the async methods is not a
    ``SyncReplayStore`` and is awaited). The same atomicity and fail-closed rules as
    :class:`ReplayStore` hold: no ``await`` between the check and the set, and any failure
    raises.
    """

    def try_add(self, key: str, *, ttl: int, now: int) -> tuple[bool, int]:
        """Record ``key`` for at least ``ttl`` seconds and read the store's epoch.

        :param key: the proof's ``replay_key`` (64 hex digits).
        :param ttl: seconds to remember it.
        :param now: wall-clock seconds; the epoch if the store's memory starts now.
        :returns: ``(first_use, epoch)``, as :meth:`EpochReplayStore.add_with_epoch`.
        :raises Exception: any failure; the caller treats it as unavailability.
        """
        ...


def replay_store_from_url(url: str, *, maxsize: int) -> ReplayStore:
    """``memory`` gives a :class:`MemoryReplayStore` of ``maxsize``; a ``redis://``,
    ``rediss://`` or ``unix://`` URL, or ``redis+cluster://host:port[,host:port...]`` for
    a Redis Cluster, gives a :class:`~dpop_guard.replay.redis.RedisReplayStore` (needs the
    ``redis`` extra)."""
    if url == "memory":
        return MemoryReplayStore(maxsize)
    from .redis import RedisReplayStore

    return RedisReplayStore.from_url(url)
