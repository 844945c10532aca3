"""Helpers for tests of apps protected by dpop_guard (and for dpop_guard's own tests)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any

from .client import DPoPAuth, ProofSigner
from .proof import DPOP_TYP, compute_ath

__all__ = ["DELETE", "DPoPAuth", "ProofSigner", "make_proof"]

DELETE: Any = object()
"""Pass as an override value to remove that member."""


def _merge(base: dict[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    for name, value in (overrides or {}).items():
        if value is DELETE:
            base.pop(name, None)
        else:
            base[name] = value
    return base


def make_proof(
    signer: ProofSigner,
    *,
    htm: str = "GET",
    htu: str,
    access_token: str | None = None,
    iat: float | None = None,
    header: Mapping[str, Any] | None = None,
    claims: Mapping[str, Any] | None = None,
) -> str:
    """A proof signed by ``signer``, with ``header`` and ``claims`` members overridden
    (or removed with :data:`DELETE`). Valid unless an override makes it otherwise.

    >>> import json
    >>> from dpop_guard._b64 import b64url_decode
    >>> proof = make_proof(ProofSigner.generate("ES256"), htu="https://rs/accounts",
    ...     header={"typ": "JWT"})
    >>> json.loads(b64url_decode(proof.split(".")[0]))["typ"]
    'JWT'
    """
    base_header = _merge(
        {"typ": DPOP_TYP, "alg": signer.alg, "jwk": dict(signer.public_jwk)}, header
    )
    body: dict[str, Any] = {
        "jti": secrets.token_urlsafe(16),
        "htm": htm,
        "htu": htu,
        "iat": int(time.time() if iat is None else iat),
    }
    if access_token is not None:
        body["ath"] = compute_ath(access_token)
    return signer.sign_raw(base_header, _merge(body, claims))
