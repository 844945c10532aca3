"""RFC 9701 interop: panva's oidc-provider (``features.jwtIntrospection``, an implementation
we did not write) signs its introspection answers for the resource server ``rs`` with ES256
when asked with ``Accept: application/token-introspection+jwt``; the RFC 7662 introspector
verifies them against the provider's published JWKS, in front of the middleware, and
from the environment (``DPOP_GUARD_INTROSPECTION_SIGNED=required``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from dpop_guard import (
    CachingIntrospector,
    DPoPGuardMiddleware,
    GuardSettings,
    ProofSigner,
    from_env,
)
from dpop_guard.challenges import parse_challenge
from dpop_guard.errors import IntrospectionUnavailable
from dpop_guard.introspection import RequestFacts
from dpop_guard.introspection._signed import SignedResponseSettings, SignedResponseVerifier
from dpop_guard.introspection.rfc7662 import RFC7662Introspector, RFC7662Settings
from dpop_guard.testing import make_proof
from tests._support.harness import ORIGIN, inner_app
from tests._support.oidc_provider import RS_CLIENT, OIDCProvider

pytestmark = pytest.mark.e2e
FACTS = RequestFacts(method="GET", htu=ORIGIN + "/accounts", proof=None, jkt=None)


@pytest.fixture(scope="module", name="provider")
def _provider() -> Iterator[OIDCProvider]:
    provider = OIDCProvider()
    yield provider
    provider.stop()


def introspection_settings(provider: OIDCProvider) -> RFC7662Settings:
    return RFC7662Settings(
        url=provider.introspection_url,
        client_id=RS_CLIENT[0],
        client_secret=RS_CLIENT[1],
        audience="https://api.bank.test",
    )


def signed_settings(provider: OIDCProvider, **changes: str) -> SignedResponseSettings:
    options: dict[str, Any] = {
        "issuer": provider.issuer,
        "audience": RS_CLIENT[0],  # oidc-provider's aud: the calling client's id
        "jwks_uri": provider.issuer + "/jwks",
        **changes,
    }
    return SignedResponseSettings(**options)


@pytest.fixture(name="guarded")
async def _guarded(provider: OIDCProvider) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        verifier = SignedResponseVerifier.remote(http, signed_settings(provider))
        introspector = RFC7662Introspector(http, introspection_settings(provider), signed=verifier)
        app = DPoPGuardMiddleware(
            inner_app(),
            settings=GuardSettings(public_url=ORIGIN),
            introspector=CachingIntrospector(introspector, ttl=60),
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
            yield client


async def call(client: httpx.AsyncClient, token: str, signer: ProofSigner) -> httpx.Response:
    proof = make_proof(signer, htu=ORIGIN + "/accounts", access_token=token)
    return await client.get("/accounts", headers={"Authorization": f"DPoP {token}", "DPoP": proof})


def error_of(response: httpx.Response) -> str | None:
    return parse_challenge(response.headers["www-authenticate"])[1].get("error")


class TestAgainstOIDCProvider:
    async def test_bound_token(
        self, guarded: httpx.AsyncClient, provider: OIDCProvider, signer: ProofSigner
    ) -> None:
        """oidc-provider's signed answer verifies; its cnf.jkt is the binding."""
        response = await call(guarded, provider.token(signer), signer)
        assert response.status_code == 200, response.text
        assert response.json()["jkt"] == signer.jkt and response.json()["client_id"] == "app"

    async def test_other_key(
        self, guarded: httpx.AsyncClient, provider: OIDCProvider, signer: ProofSigner
    ) -> None:
        response = await call(guarded, provider.token(signer), ProofSigner.generate("ES256"))
        assert response.status_code == 401 and error_of(response) == "invalid_dpop_proof"

    async def test_unknown_token(self, guarded: httpx.AsyncClient, signer: ProofSigner) -> None:
        """A signed ``active: false`` is invalid_token."""
        response = await call(guarded, "not-a-token-from-this-server", signer)
        assert response.status_code == 401 and error_of(response) == "invalid_token"

    async def test_the_answer_is_really_signed(self, provider: OIDCProvider) -> None:
        """What oidc-provider sends, read without us: a compact JWS of RFC 9701's type."""
        response = httpx.post(
            provider.introspection_url,
            data={"token": "x"},
            auth=RS_CLIENT,
            headers={"Accept": "application/token-introspection+jwt"},
        )
        assert response.headers["content-type"].startswith("application/token-introspection+jwt")
        assert response.text.count(".") == 2

    @pytest.mark.parametrize(
        ("changes", "reason"),
        [
            ({"audience": "someone-else"}, "introspection_jwt_audience"),
            ({"issuer": "https://as.example.com"}, "introspection_jwt_issuer"),
        ],
    )
    async def test_refused_when_not_ours(
        self, provider: OIDCProvider, signer: ProofSigner, changes: dict[str, str], reason: str
    ) -> None:
        async with httpx.AsyncClient() as http:
            verifier = SignedResponseVerifier.remote(http, signed_settings(provider, **changes))
            introspector = RFC7662Introspector(
                http, introspection_settings(provider), signed=verifier, breaker=None
            )
            with pytest.raises(IntrospectionUnavailable) as caught:
                await introspector.introspect(provider.token(signer), request=FACTS)
        assert caught.value.reason == reason

    async def test_from_env(self, provider: OIDCProvider, signer: ProofSigner) -> None:
        guard = from_env(
            environ={
                "DPOP_GUARD_PUBLIC_URL": ORIGIN,
                "DPOP_GUARD_INTROSPECTION": "rfc7662",
                "DPOP_GUARD_INTROSPECTION_URL": provider.introspection_url,
                "DPOP_GUARD_INTROSPECTION_CLIENT_ID": RS_CLIENT[0],
                "DPOP_GUARD_INTROSPECTION_CLIENT_SECRET": RS_CLIENT[1],
                "DPOP_GUARD_INTROSPECTION_SIGNED": "required",
                "DPOP_GUARD_INTROSPECTION_ISSUER": provider.issuer,
                "DPOP_GUARD_INTROSPECTION_JWKS_URI": provider.issuer + "/jwks",
            }
        )
        app = inner_app()
        guard.install(app)
        async with guard.lifespan(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
                response = await call(client, provider.token(signer), signer)
        assert response.status_code == 200, response.text
        assert response.json()["jkt"] == signer.jkt
