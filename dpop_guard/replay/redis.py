"""A replay store shared by a fleet: one atomic ``SET key 1 NX PX ttl`` per proof, and an
epoch marker read in the same round trip.

Needs the ``redis`` extra: ``pip install dpop_guard[redis]``.

Memory loss: Redis restarted without persistence (or flushed, or failed over to a replica
that had nothing) forgets the records, and a proof used before could pass again. The
marker ``<prefix>epoch`` holds the second the store's memory began; it is written with
``SET NX`` and no expiry, so it disappears exactly when the records do, and whoever sees
it missing first writes a new one that every worker then reads. Run Redis with
``maxmemory-policy noeviction``: an evicted record reopens its proof, and an evicting
policy could drop records while keeping the marker. :meth:`RedisReplayStore.ping` (run by
``guard.startup()``) checks it: ``CONFIG GET maxmemory maxmemory-policy``, and anything but
``noeviction`` with a memory limit is logged as an ERROR (and reported by
``dpop-guard check-config``). ``volatile-*`` policies count too: every record has a TTL, so
every record is a candidate. Without a limit (``maxmemory 0``, 64-bit Redis) nothing is
evicted whatever the policy. A server that refuses ``CONFIG`` (managed Redis often renames
or disables it) cannot be checked: that is a warning, since the operator may have set
``noeviction`` in the provider's console.

Redis Cluster (``redis+cluster://``): the marker is one key, on one primary. It detects the
loss of that primary's memory, not of another's: a primary that restarts empty, or fails
over to a replica that lagged, forgets its records while the marker stays. Run a cluster
with persistence (``appendonly yes``) and replicas, or a single Redis. While the marker's
primary is down every request fails closed (each batch reads the marker).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final, Literal

from .._extras import missing_extra

try:
    import redis.asyncio  # noqa: F401 - fails early, with the extra named
except ModuleNotFoundError as _exc:  # pragma: no cover - depends on the install
    raise missing_extra("redis", "dpop_guard.replay.redis (a redis:// replay store)") from _exc

from .._redis import Batcher, Client, redis_client

__all__ = ["DEFAULT_PREFIX", "EvictionCheck", "RedisReplayStore"]

logger = logging.getLogger("dpop_guard.replay")

DEFAULT_PREFIX: Final = "dpop_guard:jti:"
DEFAULT_CONNECT_TIMEOUT: Final = 1.0
DEFAULT_COMMAND_TIMEOUT: Final = 0.5

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
    """

    def __init__(
        self,
        client: Client,
        *,
        prefix: str = DEFAULT_PREFIX,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        self.client = client
        self.prefix = prefix
        # Replay keys are 64 hex digits, so this name never collides with one.
        self.epoch_key = prefix + "epoch"
        self.batcher = Batcher(client, timeout=command_timeout, connect_timeout=connect_timeout)
        self._epoch_read: Final = ("GET", self.epoch_key)
        self._started: int | None = None  # the epoch this store last started (logged)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
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
            client, prefix=prefix, command_timeout=command_timeout, connect_timeout=connect_timeout
        )

    def _set(self, key: str, ttl: int) -> asyncio.Future[Any]:
        return self.batcher.submit(("SET", self.prefix + key, b"1", "NX", "PX", ttl * 1000))

    async def add_if_absent(self, key: str, *, ttl: int) -> bool:
        """``True`` if ``key`` was not recorded yet; raises on any Redis failure."""
        return _added(await self._set(key, ttl))

    async def add_with_epoch(self, key: str, *, ttl: int, now: int) -> tuple[bool, int]:
        """Record ``key`` and read the epoch marker in one round trip: the concurrent
        calls of one event-loop tick share one pipeline of their ``SET NX`` commands and
        one ``GET`` of the marker (independent single-key commands, not a transaction,
        so Redis Cluster works). Only when the marker is missing does a second round trip
        follow: ``SET NX`` of ``now`` and a ``GET`` of the marker (shared by the callers
        that found it missing), whose value is the epoch if another worker won."""
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
        (:meth:`check_eviction`), logging an ERROR if it can and a warning if it could not
        tell. Neither refuses start-up: requests are still served, and the log names the
        setting to change.

        :raises Exception: whatever the client raises when the server does not answer.
        """
        answered = bool(await self.client.ping())
        outcome, sentence = await self.check_eviction()
        if outcome == "evicting":
            logger.error(
                "dpop_guard: %s", sentence, extra={"dpop_guard_reason": "replay_store_evicts"}
            )
        elif outcome == "unknown":
            logger.warning(
                "dpop_guard: %s",
                sentence,
                extra={"dpop_guard_reason": "replay_store_eviction_unknown"},
            )
        return answered

    async def check_eviction(self) -> EvictionCheck:
        """Whether the server may evict replay records: ``("evicting", why)`` when
        ``maxmemory`` is set and ``maxmemory-policy`` is not ``noeviction`` (on any node of
        a cluster), ``("unknown", why)`` when ``CONFIG GET`` is refused or fails, and
        ``("ok", "")`` otherwise. The sentence names ``maxmemory-policy``."""
        try:
            reply = await self.client.config_get("maxmemory*")
        except Exception as exc:  # CONFIG disabled or renamed (managed Redis), ACLs
            return (
                "unknown",
                "could not check the replay store's maxmemory-policy "
                f"(CONFIG GET failed: {type(exc).__name__}); make sure it is noeviction, "
                "or a flood of records can evict others and reopen their proofs",
            )
        for config in _node_configs(reply):
            policy = _text(config.get("maxmemory-policy"))
            limit = _text(config.get("maxmemory"))
            if policy is None or limit is None:
                return (
                    "unknown",
                    "could not read the replay store's maxmemory-policy; make sure it is "
                    "noeviction",
                )
            if policy != "noeviction" and limit.strip() not in ("0", ""):
                return (
                    "evicting",
                    f"the replay store's Redis has maxmemory-policy {policy} with maxmemory "
                    f"{limit}: under memory pressure it evicts replay records and reopens "
                    "their proofs; set maxmemory-policy noeviction",
                )
        return "ok", ""

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self.client.aclose()


def _reply(reply: Any) -> Any:
    """A pipeline reply, or its error raised (the caller fails closed)."""
    if isinstance(reply, BaseException):
        raise reply
    return reply


def _added(reply: Any) -> bool:
    # SET NX answers OK when it wrote the key and nil when the key existed.
    return _reply(reply) is not None


def _node_configs(reply: Any) -> list[dict[str, Any]]:
    """``CONFIG GET``'s answer as one mapping per node: a plain client answers one
    mapping, a cluster client may answer one per node."""
    if isinstance(reply, dict) and reply and all(isinstance(v, dict) for v in reply.values()):
        return [{_text(k): v for k, v in node.items()} for node in reply.values()]
    if isinstance(reply, dict):
        return [{_text(k): v for k, v in reply.items()}]
    return [{}]


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
