"""The middleware under a real uvicorn, behind a real Starlette app, with requests signed by
``http-message-signatures`` (not ours) and bodies streamed chunk by chunk."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    MappingKeyResolver,
    algorithms,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dpop_guard.httpsig import HTTPSignatureMiddleware, SigningKey, StaticJWKS, content_digest
from tests._support.servers import ServerThread

from ._support import AUTHORIZATION, NOW, SERVER_KEY, needs_interop_peer

pytestmark = [pytest.mark.e2e, needs_interop_peer]

CLIENT = ed25519.Ed25519PrivateKey.generate()
SEEN: list[bytes] = []


async def pay(request: Request) -> JSONResponse:
    body = await request.body()
    SEEN.append(body)
    return JSONResponse({"received": len(body)})


@pytest.fixture(scope="module", name="server")
def _server() -> Iterator[ServerThread]:
    app = HTTPSignatureMiddleware(
        Starlette(routes=[Route("/pay", pay, methods=["POST"])]),
        key_source=StaticJWKS({"keys": [SigningKey(CLIENT, "c-ed").public_jwk()]}),
        signing_key=SERVER_KEY,
        clock=lambda: NOW,
    )
    server = ServerThread(app).start()
    yield server
    server.stop()


def _signed(url: str, claimed: bytes, sent: list[bytes]) -> httpx.Request:
    async def stream() -> AsyncIterator[bytes]:
        for chunk in sent:
            yield chunk

    request = httpx.Request(
        "POST",
        url + "/pay",
        headers={"authorization": AUTHORIZATION, "content-digest": content_digest(claimed)},
        content=stream(),
    )
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={"c-ed": CLIENT}),
    )
    signer.sign(
        request,
        key_id="c-ed",
        created=datetime.datetime.fromtimestamp(NOW, tz=datetime.UTC),
        tag="fapi-2-request",
        covered_component_ids=("@method", "@target-uri", "authorization", "content-digest"),
        use_existing_digest=True,  # computed above: the body streams
    )
    return request


async def test_streamed_signed_request_and_signed_response(server: ServerThread) -> None:
    body = [b'{"amount": ', b"10", b"}"]
    SEEN.clear()
    async with httpx.AsyncClient() as client:
        request = _signed(server.url, b"".join(body), body)
        assert request.headers.get("transfer-encoding") == "chunked"
        response = await client.send(request)
        await response.aread()
    assert response.status_code == 200, response.text
    assert SEEN == [b"".join(body)]
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.ECDSA_P256_SHA256,
        key_resolver=MappingKeyResolver(
            public_keys={SERVER_KEY.keyid: SERVER_KEY.key.public_key()}, private_keys={}
        ),
    )
    response.request = request
    verified = verifier.verify(
        response, expect_tag="fapi-2-response", max_age=None, body=response.content
    )
    assert len(verified) == 1


async def test_tampered_stream_is_refused_and_the_app_never_gets_the_body(
    server: ServerThread,
) -> None:
    SEEN.clear()
    async with httpx.AsyncClient() as client:
        request = _signed(server.url, b'{"amount": 10}', [b'{"amount": ', b"99", b"}"])
        response = await client.send(request)
        await response.aread()
    assert response.status_code == 401
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["error"] == "invalid_signature"
    assert "accept-signature" in response.headers
    assert SEEN == []  # Starlette's request.body() never completed
