"""A replay store shared by a fleet: one atomic ``SET key 1 NX PX ttl`` per proof, and an
epoch marker read in the same round trip.

Needs the ``redis`` extra: ``pip install dpop_guard[redis]``.

Memory loss: Redis restarted without persistence (or flushed, or failed over to a replica
that had nothing) forgets the records, and a proof used before could pass again. The
marker ``<prefix>epoch`` holds the second the store's memory began; it is written with
``SET NX`` and no expiry, so it disappears exactly when the records do, and whoever sees
it missing first writes a new one that every worker then reads.

Eviction: a record evicted under memory pressure reopens its proof, and no marker can
detect it under every policy (a ``volatile-*`` policy never evicts a key without expiry;
an expiring marker is evicted last under ``volatile-ttl`` and read too often to be
evicted under any ``*-lru``). So the store does not rely on a marker for it; it checks the
server itself, with one ``INFO`` per node:

- **Before serving, and again at most** :data:`SAFETY_INTERVAL` **seconds later, and
  after any failed round trip or reconnection**, the store establishes that no record
  can be evicted: on every node, ``maxmemory`` is 0 or ``maxmemory_policy`` is
  ``noeviction`` (``volatile-*`` policies count: every record has a TTL). A Redis Cluster
  must also have ``appendonly`` on every primary (below). While that cannot be shown
  (the policy evicts, ``INFO`` fails, the server is down), every record fails closed
  (:class:`ReplayStoreUnsafe`: the middleware answers 503) with one log line per change
  of state, and :attr:`RedisReplayStore.unsafe_refusals` counts the refused records. No
  background task: the check rides on the requests, by a monotonic deadline.
- **Eviction that happened anyway** (in the seconds before a policy change was noticed,
  or while the store was refused) is seen in the servers' ``evicted_keys`` counters. Their
  sum is kept in Redis (``<prefix>evicted``, no expiry); whenever a check finds another
  figure (higher, or lower after a restart or ``CONFIG RESETSTAT``, or none), the store
  starts a new epoch (the marker is overwritten with ``now``), so every worker of the
  fleet refuses the proofs issued before it, as after a loss of memory.

A server that refuses ``INFO`` cannot be checked, and is refused: a replay store that
cannot show it keeps its records is not used.

Redis Cluster (``redis+cluster://``): the marker is one key, on one primary, so it would
not see another primary restart empty. Rather than a marker per primary (slots move
between primaries), the store refuses a cluster unless every primary has ``appendonly
yes``: a primary then restarts with its records. (Replicas are not required: a failover
to a lagging replica can lose the last second of writes, persistence or not; run the
fleet's clocks and ``appendfsync`` accordingly.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Final, Literal

from .._extras import missing_extra

try:
    import redis.asyncio  # noqa: F401 - fails early, with the extra named
except ModuleNotFoundError as _exc:  # pragma: no cover - depends on the install
    raise missing_extra("redis", "dpop_guard.replay.redis (a redis:// replay store)") from _exc

from redis.exceptions import OutOfMemoryError, ResponseError

from .._redis import Batcher, Client, redis_client
from .memory import ReplayStoreFull

__all__ = [
    "DEFAULT_PREFIX",
    "SAFETY_INTERVAL",
    "EvictionCheck",
    "RedisReplayStore",
    "ReplayStoreUnsafe",
]

logger = logging.getLogger("dpop_guard.replay")

DEFAULT_PREFIX: Final = "dpop_guard:jti:"
DEFAULT_CONNECT_TIMEOUT: Final = 1.0
DEFAULT_COMMAND_TIMEOUT: Final = 0.5

SAFETY_INTERVAL: Final = 1.0
"""Seconds at most between two checks of the server's safety while serving."""


class ReplayStoreUnsafe(RuntimeError):
    """The store cannot show that it keeps every record (an evicting policy, a cluster
    without persistence, a server that cannot be checked): records fail closed."""

    replay_refusal: Final = "unsafe"  # its kind, for the metrics (ReplayRefusal)


EvictionCheck = tuple[Literal["ok", "evicting", "unknown"], str]
"""The outcome of :meth:`RedisReplayStore.check_eviction` and a sentence explaining it."""


class RedisReplayStore:
    """Record proofs in Redis.

    Each proof is one ``SET <prefix><replay_key> 1 NX PX <ttl ms>``: Redis executes it
    atomically, so of any number of concurrent uses of one proof, across every worker and
    machine that shares the server, exactly one gets ``OK``. One key per command and no
    scripts, so Redis Cluster works. Errors and timeouts propagate; the middleware answers
    503 (fail closed), never a pass.

    :param client: from :func:`dpop_guard._redis.redis_client` (a ``Redis`` or a
        ``RedisCluster``).
    :param command_timeout: seconds for one round trip (a batch: send and every reply).
    :param connect_timeout: seconds for a cluster client's first discovery of the cluster.
    :param prefix: key prefix, to share a Redis with other uses.
    :param clock: a monotonic clock in seconds, for the safety check's deadline (tests
        pass their own).
    """

    def __init__(
        self,
        client: Client,
        *,
        prefix: str = DEFAULT_PREFIX,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.prefix = prefix
        # Replay keys are 64 hex digits, so this name never collides with one.
        self.epoch_key = prefix + "epoch"
        self.batcher = Batcher(
            client, timeout=command_timeout, connect_timeout=connect_timeout, name="replay"
        )
        self._epoch_read: Final = ("GET", self.epoch_key)
        self._started: int | None = None  # the epoch this store last started (logged)
        self.evicted_key = prefix + "evicted"
        self._clock = clock
        self._safe_until = -1.0  # monotonic deadline of the last check that passed
        self._generation = -1  # the batcher's connection generation that check saw
        self._checking: asyncio.Future[str | None] | None = None
        self._unsafe: str | None = "not checked yet"
        self._logged: str | None = None  # the state last logged
        self.unsafe_refusals = 0  # records refused because safety could not be shown

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        **options: Any,
    ) -> RedisReplayStore:
        """A store on a new client for ``url`` (``redis://host:port/db``, ``rediss://``,
        ``unix://`` or ``redis+cluster://host:port,...``), with bounded connect and
        command timeouts. Connections open lazily, in the event loop that first uses
        them."""
        client = redis_client(
            url, connect_timeout=connect_timeout, command_timeout=command_timeout, **options
        )
        return cls(
            client,
            prefix=prefix,
            command_timeout=command_timeout,
            connect_timeout=connect_timeout,
            clock=clock,
        )

    def _set(self, key: str, ttl: int) -> asyncio.Future[Any]:
        return self.batcher.submit(("SET", self.prefix + key, b"1", "NX", "PX", ttl * 1000))

    async def ensure_safe(self, now: int) -> None:
        """Establish that the server keeps every record (see the module), unless a check
        passed less than :data:`SAFETY_INTERVAL` seconds ago on the same connections.
        Concurrent callers share one check; a failed check is retried by the next caller
        after the interval (an unsafe store costs no round trip per request).

        :param now: wall-clock seconds: the new epoch if records were evicted.
        :raises ReplayStoreUnsafe: the store cannot be shown to keep its records.
        """
        if self._clock() < self._safe_until and self.batcher.generation == self._generation:
            if self._unsafe is None:
                return
            self.unsafe_refusals += 1
            raise ReplayStoreUnsafe(self._unsafe)
        checking = self._checking
        if checking is None or checking.get_loop() is not asyncio.get_running_loop():
            checking = self._checking = asyncio.ensure_future(self._check(now))
            checking.add_done_callback(self._checked)
        unsafe = await asyncio.shield(checking)
        if unsafe is not None:
            self.unsafe_refusals += 1
            raise ReplayStoreUnsafe(unsafe)

    def _checked(self, done: asyncio.Future[str | None]) -> None:
        if self._checking is done:
            self._checking = None
        if not done.cancelled():
            done.exception()  # retrieved here too, if every waiter was cancelled

    async def _check(self, now: int) -> str | None:
        """One check: ``None`` if safe, else why not (also logged once per change)."""
        generation = self.batcher.generation
        try:
            unsafe = await self._unsafe_reason(now)
        except Exception:
            # The server did not answer: the store is unavailable (the caller fails
            # closed), and the next record checks again.
            self._safe_until = -1.0
            raise
        self._unsafe = unsafe
        self._generation = generation
        self._safe_until = self._clock() + SAFETY_INTERVAL
        if unsafe != self._logged:
            if unsafe is not None:
                logger.error(
                    "dpop_guard: refusing requests: %s",
                    unsafe,
                    extra={"dpop_guard_reason": "replay_store_unsafe"},
                )
            elif self._logged is not None:
                logger.warning(
                    "dpop_guard: the replay store is safe again; serving",
                    extra={"dpop_guard_reason": "replay_store_safe"},
                )
            self._logged = unsafe
        return unsafe

    async def _unsafe_reason(self, now: int) -> str | None:
        outcome, why, evicted = _judge_nodes(await self._node_infos(), self.batcher.cluster)
        if outcome != "ok":
            return why
        recorded = _reply((await self.batcher.execute([("GET", self.evicted_key)]))[0])
        if recorded == str(evicted).encode():
            return None
        commands: list[tuple[Any, ...]] = [("SET", self.evicted_key, str(evicted).encode())]
        if recorded is not None or evicted:
            # Records may have been evicted since the last check (or the counters were
            # reset by a restart): no proof issued before now can be vouched for,
            # fleet-wide. (No figure and nothing ever evicted: a first use, whose
            # missing epoch marker add_with_epoch handles.)
            logger.warning(
                "dpop_guard: the replay store's Redis evicted keys (evicted_keys %s, was "
                "%s); proofs issued before now are refused",
                evicted,
                "unknown" if recorded is None else _text(recorded),
                extra={"dpop_guard_reason": "replay_store_evicted"},
            )
            commands.append(("SET", self.epoch_key, str(now).encode()))
        for reply in await self.batcher.execute(commands):
            _reply(reply)
        return None

    async def _node_infos(self) -> list[dict[str, Any]]:
        """``INFO`` of every node holding records (every primary of a cluster)."""
        client = self.client
        if self.batcher.cluster:
            reply = await client.info(target_nodes=client.PRIMARIES)  # type: ignore[union-attr]
        else:
            reply = await client.info()
        return _per_node(reply)

    async def add_if_absent(self, key: str, *, ttl: int) -> bool:
        """``True`` if ``key`` was not recorded yet; raises on any Redis failure, and
        :class:`ReplayStoreUnsafe` while the server cannot be shown to keep records."""
        await self.ensure_safe(int(time.time()))
        return _added(await self._set(key, ttl))

    async def add_with_epoch(self, key: str, *, ttl: int, now: int) -> tuple[bool, int]:
        """Record ``key`` and read the epoch marker in one round trip: the concurrent
        calls of one event-loop tick share one pipeline of their ``SET NX`` commands and
        one ``GET`` of the marker (independent single-key commands, not a transaction,
        so Redis Cluster works). Only when the marker is missing does a second round trip
        follow: ``SET NX`` of ``now`` and a ``GET`` of the marker (shared by the callers
        that found it missing), whose value is the epoch if another worker won.

        :raises ReplayStoreUnsafe: the server cannot be shown to keep every record
            (:meth:`ensure_safe`).
        """
        await self.ensure_safe(now)
        added = self._set(key, ttl)
        marker_read = self.batcher.submit(self._epoch_read, shared=True)
        first = _added(await added)
        marker = _reply(await marker_read)
        if marker is None:
            # Every caller of the tick that found it missing: one SET NX per distinct
            # ``now`` (the first wins) and one GET after it, in one round trip.
            start = self.batcher.submit(
                ("SET", self.epoch_key, str(now).encode(), "NX"), shared=True
            )
            reread = self.batcher.submit(self._epoch_read, shared=True)
            won, marker = await start, await reread
            if _reply(won):
                if self._started == now:  # the callers of one batch share one start
                    return first, now
                self._started = now
                logger.warning(
                    "dpop_guard: the replay store has no epoch marker (first use, or it "
                    "lost its memory); proofs issued before now are refused",
                    extra={"dpop_guard_reason": "replay_epoch_started"},
                )
                return first, now
            marker = _reply(marker)
        try:
            return first, int(marker)
        except (TypeError, ValueError):
            # Unreadable or gone again: trust nothing older than now (fail closed).
            return first, now

    async def ping(self) -> bool:
        """Whether the server answers (for start-up checks and health endpoints); also
        checks, once per call, that the server cannot evict records
        (:meth:`check_eviction`), logging an ERROR if it can or if it cannot tell (serving
        refuses every record then). Neither refuses start-up (the guard may start before
        Redis is ready); the records are what is refused (:meth:`ensure_safe`, checked on
        every record) while the server can evict, and the log names the setting to change.
        A server that stops answering between the two raises, as for ``PING``.

        :raises Exception: whatever the client raises when the server does not answer.
        """
        answered = bool(await self.client.ping())
        outcome, sentence = await self.check_eviction()
        if outcome == "evicting":
            logger.error(
                "dpop_guard: %s", sentence, extra={"dpop_guard_reason": "replay_store_evicts"}
            )
        elif outcome == "unknown":
            logger.error(
                "dpop_guard: %s",
                sentence,
                extra={"dpop_guard_reason": "replay_store_eviction_unknown"},
            )
        return answered

    async def check_eviction(self) -> EvictionCheck:
        """What serving will find (:meth:`ensure_safe` reads the same ``INFO`` and
        applies the same rule, :func:`_judge_nodes`), without touching the fleet's epoch:
        ``("evicting", why)`` when ``maxmemory`` is set and ``maxmemory-policy`` is not
        ``noeviction`` on any node (or a cluster primary runs without ``appendonly``),
        ``("unknown", why)`` when ``INFO`` is refused or unreadable (serving then refuses
        every record), ``("ok", "")`` otherwise. A managed Redis that disables ``CONFIG``
        but answers ``INFO`` is checked like any other.

        :raises Exception: the server did not answer (a timeout, a lost connection): the
            caller classifies it as for ``PING``.
        """
        try:
            nodes = await self._node_infos()
        except ResponseError as exc:  # INFO renamed, or denied by an ACL (NoPermissionError)
            return (
                "unknown",
                f"could not read the replay store's INFO ({type(exc).__name__}): every "
                "request will be refused (503) until it can be read; allow INFO for the "
                "guard's Redis user",
            )
        outcome, why, _ = _judge_nodes(nodes, self.batcher.cluster)
        return outcome, why

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self.client.aclose()


def _judge_nodes(
    nodes: list[dict[str, Any]], cluster: bool
) -> tuple[Literal["ok", "evicting", "unknown"], str, int]:
    """The one rule on ``INFO`` of every node holding records: whether the store keeps
    them (``ok``), may lose them (``evicting``: an eviction policy under a memory limit,
    or a cluster primary without ``appendonly``), or cannot tell (``unknown``), with the
    sentence for the log, and the nodes' total ``evicted_keys``."""
    evicted = 0
    for info in nodes:
        try:
            evicting = _evicting(info["maxmemory_policy"], info["maxmemory"])
            evicted += int(info["evicted_keys"])
        except (KeyError, TypeError, ValueError):
            return (
                "unknown",
                "could not read the replay store's maxmemory and evicted_keys (INFO)",
                0,
            )
        if evicting is not None:
            return "evicting", evicting, evicted
        if cluster and str(info.get("aof_enabled")) != "1":
            return (
                "evicting",
                "a Redis Cluster primary runs without appendonly: restarted, it would "
                "forget its share of the replay records; set appendonly yes on every "
                "primary, or use a single Redis",
                evicted,
            )
    return "ok", "", evicted


def _evicting(policy: Any, limit: Any) -> str | None:
    """The one rule: a server may evict records unless its ``maxmemory`` is 0 or its
    ``maxmemory-policy`` is ``noeviction`` (``volatile-*`` counts: every record has a TTL).
    ``None`` if it cannot, else a sentence naming the setting.

    :raises ValueError: ``limit`` is not a number or ``policy`` not text (the caller
        cannot tell).
    :raises TypeError: ``limit`` is missing.
    """
    policy, limit = _text(policy), int(_text(limit))
    if not isinstance(policy, str):
        raise ValueError("no maxmemory-policy")
    if limit == 0 or policy == "noeviction":
        return None
    return (
        f"the replay store's Redis has maxmemory-policy {policy} with maxmemory {limit}: "
        "under memory pressure it evicts replay records and reopens their proofs; set "
        "maxmemory-policy noeviction"
    )


def _reply(reply: Any) -> Any:
    """A pipeline reply, or its error raised (the caller fails closed)."""
    if isinstance(reply, OutOfMemoryError):  # at maxmemory under noeviction: full
        raise ReplayStoreFull("the replay store's Redis is at maxmemory") from reply
    if isinstance(reply, BaseException):
        raise reply
    return reply


def _added(reply: Any) -> bool:
    # SET NX answers OK when it wrote the key and nil when the key existed.
    return _reply(reply) is not None


def _per_node(reply: Any) -> list[dict[str, Any]]:
    """``INFO``'s answer as one mapping per node: a plain client answers one mapping, a
    cluster client may answer one per node."""
    if isinstance(reply, dict) and reply and all(isinstance(v, dict) for v in reply.values()):
        return [{_text(k): v for k, v in node.items()} for node in reply.values()]
    if isinstance(reply, dict):
        return [{_text(k): v for k, v in reply.items()}]
    return [{}]


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
