"""No client turns the guard into an Authlete amplifier: counted at the simulator, over
real HTTP, through the middleware (issue: fail closed at every edge, section 5)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import anyio
import pytest

from dpop_guard import ProofSigner
from dpop_guard.devtools.simulator import SimulatorState
from dpop_guard.testing import make_proof
from tests._support.harness import ORIGIN, Harness, assert_rejected

RESENDS = 100


@pytest.fixture(name="make_harness")
async def _make_harness(
    simulator: SimulatorState, simulator_url: str
) -> AsyncIterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(**options: object) -> Harness:
        made.append(Harness(simulator, simulator_url, **options))
        return made[-1]

    yield make
    for harness in made:
        await harness.aclose()


@pytest.fixture(name="h")
def _h(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness()


class TestJunkTokens:
    async def test_unknown_token_resent(
        self, h: Harness, signer: ProofSigner, reasons: list[str]
    ) -> None:
        """A token Authlete does not know, resent 100 times with fresh proofs: every answer
        is 401 invalid_token, and Authlete is asked one round (2 calls), not 100."""
        for _ in range(RESENDS):
            response = await h.call("junk-token-0123456789", signer)
            assert_rejected(response, 401, "invalid_token", "authlete_unauthorized", reasons)
        assert h.simulator.calls["auth/introspection"] == 2

    async def test_same_proof_resent(self, h: Harness, signer: ProofSigner) -> None:
        """One junk token with one proof, resent 100 times: one round of calls (it was
        200 calls before negative caching)."""
        token = "junk-token-abcdefghij"
        proof = make_proof(signer, htu=ORIGIN + "/accounts", access_token=token)
        statuses = {(await h.call(token, proof=proof)).status_code for _ in range(RESENDS)}
        assert statuses == {401}
        assert h.simulator.calls["auth/introspection"] == 2

    async def test_expired_token_resent(
        self, h: Harness, signer: ProofSigner, reasons: list[str]
    ) -> None:
        """An expired token ("has expired", then "does not exist": Authlete deletes it on
        first sight), resent 100 times: one round of calls."""
        token = h.token(signer, lifetime=-1)
        for _ in range(RESENDS):
            response = await h.call(token, signer)
            assert_rejected(response, 401, "invalid_token", "authlete_unauthorized", reasons)
        assert h.simulator.calls["auth/introspection"] == 2

    async def test_binding_failures_are_not_remembered(
        self, h: Harness, signer: ProofSigner, reasons: list[str]
    ) -> None:
        """A thief's refused proof is not remembered against the token: the owner's next
        request, on the same cold cache, passes."""
        token = h.token(signer)
        response = await h.call(token, ProofSigner.generate("ES256"))
        assert_rejected(response, 401, "invalid_dpop_proof", "authlete_unauthorized", reasons)
        assert (await h.call(token, signer)).status_code == 200
        assert h.simulator.calls["auth/introspection"] == 4

    async def test_bound_token_as_bearer_does_not_poison(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, reasons: list[str]
    ) -> None:
        """A thief sends the owner's bound token as Bearer (no key needed): Authlete's
        "expected a DPoP header" is about the request, not the token, so it is not
        remembered, and the owner's next request passes."""
        h = make_harness(allow_unbound_tokens=True)
        token = h.token(signer)
        for _ in range(3):
            response = await h.call(token, scheme="Bearer")
            assert_rejected(response, 401, "invalid_token", "authlete_unauthorized", reasons)
        assert (await h.call(token, signer)).status_code == 200


class TestScopes:
    async def test_missing_scope_costs_one_round(
        self, h: Harness, signer: ProofSigner, reasons: list[str]
    ) -> None:
        """A real token without a route's scope, 100 requests to that route: 403
        insufficient_scope (checked locally), and one round of Authlete calls; the facts
        then serve the routes it does cover."""
        token = h.token(signer, scopes=("read:accounts",))
        for _ in range(RESENDS):
            response = await h.call(token, signer, path="/accounts/acc-1/transactions")
            params = assert_rejected(response, 403, "insufficient_scope", "scope_missing", reasons)
            assert params["scope"] == "read:transactions"
        assert (await h.call(token, signer)).status_code == 200
        assert h.simulator.calls["auth/introspection"] == 2
        assert all("scopes" not in entry for entry in h.simulator.log)


class TestThieves:
    async def test_owner_passes_among_concurrent_thieves(
        self, h: Harness, signer: ProofSigner
    ) -> None:
        """20 thieves with the stolen token and their own keys, and the owner, all cold and
        concurrent on a token never used: at most 8 keys are asked about, the rest are
        refused at once (503, never a pass); the owner's retry passes, and from then on
        every thief is a 401 without an Authlete call."""
        token = h.token(signer)
        thieves = [ProofSigner.generate("ES256") for _ in range(20)]
        statuses: dict[str, int] = {}

        async def one(name: str, key: ProofSigner) -> None:
            statuses[name] = (await h.call(token, key)).status_code

        async with anyio.create_task_group() as tg:
            for i, thief in enumerate(thieves):
                tg.start_soon(one, f"thief{i}", thief)
            tg.start_soon(one, "owner", signer)
        assert statuses.pop("owner") in (200, 503)
        assert set(statuses.values()) <= {401, 503} and 401 in statuses.values()
        assert (await h.call(token, signer)).status_code == 200
        before = h.simulator.calls["auth/introspection"]
        for thief in thieves:
            assert (await h.call(token, thief)).status_code == 401
        assert h.simulator.calls["auth/introspection"] == before
