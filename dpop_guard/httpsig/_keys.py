"""Algorithms, verification keys and signing keys: the one table that says which
RFC 9421 algorithm each key speaks.

FAPI 2.0 allows the JWS algorithms ``PS256``, ``ES256`` and ``EdDSA`` (Ed25519). RFC 9421
offers two ways to use them (section 3.3): its own registered names, and "JSON Web
Signature algorithms" (section 3.3.7) where the algorithm comes from the key and the
signature is the JWS signature over the signature base. The bytes coincide where a
registered name exists:

=========  ======================  =====================================================
JWA        RFC 9421 name            why they are the same bytes
=========  ======================  =====================================================
ES256      ``ecdsa-p256-sha256``   both are raw ``r || s``, 32 + 32 octets, SHA-256
EdDSA      ``ed25519``             Ed25519 over the base (``Ed25519`` per RFC 9864 too)
PS512      ``rsa-pss-sha512``      both use MGF1-SHA-512 and a 64-octet salt
PS256      (none)                  JWS mode only: MGF1-SHA-256, 32-octet salt
=========  ======================  =====================================================

So the **key** decides the algorithm (its JWK ``alg``, or its curve where that is
unambiguous); a signature's ``alg`` parameter, when sent, must name the same algorithm
and can never choose another one (RFC 9421 section 3.2 step 6 and section 7.3.6). A
``PS256`` key therefore refuses any ``alg`` parameter: none is registered for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from ..jwk import JWKError, PublicKey, import_public_jwk

__all__ = [
    "JWA_TO_RFC9421",
    "KeySource",
    "SigningKey",
    "StaticJWKS",
    "VerificationKey",
]

JWA_TO_RFC9421: Final[Mapping[str, str | None]] = {
    "ES256": "ecdsa-p256-sha256",
    "EdDSA": "ed25519",
    "Ed25519": "ed25519",
    "PS512": "rsa-pss-sha512",
    "PS256": None,
}
"""The JWS algorithms accepted, and the RFC 9421 name whose bytes they produce."""

VerificationKey = PublicKey
"""A public key ready to verify: ``alg`` (the JWA name) and ``verify(sig, data)``."""


@runtime_checkable
class KeySource(Protocol):
    """Where the verifier finds a client's public key by the ``keyid`` parameter.

    FAPI HTTP Signatures 5.3.1.2 leaves key discovery open: "The resource server can
    obtain an identifier for the client ... from a JWT access token or from a token
    introspection response. With a client identifier and the ``keyid`` ... the resource
    server can retrieve the key". :class:`StaticJWKS` is a static one.
    """

    async def resolve(self, keyid: str, *, client_id: str | None) -> VerificationKey | None:
        """The key named ``keyid``, or ``None`` if there is none.

        :param client_id: the client the request's access token was issued to, when a
            guard in front (``scope["auth"].client_id``) established it; a source that
            knows which client owns which key returns only that client's keys.
        :raises Exception: any failure; the verifier answers 503, never a pass.
        """
        ...


def _jwa(jwk: Mapping[str, Any]) -> str:
    alg = jwk.get("alg")
    if alg is None:
        # Unambiguous from the key alone; an RSA key could be PS256 or PS512.
        if jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
            return "ES256"
        if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
            return "Ed25519"
        raise ValueError("an RSA key needs its 'alg' (PS256 or PS512)")
    if not isinstance(alg, str) or alg not in JWA_TO_RFC9421:
        raise ValueError(f"alg {alg!r} is not one of {sorted(JWA_TO_RFC9421)}")
    return alg


class StaticJWKS:
    """A fixed set of public keys, imported and checked once, at start-up.

    Two forms:

    - ``StaticJWKS(jwks)``: the keys of any client. The key is found by ``keyid`` alone,
      so a client holding one of these keys can sign requests carrying another client's
      token; use it for one client, or where every key holder is trusted alike.
    - ``StaticJWKS.per_client({client_id: jwks})``: each client's own keys. A key is
      found only for the client the access token was issued to (``client_id``, from a
      guard in front); without a ``client_id`` nothing is found (refused, 401).

    :param jwks: a JWK Set (``{"keys": [...]}``); every key needs a unique ``kid``.
    :raises ValueError: a key without ``kid``, a repeated ``kid``, an algorithm FAPI does
        not allow, or a key :func:`dpop_guard.jwk.import_public_jwk` refuses (private
        members, a weak RSA modulus, a point off the curve).
    """

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        self._keys = _import(jwks)
        self._owners: dict[str, str] | None = None

    @classmethod
    def per_client(cls, clients: Mapping[str, Mapping[str, Any]]) -> StaticJWKS:
        """The keys of each client, by ``client_id`` (key ids unique across clients)."""
        source = cls({"keys": []})
        source._owners = {}
        for client_id, jwks in clients.items():
            for kid, key in _import(jwks).items():
                if kid in source._keys:
                    raise ValueError(f"kid {kid!r} appears twice")
                source._keys[kid] = key
                source._owners[kid] = client_id
        return source

    async def resolve(self, keyid: str, *, client_id: str | None) -> VerificationKey | None:
        if self._owners is not None and (client_id is None or self._owners.get(keyid) != client_id):
            return None
        return self._keys.get(keyid)


def _import(jwks: Mapping[str, Any]) -> dict[str, VerificationKey]:
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        raise ValueError("a JWK Set needs a 'keys' list")
    imported: dict[str, VerificationKey] = {}
    for jwk in keys:
        if not isinstance(jwk, dict):
            raise ValueError("every key must be an object")
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid:
            raise ValueError("every key needs a 'kid'")
        if kid in imported:
            raise ValueError(f"kid {kid!r} appears twice")
        try:
            imported[kid] = import_public_jwk(jwk, alg=_jwa(jwk))
        except JWKError as exc:
            raise ValueError(f"key {kid!r}: {exc.reason}") from exc
    return imported


_PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True, slots=True)
class SigningKey:
    """The resource server's private key for signing responses.

    :param key: a ``cryptography`` private key: EC P-256, Ed25519, or RSA (2048 bits or
        more).
    :param keyid: sent as the ``keyid`` parameter; rotate by configuring a new key with a
        new ``keyid`` and publishing both public keys for a while.
    :param alg: the JWA name; ``None`` takes ES256 for P-256 and Ed25519 for Ed25519,
        and must be ``PS256`` or ``PS512`` for RSA.
    """

    key: _PrivateKey
    keyid: str
    alg: str | None = None

    def __post_init__(self) -> None:
        key = self.key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            expected: tuple[str, ...] = ("ES256",)
            if not isinstance(key.curve, ec.SECP256R1):
                raise ValueError("only P-256 EC keys are allowed (ES256)")
        elif isinstance(key, ed25519.Ed25519PrivateKey):
            expected = ("Ed25519", "EdDSA")
        elif isinstance(key, rsa.RSAPrivateKey):
            expected = ("PS256", "PS512")
            if key.key_size < 2048:
                raise ValueError("an RSA signing key needs at least 2048 bits")
            if self.alg is None:
                raise ValueError("an RSA signing key needs alg='PS256' or alg='PS512'")
        else:
            raise TypeError("key must be an EC P-256, Ed25519 or RSA private key")
        if self.alg is None:
            object.__setattr__(self, "alg", expected[0])
        elif self.alg not in expected:
            raise ValueError(f"alg {self.alg!r} does not fit this key ({expected})")
        if not self.keyid or not self.keyid.isprintable() or '"' in self.keyid:
            raise ValueError("keyid must be a non-empty printable string without '\"'")

    def sign(self, data: bytes) -> bytes:
        """The signature of ``data`` (the signature base), as RFC 9421 sends it."""
        key = self.key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(data)
        hash_alg: hashes.HashAlgorithm = hashes.SHA512() if self.alg == "PS512" else hashes.SHA256()
        pss = padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size)
        return key.sign(data, pss, hash_alg)

    def public_jwk(self) -> dict[str, Any]:
        """The public JWK (with ``kid`` and ``alg``) to publish for the clients."""
        from ..client import ProofSigner

        # The client's own export: EC coordinates at their full length (RFC 7518 section
        # 6.2.1.2), which the key sources' import insists on.
        jwk: dict[str, Any] = dict(ProofSigner(self.key).public_jwk)
        jwk.update(kid=self.keyid, alg=self.alg)
        return jwk
