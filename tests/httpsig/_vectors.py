"""The RFC 9421 and RFC 9530 vectors (tests/vectors/*.json) as our types."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from joserfc.jwk import import_key

from dpop_guard.httpsig import Message, StaticJWKS

VECTORS = Path(__file__).parent.parent / "vectors"
RFC9421: dict[str, Any] = json.loads((VECTORS / "rfc9421.json").read_text())
RFC9530: dict[str, Any] = json.loads((VECTORS / "rfc9530.json").read_text())
CREATED = 1618884473
_KTY = {"ES256": "EC", "Ed25519": "OKP", "PS512": "RSA"}


def public_jwk(keyid: str) -> dict[str, Any]:
    """The B.1 public key ``keyid`` as a JWK with its ``kid`` and JWA ``alg``."""
    spec = RFC9421["keys"][keyid]
    pem = spec["public_pem"].encode()
    jwk = dict(import_key(pem, _KTY[spec["alg"]]).as_dict(private=False))  # type: ignore[call-overload]
    jwk.update(kid=keyid, alg=spec["alg"])
    return jwk


def key_source() -> StaticJWKS:
    return StaticJWKS({"keys": [public_jwk(kid) for kid in RFC9421["keys"]]})


def message(spec: dict[str, Any], *extra: tuple[str, str]) -> Message:
    headers = tuple((k.encode(), v.encode()) for k, v in [*spec["headers"], *extra])
    return Message(
        spec["method"], spec["scheme"], spec["authority"], spec["path"], spec["query"], headers
    )


def response(*extra: tuple[str, str]) -> Message:
    request = message(RFC9421["request"])
    spec = RFC9421["response"]
    headers = tuple((k.encode(), v.encode()) for k, v in [*spec["headers"], *extra])
    return Message(
        request.method,
        request.scheme,
        request.authority,
        request.path,
        request.query,
        headers,
        status=spec["status"],
        request=request,
    )
