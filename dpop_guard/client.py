"""Client side: sign DPoP proofs and attach them to httpx requests.

Used by the demo, the tests and the benchmarks, and meant for our users' clients and
test suites.

>>> signer = ProofSigner.generate("ES256")
>>> auth = DPoPAuth(signer, access_token)
>>> httpx.get("https://api.example.com/accounts", auth=auth)
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Generator, Mapping
from typing import Any, Final

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jwk as jose_jwk

from ._b64 import b64url_encode
from .jwk import jwk_thumbprint
from .proof import DPOP_TYP, compute_ath

__all__ = ["DPoPAuth", "ProofSigner"]

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

_EC_ALGS: Final[dict[str, tuple[str, Callable[[], hashes.HashAlgorithm], int]]] = {
    "P-256": ("ES256", hashes.SHA256, 32),
    "P-384": ("ES384", hashes.SHA384, 48),
    "P-521": ("ES512", hashes.SHA512, 66),
}
_RSA_HASHES: Final[dict[str, Callable[[], hashes.HashAlgorithm]]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
_CURVES: Final[dict[str, Callable[[], ec.EllipticCurve]]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}


def _uint_b64(value: int) -> str:
    return b64url_encode(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def _public_jwk(key: PrivateKey) -> dict[str, str]:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        numbers = key.public_key().public_numbers()
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[key.curve.name]
        size = _EC_ALGS[crv][2]
        return {
            "kty": "EC",
            "crv": crv,
            "x": b64url_encode(numbers.x.to_bytes(size, "big")),
            "y": b64url_encode(numbers.y.to_bytes(size, "big")),
        }
    if isinstance(key, rsa.RSAPrivateKey):
        pub = key.public_key().public_numbers()
        return {"kty": "RSA", "n": _uint_b64(pub.n), "e": _uint_b64(pub.e)}
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw)}


class ProofSigner:
    """Holds a client's private key and signs DPoP proofs with it (RFC 9449 section 4.2).

    :param key: an EC (P-256/384/521), RSA or Ed25519 private key from ``cryptography``.
    :param alg: the JWS algorithm; defaults to ES* for EC, PS256 for RSA, EdDSA for Ed25519.
    """

    def __init__(self, key: PrivateKey, *, alg: str | None = None) -> None:
        self.key = key
        self.public_jwk: Mapping[str, str] = _public_jwk(key)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            default_alg, hash_cls, self._ec_size = _EC_ALGS[self.public_jwk["crv"]]
            self._hash: hashes.HashAlgorithm | None = hash_cls()
        elif isinstance(key, rsa.RSAPrivateKey):
            default_alg = "PS256"
            self._hash = _RSA_HASHES[(alg or default_alg)[2:]]()
        else:
            default_alg, self._hash = "EdDSA", None
        self.alg = alg or default_alg
        self.jkt = jwk_thumbprint(self.public_jwk)
        self._header_b64 = self._encode(
            {"typ": DPOP_TYP, "alg": self.alg, "jwk": dict(self.public_jwk)}
        )

    @classmethod
    def generate(cls, alg: str = "ES256") -> ProofSigner:
        """A signer with a fresh key for ``alg`` (ES256/384/512, PS*/RS*, EdDSA/Ed25519)."""
        key: PrivateKey
        if alg in _CURVES:
            key = ec.generate_private_key(_CURVES[alg]())
        elif alg[:2] in ("PS", "RS") and alg[2:] in _RSA_HASHES:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif alg in ("EdDSA", "Ed25519"):
            key = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(f"unsupported alg {alg!r}")
        return cls(key, alg=alg)

    @classmethod
    def from_jwk(cls, private_jwk: Mapping[str, Any], *, alg: str | None = None) -> ProofSigner:
        """A signer from a private JWK (``d`` and friends present)."""
        imported = jose_jwk.import_key(dict(private_jwk))
        key = imported.private_key
        if not isinstance(
            key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)
        ):
            raise ValueError("the JWK is not an EC, RSA or Ed25519 private key")
        return cls(key, alg=alg or private_jwk.get("alg"))

    @staticmethod
    def _encode(obj: Mapping[str, Any]) -> str:
        return b64url_encode(json.dumps(obj, separators=(",", ":")).encode())

    def _signature(self, signing_input: bytes) -> bytes:
        key = self.key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            assert self._hash is not None
            r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(self._hash)))
            return r.to_bytes(self._ec_size, "big") + s.to_bytes(self._ec_size, "big")
        if isinstance(key, rsa.RSAPrivateKey):
            assert self._hash is not None
            pad: padding.AsymmetricPadding = (
                padding.PSS(mgf=padding.MGF1(self._hash), salt_length=self._hash.digest_size)
                if self.alg.startswith("PS")
                else padding.PKCS1v15()
            )
            return key.sign(signing_input, pad, self._hash)
        return key.sign(signing_input)

    def sign_raw(self, header: Mapping[str, Any] | None, claims: Mapping[str, Any]) -> str:
        """Sign arbitrary ``claims`` under ``header`` (``None``: the standard DPoP header).
        Tests use this to build proofs that are wrong on purpose."""
        header_b64 = self._header_b64 if header is None else self._encode(header)
        signing_input = f"{header_b64}.{self._encode(claims)}"
        return f"{signing_input}.{b64url_encode(self._signature(signing_input.encode()))}"

    def sign(
        self,
        *,
        htm: str,
        htu: str,
        access_token: str | None = None,
        nonce: str | None = None,
        iat: float | None = None,
        jti: str | None = None,
    ) -> str:
        """A fresh proof for ``htm htu``, with ``ath`` when ``access_token`` is given."""
        claims: dict[str, Any] = {
            "jti": jti or secrets.token_urlsafe(16),
            "htm": htm,
            "htu": htu,
            "iat": int(time.time() if iat is None else iat),
        }
        if access_token is not None:
            claims["ath"] = compute_ath(access_token)
        if nonce is not None:
            claims["nonce"] = nonce
        return self.sign_raw(None, claims)


class DPoPAuth(httpx.Auth):
    """httpx authentication: ``Authorization: DPoP <token>`` and a fresh ``DPoP`` proof on
    every request. A ``DPoP-Nonce`` from the server is remembered per origin and used in
    later proofs; a ``use_dpop_nonce`` answer is retried once with the new nonce."""

    def __init__(self, signer: ProofSigner, access_token: str | None) -> None:
        self.signer = signer
        self.access_token = access_token
        self._nonces: dict[str, str] = {}

    def _apply(self, request: httpx.Request, origin: str) -> None:
        htu = str(request.url.copy_with(query=None, fragment=None))
        if self.access_token is not None:
            request.headers["Authorization"] = f"DPoP {self.access_token}"
        request.headers["DPoP"] = self.signer.sign(
            htm=request.method,
            htu=htu,
            access_token=self.access_token,
            nonce=self._nonces.get(origin),
        )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        origin = f"{request.url.scheme}://{request.url.netloc.decode('ascii')}"
        self._apply(request, origin)
        response = yield request
        nonce = response.headers.get("dpop-nonce")
        if nonce:
            self._nonces[origin] = nonce
            challenge = response.headers.get("www-authenticate", "")
            if response.status_code in (400, 401) and "use_dpop_nonce" in challenge:
                self._apply(request, origin)
                yield request
