"""The client side: :class:`DPoPAuth` signs requests our middleware verifies, and verifies
the responses it signs (real httpx over the ASGI transport, real keys, the real
middleware); a response that is missing, wrongly signed or tampered is refused with its
reason; a body changed after signing is refused by the server."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dpop_guard.client import (
    AuthorizationServerMetadata,
    DPoPAuth,
    FAPIClient,
    ProofSigner,
    TokenResponse,
)
from dpop_guard.httpsig import (
    HTTPSignatureMiddleware,
    ResponseSignatureError,
    SigningKey,
    StaticJWKS,
)

from ._support import NOW, SERVER_KEY, reason

TOKEN = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
BASE = "https://rs.example"
_RSA = rsa.generate_private_key(65537, 2048)
CLIENT_KEYS = {
    "ES256": SigningKey(ec.generate_private_key(ec.SECP256R1()), "c-es"),
    "Ed25519": SigningKey(ed25519.Ed25519PrivateKey.generate(), "c-ed"),
    "PS256": SigningKey(_RSA, "c-ps", "PS256"),
}
CLIENTS = StaticJWKS({"keys": [k.public_jwk() for k in CLIENT_KEYS.values()]})
DPOP = ProofSigner.generate("ES256")
SEEN: list[dict[str, Any]] = []


async def pay(request: Request) -> JSONResponse:
    body = await request.body()
    SEEN.append({"body": body, "dpop": request.headers.get("dpop")})
    return JSONResponse({"received": body.decode(), "method": request.method})


async def refuse(request: Request) -> JSONResponse:
    return JSONResponse({"error": "nope"}, status_code=403)


APP = Starlette(
    routes=[
        Route("/pay", pay, methods=["GET", "POST", "PUT"]),
        Route("/refuse", refuse),
    ]
)


def server(signing_key: SigningKey | None = SERVER_KEY, app: Any = APP) -> Any:
    return HTTPSignatureMiddleware(
        app, key_source=CLIENTS, signing_key=signing_key, clock=lambda: NOW
    )


def auth(alg: str = "ES256", *, verify: bool = True, **options: Any) -> DPoPAuth:
    options.setdefault("response_keys", {"keys": [SERVER_KEY.public_jwk()]} if verify else None)
    options.setdefault("clock", lambda: NOW + 0.5)
    return DPoPAuth(DPOP, TOKEN, signing_key=CLIENT_KEYS[alg], **options)


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


@pytest.mark.parametrize("alg", sorted(CLIENT_KEYS))
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_signed_request_and_verified_signed_response(alg: str, method: str) -> None:
    """Each algorithm, with and without a body: the middleware accepts the request (every
    component the profile requires is covered) and the client accepts its signed answer."""
    SEEN.clear()
    content = b'{"amount": "10.00"}' if method == "POST" else None
    async with client(server()) as http:
        response = await http.request(method, "/pay?x=1", content=content, auth=auth(alg))
    assert response.status_code == 200, response.text
    assert response.json()["received"] == (content or b"").decode()
    sent = response.request
    covered = sent.headers["signature-input"]
    for component in ('"@method"', '"@target-uri"', '"authorization"', '"dpop"'):
        assert component in covered
    assert ('"content-digest"' in covered) == (content is not None)
    assert 'tag="fapi-2-request"' in covered and 'keyid="' in covered
    assert response.headers["signature-input"].startswith("sig1=")


async def test_a_body_changed_after_signing_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    """The same signed headers with another body of the same length: the server's digest
    check refuses it before the endpoint gets the body."""
    SEEN.clear()
    request = httpx.Request("POST", f"{BASE}/pay", content=b'{"amount": "10.00"}')
    signed = next(auth().sync_auth_flow(request))
    tampered = httpx.Request(
        "POST", signed.url, headers=signed.headers, content=b'{"amount": "99.00"}'
    )
    async with client(server()) as http:
        response = await http.send(tampered)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_signature"
    assert response.headers["cache-control"] == "no-store"
    assert reason(caplog) == "content_digest_mismatch"
    assert SEEN == []


async def test_a_signed_request_sent_to_another_url_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    request = httpx.Request("GET", f"{BASE}/pay")
    signed = next(auth().sync_auth_flow(request))
    moved = httpx.Request("GET", f"{BASE}/pay?x=2", headers=signed.headers)
    async with client(server()) as http:
        response = await http.send(moved)
    assert response.status_code == 401
    assert reason(caplog) == "signature_invalid"


def _rewrite_body(app: Any, new: bytes) -> Any:
    """An ASGI hop after the middleware that swaps the (signed) response body."""

    async def hop(scope: Any, receive: Any, send: Any) -> None:
        async def swapped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": new}
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message["headers"] if k != b"content-length"]
                message = {**message, "headers": [*headers, (b"content-length", b"%d" % len(new))]}
            await send(message)

        await app(scope, receive, swapped)

    return hop


def _rewrite_header(app: Any, name: bytes, value: bytes) -> Any:
    async def hop(scope: Any, receive: Any, send: Any) -> None:
        async def swapped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message["headers"] if k != name]
                message = {**message, "headers": [*headers, (name, value)]}
            await send(message)

        await app(scope, receive, swapped)

    return hop


OTHER_SERVER = SigningKey(ec.generate_private_key(ec.SECP256R1()), SERVER_KEY.keyid)
RESPONSE_REFUSALS = {
    "unsigned": (server(signing_key=None), "signature_missing"),
    "signed by another key under the same keyid": (
        server(signing_key=OTHER_SERVER),
        "signature_invalid",
    ),
    "signed by a key the client does not know": (
        server(signing_key=SigningKey(ed25519.Ed25519PrivateKey.generate(), "rs-unknown")),
        "signature_key_unknown",
    ),
    "body swapped": (
        _rewrite_body(server(), b'{"received":"","method":"GETX"}'),
        "content_digest_mismatch",
    ),
    "an uncovered header added": (
        _rewrite_header(server(), b"x-uncovered", b"1"),
        None,  # control: a header no signature covers does not matter
    ),
    "content-type changed": (
        _rewrite_header(server(), b"content-type", b"text/html"),
        "signature_invalid",
    ),
    "content-digest swapped with the body": (
        _rewrite_header(
            _rewrite_body(server(), b"{}"),
            b"content-digest",
            b"sha-256=:RBNvo1WzZ4oRRq0W9+hknpT7T8If536DEMBg9hyq/4o=:",
        ),
        "signature_invalid",
    ),
    "compressed": (
        _rewrite_header(server(), b"content-encoding", b"gzip"),
        "content_encoding_unsupported",
    ),
}


@pytest.mark.parametrize("case", sorted(RESPONSE_REFUSALS))
async def test_a_response_that_is_not_validly_signed_is_refused(case: str) -> None:
    app, expected = RESPONSE_REFUSALS[case]
    async with client(app) as http:
        if expected is None:
            response = await http.get("/pay", auth=auth())
            assert response.status_code == 200
            return
        with pytest.raises(ResponseSignatureError) as caught:
            await http.get("/pay", auth=auth())
    assert caught.value.reason == expected
    assert caught.value.response.status_code == 200
    assert expected in str(caught.value)


async def test_a_response_too_old_is_refused() -> None:
    """The server verifies the request at the client's time but signs the response with
    ``created`` two minutes earlier (a stale or replayed answer): over the window."""
    times = iter([NOW + 120, NOW])
    app = HTTPSignatureMiddleware(
        APP, key_source=CLIENTS, signing_key=SERVER_KEY, clock=lambda: next(times)
    )
    async with client(app) as http:
        with pytest.raises(ResponseSignatureError) as caught:
            await http.get("/pay", auth=auth(clock=lambda: NOW + 120))
    assert caught.value.reason == "signature_too_old"


async def test_a_response_answering_another_request_is_refused() -> None:
    """A signed response replayed to another request: ``"@target-uri";req`` and the
    request's signature (``;req``) no longer match."""
    captured: list[httpx.Response] = []
    async with client(server()) as http:
        first = await http.get("/pay?n=1", auth=auth())
        captured.append(first)

    async def replay(request: httpx.Request) -> httpx.Response:
        old = captured[0]
        return httpx.Response(200, headers=old.headers, content=old.content)

    async with httpx.AsyncClient(transport=httpx.MockTransport(replay), base_url=BASE) as http:
        with pytest.raises(ResponseSignatureError) as caught:
            await http.get("/pay?n=2", auth=auth())
    assert caught.value.reason == "signature_invalid"


async def test_an_unsigned_error_is_returned_and_a_signed_one_verified() -> None:
    async with client(server(signing_key=None)) as http:
        only = DPoPAuth(DPOP, TOKEN, response_keys=SERVER_KEY.public_jwk(), clock=lambda: NOW)
        refused = await http.post("/pay", content=b"{}", auth=only)
    assert refused.status_code == 401  # the middleware's own refusal: unsigned, returned
    async with client(server()) as http:
        forbidden = await http.get("/refuse", auth=auth())
    assert forbidden.status_code == 403  # the app's error: signed, and verified
    assert "signature-input" in forbidden.headers


async def test_a_dpop_nonce_retry_is_signed_again() -> None:
    """A server in front asks for a DPoP nonce once; the retried request carries a new
    proof, and its signature covers that new proof (else ``signature_invalid``)."""
    SEEN.clear()
    inner = server()
    asked: list[bool] = []

    async def nonce_first(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not asked:
            asked.append(True)
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"dpop-nonce", b"n-1"),
                        (b"www-authenticate", b'DPoP error="use_dpop_nonce"'),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        await inner(scope, receive, send)

    async with client(nonce_first) as http:
        response = await http.post("/pay", content=b'{"a": 1}', auth=auth())
    assert response.status_code == 200, response.text
    assert len(SEEN) == 1 and SEEN[0]["body"] == b'{"a": 1}'
    claims = SEEN[0]["dpop"].split(".")[1]
    assert json.loads(base64.urlsafe_b64decode(claims + "=="))["nonce"] == "n-1"


async def test_verification_only_leaves_requests_unsigned() -> None:
    """``response_keys`` without ``signing_key``: nothing is signed; on an ``optional``
    route the response still is, and it is verified (without ``;req`` signature)."""
    app = HTTPSignatureMiddleware(
        APP, key_source=CLIENTS, signing_key=SERVER_KEY, mode="optional", clock=lambda: NOW
    )
    only = DPoPAuth(DPOP, TOKEN, response_keys=SERVER_KEY.public_jwk(), clock=lambda: NOW)
    async with client(app) as http:
        response = await http.get("/pay", auth=only)
    assert response.status_code == 200
    assert "signature" not in response.request.headers


async def test_the_fapi_client_passes_its_options_to_the_api_calls() -> None:
    metadata = AuthorizationServerMetadata(
        issuer="https://as.example",
        authorization_endpoint="https://as.example/authorize",
        token_endpoint="https://as.example/token",
        pushed_authorization_request_endpoint="https://as.example/par",
    )
    async with client(server()) as http:
        fapi = FAPIClient(
            http,
            metadata,
            client_id="c",
            client_key=ProofSigner.generate("ES256"),
            dpop_key=DPOP,
            redirect_uri="https://app.example/cb",
            signing_key=CLIENT_KEYS["Ed25519"],
            response_keys={"keys": [OTHER_SERVER.public_jwk()]},
            clock=lambda: NOW,
        )
        tokens = TokenResponse(TOKEN, "DPoP", 60, None, {})
        with pytest.raises(ResponseSignatureError) as caught:
            await http.get("/pay", auth=fapi.auth(tokens))
    # signed with the Ed25519 key (accepted by the server), answer checked with the
    # wrong server key (refused by the client)
    assert caught.value.reason == "signature_invalid"
    assert 'keyid="c-ed"' in caught.value.response.request.headers["signature-input"]
