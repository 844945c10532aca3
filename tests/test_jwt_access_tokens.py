"""JWT access tokens (RFC 9068), validated locally, with oidc-provider issuing them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from dpop_guard import DPoPGuardMiddleware, GuardSettings, ProofSigner, TokenInfo
from dpop_guard._b64 import b64url_encode
from dpop_guard.challenges import parse_challenge
from dpop_guard.errors import IntrospectionUnavailable, InvalidToken
from dpop_guard.introspection import RequestFacts
from dpop_guard.introspection.jwt import JWTAccessTokenSettings, JWTAccessTokenValidator
from dpop_guard.testing import make_proof
from tests._support.harness import ORIGIN, inner_app
from tests._support.oidc_provider import OIDCProvider

RESOURCE = "https://jwt.bank.test"
FACTS = RequestFacts(method="GET", htu=ORIGIN + "/accounts", proof="p", jkt="j", path="/accounts")

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", name="provider")
def _provider() -> Iterator[OIDCProvider]:
    provider = OIDCProvider()
    yield provider
    provider.stop()


def settings_for(provider: OIDCProvider, **overrides: Any) -> JWTAccessTokenSettings:
    values: dict[str, Any] = {
        "issuer": provider.issuer,
        "audience": RESOURCE,
        "jwks_uri": f"{provider.issuer}/jwks",
    }
    return JWTAccessTokenSettings(**(values | overrides))


@pytest.fixture(name="http")
async def _http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


class TestAgainstOIDCProvider:
    async def test_middleware_with_jwt_tokens(
        self, provider: OIDCProvider, http: httpx.AsyncClient, signer: ProofSigner
    ) -> None:
        """Bound JWT tokens pass with one JWKS fetch for any number of requests; another
        key's proof is refused by cnf.jkt."""
        validator = JWTAccessTokenValidator(http, settings_for(provider))
        app = DPoPGuardMiddleware(
            inner_app(), settings=GuardSettings(public_url=ORIGIN), introspector=validator
        )
        token = provider.token(signer, resource=RESOURCE)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=ORIGIN
        ) as client:
            for _ in range(5):
                proof = make_proof(signer, htu=ORIGIN + "/accounts", access_token=token)
                response = await client.get(
                    "/accounts", headers={"Authorization": f"DPoP {token}", "DPoP": proof}
                )
                assert response.status_code == 200, response.text
            assert response.json()["jkt"] == signer.jkt
            thief = ProofSigner.generate("ES256")
            proof = make_proof(thief, htu=ORIGIN + "/accounts", access_token=token)
            refused = await client.get(
                "/accounts", headers={"Authorization": f"DPoP {token}", "DPoP": proof}
            )
        assert refused.status_code == 401
        assert parse_challenge(refused.headers["www-authenticate"])[1]["error"] == (
            "invalid_dpop_proof"
        )
        assert validator.fetches == 1

    @pytest.mark.parametrize(
        ("overrides", "reason"),
        [
            ({"audience": "https://other.test"}, "jwt_audience"),
            ({"issuer": "https://someone-else.test"}, "jwt_issuer"),
            ({"algorithms": ("PS256",)}, "jwt_alg"),
        ],
    )
    async def test_claim_checks(
        self,
        provider: OIDCProvider,
        http: httpx.AsyncClient,
        signer: ProofSigner,
        overrides: dict[str, Any],
        reason: str,
    ) -> None:
        """Audience, issuer and algorithm are enforced."""
        validator = JWTAccessTokenValidator(http, settings_for(provider, **overrides))
        with pytest.raises(InvalidToken) as info:
            await validator.introspect(provider.token(signer, resource=RESOURCE), request=FACTS)
        assert info.value.reason == reason

    async def test_expired(
        self, provider: OIDCProvider, http: httpx.AsyncClient, signer: ProofSigner
    ) -> None:
        """exp is enforced (with the clock moved past it)."""
        token = provider.token(signer, resource=RESOURCE)
        import time

        validator = JWTAccessTokenValidator(
            http, settings_for(provider), clock=lambda: time.time() + 7200
        )
        with pytest.raises(InvalidToken) as info:
            await validator.introspect(token, request=FACTS)
        assert info.value.reason == "jwt_expired"

    async def test_tampered(
        self, provider: OIDCProvider, http: httpx.AsyncClient, signer: ProofSigner
    ) -> None:
        """A changed payload fails the signature."""
        header, _payload, sig = provider.token(signer, resource=RESOURCE).split(".")
        forged = b64url_encode(
            json.dumps(
                {"iss": provider.issuer, "aud": RESOURCE, "exp": 4102444800, "scope": "admin"}
            ).encode()
        )
        validator = JWTAccessTokenValidator(http, settings_for(provider))
        with pytest.raises(InvalidToken) as info:
            await validator.introspect(f"{header}.{forged}.{sig}", request=FACTS)
        assert info.value.reason == "jwt_signature"

    async def test_unknown_kid_is_rate_limited(
        self, provider: OIDCProvider, http: httpx.AsyncClient, signer: ProofSigner
    ) -> None:
        """Tokens naming unknown keys cost at most one JWKS fetch per refresh interval."""
        validator = JWTAccessTokenValidator(http, settings_for(provider))
        await validator.introspect(provider.token(signer, resource=RESOURCE), request=FACTS)
        _, payload, sig = provider.token(signer, resource=RESOURCE).split(".")
        for i in range(20):
            header = b64url_encode(
                json.dumps({"alg": "ES256", "typ": "at+jwt", "kid": f"made-up-{i}"}).encode()
            )
            with pytest.raises(InvalidToken) as info:
                await validator.introspect(f"{header}.{payload}.{sig}", request=FACTS)
            assert info.value.reason == "jwt_unknown_key"
        assert validator.fetches == 1

    @pytest.mark.parametrize(
        ("header", "reason"),
        [
            ({"alg": "ES256", "typ": "JWT", "kid": "k"}, "jwt_typ"),
            ({"alg": "HS256", "typ": "at+jwt", "kid": "k"}, "jwt_alg"),
            ({"alg": "ES256", "typ": "at+jwt"}, "jwt_unknown_key"),
        ],
    )
    async def test_header_checks(
        self, provider: OIDCProvider, http: httpx.AsyncClient, header: dict[str, str], reason: str
    ) -> None:
        """typ must be at+jwt, alg on the list, and a kid present, before any key work."""
        validator = JWTAccessTokenValidator(http, settings_for(provider))
        token = f"{b64url_encode(json.dumps(header).encode())}.e30.AAAA"
        with pytest.raises(InvalidToken) as info:
            await validator.introspect(token, request=FACTS)
        assert info.value.reason == reason
        assert validator.fetches == 0  # refused before any key work


class TestRevocationAndFailures:
    async def test_revocation_sensitive_paths(
        self, provider: OIDCProvider, http: httpx.AsyncClient, signer: ProofSigner
    ) -> None:
        """On listed paths the token is introspected too, and a revoked one is refused."""

        class Revoked:
            calls = 0

            async def introspect(self, token: str, *, request: RequestFacts) -> TokenInfo:
                Revoked.calls += 1
                raise InvalidToken("introspection_inactive")

        validator = JWTAccessTokenValidator(
            http, settings_for(provider, revocation_paths=("/payments",)), revocation=Revoked()
        )
        token = provider.token(signer, resource=RESOURCE)
        await validator.introspect(token, request=FACTS)  # /accounts: local only
        payments = RequestFacts(
            method="POST", htu=ORIGIN + "/payments/1", proof="p", jkt=signer.jkt, path="/payments/1"
        )
        with pytest.raises(InvalidToken):
            await validator.introspect(token, request=payments)
        assert Revoked.calls == 1

    async def test_jwks_unreachable(self, http: httpx.AsyncClient) -> None:
        """No JWKS and none cached: 503, not a refusal of the client."""
        from dpop_guard.devtools.demo import free_port

        settings = JWTAccessTokenSettings(
            issuer="https://as", audience=RESOURCE, jwks_uri=f"http://127.0.0.1:{free_port()}/jwks"
        )
        header = b64url_encode(json.dumps({"alg": "ES256", "typ": "at+jwt", "kid": "k"}).encode())
        with pytest.raises(IntrospectionUnavailable):
            await JWTAccessTokenValidator(http, settings).introspect(
                f"{header}.e30.AAAA", request=FACTS
            )

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"jwks_uri": "ftp://x"},
            {"issuer": ""},
            {"algorithms": ("HS256",)},
            {"algorithms": ()},
        ],
    )
    def test_settings(self, kwargs: dict[str, Any]) -> None:
        """Bad settings are refused."""
        values: dict[str, Any] = {
            "issuer": "https://as",
            "audience": "a",
            "jwks_uri": "https://as/jwks",
        }
        with pytest.raises(ValueError):
            JWTAccessTokenSettings(**(values | kwargs))


class TestExample:
    async def test_accounts_example_in_jwt_mode(
        self, provider: OIDCProvider, signer: ProofSigner
    ) -> None:
        """DPOP_GUARD_INTROSPECTION=jwt runs the accounts example on JWT access tokens."""
        from dpop_guard.devtools.demo.accounts import create_app

        app = create_app(
            {
                "DPOP_GUARD_INTROSPECTION": "jwt",
                "DPOP_GUARD_JWT_ISSUER": provider.issuer,
                "DPOP_GUARD_JWT_AUDIENCE": RESOURCE,
                "DPOP_GUARD_PUBLIC_URL": ORIGIN,
            }
        )
        token = provider.token(signer, resource=RESOURCE)
        proof = make_proof(signer, htu=ORIGIN + "/accounts", access_token=token)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN) as client,
        ):
            response = await client.get(
                "/accounts", headers={"Authorization": f"DPoP {token}", "DPoP": proof}
            )
        assert response.status_code == 200
        assert response.json()["subject"] == "app"

    def test_settings_from_env(self) -> None:
        """The JWKS URI defaults to the issuer's /jwks; problems are named."""
        s = JWTAccessTokenSettings.from_env(
            {
                "DPOP_GUARD_JWT_ISSUER": "https://as.test/",
                "DPOP_GUARD_JWT_AUDIENCE": "https://rs.test",
                "DPOP_GUARD_JWT_ALGORITHMS": "ES256 EdDSA",
            }
        )
        assert s.jwks_uri == "https://as.test/jwks" and s.algorithms == ("ES256", "EdDSA")
        with pytest.raises(ValueError, match="DPOP_GUARD_JWT_"):
            JWTAccessTokenSettings.from_env({})
