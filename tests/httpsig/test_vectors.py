"""RFC 9421 Appendix B and RFC 9530 vectors, for every algorithm we support
(rsa-pss-sha512: B.2.1-B.2.3; ecdsa-p256-sha256: B.2.4 and B.3; ed25519: B.2.6)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from dpop_guard.httpsig import (
    Component,
    SignatureParams,
    SigningKey,
    _sf,
    content_digest,
    parse_content_digest,
)
from dpop_guard.httpsig._base import inner_list, parse_signature_params, signature_base
from dpop_guard.httpsig._digest import DigestChecker

from ._vectors import CREATED, RFC9421, RFC9530, key_source, message, response

CASES = RFC9421["cases"]


def _parsed(case: dict[str, Any]) -> tuple[SignatureParams, bytes]:
    inputs = _sf.parse_dictionary(
        case["signature_input"].encode(),
        max_members=8,
        reason="signature_malformed",
        too_many="signature_too_many",
    )
    signatures = _sf.parse_dictionary(
        case["signature"].encode(),
        max_members=8,
        reason="signature_malformed",
        too_many="signature_too_many",
    )
    params = parse_signature_params(inputs[case["label"]], max_components=16)
    value = signatures[case["label"]]
    assert isinstance(value, tuple) and isinstance(value[0], bytes)
    return params, value[0]


def _message(case: dict[str, Any]) -> Any:
    return response() if case["message"] == "response" else message(RFC9421["request"])


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_signature_base_is_the_rfcs(case: dict[str, Any]) -> None:
    params, _ = _parsed(case)
    base = signature_base(params, _message(case), in_response=case["message"] == "response")
    assert base.decode() == case["base"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
async def test_published_signature_verifies(case: dict[str, Any]) -> None:
    params, signature = _parsed(case)
    assert params.keyid is not None
    key = await key_source().resolve(params.keyid, client_id=None)
    assert key is not None
    base = signature_base(params, _message(case), in_response=case["message"] == "response")
    assert key.verify(signature, base)
    # and one flipped bit anywhere in the base fails
    assert not key.verify(signature, base[:-1] + bytes([base[-1] ^ 1]))


async def test_b3_proxy_request_ecdsa() -> None:
    case = RFC9421["proxy_case"]
    params, signature = _parsed({**case, "message": "request"})
    key = await key_source().resolve("test-key-ecc-p256", client_id=None)
    assert key is not None
    base = signature_base(params, message(RFC9421["proxy_request"]), in_response=False)
    assert key.verify(signature, base)


def test_ed25519_signing_reproduces_b26() -> None:
    """Ed25519 is deterministic: our signer must produce the published bytes."""
    case = next(c for c in CASES if c["label"] == "sig-b26")
    pem = RFC9421["keys"]["test-key-ed25519"]["private_pem"].encode()
    private = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    key = SigningKey(private, "test-key-ed25519")
    names = ["date", "@method", "@path", "@authority", "content-type", "content-length"]
    components = [Component(n, {}) for n in names]
    serialized = inner_list(components, {"created": CREATED, "keyid": "test-key-ed25519"})
    params = SignatureParams(tuple(components), serialized=serialized)
    base = signature_base(params, message(RFC9421["request"]), in_response=False)
    assert f"sig-b26={serialized}" == case["signature_input"]
    got = base64.b64encode(key.sign(base)).decode()
    assert f"sig-b26=:{got}:" == case["signature"]


@pytest.mark.parametrize("case", RFC9530["cases"], ids=[c["name"] for c in RFC9530["cases"]])
def test_content_digest_vectors(case: dict[str, Any]) -> None:
    body = case["body"].encode()
    expected = parse_content_digest(case["field"].encode())
    whole = DigestChecker(expected)
    whole.update(body)
    assert whole.matches()
    chunked = DigestChecker(expected)  # the same bytes a byte at a time
    for i in range(len(body)):
        chunked.update(body[i : i + 1])
    assert chunked.matches()
    tampered = DigestChecker(expected)
    tampered.update(body + b" ")
    assert not tampered.matches()
    for algorithm in expected:
        value = content_digest(body, algorithm)
        assert parse_content_digest(value.encode()) == {algorithm: expected[algorithm]}
