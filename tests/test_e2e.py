"""End to end: the accounts example under a real uvicorn server, the Authlete simulator
under another, and a DPoP client speaking HTTP to both."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import httpx
import pytest

from dpop_guard.client import DPoPAuth, ProofSigner
from dpop_guard.devtools.demo.accounts import create_app
from dpop_guard.devtools.simulator import (
    DEFAULT_API_SECRET,
    DEFAULT_SERVICE_ID,
    DEFAULT_SERVICE_TOKEN,
    SimulatorState,
)
from tests._support.servers import ServerThread

pytestmark = pytest.mark.e2e


@pytest.fixture(name="api", scope="module")
def _api(simulator_server: tuple[ServerThread, SimulatorState]) -> Iterator[ServerThread]:
    server, _ = simulator_server
    env = {
        "AUTHLETE_BASE_URL": server.url,
        "AUTHLETE_API_VERSION": "V3",
        "AUTHLETE_SERVICE_APIKEY": DEFAULT_SERVICE_ID,
        "AUTHLETE_SERVICE_ACCESSTOKEN": DEFAULT_SERVICE_TOKEN,
        "DPOP_GUARD_PUBLIC_URL": "request",  # htu is the test server's URL, on any port
    }
    with ServerThread(create_app(env)) as api:
        yield api


async def mint(
    simulator_url: str, signer: ProofSigner | None, scopes: list[str], subject: str = "alice"
) -> str:
    """Ask the simulator's /auth/token/create for a token, as an AS would."""
    async with httpx.AsyncClient(base_url=simulator_url) as client:
        response = await client.post(
            f"/api/{DEFAULT_SERVICE_ID}/auth/token/create",
            headers={"Authorization": f"Bearer {DEFAULT_SERVICE_TOKEN}"},
            json={
                "grantType": "AUTHORIZATION_CODE",
                "subject": subject,
                "scopes": scopes,
                "dpopKeyThumbprint": signer.jkt if signer else None,
            },
        )
        token: str = response.json()["accessToken"]
        return token


class TestAccountsOverHTTP:
    async def test_scenarios(
        self, api: ServerThread, simulator: SimulatorState, simulator_url: str
    ) -> None:
        """Success, replay, wrong key, missing scope, unknown token, and the cache saving
        Authlete calls, all over real sockets."""
        signer = ProofSigner.generate("ES256")
        token = await mint(simulator_url, signer, ["read:accounts"])
        async with httpx.AsyncClient(base_url=api.url) as client:
            ok = await client.get("/accounts", auth=DPoPAuth(signer, token))
            assert ok.status_code == 200
            assert [a["account_id"] for a in ok.json()["accounts"]] == ["acc-1001", "acc-1002"]

            proof = signer.sign(htm="GET", htu=f"{api.url}/accounts", access_token=token)
            headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
            assert (await client.get("/accounts", headers=headers)).status_code == 200
            replay = await client.get("/accounts", headers=headers)
            assert replay.status_code == 401
            assert 'error="invalid_dpop_proof"' in replay.headers["www-authenticate"]

            thief = await client.get(
                "/accounts", auth=DPoPAuth(ProofSigner.generate("ES256"), token)
            )
            assert thief.status_code == 401

            scope = await client.get(
                "/accounts/acc-1001/transactions", auth=DPoPAuth(signer, token)
            )
            assert scope.status_code == 403
            assert 'scope="read:transactions"' in scope.headers["www-authenticate"]

            unknown = await client.get("/accounts", auth=DPoPAuth(signer, "not-a-token"))
            assert unknown.status_code == 401
            assert 'error="invalid_token"' in unknown.headers["www-authenticate"]

            for _ in range(20):
                assert (
                    await client.get("/accounts", auth=DPoPAuth(signer, token))
                ).status_code == 200
            assert (await client.get("/health")).json()["status"] == "ok"
        # one check + one probe for the good token; two for the unknown token
        assert simulator.calls["auth/introspection"] == 4

    async def test_transactions_and_ownership(self, api: ServerThread, simulator_url: str) -> None:
        """Per-route scopes pass with the right token; accounts are keyed by subject."""
        signer = ProofSigner.generate("EdDSA")
        token = await mint(simulator_url, signer, ["read:accounts", "read:transactions"], "bob")
        async with httpx.AsyncClient(base_url=api.url, auth=DPoPAuth(signer, token)) as client:
            own = await client.get("/accounts/acc-2001/transactions")
            assert own.status_code == 200 and own.json()["transactions"][0]["amount"] == "-9.99"
            other = await client.get("/accounts/acc-1001/transactions")
            assert other.status_code == 404

    async def test_concurrent_replay_over_http(self, api: ServerThread, simulator_url: str) -> None:
        """40 concurrent copies of one proof over real sockets: exactly one 200."""
        signer = ProofSigner.generate("ES256")
        token = await mint(simulator_url, signer, ["read:accounts"])
        proof = signer.sign(htm="GET", htu=f"{api.url}/accounts", access_token=token)
        statuses: list[int] = []
        async with httpx.AsyncClient(
            base_url=api.url, limits=httpx.Limits(max_connections=40)
        ) as client:

            async def one() -> None:
                response = await client.get(
                    "/accounts", headers={"Authorization": f"DPoP {token}", "DPoP": proof}
                )
                statuses.append(response.status_code)

            async with anyio.create_task_group() as tg:
                for _ in range(40):
                    tg.start_soon(one)
        assert sorted(statuses) == [200] + [401] * 39

    async def test_outage_is_503(
        self, api: ServerThread, simulator: SimulatorState, simulator_url: str
    ) -> None:
        """Authlete failing: 503, never a 200 and never a crash page; then recovery."""
        signer = ProofSigner.generate("ES256")
        token = await mint(simulator_url, signer, ["read:accounts"])
        simulator.set_fault("http_500")
        async with httpx.AsyncClient(base_url=api.url, auth=DPoPAuth(signer, token)) as client:
            down = await client.get("/accounts")
            assert down.status_code == 503
            assert down.json() == {
                "error": "temporarily_unavailable",
                "error_description": "The service is temporarily unavailable.",
            }
            simulator.set_fault(None)
            assert (await client.get("/accounts")).status_code == 200


class TestEmbeddedSimulator:
    async def test_embedded_mode(self) -> None:
        """With DPOP_GUARD_DEVELOPMENT_SIMULATOR=1 the example runs against the embedded
        simulator, which mints tokens at /__authlete."""
        with ServerThread(create_app({"DPOP_GUARD_DEVELOPMENT_SIMULATOR": "1"})) as api:
            signer = ProofSigner.generate("ES256")
            async with httpx.AsyncClient(base_url=api.url) as client:
                import base64

                basic = base64.b64encode(f"{DEFAULT_SERVICE_ID}:{DEFAULT_API_SECRET}".encode())
                response = await client.post(
                    "/__authlete/api/auth/token/create",
                    headers={"Authorization": f"Basic {basic.decode()}"},
                    json={
                        "subject": "alice",
                        "scopes": ["read:accounts"],
                        "dpopKeyThumbprint": signer.jkt,
                    },
                )
                token = response.json()["accessToken"]
                ok = await client.get("/accounts", auth=DPoPAuth(signer, token))
                assert ok.status_code == 200 and ok.json()["subject"] == "alice"
