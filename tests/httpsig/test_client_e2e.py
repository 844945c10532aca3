"""The client side over real HTTP: :class:`DPoPAuth` against the middleware under uvicorn,
in front of a Starlette app (a body sent, a signed response verified, a body changed after
signing refused before the endpoint has it)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dpop_guard.client import DPoPAuth, ProofSigner
from dpop_guard.httpsig import HTTPSignatureMiddleware, SigningKey, StaticJWKS
from tests._support.servers import ServerThread

from ._support import NOW, SERVER_KEY

pytestmark = pytest.mark.e2e

CLIENT = SigningKey(ed25519.Ed25519PrivateKey.generate(), "c-ed")
SEEN: list[bytes] = []


async def pay(request: Request) -> JSONResponse:
    body = await request.body()
    SEEN.append(body)
    return JSONResponse({"received": len(body)})


@pytest.fixture(scope="module", name="server")
def _server() -> Iterator[ServerThread]:
    app = HTTPSignatureMiddleware(
        Starlette(routes=[Route("/pay", pay, methods=["GET", "POST"])]),
        key_source=StaticJWKS({"keys": [CLIENT.public_jwk()]}),
        signing_key=SERVER_KEY,
        clock=lambda: NOW,
    )
    server = ServerThread(app).start()
    yield server
    server.stop()


def _auth() -> DPoPAuth:
    return DPoPAuth(
        ProofSigner.generate("EdDSA"),
        "an-access-token",
        signing_key=CLIENT,
        response_keys=SERVER_KEY.public_jwk(),
        clock=lambda: NOW,
    )


async def test_signed_request_and_verified_response_over_http(server: ServerThread) -> None:
    SEEN.clear()
    async with httpx.AsyncClient(base_url=server.url) as http:
        # The body as bytes: httpx's own JSON spacing differs between versions.
        posted = await http.post(
            "/pay",
            content=b'{"amount":"10.00"}',
            headers={"content-type": "application/json"},
            auth=_auth(),
        )
        fetched = await http.get("/pay", auth=_auth())
    assert posted.status_code == 200 and posted.json() == {"received": 18}
    assert fetched.status_code == 200
    assert "content-digest" in posted.request.headers
    assert SEEN == [b'{"amount":"10.00"}', b""]


def test_a_body_changed_after_signing_never_reaches_the_endpoint(server: ServerThread) -> None:
    SEEN.clear()
    request = httpx.Request("POST", f"{server.url}/pay", content=b'{"amount": "10.00"}')
    signed = next(_auth().sync_auth_flow(request))
    with httpx.Client() as http:
        response = http.send(
            httpx.Request(
                "POST", signed.url, headers=signed.headers, content=b'{"amount": "99.00"}'
            )
        )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_signature"
    assert SEEN == []
