"""The shared Redis cache keeps every TokenInfo field, and never reads an entry written
before a field existed (a real redis-server)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from dpop_guard.introspection import TokenInfo, freeze_json
from dpop_guard.introspection.redis_cache import DEFAULT_PREFIX, RedisTokenCache

KEY = bytes(range(32))
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
)


async def stored(cache: RedisTokenCache) -> bytes:
    raw = await cache.client.get(DEFAULT_PREFIX + KEY.hex())
    assert isinstance(raw, bytes)
    return raw


@pytest.fixture(name="cache")
async def _cache(redis_url: str) -> AsyncIterator[RedisTokenCache]:
    cache = RedisTokenCache.from_url(redis_url)
    yield cache
    await cache.aclose()


class TestFields:
    async def test_round_trip(self, cache: RedisTokenCache) -> None:
        """Every field comes back equal, the details still read-only."""
        await cache.set(KEY, FULL, 1_900_000_000.0, 30)
        found = await cache.get(KEY)
        assert found == (FULL, 1_900_000_000.0)
        assert found is not None and found[0].authorization_details is not None
        with pytest.raises(TypeError):
            found[0].authorization_details[0]["type"] = "x"

    async def test_entry_without_a_field_is_not_read(self, cache: RedisTokenCache) -> None:
        """An entry lacking x5t_s256 is no entry: it must never read as unbound."""
        await cache.set(KEY, FULL, 1_900_000_000.0, 30)
        raw = json.loads(await stored(cache))
        del raw["x"]
        await cache.client.set(DEFAULT_PREFIX + KEY.hex(), json.dumps(raw))
        assert await cache.get(KEY) is None

    @pytest.mark.parametrize(
        ("field", "value"), [("x", 5), ("t", "soon"), ("r", "https://a"), ("d", {"type": "x"})]
    )
    async def test_wrong_type_is_not_read(
        self, cache: RedisTokenCache, field: str, value: object
    ) -> None:
        """A forged or damaged entry is ignored, not half-read."""
        await cache.set(KEY, FULL, 1_900_000_000.0, 30)
        raw = json.loads(await stored(cache))
        raw[field] = value
        await cache.client.set(DEFAULT_PREFIX + KEY.hex(), json.dumps(raw))
        assert await cache.get(KEY) is None

    async def test_pre_upgrade_entries_are_invisible(self, cache: RedisTokenCache) -> None:
        """An entry in the previous release's format, under its prefix, is never seen."""
        old: dict[str, object] = {
            "s": "a",
            "c": None,
            "sc": [],
            "e": None,
            "j": None,
            "u": 1_900_000_000.0,
        }
        await cache.client.set("dpop_guard:introspection:" + KEY.hex(), json.dumps(old))
        assert not DEFAULT_PREFIX.endswith("introspection:")
        assert await cache.get(KEY) is None
