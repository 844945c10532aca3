"""Public JWK import for DPoP proofs and RFC 7638 thumbprints.

Only public, asymmetric signing keys are imported, and only when they fit the proof's
``alg``: the curve is tied to the algorithm, RSA moduli are bounded (a huge modulus is a
CPU-exhaustion lever), and coordinates must have their exact, minimal encoding so one key
has one thumbprint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ._b64 import b64url_decode, b64url_encode

__all__ = [
    "SUPPORTED_ALGORITHMS",
    "JWKError",
    "PublicKey",
    "import_public_jwk",
    "jwk_thumbprint",
]

DEFAULT_MIN_RSA_BITS: Final = 2048
DEFAULT_MAX_RSA_BITS: Final = 4096

# Members whose presence makes a JWK private (RFC 7518 sections 6.2.2, 6.3.2; RFC 8037).
_PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
# RFC 7638 section 3.2: the required members, per key type, in lexicographic order.
_THUMBPRINT_MEMBERS: Final = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
}


class JWKError(ValueError):
    """The ``jwk`` header cannot be used; ``reason`` says why (for logs and tests)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Alg:
    kty: str
    curves: tuple[str, ...] = ()
    hash: type[hashes.HashAlgorithm] | None = None
    pss: bool = False


_EC_CURVES: Final = {
    "P-256": (ec.SECP256R1, 32),
    "P-384": (ec.SECP384R1, 48),
    "P-521": (ec.SECP521R1, 66),
}
_OKP_SIZES: Final = {"Ed25519": 32, "Ed448": 57}

_ALGS: Final[dict[str, _Alg]] = {
    "ES256": _Alg("EC", ("P-256",), hashes.SHA256),
    "ES384": _Alg("EC", ("P-384",), hashes.SHA384),
    "ES512": _Alg("EC", ("P-521",), hashes.SHA512),
    "PS256": _Alg("RSA", (), hashes.SHA256, pss=True),
    "PS384": _Alg("RSA", (), hashes.SHA384, pss=True),
    "PS512": _Alg("RSA", (), hashes.SHA512, pss=True),
    "RS256": _Alg("RSA", (), hashes.SHA256),
    "RS384": _Alg("RSA", (), hashes.SHA384),
    "RS512": _Alg("RSA", (), hashes.SHA512),
    "EdDSA": _Alg("OKP", ("Ed25519", "Ed448")),
    # RFC 9864: the fully-specified name for EdDSA on Ed25519.
    "Ed25519": _Alg("OKP", ("Ed25519",)),
}

SUPPORTED_ALGORITHMS: Final = frozenset(_ALGS)


@dataclass(frozen=True, slots=True)
class PublicKey:
    """An imported public key, ready to verify signatures for one ``alg``."""

    alg: str
    kty: str
    jkt: str
    """RFC 7638 SHA-256 thumbprint, base64url."""
    verify: Callable[[bytes, bytes], bool]
    """``verify(signature, signing_input) -> bool``; never raises for a bad signature."""


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 JWK SHA-256 thumbprint of a public key, base64url without padding.

    :raises JWKError: ``jwk_kty_unsupported`` or ``jwk_invalid`` if a required member is
        absent or not a string.
    """
    members = _THUMBPRINT_MEMBERS.get(jwk.get("kty"))  # type: ignore[arg-type]
    if members is None:
        raise JWKError("jwk_kty_unsupported")
    required = {}
    for name in members:
        value = jwk.get(name)
        if not isinstance(value, str):
            raise JWKError("jwk_invalid")
        required[name] = value
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return b64url_encode(hashlib.sha256(canonical.encode("utf-8")).digest())


def _member(jwk: Mapping[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise JWKError("jwk_invalid")
    try:
        return b64url_decode(value)
    except ValueError as exc:
        raise JWKError("jwk_invalid") from exc


def _uint(data: bytes) -> int:
    # RFC 7518 section 6.3.1: the minimal octet sequence; a leading zero would give the
    # same key a second thumbprint.
    if not data or data[0] == 0:
        raise JWKError("jwk_invalid")
    return int.from_bytes(data, "big")


def _ec_verifier(
    key: ec.EllipticCurvePublicKey, size: int, hash_cls: type[hashes.HashAlgorithm]
) -> Callable[[bytes, bytes], bool]:
    algorithm = ec.ECDSA(hash_cls())

    def verify(signature: bytes, message: bytes) -> bool:
        # JWS ECDSA signatures are raw R || S, each exactly the curve size (RFC 7518 3.4).
        if len(signature) != 2 * size:
            return False
        r = int.from_bytes(signature[:size], "big")
        s = int.from_bytes(signature[size:], "big")
        try:
            key.verify(encode_dss_signature(r, s), message, algorithm)
        except InvalidSignature:
            return False
        return True

    return verify


def _rsa_verifier(key: rsa.RSAPublicKey, spec: _Alg) -> Callable[[bytes, bytes], bool]:
    assert spec.hash is not None
    hash_alg = spec.hash()
    pad: padding.AsymmetricPadding = (
        # RFC 7518 section 3.5: MGF1 with the same hash, salt as long as the hash.
        padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size)
        if spec.pss
        else padding.PKCS1v15()
    )
    size = (key.key_size + 7) // 8

    def verify(signature: bytes, message: bytes) -> bool:
        if len(signature) != size:
            return False
        try:
            key.verify(signature, message, pad, hash_alg)
        except InvalidSignature:
            return False
        return True

    return verify


def _okp_verifier(
    key: ed25519.Ed25519PublicKey | ed448.Ed448PublicKey,
) -> Callable[[bytes, bytes], bool]:
    def verify(signature: bytes, message: bytes) -> bool:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    return verify


def import_public_jwk(
    jwk: object,
    *,
    alg: str,
    min_rsa_bits: int = DEFAULT_MIN_RSA_BITS,
    max_rsa_bits: int = DEFAULT_MAX_RSA_BITS,
) -> PublicKey:
    """Import the ``jwk`` header of a DPoP proof for signature algorithm ``alg``.

    Checks, following RFC 9449 section 4.3 steps 6-7 and RFC 7517/7518/8037: ``jwk`` is an
    object; it has no private members (``d p q dp dq qi oth``) and is not ``oct``; ``kty``
    matches ``alg``; ``crv`` is the curve ``alg`` names; ``use``, if present, is ``sig``;
    ``alg``, if present, equals the header ``alg`` (with ``EdDSA``/``Ed25519`` treated as
    one); ``key_ops``, if present, contains ``verify``; coordinates have their exact
    length and the point lies on the curve; an RSA modulus is within the bounds.

    :raises JWKError: with the failing check as ``reason``.
    """
    if not isinstance(jwk, dict):
        raise JWKError("jwk_not_object")
    spec = _ALGS.get(alg)
    if spec is None:  # the caller checks the allow-list first; this is a second guard
        raise JWKError("jwk_alg_mismatch")
    kty = jwk.get("kty")
    if kty == "oct":
        raise JWKError("jwk_symmetric")
    if not _PRIVATE_MEMBERS.isdisjoint(jwk):
        raise JWKError("jwk_private")
    if not isinstance(kty, str) or kty not in _THUMBPRINT_MEMBERS:
        raise JWKError("jwk_kty_unsupported")
    if kty != spec.kty:
        raise JWKError("jwk_alg_mismatch")
    if "use" in jwk and jwk["use"] != "sig":
        raise JWKError("jwk_use_not_sig")
    if "key_ops" in jwk:
        ops = jwk["key_ops"]
        if not isinstance(ops, list) or "verify" not in ops:
            raise JWKError("jwk_key_ops")
    if "alg" in jwk and jwk["alg"] != alg and {jwk["alg"], alg} != {"EdDSA", "Ed25519"}:
        raise JWKError("jwk_alg_mismatch")

    verify: Callable[[bytes, bytes], bool]
    try:
        if kty == "EC":
            crv = jwk.get("crv")
            if crv not in spec.curves:
                raise JWKError("jwk_curve_mismatch")
            curve_cls, size = _EC_CURVES[crv]
            x, y = _member(jwk, "x"), _member(jwk, "y")
            if len(x) != size or len(y) != size:
                raise JWKError("jwk_invalid")
            numbers = ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve_cls()
            )
            assert spec.hash is not None
            verify = _ec_verifier(numbers.public_key(), size, spec.hash)
        elif kty == "RSA":
            n = _uint(_member(jwk, "n"))
            e = _uint(_member(jwk, "e"))
            if not min_rsa_bits <= n.bit_length() <= max_rsa_bits:
                raise JWKError("jwk_rsa_size")
            verify = _rsa_verifier(rsa.RSAPublicNumbers(e, n).public_key(), spec)
        else:  # OKP
            crv = jwk.get("crv")
            if crv not in spec.curves:
                raise JWKError("jwk_curve_mismatch")
            x = _member(jwk, "x")
            if len(x) != _OKP_SIZES[crv]:
                raise JWKError("jwk_invalid")
            okp_key = (
                ed25519.Ed25519PublicKey.from_public_bytes(x)
                if crv == "Ed25519"
                else ed448.Ed448PublicKey.from_public_bytes(x)
            )
            verify = _okp_verifier(okp_key)
    except JWKError:
        raise
    except (ValueError, TypeError, OverflowError) as exc:
        # Not on the curve, an even or tiny RSA exponent, and the like.
        raise JWKError("jwk_invalid") from exc
    return PublicKey(alg=alg, kty=kty, jkt=jwk_thumbprint(jwk), verify=verify)
