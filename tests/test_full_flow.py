"""The seven steps of Authlete's FAPI 2.0 guide over real sockets: the simulator, the
example authorization server in front of it, the accounts API, and dpop_guard.client.

PAR → request_uri → authorize (the consent form submitted) → code → token with DPoP and
private_key_jwt → DPoP-bound token → /accounts with a fresh proof."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from dpop_guard.client import FAPIClient, OAuthError, ProofSigner, TokenResponse
from dpop_guard.devtools.demo.authorization_server import create_app as create_as
from dpop_guard.devtools.simulator import DEFAULT_SERVICE_ID
from tests._support.flow import (
    CLIENT_ID,
    REDIRECT_URI,
    Stack,
    authlete_env,
    register,
    start_stack,
    submit_consent,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(name="stack", scope="module")
def _stack() -> Iterator[Stack]:
    with start_stack() as stack:
        yield stack


@pytest.fixture(name="fapi")
async def _fapi(stack: Stack, signers: dict[str, ProofSigner]) -> Any:
    register(stack.auth, signers["PS256"], signers["ES256"])
    async with httpx.AsyncClient(timeout=10) as http:
        yield await FAPIClient.discover(
            http,
            stack.authorization_server.url,
            client_id=str(CLIENT_ID),
            client_key=signers["PS256"],
            dpop_key=ProofSigner.generate("ES256"),
            redirect_uri=REDIRECT_URI,
        )


async def run_flow(fapi: FAPIClient) -> TokenResponse:
    pushed = await fapi.push_authorization_request(scope="read:accounts")
    callback = await submit_consent(fapi.http, pushed.authorization_url)
    return await fapi.exchange_code(callback, pushed)


class TestMetadata:
    async def test_rfc8414_document(self, stack: Stack) -> None:
        """The metadata names every FAPI 2.0 endpoint and choice."""
        url = f"{stack.authorization_server.url}/.well-known/oauth-authorization-server"
        document = httpx.get(url).json()
        issuer = stack.authorization_server.url
        assert document["issuer"] == issuer
        assert document["pushed_authorization_request_endpoint"] == f"{issuer}/par"
        assert document["require_pushed_authorization_requests"] is True
        assert document["authorization_response_iss_parameter_supported"] is True
        assert document["code_challenge_methods_supported"] == ["S256"]
        assert document["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
        assert set(document["dpop_signing_alg_values_supported"]) == {"PS256", "ES256", "EdDSA"}


class TestSevenSteps:
    async def test_flow_then_accounts(self, fapi: FAPIClient, stack: Stack) -> None:
        """All seven steps, then GET /accounts with a fresh proof → 200 with alice's data."""
        pushed = await fapi.push_authorization_request(scope="read:accounts")
        assert pushed.request_uri.startswith("urn:ietf:params:oauth:request_uri:")
        callback = await submit_consent(fapi.http, pushed.authorization_url)
        assert callback.startswith(REDIRECT_URI + "?")
        tokens = await fapi.exchange_code(callback, pushed)
        assert tokens.token_type == "DPoP" and tokens.scope == "read:accounts"
        assert stack.state.tokens[tokens.access_token].jkt == fapi.dpop_key.jkt
        response = await fapi.http.get(f"{stack.api.url}/accounts", auth=fapi.auth(tokens))
        assert response.status_code == 200
        assert response.json()["subject"] == "alice"
        assert [a["account_id"] for a in response.json()["accounts"]] == ["acc-1001", "acc-1002"]

    async def test_token_endpoint_nonce_retry(self, fapi: FAPIClient, stack: Stack) -> None:
        """With DPoP nonces required, the client retries PAR once with the server's nonce
        and reuses it for the token request."""
        stack.auth.service.dpop_nonce_required = True
        try:
            tokens = await run_flow(fapi)
        finally:
            stack.auth.service.dpop_nonce_required = False
        assert tokens.token_type == "DPoP"

    async def test_denied(self, fapi: FAPIClient) -> None:
        """Deny on the consent page: the callback carries access_denied (and iss)."""
        pushed = await fapi.push_authorization_request(scope="read:accounts")
        callback = await submit_consent(fapi.http, pushed.authorization_url, button="deny")
        with pytest.raises(OAuthError) as caught:
            await fapi.exchange_code(callback, pushed)
        assert caught.value.error == "access_denied"

    async def test_request_uri_reused(self, fapi: FAPIClient) -> None:
        """Opening the authorization URL a second time is refused: request_uri is single-use."""
        pushed = await fapi.push_authorization_request(scope="read:accounts")
        await submit_consent(fapi.http, pushed.authorization_url)
        again = await fapi.http.get(pushed.authorization_url)
        assert again.status_code == 400 and again.json()["error"] == "invalid_request_uri"


class TestRefusalsAtTheAPI:
    async def test_replayed_proof(self, fapi: FAPIClient, stack: Stack) -> None:
        """A proof sent twice to /accounts → 401 invalid_dpop_proof."""
        tokens = await run_flow(fapi)
        url = f"{stack.api.url}/accounts"
        proof = fapi.dpop_key.sign(htm="GET", htu=url, access_token=tokens.access_token)
        headers = {"Authorization": f"DPoP {tokens.access_token}", "DPoP": proof}
        assert (await fapi.http.get(url, headers=headers)).status_code == 200
        replay = await fapi.http.get(url, headers=headers)
        assert replay.status_code == 401
        assert 'error="invalid_dpop_proof"' in replay.headers["www-authenticate"]

    async def test_another_key(self, fapi: FAPIClient, stack: Stack) -> None:
        """The issued token with a proof from another key → 401."""
        tokens = await run_flow(fapi)
        thief = TokenResponse(tokens.access_token, "DPoP", None, None, {})
        fapi_thief = FAPIClient(
            fapi.http,
            fapi.metadata,
            client_id=fapi.client_id,
            client_key=fapi.client_key,
            dpop_key=ProofSigner.generate("ES256"),
            redirect_uri=REDIRECT_URI,
        )
        response = await fapi.http.get(f"{stack.api.url}/accounts", auth=fapi_thief.auth(thief))
        assert response.status_code == 401
        assert 'error="invalid_dpop_proof"' in response.headers["www-authenticate"]

    async def test_bound_token_as_bearer(self, fapi: FAPIClient, stack: Stack) -> None:
        """The issued token sent as Bearer (a downgrade) → 401."""
        tokens = await run_flow(fapi)
        response = await fapi.http.get(
            f"{stack.api.url}/accounts", headers={"Authorization": f"Bearer {tokens.access_token}"}
        )
        assert response.status_code == 401


class TestRefusalsAtTheAS:
    async def test_unregistered_key(self, stack: Stack, fapi: FAPIClient) -> None:
        """A client assertion signed by an unregistered key → 401 invalid_client at PAR."""
        impostor = FAPIClient(
            fapi.http,
            fapi.metadata,
            client_id=fapi.client_id,
            client_key=ProofSigner.generate("ES256"),
            dpop_key=fapi.dpop_key,
            redirect_uri=REDIRECT_URI,
        )
        with pytest.raises(OAuthError) as caught:
            await impostor.push_authorization_request(scope="read:accounts")
        assert caught.value.error == "invalid_client" and caught.value.status == 401

    async def test_token_request_without_dpop(self, stack: Stack, fapi: FAPIClient) -> None:
        """A token request without a DPoP header → 400 invalid_dpop_proof."""
        pushed = await fapi.push_authorization_request(scope="read:accounts")
        callback = await submit_consent(fapi.http, pushed.authorization_url)
        form = {
            "grant_type": "authorization_code",
            "code": fapi.code_from_callback(callback, pushed),
            "redirect_uri": REDIRECT_URI,
            "code_verifier": pushed.pkce.verifier,
            **fapi._authentication(),
        }
        response = await fapi.http.post(fapi.metadata.token_endpoint, data=form)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_dpop_proof"
        assert response.headers["cache-control"] == "no-store"


class TestConfiguration:
    async def test_api_version_v2(self, stack: Stack, signers: dict[str, ProofSigner]) -> None:
        """The same server on Authlete API V2 (Basic apiKey:apiSecret) pushes requests too."""
        from dpop_guard.devtools.simulator import DEFAULT_API_SECRET

        register(stack.auth, signers["PS256"], signers["ES256"])
        issuer = stack.authorization_server.url
        app = create_as(
            {
                "AUTHLETE_BASE_URL": stack.simulator.url,
                "AUTHLETE_API_VERSION": "V2",
                "AUTHLETE_SERVICE_APIKEY": DEFAULT_SERVICE_ID,
                "AUTHLETE_SERVICE_APISECRET": DEFAULT_API_SECRET,
                "AS_ISSUER": issuer,
            }
        )
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),  # closes the server's own Authlete client
            httpx.AsyncClient(transport=transport, base_url=issuer) as http,
        ):
            fapi = await FAPIClient.discover(
                http,
                issuer,
                client_id=str(CLIENT_ID),
                client_key=signers["PS256"],
                dpop_key=signers["ES256"],
                redirect_uri=REDIRECT_URI,
            )
            pushed = await fapi.push_authorization_request(scope="read:accounts")
        assert pushed.request_uri.startswith("urn:ietf:params:oauth:request_uri:")

    @pytest.mark.parametrize(
        ("missing", "version"),
        [
            ("AUTHLETE_BASE_URL", "V3"),
            ("AS_ISSUER", "V3"),
            ("AUTHLETE_SERVICE_ACCESSTOKEN", "V3"),
            ("AUTHLETE_SERVICE_APISECRET", "V2"),
        ],
    )
    def test_missing_variable_is_named(self, missing: str, version: str) -> None:
        """A missing variable stops the start with its name."""
        env = {
            **authlete_env("http://127.0.0.1:1"),
            "AUTHLETE_API_VERSION": version,
            "AS_ISSUER": "http://127.0.0.1:2",
        }
        env.pop(missing, None)
        with pytest.raises(ValueError, match=missing):
            create_as(env)


class TestAuthorizationServerEdges:
    async def test_authlete_down_is_503(self) -> None:
        """Authlete unreachable: every endpoint answers 503, never a decision."""
        from dpop_guard.devtools.demo import free_port

        issuer = "http://127.0.0.1:1"
        app = create_as({**authlete_env(f"http://127.0.0.1:{free_port()}"), "AS_ISSUER": issuer})
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=issuer) as http,
        ):
            answers = [
                await http.post("/par", content=b"a=b", headers=form),
                await http.get("/authorize?client_id=1&request_uri=x"),
                await http.post("/authorize/decision", content=b"ticket=t", headers=form),
                await http.post("/token", content=b"grant_type=x", headers=form),
            ]
        assert [a.status_code for a in answers] == [503] * 4
        assert all(a.headers["cache-control"] == "no-store" for a in answers)

    @pytest.mark.parametrize(
        ("path", "content", "headers", "description"),
        [
            ("/par", b'{"a":1}', {"Content-Type": "application/json"}, "form-encoded"),
            (
                "/token",
                b"a" * 70000,
                {"Content-Type": "application/x-www-form-urlencoded"},
                "64 KiB",
            ),
            (
                "/token",
                "é=1".encode(),
                {"Content-Type": "application/x-www-form-urlencoded"},
                "form-encoded",
            ),
            (
                "/par",
                b"a=b",
                {"Content-Type": "application/x-www-form-urlencoded", "DPoP": "a"},
                "one DPoP",
            ),
        ],
    )
    async def test_malformed_requests(
        self, stack: Stack, path: str, content: bytes, headers: dict[str, str], description: str
    ) -> None:
        """Bodies that are not small forms, and repeated DPoP headers, are 400 up front."""
        request_headers = list(headers.items())
        if "DPoP" in headers:
            request_headers.append(("DPoP", "b"))  # two DPoP headers
        async with httpx.AsyncClient(base_url=stack.authorization_server.url) as http:
            response = await http.post(path, content=content, headers=request_headers)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"
        assert description in response.json()["error_description"]

    async def test_unknown_client_at_authorize(self, stack: Stack) -> None:
        """An authorization request for an unknown client is a 400, not a redirect."""
        async with httpx.AsyncClient(base_url=stack.authorization_server.url) as http:
            response = await http.get("/authorize?client_id=1&request_uri=urn:x")
        assert response.status_code == 400 and response.json()["error"] == "invalid_request"
