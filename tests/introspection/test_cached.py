"""The binding-safe introspection cache."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import anyio
import pytest
from anyio.lowlevel import checkpoint

from dpop_guard.errors import (
    DPoPGuardError,
    InsufficientScope,
    IntrospectionUnavailable,
    InvalidDPoPProof,
    InvalidToken,
)
from dpop_guard.introspection import InactiveToken, RequestFacts, TokenInfo
from dpop_guard.introspection.cached import DEFAULT_NEGATIVE_TTL, CachingIntrospector
from tests._support.clock import Clock
from tests._support.gated import Gated, wait_all_tasks_blocked

FACTS = RequestFacts(method="GET", htu="https://rs/a", proof="p", jkt="JKT")


def info(expires_at: int | None = None, jkt: str | None = "JKT") -> TokenInfo:
    return TokenInfo(
        subject="alice", client_id="c", scopes=frozenset({"read"}), expires_at=expires_at, jkt=jkt
    )


class Scripted:
    """An inner introspector that answers from a script and counts calls."""

    def __init__(self, *answers: TokenInfo | Exception, delay: float = 0.0) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.delay = delay

    async def introspect(self, token: str, *, request: RequestFacts) -> TokenInfo:
        self.calls += 1
        if self.delay:
            await anyio.sleep(self.delay)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


class TestCachingIntrospector:
    async def test_hit_after_miss(self) -> None:
        """The second call for a token makes no inner call and returns the same facts."""
        inner = Scripted(info())
        cache = CachingIntrospector(inner, ttl=60)
        first = await cache.introspect("t", request=FACTS)
        second = await cache.introspect("t", request=FACTS)
        assert first is second and inner.calls == 1
        assert (cache.hits, cache.misses) == (1, 1)

    async def test_keyed_by_token_hash(self) -> None:
        """Different tokens are different entries; the raw token is not a key."""
        inner = Scripted(info())
        cache = CachingIntrospector(inner, ttl=60)
        await cache.introspect("t1", request=FACTS)
        await cache.introspect("t2", request=FACTS)
        assert inner.calls == 2
        assert all(isinstance(k, bytes) and len(k) == 32 for k in cache._cache)
        assert cache.peek("t1") is not None and cache.peek("nope") is None

    async def test_ttl(self) -> None:
        """Entries expire after ttl."""
        clock = Clock(1000.0)
        inner = Scripted(info())
        cache = CachingIntrospector(inner, ttl=30, clock=clock)
        await cache.introspect("t", request=FACTS)
        clock.now += 29
        await cache.introspect("t", request=FACTS)
        clock.now += 2
        await cache.introspect("t", request=FACTS)
        assert inner.calls == 2

    async def test_capped_at_token_expiry(self) -> None:
        """An entry never outlives its token."""
        clock = Clock(1000.0)
        inner = Scripted(info(expires_at=1010))
        cache = CachingIntrospector(inner, ttl=300, clock=clock)
        await cache.introspect("t", request=FACTS)
        clock.now = 1009
        await cache.introspect("t", request=FACTS)
        clock.now = 1010
        await cache.introspect("t", request=FACTS)
        assert inner.calls == 2

    async def test_nearly_expired_not_cached(self) -> None:
        """A token with under a second left is not cached at all."""
        clock = Clock(1000.0)
        inner = Scripted(info(expires_at=1000))
        cache = CachingIntrospector(inner, ttl=60, clock=clock)
        await cache.introspect("t", request=FACTS)
        assert len(cache) == 0

    async def test_rejections_not_cached(self) -> None:
        """A rejection is not remembered: the next call asks again."""
        inner = Scripted(InvalidToken("authlete_unauthorized"), info())
        cache = CachingIntrospector(inner, ttl=60)
        with pytest.raises(InvalidToken):
            await cache.introspect("t", request=FACTS)
        assert (await cache.introspect("t", request=FACTS)).subject == "alice"
        assert inner.calls == 2

    async def test_outages_not_cached(self) -> None:
        """An outage is not remembered either."""
        inner = Scripted(IntrospectionUnavailable("authlete_http_error"), info())
        cache = CachingIntrospector(inner, ttl=60)
        with pytest.raises(IntrospectionUnavailable):
            await cache.introspect("t", request=FACTS)
        await cache.introspect("t", request=FACTS)
        assert inner.calls == 2

    async def test_single_flight(self) -> None:
        """Concurrent misses for one token make one inner call."""
        inner = Scripted(info(), delay=0.05)
        cache = CachingIntrospector(inner, ttl=60)
        results: list[TokenInfo] = []

        async def call() -> None:
            results.append(await cache.introspect("t", request=FACTS))

        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(call)
        assert inner.calls == 1 and len(results) == 50

    async def test_single_flight_shares_outage(self) -> None:
        """During an outage, concurrent callers share the leader's failure: no stampede."""
        inner = Scripted(IntrospectionUnavailable("authlete_timeout"), delay=0.05)
        cache = CachingIntrospector(inner, ttl=60)
        failures: list[str] = []

        async def call() -> None:
            try:
                await cache.introspect("t", request=FACTS)
            except IntrospectionUnavailable as exc:
                failures.append(exc.reason)

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(call)
        assert inner.calls == 1 and failures == ["authlete_timeout"] * 20

    async def test_followers_call_concurrently_after_rejection(self) -> None:
        """A rejection of the leader's proof does not fail the followers' requests, and
        they then ask concurrently, each with its own proof, never one after the other."""
        inner = Gated(
            lambda facts, n: InvalidDPoPProof("authlete_unauthorized") if n == 1 else info()
        )
        cache = CachingIntrospector(inner, ttl=60)
        outcomes: list[str] = []

        async def call() -> None:
            try:
                await cache.introspect("t", request=FACTS)
                outcomes.append("ok")
            except InvalidDPoPProof:
                outcomes.append("rejected")

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(call)
            await wait_all_tasks_blocked()
            assert inner.in_flight == 1  # same key: one leader, nine followers
            inner.release()
            await wait_all_tasks_blocked()
            assert inner.in_flight == 9  # the nine followers, all at once
            inner.release()
        assert sorted(outcomes) == ["ok"] * 9 + ["rejected"]
        assert inner.calls == 10 and inner.peak == 9

    async def test_cancelled_leader_does_not_strand_followers(self) -> None:
        """A leader cancelled mid-call (its client went away): its followers ask for
        themselves at once, concurrently."""
        inner = Gated(lambda facts, n: info())
        cache = CachingIntrospector(inner, ttl=60)
        results: list[TokenInfo] = []
        scope = anyio.CancelScope()

        async def leader() -> None:
            with scope:
                await cache.introspect("t", request=FACTS)

        async def follower() -> None:
            results.append(await cache.introspect("t", request=FACTS))

        async with anyio.create_task_group() as tg:
            tg.start_soon(leader)
            await checkpoint()
            for _ in range(3):
                tg.start_soon(follower)
            await wait_all_tasks_blocked()
            assert inner.in_flight == 1
            scope.cancel()
            await wait_all_tasks_blocked()
            assert inner.in_flight == 3
            inner.release()
        assert len(results) == 3 and inner.calls == 4

    async def test_invalidate(self) -> None:
        """invalidate() forgets a token."""
        inner = Scripted(info())
        cache = CachingIntrospector(inner, ttl=60)
        await cache.introspect("t", request=FACTS)
        cache.invalidate("t")
        await cache.introspect("t", request=FACTS)
        assert inner.calls == 2

    def test_ttl_must_be_positive(self) -> None:
        """A zero TTL is a configuration error (do not wrap instead)."""
        with pytest.raises(ValueError):
            CachingIntrospector(Scripted(info()), ttl=0)


class TestNegativeCache:
    async def test_inactive_token_remembered_for_negative_ttl(self) -> None:
        """A token the server says is not active is asked about once per negative_ttl:
        100 resends make one inner call; at the exact end of the TTL it is asked again."""
        clock = Clock(1000.0)
        inner = Scripted(InactiveToken("authlete_unauthorized", "[A] The token does not exist."))
        cache = CachingIntrospector(inner, ttl=60, negative_ttl=5, clock=clock)
        for _ in range(100):
            with pytest.raises(InactiveToken) as caught:
                await cache.introspect("junk", request=FACTS)
            assert caught.value.reason == "authlete_unauthorized"
            assert caught.value.description == "[A] The token does not exist."
        assert inner.calls == 1 and cache.negative_hits == 99
        clock.now = 1004.999
        with pytest.raises(InactiveToken):
            await cache.introspect("junk", request=FACTS)
        assert inner.calls == 1
        clock.now = 1005.0
        with pytest.raises(InactiveToken):
            await cache.introspect("junk", request=FACTS)
        assert inner.calls == 2

    async def test_keyed_by_token_whatever_the_proof(self) -> None:
        """The entry is the token's: another proof, key or route gets it too; another
        token does not."""
        inner = Scripted(InactiveToken("introspection_inactive"))
        cache = CachingIntrospector(inner, ttl=60)
        other = RequestFacts(method="POST", htu="https://rs/b", proof="q", jkt="OTHER", path="/b")
        with pytest.raises(InactiveToken):
            await cache.introspect("junk", request=FACTS)
        with pytest.raises(InactiveToken):
            await cache.introspect("junk", request=other)
        assert inner.calls == 1
        with pytest.raises(InactiveToken):
            await cache.introspect("junk2", request=FACTS)
        assert inner.calls == 2
        assert all(isinstance(k, bytes) and len(k) == 32 for k in cache._negative)

    @pytest.mark.parametrize(
        "error",
        [
            InvalidToken("authlete_unauthorized"),  # e.g. bound token without a proof
            InvalidDPoPProof("authlete_unauthorized"),  # the proof or its key
            InsufficientScope("authlete_forbidden", scope="x"),  # the route
        ],
        ids=["invalid_token", "invalid_dpop_proof", "insufficient_scope"],
    )
    async def test_request_dependent_rejections_not_remembered(self, error: DPoPGuardError) -> None:
        """Rejections that may depend on the proof, the key or the route are never cached:
        the next call asks again (and may pass)."""
        inner = Scripted(error, info())
        cache = CachingIntrospector(inner, ttl=60)
        with pytest.raises(type(error)):
            await cache.introspect("t", request=FACTS)
        assert (await cache.introspect("t", request=FACTS)).subject == "alice"
        assert inner.calls == 2

    async def test_inactive_drops_positive_entry(self) -> None:
        """Once the server says a token is dead (say, revoked, seen on a path that bypasses
        the cache), the cached facts for it are forgotten at once."""

        class Revocable(Scripted):
            def requires_fresh(self, request: RequestFacts) -> bool:
                return request.path.startswith("/payments")

        inner = Revocable(info(), InactiveToken("introspection_inactive"))
        cache = CachingIntrospector(inner, ttl=60)
        await cache.introspect("t", request=FACTS)
        assert cache.peek("t") is not None
        with pytest.raises(InactiveToken):
            await cache.introspect("t", request=replace(FACTS, path="/payments"))
        assert cache.peek("t") is None
        with pytest.raises(InactiveToken):
            await cache.introspect("t", request=FACTS)  # and not the old positive entry
        assert inner.calls == 2

    async def test_concurrent_callers_share_inactive(self) -> None:
        """Concurrent callers with one key share an inactive answer: one inner call."""
        inner = Gated(lambda facts, n: InactiveToken("authlete_unauthorized"))
        cache = CachingIntrospector(inner, ttl=60)
        failures: list[str] = []

        async def call() -> None:
            with pytest.raises(InactiveToken) as caught:
                await cache.introspect("junk", request=FACTS)
            failures.append(caught.value.reason)

        async with anyio.create_task_group() as tg:
            for _ in range(30):
                tg.start_soon(call)
            await wait_all_tasks_blocked()
            inner.release()
        assert inner.calls == 1 and len(failures) == 30

    def test_default_is_short(self) -> None:
        """The default negative TTL is a few seconds."""
        assert CachingIntrospector(Scripted(info())).negative_ttl == DEFAULT_NEGATIVE_TTL == 5

    @pytest.mark.parametrize("value", [0, -1, math.nan, math.inf, 60.5, True, "5"], ids=repr)
    def test_negative_ttl_validated(self, value: object) -> None:
        """negative_ttl must be a finite number of seconds in (0, 60]."""
        with pytest.raises(ValueError, match="negative_ttl"):
            CachingIntrospector(Scripted(info()), negative_ttl=value)  # type: ignore[arg-type]

    @pytest.mark.parametrize("value", [math.nan, math.inf, -5], ids=repr)
    def test_ttl_validated(self, value: float) -> None:
        """ttl must be finite and positive too."""
        with pytest.raises(ValueError, match="ttl"):
            CachingIntrospector(Scripted(info()), ttl=value)


def by_key(good: str) -> Callable[[RequestFacts, int], TokenInfo | Exception]:
    """Accept proofs of the ``good`` key, refuse every other key's (a stolen token)."""

    def answer(facts: RequestFacts, _n: int) -> TokenInfo | Exception:
        if facts.jkt == good:
            return info(jkt=good)
        return InvalidDPoPProof("authlete_unauthorized", "Thumbprint mismatch.")

    return answer


class TestSingleFlightUnderAttack:
    async def run(
        self, cache: CachingIntrospector, inner: Gated, thieves: list[str]
    ) -> tuple[list[str], list[TokenInfo], tuple[list[str | None], int]]:
        """The thieves arrive in order, then the owner; returns the rejected keys, the
        answers, and (calls started, calls in flight) when every task first waits."""
        rejected: list[str] = []
        accepted: list[TokenInfo] = []

        async def call(jkt: str) -> None:
            try:
                accepted.append(await cache.introspect("t", request=replace(FACTS, jkt=jkt)))
            except InvalidDPoPProof:
                rejected.append(jkt)

        async with anyio.create_task_group() as tg:
            for jkt in [*thieves, "OWNER"]:
                tg.start_soon(call, jkt)
                await checkpoint()  # arrival order is the order above
            await wait_all_tasks_blocked()
            first_wave = (list(inner.started), inner.in_flight)
            inner.release()
            await wait_all_tasks_blocked()
            inner.release()
        return rejected, accepted, first_wave

    async def test_keys_beyond_the_bound_are_refused_at_once(self) -> None:
        """40 thieves, each with its own key, then the owner, on a token never used: 8 keys
        (``max_keys``) have calls in flight, every further key is refused at once with a
        503 (``introspection_token_contested``), none is queued; once the wave answers, the
        owner's retry passes."""
        inner = Gated(by_key("OWNER"))
        cache = CachingIntrospector(inner, ttl=60)
        thieves = [f"THIEF{i}" for i in range(40)]
        contested: list[str] = []
        rejected: list[str] = []

        async def call(jkt: str) -> None:
            try:
                await cache.introspect("t", request=replace(FACTS, jkt=jkt))
            except InvalidDPoPProof:
                rejected.append(jkt)
            except IntrospectionUnavailable as exc:
                assert exc.reason == "introspection_token_contested" and exc.status == 503
                contested.append(jkt)

        async with anyio.create_task_group() as tg:
            for jkt in [*thieves, "OWNER"]:
                tg.start_soon(call, jkt)
                await checkpoint()
            await wait_all_tasks_blocked()
            assert inner.in_flight == 8 and inner.started == thieves[:8]
            assert contested == [*thieves[8:], "OWNER"]  # refused while the 8 wait
            inner.release()
        assert sorted(rejected) == sorted(thieves[:8]) and cache.contested == 33
        passed: list[TokenInfo] = []

        async def owner() -> None:
            passed.append(await cache.introspect("t", request=replace(FACTS, jkt="OWNER")))

        async with anyio.create_task_group() as tg:
            tg.start_soon(owner)
            await wait_all_tasks_blocked()
            inner.release()
        assert [i.jkt for i in passed] == ["OWNER"] and inner.calls == 9

    async def test_thieves_sharing_a_key_do_not_delay_owner(self) -> None:
        """40 requests of one thief key: one call for them (they wait for their leader),
        and the owner's call runs alongside it; after the thief leader's rejection, its
        followers ask concurrently, never one by one."""
        inner = Gated(by_key("OWNER"))
        cache = CachingIntrospector(inner, ttl=60)
        rejected, accepted, (started, in_flight) = await self.run(cache, inner, ["THIEF"] * 40)
        assert started == ["THIEF", "OWNER"] and in_flight == 2
        # The thief followers found the owner's entry once the first wave answered: the
        # facts carry the owner's thumbprint, so the middleware's binding check refuses
        # them (jkt_mismatch), with no further inner call.
        assert rejected == ["THIEF"] and inner.calls == 2
        assert len(accepted) == 40 and {i.jkt for i in accepted} == {"OWNER"}

    async def test_one_keys_calls_never_wait_behind_anothers(self) -> None:
        """``max_concurrent`` bounds the calls of one token *and key*: with a bound of 1
        and a thief's call in flight, the owner's call starts at once."""
        inner = Gated(by_key("OWNER"))
        cache = CachingIntrospector(inner, ttl=60, max_concurrent=1)
        outcomes: list[str] = []

        async def call(jkt: str) -> None:
            try:
                await cache.introspect("t", request=replace(FACTS, jkt=jkt))
                outcomes.append(jkt)
            except InvalidDPoPProof:
                outcomes.append("refused " + jkt)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "T0")
            await wait_all_tasks_blocked()
            tg.start_soon(call, "OWNER")
            await wait_all_tasks_blocked()
            assert inner.started == ["T0", "OWNER"] and inner.peak == 2
            inner.release()
        assert sorted(outcomes) == ["OWNER", "refused T0"]

    async def test_known_binding_refuses_other_keys_after_ttl(self) -> None:
        """After ``ttl`` the facts are gone but the token's binding is not (it never
        changes): another key is refused locally, a Bearer use too, with no call and no
        slot, so the owner's next cold call always starts."""
        now = [1000.0]
        inner = Gated(by_key("OWNER"))
        cache = CachingIntrospector(inner, ttl=60, max_keys=1, clock=lambda: now[0])

        async def owner() -> None:
            await cache.introspect("t", request=replace(FACTS, jkt="OWNER"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(owner)
            await wait_all_tasks_blocked()
            inner.release()
        now[0] += 61  # the facts expired
        with pytest.raises(InvalidDPoPProof) as mismatch:
            await cache.introspect("t", request=replace(FACTS, jkt="THIEF"))
        with pytest.raises(InvalidToken) as bearer:
            await cache.introspect("t", request=replace(FACTS, jkt=None, proof=None))
        assert (mismatch.value.reason, bearer.value.reason) == (
            "jkt_mismatch",
            "bound_token_as_bearer",
        )
        assert inner.calls == 1 and cache.binding_refusals == 2
        # No other key of this token can take a slot now, so the owner's cold call
        # always starts.
        async with anyio.create_task_group() as tg:
            tg.start_soon(owner)
            await wait_all_tasks_blocked()
            assert inner.in_flight == 1
            inner.release()
        assert inner.calls == 2 and cache.contested == 0

    async def test_binding_is_forgotten_when_the_token_expires(self) -> None:
        """The binding is remembered until the token's ``exp``, no longer: past it the
        inner introspector answers again (here: the token is inactive)."""
        now = [1000.0]
        answers: list[TokenInfo | Exception] = [
            info(jkt="OWNER", expires_at=1100),
            InactiveToken("authlete_unauthorized", "expired"),
        ]
        inner = Scripted(*answers)
        cache = CachingIntrospector(inner, ttl=60, clock=lambda: now[0])
        await cache.introspect("t", request=replace(FACTS, jkt="OWNER"))
        now[0] = 1101.0
        with pytest.raises(InactiveToken):
            await cache.introspect("t", request=replace(FACTS, jkt="THIEF"))

    async def test_outage_shared_within_key_only(self) -> None:
        """An outage is shared by the callers waiting on that call (no stampede); a caller
        with another key is not made to wait for it."""
        inner = Gated(
            lambda facts, n: (
                IntrospectionUnavailable("authlete_timeout") if facts.jkt == "A" else info(jkt="B")
            )
        )
        cache = CachingIntrospector(inner, ttl=60)
        outcomes: list[str] = []

        async def call(jkt: str) -> None:
            try:
                await cache.introspect("t", request=replace(FACTS, jkt=jkt))
                outcomes.append(jkt)
            except IntrospectionUnavailable:
                outcomes.append("503")

        async with anyio.create_task_group() as tg:
            for jkt in ["A"] * 5 + ["B"]:
                tg.start_soon(call, jkt)
            await wait_all_tasks_blocked()
            assert inner.in_flight == 2
            inner.release()
        assert sorted(outcomes) == ["503"] * 5 + ["B"] and inner.calls == 2


class TestFreshPaths:
    async def test_requires_fresh_bypasses_cache(self) -> None:
        """An inner introspector that says a request requires a fresh answer is asked every
        time for it, while other requests are served from the cache."""

        class Sensitive(Scripted):
            def requires_fresh(self, request: RequestFacts) -> bool:
                return request.path == "/payments"

        inner = Sensitive(info())
        cache = CachingIntrospector(inner, ttl=60)
        plain = replace(FACTS, path="/accounts")
        sensitive = replace(FACTS, path="/payments")
        await cache.introspect("t", request=plain)
        await cache.introspect("t", request=plain)
        assert inner.calls == 1
        for _ in range(3):
            await cache.introspect("t", request=sensitive)
        assert inner.calls == 4


class TestSyncHit:
    """``cached_sync``: the memory hit without a coroutine gives what ``introspect`` gives."""

    async def test_miss_then_same_facts_as_introspect(self) -> None:
        """None before the first introspection; afterwards the very facts a hit of
        ``introspect`` returns, counted as a hit, with no inner call."""
        inner = Scripted(info())
        cache = CachingIntrospector(inner, ttl=60)
        assert cache.cached_sync("t") is None
        first = await cache.introspect("t", request=FACTS)
        async_hit = await cache.introspect("t", request=FACTS)
        sync_hit = cache.cached_sync("t")
        assert sync_hit is first is async_hit and inner.calls == 1
        assert (cache.hits, cache.misses) == (2, 1)
        assert cache.cached_sync("other") is None

    async def test_reports_hit_on_request_facts(self) -> None:
        """Given request facts, a hit is noted on their lookup, as ``introspect`` does."""
        cache = CachingIntrospector(Scripted(info()), ttl=60)
        await cache.introspect("t", request=FACTS)
        facts = RequestFacts(method="GET", htu="https://rs/a", proof="p", jkt="JKT")
        assert cache.cached_sync("t", facts) is not None and facts.lookup.cache_hit is True

    async def test_expiry_as_introspect(self) -> None:
        """An entry past its ttl is gone for the sync lookup too (the boundary included)."""
        clock = Clock(1000.0)
        cache = CachingIntrospector(Scripted(info()), ttl=30, clock=clock)
        await cache.introspect("t", request=FACTS)
        clock.now += 29.999
        assert cache.cached_sync("t") is not None
        clock.now += 0.001
        assert cache.cached_sync("t") is None

    async def test_negative_answer_raised_as_introspect(self) -> None:
        """A remembered inactive token raises the same error from both paths."""
        inner = Scripted(InactiveToken("introspection_inactive", "The access token is not active."))
        cache = CachingIntrospector(inner, ttl=60)
        with pytest.raises(InactiveToken) as from_async:
            await cache.introspect("t", request=FACTS)
        with pytest.raises(InactiveToken) as from_sync:
            cache.cached_sync("t")
        assert from_sync.value.reason == from_async.value.reason == "introspection_inactive"
        assert from_sync.value is not from_async.value and inner.calls == 1

    async def test_requires_fresh_is_never_answered_sync(self) -> None:
        """With an inner introspector that may need a fresh answer, the sync lookup
        answers only with the request facts in hand, and never for a fresh path."""

        class Sensitive(Scripted):
            def requires_fresh(self, request: RequestFacts) -> bool:
                return request.path == "/payments"

        cache = CachingIntrospector(Sensitive(info()), ttl=60)
        plain = replace(FACTS, path="/accounts")
        await cache.introspect("t", request=plain)
        assert cache.cached_sync("t") is None  # no facts: cannot ask requires_fresh
        assert cache.cached_sync("t", plain) is not None
        assert cache.cached_sync("t", replace(FACTS, path="/payments")) is None

    async def test_invalidate_reaches_sync_path(self) -> None:
        """An invalidated token is a miss for the sync lookup at once."""
        cache = CachingIntrospector(Scripted(info()), ttl=60)
        await cache.introspect("t", request=FACTS)
        cache.invalidate("t")
        assert cache.cached_sync("t") is None


class TestBoundedLRU:
    async def test_maxsize_and_least_recently_used_first(self) -> None:
        """Never more than maxsize entries; a token just used survives an eviction that
        takes the least recently used one."""
        cache = CachingIntrospector(Scripted(info()), ttl=60, maxsize=3)
        for token in ("a", "b", "c"):
            await cache.introspect(token, request=FACTS)
        assert cache.cached_sync("a") is not None  # "a" is now the most recently used
        await cache.introspect("d", request=FACTS)
        assert len(cache) == 3
        assert cache.peek("b") is None
        assert all(cache.peek(t) is not None for t in ("a", "c", "d"))

    async def test_dead_entries_make_room_first(self) -> None:
        """When full, expired entries near the front go before live ones."""
        clock = Clock(1000.0)
        inner = Scripted(info(expires_at=1010), info(), info(), info())
        cache = CachingIntrospector(inner, ttl=60, maxsize=2, clock=clock)
        await cache.introspect("short", request=FACTS)  # lives until 1010
        await cache.introspect("long", request=FACTS)
        clock.now = 1011
        await cache.introspect("new", request=FACTS)
        assert cache.peek("long") is not None and cache.peek("new") is not None
        assert len(cache) == 2


class TestSyncTokenLookup:
    def test_declared_by_the_cache_not_by_a_plain_introspector(self) -> None:
        """The middleware answers memory hits without a coroutine through the declared
        ``SyncTokenLookup`` seam: the cache declares it, a plain introspector does not."""
        from dpop_guard.introspection import SyncTokenLookup

        inner = Scripted(info())
        assert isinstance(CachingIntrospector(inner), SyncTokenLookup)
        assert not isinstance(inner, SyncTokenLookup)


@pytest.mark.parametrize("length", [2048, 8192])
def test_token_keys_remembered_are_bounded_in_bytes(length: int) -> None:
    """A flood of distinct maximal tokens (looked up, never cached) leaves at most about
    1.2 MiB behind: tokens up to 2 KiB are remembered with their key, 512 at most; longer
    ones are never remembered."""
    import tracemalloc

    cache = CachingIntrospector(Scripted(info()), ttl=60)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for i in range(3000):
            assert cache.cached_sync(f"{i:08d}".ljust(length, "x")) is None
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    retained = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert retained < 1.3 * 2**20
