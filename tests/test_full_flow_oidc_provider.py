"""Interop: the whole FAPI 2.0 code flow with dpop_guard.client against panva's
oidc-provider (OpenID-certified for FAPI 2.0) in its FAPI 2.0 profile (PAR required,
private_key_jwt, PKCE S256, DPoP-bound tokens only), then the accounts example, under
uvicorn, in ``rfc7662`` and ``jwt`` modes with the tokens it issued."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from dpop_guard.client import DPoPAuth, FAPIClient, OAuthError, ProofSigner, TokenResponse
from dpop_guard.devtools.demo.accounts import create_app as create_api
from tests._support.oidc_provider import RS_CLIENT, OIDCProvider
from tests._support.servers import ServerThread

pytestmark = pytest.mark.e2e

REDIRECT_URI = "https://app.example.org/cb"
JWT_RESOURCE = "https://jwt.bank.test"
CLIENTS = {"fapi-app": "PS256", "fapi-other": "EdDSA"}  # client id → assertion algorithm


@pytest.fixture(name="provider", scope="module")
def _provider(signers: dict[str, ProofSigner]) -> Iterator[OIDCProvider]:
    clients = [
        {
            "client_id": client_id,
            "jwks": {"keys": [{**signers[alg].public_jwk, "alg": alg, "use": "sig"}]},
            "redirect_uris": [REDIRECT_URI],
        }
        for client_id, alg in CLIENTS.items()
    ]
    provider = OIDCProvider(fapi_clients=clients)
    yield provider
    provider.stop()


@pytest.fixture(name="http")
async def _http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as http:  # keeps oidc-provider's cookies
        yield http


async def fapi_client(
    http: httpx.AsyncClient,
    provider: OIDCProvider,
    signers: dict[str, ProofSigner],
    client_id: str = "fapi-app",
) -> FAPIClient:
    return await FAPIClient.discover(
        http,
        provider.issuer,
        client_id=client_id,
        client_key=signers[CLIENTS[client_id]],
        dpop_key=ProofSigner.generate("ES256"),  # oidc-provider's DPoP default: ES256, EdDSA
        redirect_uri=REDIRECT_URI,
    )


async def authorize(http: httpx.AsyncClient, url: str, issuer: str) -> str:
    """Follow the provider's redirects (login and consent are granted automatically)
    until the browser would leave for the client's redirect URI."""
    for _ in range(10):
        response = await http.get(url)
        assert response.status_code in (302, 303), response.text[:500]
        url = str(response.url.join(response.headers["location"]))
        if not url.startswith(issuer + "/"):
            return url
    raise AssertionError("too many redirects")


async def flow(fapi: FAPIClient, provider: OIDCProvider, **extra: str) -> TokenResponse:
    pushed = await fapi.push_authorization_request(scope="read:accounts", extra=extra)
    callback = await authorize(fapi.http, pushed.authorization_url, provider.issuer)
    return await fapi.exchange_code(callback, pushed)


@pytest.fixture(name="rfc7662_api", scope="module")
def _rfc7662_api(provider: OIDCProvider) -> Iterator[ServerThread]:
    env = {
        "DPOP_GUARD_INTROSPECTION": "rfc7662",
        "DPOP_GUARD_INTROSPECTION_URL": provider.introspection_url,
        "DPOP_GUARD_INTROSPECTION_CLIENT_ID": RS_CLIENT[0],
        "DPOP_GUARD_INTROSPECTION_CLIENT_SECRET": RS_CLIENT[1],
        "DPOP_GUARD_PUBLIC_URL": "request",  # htu is the test server's URL, on any port
    }
    with ServerThread(create_api(env)) as api:
        yield api


@pytest.fixture(name="jwt_api", scope="module")
def _jwt_api(provider: OIDCProvider) -> Iterator[ServerThread]:
    env = {
        "DPOP_GUARD_INTROSPECTION": "jwt",
        "DPOP_GUARD_JWT_ISSUER": provider.issuer,
        "DPOP_GUARD_JWT_AUDIENCE": JWT_RESOURCE,
        "DPOP_GUARD_PUBLIC_URL": "request",  # htu is the test server's URL, on any port
    }
    with ServerThread(create_api(env)) as api:
        yield api


class TestFlowAgainstOIDCProvider:
    async def test_metadata_is_fapi2(
        self, http: httpx.AsyncClient, provider: OIDCProvider, signers: dict[str, ProofSigner]
    ) -> None:
        """Discovery finds PAR and the RFC 9207 iss parameter."""
        fapi = await fapi_client(http, provider, signers)
        assert fapi.metadata.pushed_authorization_request_endpoint == f"{provider.issuer}/request"
        assert fapi.metadata.iss_parameter_supported

    async def test_rfc7662_mode(
        self,
        http: httpx.AsyncClient,
        provider: OIDCProvider,
        signers: dict[str, ProofSigner],
        rfc7662_api: ServerThread,
    ) -> None:
        """The code flow's opaque DPoP token reads /accounts through RFC 7662; the subject
        is the user who consented."""
        fapi = await fapi_client(http, provider, signers)
        tokens = await flow(fapi, provider)
        assert tokens.token_type == "DPoP"
        response = await http.get(f"{rfc7662_api.url}/accounts", auth=fapi.auth(tokens))
        assert response.status_code == 200, response.text
        assert response.json()["subject"] == "alice"
        assert [a["account_id"] for a in response.json()["accounts"]] == ["acc-1001", "acc-1002"]

    async def test_jwt_mode(
        self,
        http: httpx.AsyncClient,
        provider: OIDCProvider,
        signers: dict[str, ProofSigner],
        jwt_api: ServerThread,
    ) -> None:
        """A JWT access token (RFC 9068) from the same flow, checked locally."""
        fapi = await fapi_client(http, provider, signers)
        tokens = await flow(fapi, provider, resource=JWT_RESOURCE)
        assert tokens.access_token.count(".") == 2
        response = await http.get(f"{jwt_api.url}/accounts", auth=fapi.auth(tokens))
        assert response.status_code == 200, response.text
        assert response.json()["subject"] == "alice"


class TestNegatives:
    @pytest.mark.parametrize("mode", ["rfc7662", "jwt"])
    async def test_another_key(
        self,
        http: httpx.AsyncClient,
        provider: OIDCProvider,
        signers: dict[str, ProofSigner],
        rfc7662_api: ServerThread,
        jwt_api: ServerThread,
        mode: str,
    ) -> None:
        """The issued token with a proof from another key → 401 invalid_dpop_proof."""
        api = rfc7662_api if mode == "rfc7662" else jwt_api
        fapi = await fapi_client(http, provider, signers)
        tokens = await flow(fapi, provider, **({"resource": JWT_RESOURCE} if mode == "jwt" else {}))
        thief = DPoPAuth(ProofSigner.generate("ES256"), tokens.access_token)
        response = await http.get(f"{api.url}/accounts", auth=thief)
        assert response.status_code == 401
        assert 'error="invalid_dpop_proof"' in response.headers["www-authenticate"]

    @pytest.mark.parametrize("mode", ["rfc7662", "jwt"])
    async def test_replayed_proof(
        self,
        http: httpx.AsyncClient,
        provider: OIDCProvider,
        signers: dict[str, ProofSigner],
        rfc7662_api: ServerThread,
        jwt_api: ServerThread,
        mode: str,
    ) -> None:
        """The same proof twice → the second is 401 invalid_dpop_proof."""
        api = rfc7662_api if mode == "rfc7662" else jwt_api
        fapi = await fapi_client(http, provider, signers)
        tokens = await flow(fapi, provider, **({"resource": JWT_RESOURCE} if mode == "jwt" else {}))
        url = f"{api.url}/accounts"
        proof = fapi.dpop_key.sign(htm="GET", htu=url, access_token=tokens.access_token)
        headers = {"Authorization": f"DPoP {tokens.access_token}", "DPoP": proof}
        assert (await http.get(url, headers=headers)).status_code == 200
        replay = await http.get(url, headers=headers)
        assert replay.status_code == 401
        assert 'error="invalid_dpop_proof"' in replay.headers["www-authenticate"]

    async def test_token_from_another_client(
        self,
        http: httpx.AsyncClient,
        provider: OIDCProvider,
        signers: dict[str, ProofSigner],
        rfc7662_api: ServerThread,
    ) -> None:
        """Another client's token, presented with our key, is refused: it is bound to the
        other client's DPoP key."""
        ours = await fapi_client(http, provider, signers)
        other = await fapi_client(http, provider, signers, client_id="fapi-other")
        theirs = await flow(other, provider)
        response = await http.get(
            f"{rfc7662_api.url}/accounts", auth=DPoPAuth(ours.dpop_key, theirs.access_token)
        )
        assert response.status_code == 401
        assert 'error="invalid_dpop_proof"' in response.headers["www-authenticate"]

    async def test_code_of_another_client(
        self, http: httpx.AsyncClient, provider: OIDCProvider, signers: dict[str, ProofSigner]
    ) -> None:
        """A code issued to another client cannot be redeemed: invalid_grant."""
        ours = await fapi_client(http, provider, signers)
        other = await fapi_client(http, provider, signers, client_id="fapi-other")
        pushed = await other.push_authorization_request(scope="read:accounts")
        callback = await authorize(http, pushed.authorization_url, provider.issuer)
        with pytest.raises(OAuthError) as caught:
            await ours.exchange_code(callback, pushed)
        assert caught.value.error == "invalid_grant"

    async def test_par_required(
        self, http: httpx.AsyncClient, provider: OIDCProvider, signers: dict[str, ProofSigner]
    ) -> None:
        """An authorization request without PAR is refused by the FAPI 2.0 profile."""
        fapi = await fapi_client(http, provider, signers)
        query: dict[str, Any] = {
            "client_id": "fapi-app",
            "response_type": "code",
            "redirect_uri": REDIRECT_URI,
            "scope": "read:accounts",
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256",
        }
        response = await http.get(fapi.metadata.authorization_endpoint, params=query)
        location = httpx.URL(response.headers.get("location", ""))
        refused = response.status_code == 400 or location.params.get("error") == "invalid_request"
        assert refused, response.text[:300]

    async def test_profile_is_fapi2(
        self, http: httpx.AsyncClient, provider: OIDCProvider, signers: dict[str, ProofSigner]
    ) -> None:
        """The FAPI 2.0 profile is on for these clients: an assertion whose aud is the
        token endpoint, which plain RFC 7523 allows, is refused."""
        found = await fapi_client(http, provider, signers)
        fapi = FAPIClient(
            http,
            found.metadata,
            client_id="fapi-app",
            client_key=signers["PS256"],
            dpop_key=found.dpop_key,
            redirect_uri=REDIRECT_URI,
            assertion_audience=found.metadata.token_endpoint,
        )
        with pytest.raises(OAuthError) as caught:
            await fapi.push_authorization_request(scope="read:accounts")
        # oidc-provider keeps the detail ("aud must equal the issuer") to its logs; the
        # assertion differs from the accepted ones only in aud.
        assert caught.value.error == "invalid_client"
