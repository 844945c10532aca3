"""Public JWK import for DPoP proofs and RFC 7638 thumbprints.

Only public, asymmetric signing keys are imported, and only when they fit the proof's
``alg``: the curve is tied to the algorithm, the RSA modulus and exponent are bounded
before any RSA work (each is a CPU-exhaustion lever), and coordinates, moduli and
exponents must have their exact, minimal encoding so one key has one thumbprint. Every
member is type-checked before it is used: the key is attacker-controlled JSON.
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

from ._b64 import b64url_decode, b64url_encode
from ._reasons import JWKReason

__all__ = [
    "DEFAULT_KEY_LIMITS",
    "SUPPORTED_ALGORITHMS",
    "JWKError",
    "KeyLimits",
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

    def __init__(self, reason: JWKReason) -> None:
        super().__init__(reason)
        self.reason: JWKReason = reason


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

    The key of RFC 9449 section 4.1 and its ``jkt`` from section 6.1:

    >>> jwk_thumbprint({"kty": "EC", "crv": "P-256",
    ...     "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
    ...     "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"})
    '0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I'

    :raises JWKError: ``jwk_kty_unsupported`` or ``jwk_invalid`` if a required member is
        absent or not a string.
    """
    kty = jwk.get("kty")
    members = _THUMBPRINT_MEMBERS.get(kty) if isinstance(kty, str) else None
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


def _der_integer(value: bytes) -> bytes:
    """A DER INTEGER of the unsigned big-endian ``value``: minimal (leading zeros
    dropped) and positive (a zero octet before a set high bit)."""
    value = value.lstrip(b"\x00") or b"\x00"
    if value[0] & 0x80:
        value = b"\x00" + value
    return b"\x02" + len(value).to_bytes(1, "big") + value


def _der_signature(r: bytes, s: bytes) -> bytes:
    """``encode_dss_signature(int(r), int(s))`` (the DER SEQUENCE of two INTEGERs that
    OpenSSL verifies) built from the octets directly: about 2,000 instructions fewer per
    proof than two ``int.from_bytes`` and the call (``benchmarks/README.md``). The same
    bytes for every input (``tests/test_jwk.py`` compares them); at most 2 x 69 octets
    for P-521, so a one-octet long-form length suffices."""
    body = _der_integer(r) + _der_integer(s)
    size = len(body)
    if size < 0x80:
        return b"\x30" + size.to_bytes(1, "big") + body
    return b"\x30\x81" + size.to_bytes(1, "big") + body


def _der_heads(size: int) -> tuple[tuple[tuple[bytes, bytes], ...], ...]:
    """``heads[r0 >> 7][s0 >> 7]``: the DER octets before ``r`` and between ``r`` and
    ``s`` when neither starts with a zero octet, by whether each needs a zero octet in
    front to stay positive. Only for curves whose SEQUENCE fits a short-form length."""
    assert 2 * (size + 3) < 0x80
    return tuple(
        tuple(
            (
                bytes((0x30, 2 * (size + 2) + hr + hs, 0x02, size + hr)) + b"\x00" * hr,
                bytes((0x02, size + hs)) + b"\x00" * hs,
            )
            for hs in (0, 1)
        )
        for hr in (0, 1)
    )


def _ec_verifier(
    key: ec.EllipticCurvePublicKey, size: int, hash_cls: type[hashes.HashAlgorithm]
) -> Callable[[bytes, bytes], bool]:
    algorithm = ec.ECDSA(hash_cls())
    key_verify = key.verify
    length = 2 * size
    # P-256 and P-384: the DER comes from a table unless R or S starts with a zero octet
    # (1 in 128), in 6 operations where _der_signature takes 3 calls and about 90
    # bytecodes: about 6,000 instructions fewer per ES256 proof. P-521's R and S start
    # with a zero octet half the time, and its SEQUENCE needs a long-form length.
    heads = _der_heads(size) if size < 60 else None

    def verify(signature: bytes, message: bytes) -> bool:
        # JWS ECDSA signatures are raw R || S, each exactly the curve size (RFC 7518 3.4).
        if len(signature) != length:
            return False
        r0, s0 = signature[0], signature[size]
        if r0 and s0 and heads is not None:
            head, middle = heads[r0 >> 7][s0 >> 7]
            der = b"".join((head, signature[:size], middle, signature[size:]))
        else:
            der = _der_signature(signature[:size], signature[size:])
        try:
            key_verify(der, message, algorithm)
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


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """What an attacker-chosen key may be; every bound is checked before any key work.

    :param min_rsa_bits, max_rsa_bits: accepted RSA modulus sizes.
    :param rsa_exponent_65537_only: accept only ``e = 65537`` (what WebPKI and FAPI keys
        use) instead of any odd ``3 <= e < 2**32``.
    :param allow_ed448: let ``EdDSA`` name Ed448 keys too. FAPI 2.0 section 5.4 allows
        EdDSA with Ed25519 only, so it is off by default.
    """

    min_rsa_bits: int = DEFAULT_MIN_RSA_BITS
    max_rsa_bits: int = DEFAULT_MAX_RSA_BITS
    rsa_exponent_65537_only: bool = False
    allow_ed448: bool = False


DEFAULT_KEY_LIMITS: Final = KeyLimits()


def import_public_jwk(
    jwk: object,
    *,
    alg: str,
    limits: KeyLimits = DEFAULT_KEY_LIMITS,
) -> PublicKey:
    """Import the ``jwk`` header of a DPoP proof for signature algorithm ``alg``.

    Stages, following RFC 9449 section 4.3 steps 6-7 and RFC 7517/7518/8037:

    1. the shape (:func:`_check_members`): ``jwk`` is an object; it has no private members
       (``d p q dp dq qi oth k``) and is not ``oct``; ``kty`` is a string matching
       ``alg``; ``use``, if present, is ``"sig"``; ``key_ops``, if present, is a list of
       strings holding ``"verify"``; ``alg``, if present, is a string equal to the header
       ``alg`` (with ``EdDSA``/``Ed25519`` treated as one);
    2. the key material, per key type: the curve is the one ``alg`` names, coordinates
       have their exact length and lie on the curve; an RSA modulus and exponent are in
       ``limits``, with their minimal encoding, before any RSA work is done; an Ed25519
       key is not one of small order;
    3. the RFC 7638 thumbprint.

    :raises JWKError: with the failing check as ``reason``.
    """
    members, spec = _check_members(jwk, alg)
    try:
        verify = _IMPORTERS[spec.kty](members, spec, limits)
    except JWKError:
        raise
    except (ValueError, TypeError, OverflowError) as exc:
        # Not on the curve, a modulus cryptography refuses, and the like.
        raise JWKError("jwk_invalid") from exc
    return PublicKey(alg=alg, kty=spec.kty, jkt=jwk_thumbprint(members), verify=verify)


def _check_members(jwk: object, alg: str) -> tuple[dict[str, Any], _Alg]:
    """Stage 1: the members that say what the key is and what it may do."""
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
        if (
            not isinstance(ops, list)
            or not all(isinstance(op, str) for op in ops)
            or "verify" not in ops
        ):
            raise JWKError("jwk_key_ops")
    if "alg" in jwk:
        member = jwk["alg"]
        if not isinstance(member, str) or (member != alg and {member, alg} != _EDDSA_NAMES):
            raise JWKError("jwk_alg_mismatch")
    return jwk, spec


_EDDSA_NAMES: Final = frozenset({"EdDSA", "Ed25519"})


def _curve(jwk: dict[str, Any], spec: _Alg) -> str:
    crv = jwk.get("crv")
    if not isinstance(crv, str) or crv not in spec.curves:
        raise JWKError("jwk_curve_mismatch")
    return crv


def _import_ec(
    jwk: dict[str, Any], spec: _Alg, limits: KeyLimits
) -> Callable[[bytes, bytes], bool]:
    curve_cls, size = _EC_CURVES[_curve(jwk, spec)]
    x, y = _member(jwk, "x"), _member(jwk, "y")
    if len(x) != size or len(y) != size:
        raise JWKError("jwk_invalid")
    numbers = ec.EllipticCurvePublicNumbers(
        int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve_cls()
    )
    assert spec.hash is not None
    return _ec_verifier(numbers.public_key(), size, spec.hash)


# RFC 8017 section 3.1: e is odd and 3 <= e <= n - 1. Bounded further to 32 bits: the
# cost of verifying grows with e's bits (a 3071-bit e under a 3072-bit n costs 5 ms per
# proof), real keys use 65537 (WebPKI, FAPI) and rarely 3, and NIST SP 800-89 and
# FIPS 186-5 bound e below 2^256 without any use above 2^32.
_MAX_EXPONENT_BYTES: Final = 4
_F4: Final = 65537


def _import_rsa(
    jwk: dict[str, Any], spec: _Alg, limits: KeyLimits
) -> Callable[[bytes, bytes], bool]:
    n_bytes, e_bytes = _member(jwk, "n"), _member(jwk, "e")
    # Sizes first, from the octet counts, before any big-number work.
    if not _min_octets(limits.min_rsa_bits) <= len(n_bytes) <= _min_octets(limits.max_rsa_bits):
        raise JWKError("jwk_rsa_size")
    if len(e_bytes) > _MAX_EXPONENT_BYTES:
        raise JWKError("jwk_rsa_exponent")
    n, e = _uint(n_bytes), _uint(e_bytes)
    if not limits.min_rsa_bits <= n.bit_length() <= limits.max_rsa_bits:
        raise JWKError("jwk_rsa_size")
    if e < 3 or e % 2 == 0 or (limits.rsa_exponent_65537_only and e != _F4):
        raise JWKError("jwk_rsa_exponent")
    return _rsa_verifier(rsa.RSAPublicNumbers(e, n).public_key(), spec)


def _min_octets(bits: int) -> int:
    return (bits + 7) // 8


# Ed25519 public keys of small order: under one, R = identity and S = 0 (and others)
# verify any message, so a token bound to it is bound to nothing. The eight points of
# order 1, 2, 4 and 8 (RFC 8032 section 5.1.3 decodes them all), by their encoded y:
# 0, 1, p - 1, the two y of order 8, and p and p + 1 (0 and 1 again, not reduced). Compared
# with x's sign bit cleared, so every spelling of each point, canonical or not, is refused,
# as libsodium's ge25519_has_small_order does (tests/vectors/ed25519_small_order.json).
_ED25519_SMALL_ORDER: Final = frozenset(
    bytes.fromhex(y)
    for y in (
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    )
)


def _import_okp(
    jwk: dict[str, Any], spec: _Alg, limits: KeyLimits
) -> Callable[[bytes, bytes], bool]:
    crv = _curve(jwk, spec)
    if crv == "Ed448" and not limits.allow_ed448:
        raise JWKError("jwk_curve_not_allowed")
    x = _member(jwk, "x")
    if len(x) != _OKP_SIZES[crv]:
        raise JWKError("jwk_invalid")
    if crv == "Ed25519" and x[:31] + bytes((x[31] & 0x7F,)) in _ED25519_SMALL_ORDER:
        raise JWKError("jwk_small_order")
    key = (
        ed25519.Ed25519PublicKey.from_public_bytes(x)
        if crv == "Ed25519"
        else ed448.Ed448PublicKey.from_public_bytes(x)
    )
    return _okp_verifier(key)


_IMPORTERS: Final[
    dict[str, Callable[[dict[str, Any], _Alg, KeyLimits], Callable[[bytes, bytes], bool]]]
] = {"EC": _import_ec, "RSA": _import_rsa, "OKP": _import_okp}
