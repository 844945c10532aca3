"""A second-level introspection cache in Redis, shared by a fleet.

Entries are the binding-safe facts of :mod:`dpop_guard.introspection.cached` (token facts
plus the verified key thumbprint), keyed by a prefix and the SHA-256 of the token: Redis
never holds a token. Needs the ``redis`` extra.

Trust: whoever can write to this Redis can forge entries, just as whoever can write to the
replay store can erase replay records. Use a Redis only your resource servers reach.
"""

from __future__ import annotations

import json
from typing import Any, Final

from .._extras import missing_extra

try:
    import redis.asyncio  # noqa: F401 - fails early, with the extra named
except ModuleNotFoundError as _exc:  # pragma: no cover - depends on the install
    raise missing_extra("redis", "dpop_guard.introspection.redis_cache") from _exc

from .._redis import Batcher, Client, redis_client
from . import TokenInfo, authorization_details_from, thaw_json

__all__ = ["RedisTokenCache"]

# The version is part of the key: an entry written by a release that did not know a
# field (v1 had no x5t_s256) can never be read back as "not bound to a certificate"
# during a rolling upgrade; old and new processes simply do not share entries.
DEFAULT_PREFIX: Final = "dpop_guard:introspection:v2:"


def _encode(info: TokenInfo, until: float) -> bytes:
    details = info.authorization_details
    return json.dumps(
        {
            "s": info.subject,
            "c": info.client_id,
            "sc": sorted(info.scopes),
            "e": info.expires_at,
            "j": info.jkt,
            "x": info.x5t_s256,
            "a": info.acr,
            "t": info.auth_time,
            "r": list(info.resources),
            "d": None if details is None else thaw_json(details),
            "g": info.grant_id,
            "cc": list(info.consented_claims),
            "al": info.client_id_alias,
            "u": until,
        },
        separators=(",", ":"),
    ).encode()


def _str_or_none(value: object) -> bool:
    return value is None or isinstance(value, str)


def _strs(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _decode(raw: bytes | str) -> tuple[TokenInfo, float] | None:
    """An entry, or ``None`` for anything malformed or missing a field (never a
    half-read entry: a missing ``x`` must not read as "unbound")."""
    try:
        data = json.loads(raw)
        auth_time = data["t"]
        if not (
            _strs(data["sc"])
            and _strs(data["r"])
            and _strs(data["cc"])
            and all(_str_or_none(data[k]) for k in ("s", "c", "j", "x", "a", "g", "al"))
            and (
                auth_time is None
                or (isinstance(auth_time, int) and not isinstance(auth_time, bool))
            )
            and (
                data["e"] is None
                or (isinstance(data["e"], int) and not isinstance(data["e"], bool))
            )
        ):
            return None
        info = TokenInfo(
            subject=data["s"],
            client_id=data["c"],
            scopes=frozenset(data["sc"]),
            expires_at=data["e"],
            jkt=data["j"],
            x5t_s256=data["x"],
            acr=data["a"],
            auth_time=auth_time,
            resources=tuple(data["r"]),
            authorization_details=authorization_details_from(data["d"]),
            grant_id=data["g"],
            consented_claims=tuple(data["cc"]),
            client_id_alias=data["al"],
        )
        until = float(data["u"])
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
    return info, until


class RedisTokenCache:
    """``get``/``set`` of cached token facts with a wall-clock deadline.

    :param client: a ``redis.asyncio.Redis`` (or ``RedisCluster``, from a
        ``redis+cluster://`` URL) with bounded timeouts.
    """

    def __init__(
        self,
        client: Client,
        *,
        prefix: str = DEFAULT_PREFIX,
        command_timeout: float = 0.25,
        connect_timeout: float = 0.5,
    ) -> None:
        self.client = client
        self.prefix = prefix
        # The reads of one event-loop tick share one round trip (a fleet's cold start is a
        # burst of misses), and a connection the server closed is replaced, not failed.
        self.batcher = Batcher(client, timeout=command_timeout, connect_timeout=connect_timeout)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        connect_timeout: float = 0.5,
        command_timeout: float = 0.25,
        **options: Any,
    ) -> RedisTokenCache:
        """A cache on a new client for ``url``, with short timeouts: on this path a slow
        Redis is worse than a call to the authorization server."""
        client = redis_client(
            url, connect_timeout=connect_timeout, command_timeout=command_timeout, **options
        )
        return cls(
            client, prefix=prefix, command_timeout=command_timeout, connect_timeout=connect_timeout
        )

    def _key(self, key: bytes) -> str:
        return self.prefix + key.hex()

    async def get(self, key: bytes) -> tuple[TokenInfo, float] | None:
        """The facts and their wall-clock deadline, or ``None``."""
        raw = await self.batcher.submit(("GET", self._key(key)), shared=True)
        if isinstance(raw, BaseException):
            raise raw
        return None if raw is None else _decode(raw)

    async def set(self, key: bytes, info: TokenInfo, until: float, ttl: float) -> None:
        """Store ``info`` until ``until`` (epoch seconds), i.e. for ``ttl`` seconds."""
        (reply,) = await self.batcher.execute(
            [("SET", self._key(key), _encode(info, until), "PX", max(1, int(ttl * 1000)))]
        )
        if isinstance(reply, BaseException):
            raise reply

    def _lock(self, key: bytes) -> str:
        # Entry keys end in 64 hex digits, so this name never collides with one.
        return self.prefix + "lock:" + key.hex()

    async def claim(self, key: bytes, *, ttl: float) -> bool:
        """Whether this worker leads the fleet's introspection of ``key``: a short
        ``SET NX PX`` lock, which lapses by itself after ``ttl`` seconds if its holder
        never releases it (a crash). Raises on any Redis failure."""
        command = ("SET", self._lock(key), b"1", "NX", "PX", max(1, int(ttl * 1000)))
        reply = await self.batcher.submit(command)
        if isinstance(reply, BaseException):
            raise reply
        return reply is not None

    async def release(self, key: bytes) -> None:
        """End this worker's lead on ``key`` (its entry is written, or it failed)."""
        (reply,) = await self.batcher.execute([("DEL", self._lock(key))])
        if isinstance(reply, BaseException):
            raise reply

    async def poll(self, key: bytes) -> tuple[tuple[TokenInfo, float] | None, bool]:
        """The entry for ``key`` (as :meth:`get`), and whether a lead still holds its
        lock, in one round trip."""
        entry = self.batcher.submit(("GET", self._key(key)), shared=True)
        held = self.batcher.submit(("EXISTS", self._lock(key)), shared=True)
        raw, locked = await entry, await held
        for reply in (raw, locked):
            if isinstance(reply, BaseException):
                raise reply
        return (None if raw is None else _decode(raw)), bool(locked)

    async def aclose(self) -> None:
        await self.client.aclose()
