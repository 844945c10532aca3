"""A revocation reaches the fleet's shared cache level: ``CachingIntrospector.revoke``
drops the token here and in Redis, so no worker reads the revoked answer back from the
shared level; ``invalidate`` alone forgets it in this process only. Real Redis, the
Authlete simulator over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import anyio
import httpx
import pytest

from dpop_guard import CachingIntrospector
from dpop_guard.devtools.simulator import SimulatorState
from dpop_guard.facts import RequestFacts
from dpop_guard.introspection import InactiveToken
from dpop_guard.introspection.authlete import AuthleteIntrospector
from dpop_guard.introspection.redis_cache import RedisTokenCache
from tests._support.harness import authlete_settings

pytestmark = pytest.mark.redis

FACTS = RequestFacts("GET", "https://rs.example.com/x", None, None, path="/x")


@pytest.fixture(name="workers")
async def _workers(
    redis_url: str, simulator_url: str
) -> AsyncIterator[Callable[[], CachingIntrospector]]:
    """Workers of one fleet: each its own memory, one shared Redis level, one Authlete."""
    made: list[CachingIntrospector] = []
    async with httpx.AsyncClient() as http:

        def worker() -> CachingIntrospector:
            inner = AuthleteIntrospector(http, authlete_settings(simulator_url))
            made.append(
                CachingIntrospector(inner, ttl=60, shared=RedisTokenCache.from_url(redis_url))
            )
            return made[-1]

        yield worker
        for cache in made:
            await cache.shared.aclose()  # type: ignore[union-attr]


def _bearer_token(simulator: SimulatorState) -> str:
    """A certificate-free, proof-free lookup needs a token the introspector answers for
    without a proof: an unbound one (the binding is the middleware's business, not this
    test's)."""
    return simulator.create_token(subject="alice", scopes=["s"])


async def test_revoke_drops_the_shared_entry(
    workers: Callable[[], CachingIntrospector], simulator: SimulatorState
) -> None:
    token = _bearer_token(simulator)
    first = workers()
    await first.introspect(token, request=FACTS)
    calls = sum(simulator.calls.values())
    # Another worker is answered from the shared level: no Authlete call.
    await workers().introspect(token, request=FACTS)
    assert sum(simulator.calls.values()) == calls
    # Revoked at the authorization server, and the revocation event reaches one worker.
    del simulator.tokens[token]
    await first.revoke(token)
    with pytest.raises(InactiveToken):
        await workers().introspect(token, request=FACTS)
    with pytest.raises(InactiveToken):
        await first.introspect(token, request=FACTS)


async def test_invalidate_alone_is_this_process_only(
    workers: Callable[[], CachingIntrospector], simulator: SimulatorState
) -> None:
    """The contrast that makes ``revoke`` necessary: after ``invalidate`` the shared level
    still answers with the revoked token's facts, to this worker and to a new one."""
    token = _bearer_token(simulator)
    first = workers()
    await first.introspect(token, request=FACTS)
    del simulator.tokens[token]
    first.invalidate(token)
    info = await workers().introspect(token, request=FACTS)
    assert info.subject == "alice"


async def test_a_lookup_in_flight_does_not_undo_a_revocation(
    workers: Callable[[], CachingIntrospector], simulator: SimulatorState
) -> None:
    """The authorization server answered "active" just before the revocation, and the
    answer arrives after ``revoke``: it is returned to that one caller, but neither kept
    in memory nor written to the shared level (a new worker asks Authlete again)."""
    token = _bearer_token(simulator)
    first = workers()
    simulator.latency = 0.5  # the answer is still on its way when the revocation comes
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(lambda: first.introspect(token, request=FACTS))
            await anyio.wait_all_tasks_blocked()
            await first.revoke(token)
    finally:
        simulator.latency = 0.0
    assert first.peek(token) is None
    del simulator.tokens[token]
    with pytest.raises(InactiveToken):
        await workers().introspect(token, request=FACTS)
