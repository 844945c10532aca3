"""JWT mode's cache of verified access tokens, through the middleware: a hit verifies the
proof alone, and admits exactly what a miss would; an entry ends at the token's ``exp``, at
the cache TTL, and when a JWKS refresh withdraws its key; a token whose signature fails is
never cached as valid; revocation-sensitive paths keep asking. An injected clock, no
sleeps; the JWKS served in process (``tests/_support/jwt_issuer.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import anyio
import pytest

from dpop_guard import ProofSigner
from dpop_guard._b64 import b64url_encode
from dpop_guard.errors import InvalidToken
from dpop_guard.introspection import RequestFacts, TokenInfo
from dpop_guard.introspection.cached import CachingIntrospector, KeyWithdrawals
from dpop_guard.routes import Route
from tests._support.clock import Clock
from tests._support.harness import ORIGIN, ROUTES, assert_rejected
from tests._support.jwt_issuer import JWTHarness, JWTIssuer

NOW = 1_800_000_000.0


@pytest.fixture(name="clock")
def _clock() -> Clock:
    return Clock(NOW)


@pytest.fixture(name="issuer")
def _issuer(clock: Clock) -> JWTIssuer:
    return JWTIssuer(clock)


@pytest.fixture(name="make")
async def _make(issuer: JWTIssuer, clock: Clock) -> AsyncIterator[Callable[..., JWTHarness]]:
    made: list[JWTHarness] = []

    def make(**options: object) -> JWTHarness:
        harness = JWTHarness(issuer, clock=clock, **options)  # type: ignore[arg-type]
        made.append(harness)
        return harness

    yield make
    for harness in made:
        await harness.aclose()


@pytest.fixture(name="jh")
def _jh(make: Callable[..., JWTHarness]) -> JWTHarness:
    return make()


def cache_of(jh: JWTHarness) -> CachingIntrospector:
    assert jh.cache is not None
    return jh.cache


async def test_the_validator_declares_withdrawals(jh: JWTHarness) -> None:
    """The cache learns of withdrawals through the declared seam."""
    assert isinstance(jh.validator, KeyWithdrawals)


async def test_hit_after_miss(jh: JWTHarness, signer: ProofSigner) -> None:
    """The first request verifies the token (a miss), the next ones are answered from the
    cache with the same facts; one JWKS fetch in all."""
    token = jh.token(signer)
    first = await jh.call(token, signer)
    assert first.status_code == 200, first.text
    facts = ("subject", "client_id", "scopes", "jkt", "expires_at")
    for _ in range(3):
        again = await jh.call(token, signer)
        assert again.status_code == 200
        assert [again.json()[k] for k in facts] == [first.json()[k] for k in facts]
    cache = cache_of(jh)
    assert (cache.misses, cache.hits) == (1, 3)
    assert jh.validator.fetches == 1
    assert first.json()["jkt"] == signer.jkt


async def test_without_cache_every_request_verifies(
    make: Callable[..., JWTHarness], signer: ProofSigner
) -> None:
    """cache=False (DPOP_GUARD_CACHE_TTL=0): the validator alone, same answers."""
    jh = make(cache=False)
    token = jh.token(signer)
    for _ in range(2):
        assert (await jh.call(token, signer)).status_code == 200
    assert jh.cache is None


async def test_binding_checked_on_hit(
    jh: JWTHarness, signer: ProofSigner, reasons: list[str]
) -> None:
    """A cached token with a proof from another key: 401 invalid_dpop_proof jkt_mismatch,
    and the owner is still served."""
    token = jh.token(signer)
    assert (await jh.call(token, signer)).status_code == 200
    thief = ProofSigner.generate("ES256")
    refused = await jh.call(token, thief)
    assert_rejected(refused, 401, "invalid_dpop_proof", "jkt_mismatch", reasons)
    assert (await jh.call(token, signer)).status_code == 200


async def test_scope_checked_on_hit(
    jh: JWTHarness, signer: ProofSigner, reasons: list[str]
) -> None:
    """Cached facts serve every route; each route's scopes are checked on every hit."""
    token = jh.token(signer)
    assert (await jh.call(token, signer)).status_code == 200
    refused = await jh.call(token, signer, path="/accounts/1/transactions")
    assert_rejected(refused, 403, "insufficient_scope", "scope_missing", reasons)
    assert cache_of(jh).hits == 1


async def test_unbound_token_refused_on_hit(
    jh: JWTHarness, signer: ProofSigner, reasons: list[str]
) -> None:
    """A token without cnf on the DPoP scheme is refused, miss and hit alike."""
    token = jh.token(None)
    for _ in range(2):
        refused = await jh.call(token, signer)
        assert_rejected(refused, 401, "invalid_token", "token_not_bound", reasons)


@pytest.mark.parametrize(
    ("lifetime", "ttl", "advance", "reason"),
    [
        # exp before the TTL: the entry ends at exp; past the validator's leeway the miss
        # refuses it as expired.
        (30, 60.0, 36, "jwt_expired"),
        # exp reached, within the validator's 5 s leeway: the middleware's own check.
        (30, 60.0, 30, "token_expired"),
    ],
)
async def test_entry_ends_at_exp(
    make: Callable[..., JWTHarness],
    clock: Clock,
    signer: ProofSigner,
    reasons: list[str],
    lifetime: int,
    ttl: float,
    advance: int,
    reason: str,
) -> None:
    """An entry never outlives the token: once exp passes, the request is refused."""
    jh = make(ttl=ttl)
    token = jh.token(signer, lifetime=lifetime)
    assert (await jh.call(token, signer)).status_code == 200
    clock.now = NOW + lifetime - 1
    assert (await jh.call(token, signer)).status_code == 200
    assert cache_of(jh).hits == 1
    clock.now = NOW + advance
    refused = await jh.call(token, signer)
    assert_rejected(refused, 401, "invalid_token", reason, reasons)
    assert cache_of(jh).peek(token) is None


async def test_entry_ends_at_ttl(
    make: Callable[..., JWTHarness], clock: Clock, signer: ProofSigner
) -> None:
    """After the cache TTL the token is verified again (a miss), then cached again."""
    jh = make(ttl=10.0)
    token = jh.token(signer)
    assert (await jh.call(token, signer)).status_code == 200
    clock.now = NOW + 10
    assert (await jh.call(token, signer)).status_code == 200
    cache = cache_of(jh)
    assert (cache.misses, cache.hits) == (2, 0)


class TestKeyWithdrawal:
    async def test_removed_key_drops_its_entries(
        self,
        jh: JWTHarness,
        issuer: JWTIssuer,
        clock: Clock,
        signer: ProofSigner,
        reasons: list[str],
    ) -> None:
        """k1 leaves the JWKS (noticed at the refresh a k2 token triggers): the token k1
        signed, cached before, is refused at once (jwt_unknown_key), not served from
        memory until its TTL."""
        old = jh.token(signer, kid="k1")
        assert (await jh.call(old, signer)).status_code == 200
        assert (await jh.call(old, signer)).status_code == 200
        issuer.published = ["k2"]
        clock.now = NOW + 31  # past refresh_interval: an unknown kid may refresh
        new = jh.token(signer, kid="k2")
        assert (await jh.call(new, signer)).status_code == 200
        assert jh.validator.withdrawn == 1 and cache_of(jh).withdrawals == 1
        refused = await jh.call(old, signer)
        assert_rejected(refused, 401, "invalid_token", "jwt_unknown_key", reasons)
        assert (await jh.call(new, signer)).status_code == 200

    async def test_key_replaced_under_its_kid(
        self,
        make: Callable[..., JWTHarness],
        issuer: JWTIssuer,
        clock: Clock,
        signer: ProofSigner,
        reasons: list[str],
    ) -> None:
        """Another key published under the same kid (seen at the jwks_ttl refresh): the
        old key's token no longer verifies, and its entry (whose TTL runs longer) does
        not stand in for it."""
        jh = make(ttl=3000.0)
        old = jh.token(signer)
        assert (await jh.call(old, signer)).status_code == 200
        issuer.rotate("k1")
        clock.now = NOW + 600  # jwks_ttl: the next miss refreshes the key set
        new = jh.token(signer)
        assert (await jh.call(new, signer)).status_code == 200
        assert jh.validator.withdrawn == 1
        refused = await jh.call(old, signer)
        assert_rejected(refused, 401, "invalid_token", "jwt_signature", reasons)

    async def test_keys_that_stay_keep_verifying(
        self,
        make: Callable[..., JWTHarness],
        issuer: JWTIssuer,
        clock: Clock,
        signer: ProofSigner,
    ) -> None:
        """A refresh that withdraws nothing drops nothing; after one that withdraws k1, a
        token of k2 (which stays) is verified again and served."""
        jh = make(ttl=3000.0)
        issuer.published = ["k1", "k2"]
        clock.now = NOW + 600
        kept = jh.token(signer, kid="k2")
        assert (await jh.call(kept, signer)).status_code == 200
        clock.now = NOW + 1200  # jwks_ttl again: same keys, nothing withdrawn
        assert (await jh.call(jh.token(signer, kid="k1"), signer)).status_code == 200
        cache = cache_of(jh)
        assert cache.withdrawals == 0 and cache.peek(kept) is not None
        issuer.published = ["k2"]
        clock.now = NOW + 1800
        assert (await jh.call(jh.token(signer, kid="k2"), signer)).status_code == 200
        assert cache.withdrawals == 1 and cache.peek(kept) is None
        assert (await jh.call(kept, signer)).status_code == 200

    async def test_an_answer_across_a_withdrawal_is_not_stored(
        self, issuer: JWTIssuer, clock: Clock, signer: ProofSigner
    ) -> None:
        """A miss whose key is withdrawn while it is still in flight (here: waiting for
        the revocation introspector) is answered but not cached."""
        entered, release = anyio.Event(), anyio.Event()

        class SlowRevocation:
            async def introspect(self, token: str, *, request: RequestFacts) -> TokenInfo:
                entered.set()
                await release.wait()
                return TokenInfo(None, None, frozenset(), None, None)

        jh = JWTHarness(
            issuer,
            clock=clock,
            revocation=SlowRevocation(),
            revocation_paths=("/accounts",),
            routes=(Route("/accounts", scopes=("read:accounts",)),),
        )
        try:
            token = jh.token(signer)
            status: list[int] = []

            async def first() -> None:
                status.append((await jh.call(token, signer)).status_code)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(first)
                await entered.wait()
                issuer.published = ["k2"]
                clock.now = NOW + 31
                # A k2 token on a path the cache answers: its unknown kid refreshes.
                other = jh.token(signer, kid="k2")
                facts = RequestFacts("GET", ORIGIN + "/other", "p", signer.jkt, path="/other")
                await cache_of(jh).introspect(other, request=facts)
                release.set()
            assert status == [200]
            assert cache_of(jh).withdrawals == 1
            assert cache_of(jh).peek(token) is None
        finally:
            await jh.aclose()


class TestNeverCachedAsValid:
    @pytest.mark.parametrize("part", ["signature", "payload"])
    async def test_forged_token_of_a_cached_one(
        self, jh: JWTHarness, signer: ProofSigner, reasons: list[str], part: str
    ) -> None:
        """A cached token's header and payload with another signature, or its signature
        over another payload (more scopes), is verified for itself (the key is the whole
        token's digest), refused, and never cached as valid."""
        token = jh.token(signer)
        assert (await jh.call(token, signer)).status_code == 200
        header, payload, signature = token.split(".")
        if part == "signature":
            forged = f"{header}.{payload}.{b64url_encode(b'x' * 64)}"
        else:
            other = jh.token(signer, scopes=("read:accounts", "read:transactions"))
            forged = f"{header}.{other.split('.')[1]}.{signature}"
        for _ in range(2):
            refused = await jh.call(forged, signer)
            assert_rejected(refused, 401, "invalid_token", "jwt_signature", reasons)
        assert cache_of(jh).peek(forged) is None
        assert (await jh.call(token, signer)).status_code == 200

    async def test_unknown_issuer_or_audience_never_cached(
        self, jh: JWTHarness, signer: ProofSigner, reasons: list[str]
    ) -> None:
        """A validly signed token for another API is refused on every request."""
        token = jh.token(signer, audience="https://other.bank.test")
        for _ in range(2):
            refused = await jh.call(token, signer)
            assert_rejected(refused, 401, "invalid_token", "jwt_audience", reasons)
        assert cache_of(jh).peek(token) is None


async def test_revocation_paths_ask_on_every_request(
    issuer: JWTIssuer, clock: Clock, signer: ProofSigner, reasons: list[str]
) -> None:
    """On a revocation-sensitive path a cached token is still introspected each time: a
    revocation is seen on the next request; other paths are served from the cache."""
    revoked: set[str] = set()
    calls: list[str] = []

    class Revocation:
        async def introspect(self, token: str, *, request: RequestFacts) -> TokenInfo:
            calls.append(request.path)
            if token in revoked:
                raise InvalidToken("authlete_unauthorized", "revoked")
            return TokenInfo(None, None, frozenset(), None, None)

    jh = JWTHarness(
        issuer,
        clock=clock,
        revocation=Revocation(),
        revocation_paths=("/accounts/",),
        routes=(*ROUTES[:2], Route("/accounts/{id}/transactions", scopes=("read:accounts",))),
    )
    try:
        token = jh.token(signer)
        for _ in range(2):
            assert (await jh.call(token, signer)).status_code == 200
            assert (
                await jh.call(token, signer, path="/accounts/1/transactions")
            ).status_code == 200
        assert calls == ["/accounts/1/transactions"] * 2
        revoked.add(token)
        refused = await jh.call(token, signer, path="/accounts/1/transactions")
        assert_rejected(refused, 401, "invalid_token", "authlete_unauthorized", reasons)
        assert (await jh.call(token, signer)).status_code == 200  # cached, not sensitive
    finally:
        await jh.aclose()
