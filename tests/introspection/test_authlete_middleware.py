"""Authlete's facts through the middleware as it stands, over real HTTP to the simulator:
the 401 ``use_dpop_nonce`` challenge carries exactly one ``DPoP-Nonce`` (what the OIDF
suite retries on), a token for another API is refused, and the retry passes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from dpop_guard import DPoPGuardMiddleware, GuardSettings
from dpop_guard.challenges import parse_challenge
from dpop_guard.client import ProofSigner
from dpop_guard.devtools.simulator import (
    DEFAULT_API_SECRET,
    DEFAULT_SERVICE_ID,
    SimulatorState,
    create_simulator_app,
)
from dpop_guard.devtools.simulator._authorization import AuthorizationService, SimService
from dpop_guard.introspection._http import AsyncioHTTPClient
from dpop_guard.introspection.authlete import AuthleteIntrospector, AuthleteSettings
from dpop_guard.introspection.cached import CachingIntrospector
from dpop_guard.testing import make_proof
from tests._support.harness import ORIGIN, authlete_settings, inner_app
from tests._support.servers import ServerThread

URL = ORIGIN + "/accounts"


@pytest.fixture(scope="module", name="nonce_sim")
def _nonce_sim() -> Iterator[tuple[str, SimulatorState, AuthorizationService]]:
    state = SimulatorState()
    auth = AuthorizationService(service=SimService(dpop_nonce_required=True))
    with ServerThread(create_simulator_app(state, auth)) as server:
        yield server.url, state, auth


@pytest.fixture(name="api")
async def _api(
    nonce_sim: tuple[str, SimulatorState, AuthorizationService],
) -> AsyncIterator[httpx.AsyncClient]:
    url, _, _ = nonce_sim
    http = AsyncioHTTPClient()
    settings = AuthleteSettings(
        base_url=url,
        api_version="V2",
        api_key=DEFAULT_SERVICE_ID,
        api_secret=DEFAULT_API_SECRET,
        resources=(ORIGIN,),
    )
    introspector = CachingIntrospector(AuthleteIntrospector(http, settings), ttl=60)
    app = DPoPGuardMiddleware(
        inner_app(), settings=GuardSettings(public_url=ORIGIN), introspector=introspector
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
        yield client
    await http.aclose()


async def get(
    api: httpx.AsyncClient, signer: ProofSigner, token: str, **claims: Any
) -> httpx.Response:
    proof = make_proof(signer, htu=URL, access_token=token, claims=claims or None)
    return await api.get("/accounts", headers={"Authorization": f"DPoP {token}", "DPoP": proof})


class TestThroughTheMiddleware:
    async def test_authlete_nonce_challenge_then_retry(
        self,
        api: httpx.AsyncClient,
        nonce_sim: tuple[str, SimulatorState, AuthorizationService],
        signer: ProofSigner,
    ) -> None:
        """No nonce: 401 use_dpop_nonce with exactly one DPoP-Nonce and no-store; the
        retry with that nonce is served."""
        _, state, _ = nonce_sim
        token = state.create_token(subject="alice", scopes=["read:accounts"], jkt=signer.jkt)
        first = await get(api, signer, token)
        assert first.status_code == 401
        scheme, params = parse_challenge(first.headers["www-authenticate"])
        assert (scheme.lower(), params["error"]) == ("dpop", "use_dpop_nonce")
        nonces = first.headers.get_list("dpop-nonce")
        assert len(nonces) == 1 and nonces[0]
        assert first.headers["cache-control"] == "no-store"
        retry = await get(api, signer, token, nonce=nonces[0])
        assert retry.status_code == 200, retry.text
        # Authlete's next nonce is relayed on the success, once.
        assert len(retry.headers.get_list("dpop-nonce")) == 1

    async def test_token_for_another_api(
        self,
        api: httpx.AsyncClient,
        nonce_sim: tuple[str, SimulatorState, AuthorizationService],
        signer: ProofSigner,
    ) -> None:
        """A token issued for another resource: 401 invalid_token."""
        _, state, _ = nonce_sim
        token = state.create_token(
            subject="alice",
            scopes=["read:accounts"],
            jkt=signer.jkt,
            resources=["https://other.example"],
        )
        response = await get(api, signer, token)
        assert response.status_code == 401
        assert parse_challenge(response.headers["www-authenticate"])[1]["error"] == "invalid_token"


class TLSFromTest:
    """Sets the ASGI TLS extension's client chain the way a TLS-terminating server would,
    from what the test chose for the next request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.chain: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = dict(scope, extensions={"tls": {"client_cert_chain": list(self.chain)}})
        await self.app(scope, receive, send)


class TestCertificateBoundThroughTheMiddleware:
    async def test_mtls_route_with_bearer(
        self, simulator_url: str, simulator: SimulatorState
    ) -> None:
        """A certificate-bound token on Bearer: its certificate passes (Authlete checks it
        on the miss), another client's or none is 401, and the cache hit compares the
        thumbprint itself."""
        from dpop_guard import Route
        from dpop_guard.mtls import AsgiTlsCertificateSource
        from tests._support.pki import PKI

        pki = PKI.generate()
        http = AsyncioHTTPClient()
        settings = AuthleteSettings(
            base_url=simulator_url,
            api_version="V2",
            api_key=DEFAULT_SERVICE_ID,
            api_secret=DEFAULT_API_SECRET,
        )
        introspector = CachingIntrospector(AuthleteIntrospector(http, settings), ttl=60)
        routes = (Route("/accounts", scopes=("read:accounts",), sender_constraint="mtls"),)
        app = TLSFromTest(
            DPoPGuardMiddleware(
                inner_app(),
                settings=GuardSettings(public_url=ORIGIN, routes=routes),
                introspector=introspector,
                certificate_source=AsgiTlsCertificateSource(),
            )
        )
        token = simulator.create_token(
            subject="alice", scopes=["read:accounts"], x5t_s256=pki.alice.x5t_s256
        )
        headers = {"Authorization": f"Bearer {token}"}
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
                app.chain = [pki.bob.pem]
                assert (await client.get("/accounts", headers=headers)).status_code == 401
                app.chain = []
                assert (await client.get("/accounts", headers=headers)).status_code == 401
                app.chain = [pki.alice.pem]
                first = await client.get("/accounts", headers=headers)
                assert first.status_code == 200, first.text
                calls = simulator.calls["auth/introspection"]
                app.chain = [pki.bob.pem]
                hit = await client.get("/accounts", headers=headers)
                assert hit.status_code == 401
                assert simulator.calls["auth/introspection"] == calls  # answered from cache
                error = parse_challenge(hit.headers["www-authenticate"])[1]["error"]
                assert error == "invalid_token"
        finally:
            await http.aclose()


class TestBindingRemembered:
    """Without a cache every request is introspected; the binding probe runs once per token
    (``AuthleteIntrospector.bindings``), over real HTTP to the simulator."""

    async def test_a_recheck_is_the_check_alone(
        self, simulator: SimulatorState, simulator_url: str, signer: ProofSigner
    ) -> None:
        """First request: check and probe. Each later one: the check alone, which still
        refuses a thief's key and a revoked token."""
        http = AsyncioHTTPClient(proxies={})
        app = DPoPGuardMiddleware(
            inner_app(),
            settings=GuardSettings(public_url=ORIGIN),
            introspector=AuthleteIntrospector(http, authlete_settings(simulator_url)),
        )
        token = simulator.create_token(subject="alice", scopes=["read:accounts"], jkt=signer.jkt)
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as api:
                for expected_calls in (2, 3, 4):
                    response = await get(api, signer, token)
                    assert response.status_code == 200, response.text
                    assert response.json()["jkt"] == signer.jkt
                    assert simulator.calls["auth/introspection"] == expected_calls
                thief = await get(api, ProofSigner.generate("ES256"), token)
                assert thief.status_code == 401
                assert parse_challenge(thief.headers["www-authenticate"])[1]["error"] in (
                    "invalid_token",
                    "invalid_dpop_proof",
                )
                del simulator.tokens[token]  # revoked at the authorization server
                revoked = await get(api, signer, token)
                assert revoked.status_code == 401
        finally:
            await http.aclose()
