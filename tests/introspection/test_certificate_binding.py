"""A stolen certificate-bound token is no introspection amplifier (issue 19 section 4).

Once a success shows a token bound to a certificate, every other certificate (or none) is
refused locally for the token's lifetime, as another DPoP key is: counted at the Authlete
simulator, over real HTTP. Single-flight groups and slots are keyed by the certificate
presented, as by the proof key, so the owner's cold request never waits behind a thief's.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import anyio
import httpx
import pytest
from anyio.lowlevel import checkpoint

from dpop_guard.devtools.demo._pki import PKI, _issue
from dpop_guard.devtools.simulator import SimulatorState
from dpop_guard.errors import DPoPGuardError, InvalidToken
from dpop_guard.introspection import RequestFacts, TokenInfo
from dpop_guard.introspection.authlete import AuthleteIntrospector
from dpop_guard.introspection.cached import CachingIntrospector
from dpop_guard.mtls import ClientCertificate
from tests._support.clock import Clock
from tests._support.gated import Gated, wait_all_tasks_blocked
from tests._support.harness import authlete_settings

THIEVES = 40
TTL = 60.0
FACTS = RequestFacts(method="GET", htu="https://rs.test/x", proof=None, jkt=None)


@pytest.fixture(scope="module", name="pki")
def _pki() -> PKI:
    return PKI.generate()


@pytest.fixture(scope="module", name="owner")
def _owner(pki: PKI) -> ClientCertificate:
    return ClientCertificate.from_der(pki.alice.der)


@pytest.fixture(scope="module", name="thieves")
def _thieves(pki: PKI) -> list[ClientCertificate]:
    """Forty other clients of the same CA."""
    return [
        ClientCertificate.from_der(_issue(f"thief {i}", pki.ca, ca=False).der)
        for i in range(THIEVES)
    ]


def with_cert(certificate: ClientCertificate | None) -> RequestFacts:
    return replace(FACTS, client_certificate=certificate)


@pytest.fixture(name="cache")
async def _cache(simulator_url: str) -> AsyncIterator[tuple[CachingIntrospector, Clock]]:
    clock = Clock(time.time())
    async with httpx.AsyncClient() as http:
        inner = AuthleteIntrospector(http, authlete_settings(simulator_url))
        yield CachingIntrospector(inner, ttl=TTL, clock=clock), clock


async def refused(cache: CachingIntrospector, token: str, facts: RequestFacts) -> str:
    with pytest.raises(InvalidToken) as info:
        await cache.introspect(token, request=facts)
    return info.value.reason


class TestStolenCertificateBoundToken:
    async def test_other_certificates_cost_no_call(
        self,
        cache: tuple[CachingIntrospector, Clock],
        simulator: SimulatorState,
        owner: ClientCertificate,
        thieves: list[ClientCertificate],
    ) -> None:
        """The owner uses the token once; after its facts expired (the token lives on),
        40 other certificates one after the other, then 40 at once, then a request without
        a certificate: every one refused locally, no Authlete call. The owner is still
        served."""
        introspector, clock = cache
        token = simulator.create_token(subject="alice", scopes=["s"], x5t_s256=owner.thumbprint)
        info = await introspector.introspect(token, request=with_cert(owner))
        assert info.x5t_s256 == owner.thumbprint
        clock.now += TTL + 1  # the facts are gone; the binding is remembered
        simulator.reset_counters()
        reasons = [await refused(introspector, token, with_cert(cert)) for cert in thieves]
        assert reasons == ["certificate_mismatch"] * THIEVES
        at_once: list[str] = []

        async def one(cert: ClientCertificate) -> None:
            at_once.append(await refused(introspector, token, with_cert(cert)))

        async with anyio.create_task_group() as tg:
            for cert in thieves:
                tg.start_soon(one, cert)
        assert at_once == ["certificate_mismatch"] * THIEVES
        assert await refused(introspector, token, with_cert(None)) == "certificate_missing"
        assert sum(simulator.calls.values()) == 0
        assert introspector.binding_refusals == 2 * THIEVES + 1
        assert (await introspector.introspect(token, request=with_cert(owner))).subject == "alice"

    async def test_until_the_token_expires(
        self,
        cache: tuple[CachingIntrospector, Clock],
        simulator: SimulatorState,
        owner: ClientCertificate,
        thieves: list[ClientCertificate],
    ) -> None:
        """The binding is remembered as long as the token lives, not longer: once it has
        expired, a request is a plain miss again (Authlete answers for a dead token)."""
        introspector, clock = cache
        token = simulator.create_token(
            subject="alice", scopes=["s"], x5t_s256=owner.thumbprint, lifetime=600
        )
        await introspector.introspect(token, request=with_cert(owner))
        clock.now += 599
        assert await refused(introspector, token, with_cert(thieves[0])) == "certificate_mismatch"
        clock.now += 2
        simulator.reset_counters()
        with pytest.raises(DPoPGuardError):
            await introspector.introspect(token, request=with_cert(thieves[0]))
        assert sum(simulator.calls.values()) == 1


def by_certificate(owner: str) -> Callable[[RequestFacts, int], TokenInfo | Exception]:
    """Authlete's answer for a token bound to ``owner``'s certificate."""

    def answer(facts: RequestFacts, _n: int) -> TokenInfo | Exception:
        certificate = facts.client_certificate
        if certificate is not None and certificate.thumbprint == owner:
            return TokenInfo(
                subject="alice",
                client_id="c",
                scopes=frozenset({"s"}),
                expires_at=None,
                jkt=None,
                x5t_s256=owner,
            )
        return InvalidToken("authlete_unauthorized", "Certificate mismatch.")

    return answer


class TestFlightsByCertificate:
    async def test_owner_never_waits_behind_a_thief(
        self, owner: ClientCertificate, thieves: list[ClientCertificate]
    ) -> None:
        """A token never used yet: a thief's call is in flight when the owner arrives.
        The owner's call starts at once, in its own group (it does not follow the
        thief's), and the thief's refusal is not shared with the owner."""
        inner = Gated(by_certificate(owner.thumbprint))
        cache = CachingIntrospector(inner, ttl=TTL)
        outcomes: dict[str, str] = {}

        async def call(name: str, cert: ClientCertificate) -> None:
            try:
                await cache.introspect("t", request=with_cert(cert))
                outcomes[name] = "ok"
            except InvalidToken as exc:
                outcomes[name] = exc.reason

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "thief", thieves[0])
            await checkpoint()
            tg.start_soon(call, "owner", owner)
            await wait_all_tasks_blocked()
            assert inner.in_flight == 2
            inner.release()
        assert outcomes == {"thief": "authlete_unauthorized", "owner": "ok"}

    async def test_one_flight_per_certificate(self, thieves: list[ClientCertificate]) -> None:
        """Ten requests with one certificate share one call; a second certificate makes
        its own."""
        inner = Gated(by_certificate("nobody"))
        cache = CachingIntrospector(inner, ttl=TTL)

        async def call(cert: ClientCertificate) -> None:
            with pytest.raises(InvalidToken):
                await cache.introspect("t", request=with_cert(cert))

        async with anyio.create_task_group() as tg:
            for cert in [thieves[0]] * 10 + [thieves[1]]:
                tg.start_soon(call, cert)
            await wait_all_tasks_blocked()
            assert inner.in_flight == 2
            inner.release()
            await wait_all_tasks_blocked()
            inner.release()
