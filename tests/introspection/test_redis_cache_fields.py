"""The shared Redis cache keeps every TokenInfo field, and treats what Redis returns as
untrusted input: a value too large, of another type, not exactly an entry, unsigned where
a secret is set, signed with another secret, or moved to another key is a miss, logged
once, never an error (a real redis-server)."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import AsyncIterator

import pytest

from dpop_guard.introspection import TokenInfo, freeze_json
from dpop_guard.introspection.redis_cache import (
    CACHE_SECRET_ENV,
    DEFAULT_PREFIX,
    MAX_ENTRY_BYTES,
    RedisTokenCache,
)

KEY = bytes(range(48))  # a namespace (16 bytes) and a token digest (32)
OTHER_KEY = bytes(range(1, 49))
SECRET = "fleet-secret-for-tests-0123456789abcdef"
FULL = TokenInfo(
    subject="alice",
    client_id="42",
    scopes=frozenset({"a", "b"}),
    expires_at=1_900_000_000,
    jkt="J" * 43,
    x5t_s256="X" * 43,
    acr="urn:high",
    auth_time=1_800_000_000,
    resources=("https://rs.example.com",),
    authorization_details=freeze_json([{"type": "payment", "amount": {"v": "5"}}]),
    grant_id="g",
    consented_claims=("name",),
    client_id_alias="alias",
    introspection_jwt="eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJhcyJ9.c2ln",
)


def name(key: bytes = KEY) -> str:
    return DEFAULT_PREFIX + key.hex()


async def stored(cache: RedisTokenCache, key: bytes = KEY) -> bytes:
    raw = await cache.client.get(name(key))
    assert isinstance(raw, bytes)
    return raw


@pytest.fixture(name="cache")
async def _cache(redis_url: str) -> AsyncIterator[RedisTokenCache]:
    cache = RedisTokenCache.from_url(redis_url)
    yield cache
    await cache.aclose()


@pytest.fixture(name="signed")
async def _signed(redis_url: str) -> AsyncIterator[RedisTokenCache]:
    cache = RedisTokenCache.from_url(redis_url, secret=SECRET)
    yield cache
    await cache.aclose()


class TestFields:
    @pytest.mark.parametrize("secret", [None, SECRET])
    async def test_round_trip(self, redis_url: str, secret: str | None) -> None:
        """Every field comes back equal, the details still read-only, signed or not."""
        cache = RedisTokenCache.from_url(redis_url, secret=secret)
        await cache.set(KEY, FULL, 1_900_000_000.0, 30)
        found = await cache.get(KEY)
        assert found == (FULL, 1_900_000_000.0)
        assert found is not None and found[0].authorization_details is not None
        with pytest.raises(TypeError):
            found[0].authorization_details[0]["type"] = "x"
        await cache.aclose()

    async def test_unsigned_entry_keeps_the_earlier_format(self, cache: RedisTokenCache) -> None:
        """Without an RFC 9701 answer the entry has no "jw" member, so a process of an
        earlier release reads it during a rolling upgrade."""
        unsigned = dataclasses.replace(FULL, introspection_jwt=None)
        await cache.set(KEY, unsigned, 1_900_000_000.0, 30)
        assert "jw" not in json.loads((await stored(cache))[1:])
        assert await cache.get(KEY) == (unsigned, 1_900_000_000.0)

    async def test_entry_without_a_field_is_not_read(self, cache: RedisTokenCache) -> None:
        """An entry lacking x5t_s256 is no entry: it must never read as unbound."""
        await cache.set(KEY, FULL, 1_900_000_000.0, 30)
        raw = json.loads((await stored(cache))[1:])
        del raw["x"]
        await cache.client.set(name(), b"u" + json.dumps(raw).encode())
        assert await cache.get(KEY) is None

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("x", 5),
            ("t", "soon"),
            ("t", True),
            ("e", -1),
            ("r", "https://a"),
            ("d", {"type": "x"}),
            ("u", "later"),
            ("u", None),
            ("sc", ["a", 1]),
            ("jw", None),
            ("jw", 5),
            ("extra", 1),
        ],
    )
    async def test_wrong_shape_is_not_read(
        self, cache: RedisTokenCache, field: str, value: object
    ) -> None:
        """A forged or damaged entry (a field of the wrong type, or one too many) is
        ignored, not half-read."""
        await cache.set(KEY, FULL, 1_900_000_000.0, 30)
        raw = json.loads((await stored(cache))[1:])
        raw[field] = value
        await cache.client.set(name(), b"u" + json.dumps(raw).encode())
        assert await cache.get(KEY) is None

    async def test_pre_upgrade_entries_are_invisible(self, cache: RedisTokenCache) -> None:
        """An entry in a previous release's format, under its prefix, is never seen."""
        old: dict[str, object] = {"s": "a", "c": None, "sc": [], "e": None, "j": None}
        for prefix in ("dpop_guard:introspection:", "dpop_guard:introspection:v2:"):
            await cache.client.set(prefix + KEY.hex(), json.dumps(old | {"u": 1.9e9}))
        assert DEFAULT_PREFIX.endswith(":v3:")
        assert await cache.get(KEY) is None


# value stored under the entry's key -> refused (each a miss, never an exception)
HOSTILE = [
    ("not JSON", b"u{not json"),
    ("JSON but not an object", b"u[1,2,3]"),
    ("deeply nested", b"u" + b"[" * 100_000),
    ("no version byte", b'{"s":null}'),
    ("too large", b"u" + b" " * (MAX_ENTRY_BYTES + 1)),
]


class TestUntrusted:
    @pytest.mark.parametrize(("case", "value"), HOSTILE, ids=[c for c, _ in HOSTILE])
    async def test_hostile_values_are_misses(
        self, cache: RedisTokenCache, case: str, value: bytes
    ) -> None:
        await cache.client.set(name(), value)
        assert await cache.get(KEY) is None
        assert cache.bad_entries == 1

    async def test_a_huge_value_is_not_read(self, cache: RedisTokenCache) -> None:
        """8 MiB at the key: refused after reading at most MAX_ENTRY_BYTES + 1 bytes."""
        await cache.client.set(name(), b"u" + b"x" * (8 << 20))
        assert await cache.get(KEY) is None
        found, held = await cache.poll(KEY)
        assert found is None and not held and cache.bad_entries == 2

    async def test_another_type_at_the_key_is_a_miss(self, cache: RedisTokenCache) -> None:
        """A list where an entry should be (WRONGTYPE): a miss, not an outage."""
        await cache.client.rpush(name(), b"x")
        assert await cache.get(KEY) is None and cache.bad_entries == 1

    async def test_refusals_are_logged_once(
        self, cache: RedisTokenCache, caplog: pytest.LogCaptureFixture
    ) -> None:
        await cache.client.set(name(), b"u{")
        with caplog.at_level(logging.WARNING, logger="dpop_guard.introspection"):
            for _ in range(5):
                assert await cache.get(KEY) is None
        refused = [r for r in caplog.records if "entry refused" in r.getMessage()]
        assert len(refused) == 1 and cache.bad_entries == 5

    async def test_an_entry_too_large_is_not_written(self, cache: RedisTokenCache) -> None:
        big = TokenInfo(
            subject="a",
            client_id=None,
            scopes=frozenset({"s" * 100 + str(i) for i in range(1000)}),
            expires_at=None,
            jkt=None,
        )
        await cache.set(KEY, big, 1_900_000_000.0, 30)
        assert await cache.client.exists(name()) == 0


class TestIntegrity:
    async def test_unsigned_entry_is_refused_where_a_secret_is_set(
        self, cache: RedisTokenCache, signed: RedisTokenCache
    ) -> None:
        """Whoever can write to Redis but lacks the secret cannot plant an entry."""
        await cache.set(KEY, FULL, 1_900_000_000.0, 30)
        assert await signed.get(KEY) is None and signed.bad_entries == 1

    async def test_another_secret_is_refused(self, redis_url: str, signed: RedisTokenCache) -> None:
        other = RedisTokenCache.from_url(redis_url, secret=SECRET[::-1])
        await other.set(KEY, FULL, 1_900_000_000.0, 30)
        assert await signed.get(KEY) is None
        await other.aclose()

    async def test_an_entry_moved_to_another_key_is_refused(self, signed: RedisTokenCache) -> None:
        """A valid entry copied under another token's (or namespace's) key is refused:
        the signature covers the key."""
        await signed.set(KEY, FULL, 1_900_000_000.0, 30)
        await signed.client.set(name(OTHER_KEY), await stored(signed))
        assert await signed.get(OTHER_KEY) is None
        assert await signed.get(KEY) is not None

    async def test_a_changed_byte_is_refused(self, signed: RedisTokenCache) -> None:
        """Widening the scopes (or anything else) of a signed entry breaks it."""
        await signed.set(KEY, FULL, 1_900_000_000.0, 30)
        raw = (await stored(signed)).replace(b'"sc":["a","b"]', b'"sc":["a","z"]')
        await signed.client.set(name(), raw)
        assert await signed.get(KEY) is None

    async def test_signed_entries_are_not_read_without_the_secret(
        self, cache: RedisTokenCache, signed: RedisTokenCache
    ) -> None:
        await signed.set(KEY, FULL, 1_900_000_000.0, 30)
        assert await cache.get(KEY) is None


class TestSecretSetting:
    def test_a_short_secret_is_refused(self) -> None:
        with pytest.raises(ValueError, match="at least 32 bytes"):
            RedisTokenCache.from_url("redis://127.0.0.1:1/0", secret="short")

    def test_from_env_names_the_variable_never_the_value(self) -> None:
        with pytest.raises(ValueError, match=CACHE_SECRET_ENV) as info:
            RedisTokenCache.from_env("redis://127.0.0.1:1/0", {CACHE_SECRET_ENV: "tiny-secret"})
        assert "tiny-secret" not in str(info.value)

    async def test_from_env_signs(self, redis_url: str, signed: RedisTokenCache) -> None:
        cache = RedisTokenCache.from_env(redis_url, {CACHE_SECRET_ENV: SECRET})
        await cache.set(KEY, FULL, 1_900_000_000.0, 30)
        assert await signed.get(KEY) == (FULL, 1_900_000_000.0)
        await cache.aclose()

    def test_unsigned_is_a_warning(self, caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.WARNING, logger="dpop_guard.introspection"):
            RedisTokenCache.from_env("redis://127.0.0.1:1/0", {})
        assert any(CACHE_SECRET_ENV in r.getMessage() for r in caplog.records)
