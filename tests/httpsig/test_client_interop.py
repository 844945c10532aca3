"""The client side against an implementation we did not write, ``http-message-signatures``
(PyPI): it verifies the requests :class:`DPoPAuth` signs, and signs the responses
:class:`DPoPAuth` verifies, for each algorithm both sides share; with the synchronous
``httpx.Client`` (the async one is covered against our middleware)."""

from __future__ import annotations

import datetime
from collections.abc import Callable

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

from dpop_guard.client import DPoPAuth, ProofSigner
from dpop_guard.httpsig import ResponseSignatureError, SigningKey

from ._support import NOW, needs_interop_peer

pytestmark = needs_interop_peer

TOKEN = "an-access-token"
CREATED = datetime.datetime.fromtimestamp(NOW, tz=datetime.UTC)
_RSA = rsa.generate_private_key(65537, 2048)
PAIRS: dict[str, tuple[SigningKey, type[algorithms.HTTPSignatureAlgorithm]]] = {
    "ecdsa-p256-sha256": (
        SigningKey(ec.generate_private_key(ec.SECP256R1()), "k-ec"),
        algorithms.ECDSA_P256_SHA256,
    ),
    "ed25519": (SigningKey(ed25519.Ed25519PrivateKey.generate(), "k-ed"), algorithms.ED25519),
    "rsa-pss-sha512": (SigningKey(_RSA, "k-rsa", "PS512"), algorithms.RSA_PSS_SHA512),
}
FAPI_REQUEST = ("@method", "@target-uri", "authorization", "dpop")
FAPI_RESPONSE = (
    "@status",
    "content-type",
    "content-digest",
    '"@method";req',
    '"@target-uri";req',
    '"signature";req;key="sig1"',
    '"signature-input";req;key="sig1"',
)


def _resolver(key: SigningKey) -> MappingKeyResolver:
    return MappingKeyResolver(
        public_keys={key.keyid: key.key.public_key()}, private_keys={key.keyid: key.key}
    )


def _their_server(
    name: str,
    *,
    covered: tuple[str, ...] = FAPI_RESPONSE,
    tag: str = "fapi-2-response",
    tamper: Callable[[httpx.Response], httpx.Response] | None = None,
) -> Callable[[httpx.Request], httpx.Response]:
    """A resource server made of their verifier and their signer: it refuses a request
    whose signature they cannot verify (with the FAPI components), and signs its answer."""
    key, algorithm = PAIRS[name]

    def handle(request: httpx.Request) -> httpx.Response:
        verifier = HTTPMessageVerifier(signature_algorithm=algorithm, key_resolver=_resolver(key))
        body = request.read()
        required = FAPI_REQUEST + (("content-digest",) if body else ())
        try:
            verifier.verify(
                request,
                expect_tag="fapi-2-request",
                max_age=None,  # our created is the injected NOW; theirs is the wall clock
                require_components=required,
                body=body,
            )
        except InvalidSignature as exc:
            return httpx.Response(401, json={"error": "invalid_signature", "why": str(exc)})
        response = httpx.Response(200, json={"got": body.decode()}, request=request)
        signer = HTTPMessageSigner(signature_algorithm=algorithm, key_resolver=_resolver(key))
        signer.sign(
            response,
            key_id=key.keyid,
            created=CREATED,
            tag=tag,
            label="rs",
            covered_component_ids=covered,
            body=response.content,
        )
        return response if tamper is None else tamper(response)

    return handle


def _auth(name: str) -> DPoPAuth:
    key, _ = PAIRS[name]
    return DPoPAuth(
        ProofSigner.generate("ES256"),
        TOKEN,
        signing_key=key,
        response_keys={"keys": [key.public_jwk()]},
        clock=lambda: NOW,
    )


@pytest.mark.parametrize("name", sorted(PAIRS))
@pytest.mark.parametrize("body", [None, b'{"amount": "10.00"}'])
def test_they_verify_our_request_and_we_verify_their_response(
    name: str, body: bytes | None
) -> None:
    with httpx.Client(transport=httpx.MockTransport(_their_server(name))) as http:
        response = http.post("https://rs.example/pay?q=1", content=body, auth=_auth(name))
    assert response.status_code == 200, response.text
    assert response.json() == {"got": (body or b"").decode()}


def _swap_body(response: httpx.Response) -> httpx.Response:
    return httpx.Response(200, headers=response.headers, content=b'{"got": "xx"}')


REFUSALS = {
    "their body swapped": ({"tamper": _swap_body}, "content_digest_mismatch"),
    "another tag": ({"tag": "other-profile"}, "signature_not_fapi"),
    "the request's signature not covered": (
        {"covered": FAPI_RESPONSE[:5]},
        "signature_component_required",
    ),
    "no @status": ({"covered": FAPI_RESPONSE[1:]}, "signature_component_required"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_we_refuse_their_response_when_it_is_not_fapi(case: str) -> None:
    options, expected = REFUSALS[case]
    server = _their_server("ed25519", **options)  # type: ignore[arg-type]
    with httpx.Client(transport=httpx.MockTransport(server)) as http:
        with pytest.raises(ResponseSignatureError) as caught:
            http.get("https://rs.example/pay", auth=_auth("ed25519"))
    assert caught.value.reason == expected


def test_they_refuse_our_request_once_its_body_changed() -> None:
    request = httpx.Request("POST", "https://rs.example/pay", content=b'{"amount": "10.00"}')
    signed = next(_auth("ecdsa-p256-sha256").sync_auth_flow(request))
    tampered = httpx.Request(
        "POST", signed.url, headers=signed.headers, content=b'{"amount": "99.00"}'
    )
    answer = _their_server("ecdsa-p256-sha256")(tampered)
    assert answer.status_code == 401
    assert "digest" in answer.json()["why"].lower()
