"""RFC 7662 introspection against a real, independent authorization server
(panva's oidc-provider), and the client's wire format over MockTransport."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qs

import httpx
import pytest
from joserfc import jwk as jose_jwk
from joserfc import jwt as jose_jwt

from dpop_guard import CachingIntrospector, DPoPGuardMiddleware, GuardSettings, ProofSigner
from dpop_guard.challenges import parse_challenge
from dpop_guard.errors import IntrospectionUnavailable, InvalidToken
from dpop_guard.introspection import InactiveToken, RequestFacts
from dpop_guard.introspection.rfc7662 import RFC7662Introspector, RFC7662Settings
from dpop_guard.testing import make_proof
from tests._support.harness import ORIGIN, inner_app
from tests._support.oidc_provider import RS_CLIENT, OIDCProvider

FACTS = RequestFacts(method="GET", htu=ORIGIN + "/accounts", proof="p", jkt="j")

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", name="provider")
def _provider() -> Iterator[OIDCProvider]:
    provider = OIDCProvider()
    yield provider
    provider.stop()


@pytest.fixture(name="guarded")
async def _guarded(provider: OIDCProvider) -> AsyncIterator[httpx.AsyncClient]:
    settings = RFC7662Settings(
        url=provider.introspection_url,
        client_id=RS_CLIENT[0],
        client_secret=RS_CLIENT[1],
        audience="https://api.bank.test",
    )
    http = httpx.AsyncClient()
    introspector = CachingIntrospector(RFC7662Introspector(http, settings), ttl=60)
    app = DPoPGuardMiddleware(
        inner_app(), settings=GuardSettings(public_url=ORIGIN), introspector=introspector
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN) as client:
        yield client
    await http.aclose()


async def call(
    client: httpx.AsyncClient, token: str, signer: ProofSigner, scheme: str = "DPoP"
) -> httpx.Response:
    proof = make_proof(signer, htu=ORIGIN + "/accounts", access_token=token)
    headers = {"Authorization": f"{scheme} {token}"}
    if scheme == "DPoP":
        headers["DPoP"] = proof
    return await client.get("/accounts", headers=headers)


def error_of(response: httpx.Response) -> str | None:
    return parse_challenge(response.headers["www-authenticate"])[1].get("error")


class TestAgainstOIDCProvider:
    async def test_bound_token(
        self, guarded: httpx.AsyncClient, provider: OIDCProvider, signer: ProofSigner
    ) -> None:
        """A DPoP-bound token from oidc-provider passes; its facts come from introspection."""
        token = provider.token(signer)
        response = await call(guarded, token, signer)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["jkt"] == signer.jkt and body["client_id"] == "app"
        assert body["scopes"] == ["read:accounts"]

    async def test_other_key(
        self, guarded: httpx.AsyncClient, provider: OIDCProvider, signer: ProofSigner
    ) -> None:
        """cnf.jkt is checked locally: another key's proof is refused."""
        token = provider.token(signer)
        response = await call(guarded, token, ProofSigner.generate("ES256"))
        assert response.status_code == 401 and error_of(response) == "invalid_dpop_proof"

    async def test_unbound_token(
        self, guarded: httpx.AsyncClient, provider: OIDCProvider, signer: ProofSigner
    ) -> None:
        """A Bearer token (no cnf) presented with a proof is not sender-constrained."""
        token = provider.token(None)
        response = await call(guarded, token, signer)
        assert response.status_code == 401 and error_of(response) == "invalid_token"

    async def test_unknown_token(self, guarded: httpx.AsyncClient, signer: ProofSigner) -> None:
        """active: false is invalid_token."""
        response = await call(guarded, "not-a-token-from-this-server", signer)
        assert response.status_code == 401 and error_of(response) == "invalid_token"

    async def test_wrong_audience(self, provider: OIDCProvider, signer: ProofSigner) -> None:
        """A token for another resource is refused when an audience is configured."""
        settings = RFC7662Settings(
            url=provider.introspection_url,
            client_id=RS_CLIENT[0],
            client_secret=RS_CLIENT[1],
            audience="https://other.test",
        )
        async with httpx.AsyncClient() as http:
            with pytest.raises(InvalidToken) as info:
                await RFC7662Introspector(http, settings).introspect(
                    provider.token(signer), request=FACTS
                )
        assert info.value.reason == "introspection_audience"

    async def test_bad_client_secret(self, provider: OIDCProvider, signer: ProofSigner) -> None:
        """The AS refusing our credentials is an outage (503), not the client's fault."""
        settings = RFC7662Settings(
            url=provider.introspection_url, client_id=RS_CLIENT[0], client_secret="wrong-secret"
        )
        async with httpx.AsyncClient() as http:
            with pytest.raises(IntrospectionUnavailable) as info:
                await RFC7662Introspector(http, settings).introspect(
                    provider.token(signer), request=FACTS
                )
        assert info.value.reason == "introspection_credentials_refused"
        assert info.value.upstream_status == 401


class TestWire:
    async def test_client_secret_basic(self) -> None:
        """A form POST with token and hint, Basic credentials, nothing about the proof."""
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(
                200,
                json={
                    "active": True,
                    "scope": "a b",
                    "exp": 2000000000,
                    "sub": "s",
                    "client_id": "c",
                    "cnf": {"jkt": "JKT"},
                },
            )

        settings = RFC7662Settings(
            url="https://as.test/introspect", client_id="rs", client_secret="s:ecret"
        )
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        info = await RFC7662Introspector(client, settings).introspect("tok", request=FACTS)
        assert info.jkt == "JKT" and info.scopes == {"a", "b"} and info.expires_at == 2000000000
        form = parse_qs(seen[0].content.decode())
        assert form == {"token": ["tok"], "token_type_hint": ["access_token"]}
        assert seen[0].headers["authorization"] == "Basic cnM6cyUzQWVjcmV0"

    async def test_private_key_jwt(self) -> None:
        """private_key_jwt sends a signed assertion with iss = sub = client id, aud = URL."""
        key = jose_jwk.ECKey.generate_key("P-256")
        seen: list[dict[str, list[str]]] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(parse_qs(request.content.decode()))
            return httpx.Response(200, json={"active": False})

        settings = RFC7662Settings(
            url="https://as.test/introspect", client_id="rs", private_key=key.as_dict(private=True)
        )
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        with pytest.raises(InvalidToken):
            await RFC7662Introspector(client, settings).introspect("tok", request=FACTS)
        form = seen[0]
        assert form["client_assertion_type"] == [
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        ]
        claims = jose_jwt.decode(form["client_assertion"][0], key).claims
        assert claims["iss"] == claims["sub"] == "rs"
        assert claims["aud"] == "https://as.test/introspect"

    async def test_inactive_is_remembered_briefly(self) -> None:
        """active: false is an InactiveToken, so behind the cache 20 resends of an unknown
        token make one introspection request."""
        requests: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            requests.append(request)
            return httpx.Response(200, json={"active": False})

        settings = RFC7662Settings(url="https://as.test/i", client_id="rs", client_secret="x")
        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        cache = CachingIntrospector(RFC7662Introspector(client, settings), ttl=60)
        for _ in range(20):
            with pytest.raises(InactiveToken) as info:
                await cache.introspect("junk", request=FACTS)
            assert info.value.reason == "introspection_inactive"
        assert len(requests) == 1

    @pytest.mark.parametrize(
        "body",
        [
            b"<html>",
            b"[]",
            json.dumps({"scope": "a"}).encode(),
            json.dumps({"active": True, "exp": "soon"}).encode(),
            json.dumps({"active": True, "cnf": {"jkt": 5}}).encode(),
        ],
    )
    async def test_bad_answers(self, body: bytes) -> None:
        """Unusable answers are outages."""
        client = httpx.AsyncClient(
            transport=httpx.MockTransport(lambda r: httpx.Response(200, content=body))
        )
        settings = RFC7662Settings(url="https://as.test/i", client_id="rs", client_secret="x")
        with pytest.raises(IntrospectionUnavailable):
            await RFC7662Introspector(client, settings).introspect("tok", request=FACTS)

    @pytest.mark.parametrize(
        ("env", "message"),
        [
            ({}, "url"),
            ({"DPOP_GUARD_INTROSPECTION_URL": "https://as/i"}, "client_id"),
            (
                {
                    "DPOP_GUARD_INTROSPECTION_URL": "https://as/i",
                    "DPOP_GUARD_INTROSPECTION_CLIENT_ID": "rs",
                },
                "exactly one",
            ),
            (
                {
                    "DPOP_GUARD_INTROSPECTION_URL": "https://as/i",
                    "DPOP_GUARD_INTROSPECTION_CLIENT_ID": "rs",
                    "DPOP_GUARD_INTROSPECTION_PRIVATE_KEY": "{",
                },
                "JWK",
            ),
        ],
    )
    def test_settings_errors(self, env: dict[str, str], message: str) -> None:
        """Misconfiguration is named."""
        with pytest.raises(ValueError, match=message):
            RFC7662Settings.from_env(env)

    def test_settings_from_env(self) -> None:
        """The environment names of the issue."""
        s = RFC7662Settings.from_env(
            {
                "DPOP_GUARD_INTROSPECTION_URL": "https://as/i",
                "DPOP_GUARD_INTROSPECTION_CLIENT_ID": "rs",
                "DPOP_GUARD_INTROSPECTION_CLIENT_SECRET": "x",
            }
        )
        assert s.auth_method == "client_secret_basic" and "x" not in repr(s)


class TestExample:
    async def test_accounts_example_in_rfc7662_mode(
        self, provider: OIDCProvider, signer: ProofSigner
    ) -> None:
        """DPOP_GUARD_INTROSPECTION=rfc7662 runs the accounts example against oidc-provider."""
        from dpop_guard.devtools.demo.accounts import create_app

        app = create_app(
            {
                "DPOP_GUARD_INTROSPECTION": "rfc7662",
                "DPOP_GUARD_INTROSPECTION_URL": provider.introspection_url,
                "DPOP_GUARD_INTROSPECTION_CLIENT_ID": RS_CLIENT[0],
                "DPOP_GUARD_INTROSPECTION_CLIENT_SECRET": RS_CLIENT[1],
                "DPOP_GUARD_PUBLIC_URL": ORIGIN,
            }
        )
        token = provider.token(signer)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN) as client,
        ):
            response = await call(client, token, signer)
        assert response.status_code == 200
        assert response.json() == {"subject": None, "accounts": []}  # a client-credentials token
