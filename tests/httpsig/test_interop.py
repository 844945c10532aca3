"""Interop with an implementation we did not write: ``http-message-signatures`` (pyauth,
PyPI) signs requests our middleware must accept, and verifies the responses it signs.
One key per supported algorithm on each side."""

from __future__ import annotations

import datetime
import json
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    InvalidSignature,
    MappingKeyResolver,
    algorithms,
)

from dpop_guard.httpsig import SigningKey, StaticJWKS

from ._support import AUTHORIZATION, NOW, call, middleware, needs_interop_peer, reason

pytestmark = needs_interop_peer

_RSA = rsa.generate_private_key(65537, 2048)
_Private = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
KEYS: dict[str, tuple[_Private, str | None, type[algorithms.HTTPSignatureAlgorithm]]] = {
    "ecdsa-p256-sha256": (
        ec.generate_private_key(ec.SECP256R1()),
        None,
        algorithms.ECDSA_P256_SHA256,
    ),
    "ed25519": (ed25519.Ed25519PrivateKey.generate(), None, algorithms.ED25519),
    "rsa-pss-sha512": (_RSA, "PS512", algorithms.RSA_PSS_SHA512),
}
CLIENTS = StaticJWKS(
    {
        "keys": [
            SigningKey(key, f"c-{name}", alg).public_jwk() for name, (key, alg, _) in KEYS.items()
        ]
    }
)
CREATED = datetime.datetime.fromtimestamp(NOW, tz=datetime.UTC)
BODY = b'{"amount": 10}'
FAPI_REQUEST = ("@method", "@target-uri", "authorization", "content-digest")


def _theirs(name: str) -> HTTPMessageSigner:
    key, _, algorithm = KEYS[name]
    resolver = MappingKeyResolver(public_keys={}, private_keys={f"c-{name}": key})
    return HTTPMessageSigner(signature_algorithm=algorithm, key_resolver=resolver)


def _signed_by_them(name: str, body: bytes = BODY, *, include_alg: bool = True) -> httpx.Request:
    request = httpx.Request(
        "POST",
        "http://rs.example/pay",
        headers={"authorization": AUTHORIZATION, "content-type": "application/json"},
        content=body,
    )
    _theirs(name).sign(
        request,
        key_id=f"c-{name}",
        created=CREATED,
        tag="fapi-2-request",
        label="fapi",
        include_alg=include_alg,
        covered_component_ids=FAPI_REQUEST,
        body=body,
    )
    return request


def _fields(request: httpx.Request) -> list[tuple[str, str]]:
    return [(k.decode().lower(), v.decode()) for k, v in request.headers.raw]


@pytest.mark.parametrize("name", sorted(KEYS))
@pytest.mark.parametrize("include_alg", [True, False])
async def test_their_signed_request_is_accepted(name: str, include_alg: bool) -> None:
    request = _signed_by_them(name, include_alg=include_alg)
    guard = middleware(key_source=CLIENTS)
    result = await call(guard, "POST", "/pay", _fields(request), chunks=[BODY[:4], BODY[4:]])
    assert result.status == 200, result.body
    assert json.loads(result.body) == {"echo": BODY.hex()}


@pytest.mark.parametrize("name", sorted(KEYS))
async def test_their_signed_request_with_another_body_is_refused(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    request = _signed_by_them(name)
    guard = middleware(key_source=CLIENTS)
    result = await call(guard, "POST", "/pay", _fields(request), chunks=[b'{"amount": 99}'])
    assert result.status == 401
    assert reason(caplog) == "content_digest_mismatch"


async def test_their_request_for_another_url_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    request = _signed_by_them("ed25519")
    guard = middleware(key_source=CLIENTS)
    result = await call(guard, "POST", "/pay/other", _fields(request), chunks=[BODY])
    assert result.status == 401
    assert reason(caplog) == "signature_invalid"


SERVER = {
    "ecdsa-p256-sha256": SigningKey(ec.generate_private_key(ec.SECP256R1()), "rs-ec"),
    "ed25519": SigningKey(ed25519.Ed25519PrivateKey.generate(), "rs-ed"),
    "rsa-pss-sha512": SigningKey(_RSA, "rs-rsa", "PS512"),
}
_ALGORITHMS = {name: algorithm for name, (_, _, algorithm) in KEYS.items()}


def _their_verifier(name: str) -> HTTPMessageVerifier:
    key = SERVER[name]
    resolver = MappingKeyResolver(public_keys={key.keyid: key.key.public_key()}, private_keys={})
    return HTTPMessageVerifier(signature_algorithm=_ALGORITHMS[name], key_resolver=resolver)


async def _our_signed_response(name: str, request: httpx.Request) -> tuple[httpx.Response, Any]:
    guard = middleware(key_source=CLIENTS, signing_key=SERVER[name])
    result = await call(guard, "POST", "/pay", _fields(request), chunks=[BODY])
    assert result.status == 200
    response = httpx.Response(
        result.status, headers=list(result.headers.items()), content=result.body, request=request
    )
    return response, result


@pytest.mark.parametrize("name", sorted(SERVER))
async def test_they_verify_our_signed_response(name: str) -> None:
    request = _signed_by_them("ecdsa-p256-sha256")
    response, result = await _our_signed_response(name, request)
    verified = _their_verifier(name).verify(
        response,
        expect_tag="fapi-2-response",
        max_age=None,  # our clock is injected (NOW); theirs is the wall clock
        require_components=(
            "@status",
            "content-type",
            "content-digest",
            '"@method";req',
            '"@target-uri";req',
            '"content-digest";req',
            '"signature";req;key="fapi"',
            '"signature-input";req;key="fapi"',
        ),
        body=result.body,
    )
    assert len(verified) == 1
    assert verified[0].parameters["keyid"] == SERVER[name].keyid
    assert verified[0].parameters["created"] == NOW


async def test_they_refuse_our_response_once_tampered() -> None:
    request = _signed_by_them("ecdsa-p256-sha256")
    response, result = await _our_signed_response("ed25519", request)
    verifier = _their_verifier("ed25519")
    with pytest.raises(InvalidSignature):  # another body: the digest no longer matches
        verifier.verify(
            response, expect_tag="fapi-2-response", max_age=None, body=result.body + b" "
        )
    # another request (the ;req components): the signature no longer matches
    other = _signed_by_them("ecdsa-p256-sha256", body=b'{"amount": 11}')
    moved = httpx.Response(
        response.status_code, headers=response.headers, content=result.body, request=other
    )
    with pytest.raises(InvalidSignature):
        verifier.verify(moved, expect_tag="fapi-2-response", max_age=None)


async def test_their_request_with_a_second_signature_of_another_profile_is_accepted() -> None:
    """RFC 9421 section 7.2.6: the verifier picks the signature by its tag, whatever else is
    there (here an extra signature over other components, with another tag)."""
    request = _signed_by_them("ed25519")
    _theirs("ecdsa-p256-sha256").sign(
        request,
        key_id="c-ecdsa-p256-sha256",
        created=CREATED,
        tag="other-profile",
        label="other",
        covered_component_ids=("@method", "@authority"),
        append_if_signature_exists=True,
        use_existing_digest=True,
    )
    assert "other=" in request.headers["signature-input"]
    guard = middleware(key_source=CLIENTS)
    result = await call(guard, "POST", "/pay", _fields(request), chunks=[BODY])
    assert result.status == 200, result.body
