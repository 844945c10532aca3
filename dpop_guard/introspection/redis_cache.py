"""A second-level introspection cache in Redis, shared by a fleet.

Entries are the binding-safe facts of :mod:`dpop_guard.introspection.cached` (token facts
plus the verified key thumbprint). Their keys are a prefix, the configuration's namespace
(:attr:`~dpop_guard.introspection.CacheScope.namespace`: mode, endpoint or issuer,
service, audience, API version) and the SHA-256 of the token: Redis never holds a token,
and two APIs (or two Authlete services) sharing one Redis never read each other's entries.
Needs the ``redis`` extra.

Trust boundary: what Redis returns is untrusted input. A value is read at most
:data:`MAX_ENTRY_BYTES` (``GETRANGE``, so a huge value costs no memory), must match the
entry schema exactly (every field present, of its type, nothing else), and anything else
is a miss, logged once per process, never an error. With a fleet secret
(``DPOP_GUARD_CACHE_SECRET``, at least 32 characters) every entry carries an HMAC-SHA256
over its Redis key and its body: whoever can write to that Redis but lacks the secret can
delete entries (which costs an introspection) but not forge one, nor move one to another
token or configuration. Without a secret, whoever can write to that Redis can make any
token string pass with facts of their choosing: use a Redis only your resource servers
reach, and set the secret. Either way an entry lives at most ``ttl`` after the
introspection that made it (its deadline is inside the signed body), so replaying an old
signed entry can only serve a revocation as late as the cache already may.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
from collections.abc import Mapping
from hashlib import sha256
from typing import Any, Final

from .._env import EnvReader
from .._extras import missing_extra

try:
    import redis.asyncio  # noqa: F401 - fails early, with the extra named
    from redis.exceptions import ResponseError
except ModuleNotFoundError as _exc:  # pragma: no cover - depends on the install
    raise missing_extra("redis", "dpop_guard.introspection.redis_cache") from _exc

from .._redis import Batcher, Client, redis_client
from . import TokenInfo, authorization_details_from, thaw_json

__all__ = ["CACHE_SECRET_ENV", "MAX_ENTRY_BYTES", "RedisTokenCache"]

logger = logging.getLogger("dpop_guard.introspection")

# The version is part of the key: an entry written by a release with another format (v2
# had no namespace and no signature) is never read during a rolling upgrade; old and new
# processes simply do not share entries.
DEFAULT_PREFIX: Final = "dpop_guard:introspection:v3:"
CACHE_SECRET_ENV: Final = "DPOP_GUARD_CACHE_SECRET"  # noqa: S105 - a variable name
MIN_SECRET_BYTES: Final = 32
MAX_ENTRY_BYTES: Final = 64 << 10
"""The largest entry written or read (a token's facts with rich authorization details
stay well below; a larger one is simply not shared)."""
_SIGNED: Final = b"s"
_UNSIGNED: Final = b"u"
_MAC_BYTES: Final = 32
_FIELDS: Final = frozenset(
    {"s", "c", "sc", "e", "j", "x", "a", "t", "r", "d", "g", "cc", "al", "u"}
)
# With an RFC 9701 signed answer kept for the audit trail, "jw" too: present only then, so
# the entries of unsigned configurations keep the format earlier releases read.
_SIGNED_FIELDS: Final = _FIELDS | {"jw"}


def _encode(info: TokenInfo, until: float) -> bytes:
    details = info.authorization_details
    signed = {} if info.introspection_jwt is None else {"jw": info.introspection_jwt}
    return json.dumps(
        {
            **signed,
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


def _whole(value: object) -> bool:
    """A whole number of seconds, 0 or more (never a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _decode(raw: bytes | str) -> tuple[TokenInfo, float] | None:
    """An entry's body, or ``None`` for anything that is not exactly an entry: a field
    missing (a missing ``x`` must not read as "unbound"), added, or of the wrong type."""
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or (data.keys() != _FIELDS and data.keys() != _SIGNED_FIELDS):
            return None
        until = data["u"]
        if not (
            _strs(data["sc"])
            and _strs(data["r"])
            and _strs(data["cc"])
            and all(_str_or_none(data[k]) for k in ("s", "c", "j", "x", "a", "g", "al"))
            and isinstance(data.get("jw", ""), str)
            and (data["t"] is None or _whole(data["t"]))
            and (data["e"] is None or _whole(data["e"]))
            and isinstance(until, (int, float))
            and not isinstance(until, bool)
            and math.isfinite(until)
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
            auth_time=data["t"],
            resources=tuple(data["r"]),
            authorization_details=authorization_details_from(data["d"]),
            grant_id=data["g"],
            consented_claims=tuple(data["cc"]),
            client_id_alias=data["al"],
            introspection_jwt=data.get("jw"),
        )
    except (ValueError, TypeError, RecursionError):
        return None
    return info, float(until)


def _secret(value: str | bytes | None) -> bytes | None:
    if value is None:
        return None
    raw = value.encode() if isinstance(value, str) else bytes(value)
    if len(raw) < MIN_SECRET_BYTES:
        raise ValueError(f"the cache secret must be at least {MIN_SECRET_BYTES} bytes")
    return raw


class RedisTokenCache:
    """``get``/``set`` of cached token facts with a wall-clock deadline.

    :param client: a ``redis.asyncio.Redis`` (or ``RedisCluster``, from a
        ``redis+cluster://`` URL) with bounded timeouts.
    :param secret: the fleet's shared secret (at least 32 bytes): entries are signed with
        it and an entry without a valid signature is a miss. ``None``: entries are not
        signed (logged as a warning: see the module docstring for what that trusts).
    :raises ValueError: a secret shorter than 32 bytes.
    """

    def __init__(
        self,
        client: Client,
        *,
        prefix: str = DEFAULT_PREFIX,
        command_timeout: float = 0.25,
        connect_timeout: float = 0.5,
        secret: str | bytes | None = None,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self._secret = _secret(secret)
        if self._secret is None:
            logger.warning(
                "shared introspection cache without %s: whoever can write to its Redis "
                "can forge access; set the secret on every instance",
                CACHE_SECRET_ENV,
                extra={"dpop_guard_reason": "shared_cache_unsigned"},
            )
        self.bad_entries = 0  # entries refused (unsigned, forged, too large, malformed)
        self._bad_logged = False
        # The reads of one event-loop tick share one round trip (a fleet's cold start is a
        # burst of misses), and a connection the server closed is replaced, not failed.
        self.batcher = Batcher(
            client,
            timeout=command_timeout,
            connect_timeout=connect_timeout,
            name="introspection_cache",
        )

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        connect_timeout: float = 0.5,
        command_timeout: float = 0.25,
        secret: str | bytes | None = None,
        **options: Any,
    ) -> RedisTokenCache:
        """A cache on a new client for ``url``, with short timeouts: on this path a slow
        Redis is worse than a call to the authorization server."""
        secret = _secret(secret)  # checked before a client is opened
        client = redis_client(
            url, connect_timeout=connect_timeout, command_timeout=command_timeout, **options
        )
        return cls(
            client,
            prefix=prefix,
            command_timeout=command_timeout,
            connect_timeout=connect_timeout,
            secret=secret,
        )

    @classmethod
    def from_env(
        cls, url: str, environ: Mapping[str, str] | None = None, **options: Any
    ) -> RedisTokenCache:
        """:meth:`from_url` with the fleet secret from ``DPOP_GUARD_CACHE_SECRET`` (unset:
        unsigned entries). ``url`` is ``DPOP_GUARD_INTROSPECTION_CACHE``, as the store
        settings read it.

        :raises ValueError: naming the variable, for a secret shorter than 32 bytes (never
            its value).
        """
        secret = EnvReader(environ).text(CACHE_SECRET_ENV, secret=True)
        try:
            _secret(secret)
        except ValueError as exc:
            raise ValueError(f"{CACHE_SECRET_ENV}: {exc}") from None
        return cls.from_url(url, secret=secret, **options)

    def _key(self, key: bytes) -> str:
        return self.prefix + key.hex()

    def _mac(self, name: str, body: bytes) -> bytes:
        assert self._secret is not None
        return hmac.digest(self._secret, name.encode() + b"\n" + body, sha256)

    def _seal(self, name: str, body: bytes) -> bytes:
        if self._secret is None:
            return _UNSIGNED + body
        return _SIGNED + self._mac(name, body) + body

    def _open(self, name: str, raw: object) -> tuple[TokenInfo, float] | None:
        """The entry stored under ``name``, or ``None`` (absent, or refused and logged)."""
        if isinstance(raw, ResponseError):  # not a string: WRONGTYPE
            return self._refuse("not a string")
        if isinstance(raw, BaseException):
            raise raw
        if not raw:
            return None
        if not isinstance(raw, bytes) or len(raw) > MAX_ENTRY_BYTES:
            return self._refuse("too large")
        if self._secret is None:
            if raw[:1] != _UNSIGNED:
                return self._refuse("signed, and this instance has no secret")
            body = raw[1:]
        else:
            mac, body = raw[1 : 1 + _MAC_BYTES], raw[1 + _MAC_BYTES :]
            if raw[:1] != _SIGNED or not hmac.compare_digest(mac, self._mac(name, body)):
                return self._refuse("signature missing or wrong")
        found = _decode(body)
        return found if found is not None else self._refuse("malformed")

    def _refuse(self, why: str) -> tuple[TokenInfo, float] | None:
        """A miss, counted and logged (once per process)."""
        self.bad_entries += 1
        if not self._bad_logged:
            self._bad_logged = True
            logger.warning(
                "shared introspection cache: entry refused (%s); refused entries are misses "
                "(logged once)",
                why,
                extra={"dpop_guard_reason": "shared_cache_bad_entry"},
            )
        return None

    def _read(self, name: str) -> tuple[str, str, int, int]:
        # At most MAX_ENTRY_BYTES + 1 bytes: a larger value is refused without being read.
        return ("GETRANGE", name, 0, MAX_ENTRY_BYTES)

    async def get(self, key: bytes) -> tuple[TokenInfo, float] | None:
        """The facts and their wall-clock deadline, or ``None``."""
        name = self._key(key)
        return self._open(name, await self.batcher.submit(self._read(name), shared=True))

    async def set(self, key: bytes, info: TokenInfo, until: float, ttl: float) -> None:
        """Store ``info`` until ``until`` (epoch seconds), i.e. for ``ttl`` seconds; an
        entry larger than :data:`MAX_ENTRY_BYTES` is not stored."""
        name = self._key(key)
        value = self._seal(name, _encode(info, until))
        if len(value) > MAX_ENTRY_BYTES:
            return
        (reply,) = await self.batcher.execute([("SET", name, value, "PX", max(1, int(ttl * 1000)))])
        if isinstance(reply, BaseException):
            raise reply

    async def delete(self, key: bytes) -> None:
        """Forget the entry under ``key`` (a revocation); raises on a Redis failure."""
        (reply,) = await self.batcher.execute([("DEL", self._key(key))])
        if isinstance(reply, BaseException):
            raise reply

    def _lock(self, key: bytes) -> str:
        # Entry keys end in hex digits, so this name never collides with one.
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
        name = self._key(key)
        entry = self.batcher.submit(self._read(name), shared=True)
        held = self.batcher.submit(("EXISTS", self._lock(key)), shared=True)
        raw, locked = await entry, await held
        if isinstance(locked, BaseException):
            raise locked
        return self._open(name, raw), bool(locked)

    async def aclose(self) -> None:
        await self.client.aclose()
