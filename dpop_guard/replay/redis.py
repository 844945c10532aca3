"""A replay store shared by a fleet: one atomic ``SET key 1 NX PX ttl`` per proof.

Needs the ``redis`` extra: ``pip install dpop_guard[redis]``.
"""

from __future__ import annotations

from typing import Any, Final

from .._extras import missing_extra

try:
    import redis.asyncio as redis
except ModuleNotFoundError as _exc:  # pragma: no cover - depends on the install
    raise missing_extra("redis", "dpop_guard.replay.redis (a redis:// replay store)") from _exc

from .._redis import redis_client

__all__ = ["DEFAULT_PREFIX", "RedisReplayStore"]

DEFAULT_PREFIX: Final = "dpop_guard:jti:"
DEFAULT_CONNECT_TIMEOUT: Final = 1.0
DEFAULT_COMMAND_TIMEOUT: Final = 0.5


class RedisReplayStore:
    """Record proofs in Redis.

    Each proof is one ``SET <prefix><replay_key> 1 NX PX <ttl ms>``: Redis executes it
    atomically, so of any number of concurrent uses of one proof, across every worker and
    machine that shares the server, exactly one gets ``OK``. One key per command and no
    scripts, so Redis Cluster works. Errors and timeouts propagate; the middleware answers
    503 (fail closed), never a pass.

    :param client: a ``redis.asyncio.Redis``; its socket timeouts bound each command.
    :param prefix: key prefix, to share a Redis with other uses.
    """

    def __init__(self, client: redis.Redis, *, prefix: str = DEFAULT_PREFIX) -> None:
        self.client = client
        self.prefix = prefix

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
        """A store on a new client for ``url`` (``redis://host:port/db`` or ``rediss://``),
        with bounded connect and command timeouts. Connections open lazily, in the event
        loop that first uses them."""
        client = redis_client(
            url, connect_timeout=connect_timeout, command_timeout=command_timeout, **options
        )
        return cls(client, prefix=prefix)

    async def add_if_absent(self, key: str, *, ttl: int) -> bool:
        """``True`` if ``key`` was not recorded yet; raises on any Redis failure."""
        return bool(await self.client.set(self.prefix + key, b"1", nx=True, px=ttl * 1000))

    async def ping(self) -> bool:
        """Whether the server answers (for start-up checks and health endpoints)."""
        return bool(await self.client.ping())

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self.client.aclose()
