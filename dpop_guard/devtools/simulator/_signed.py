"""RFC 9701 answers of the simulator's ``/auth/introspection/standard``: what Authlete 3.0
returns (action ``JWT``, the signed answer in ``responseContent``) when the caller sends
``httpAcceptHeader: application/token-introspection+jwt``, signed with the simulator's own
keys, which it publishes at ``/.well-known/jwks.json`` (unauthenticated, as an
authorization server publishes its ``jwks_uri``).

Choices not confirmed against Authlete are marked ``[U]``: ``aud`` is the ``rsUri`` sent
(RFC 9701 says only that it identifies the resource server), and only ES256 and PS256 are
offered (RS256, Authlete's default, is not FAPI: a request without ``introspectionSignAlg``
is refused here rather than signed with it).

Tests ask for broken answers with :attr:`SimulatorState.signed_flaw` (``/sim/faults``
``{"signed_flaw": ...}``), one of :data:`SIGNED_FLAWS`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from joserfc import jwk as jose_jwk
from joserfc import jws

from dpop_guard._b64 import b64url_decode, b64url_encode

if TYPE_CHECKING:
    from joserfc.jwk import KeyParameters

__all__ = ["JWKS_PATH", "JWT_RESPONSE_TYPE", "SIGNED_FLAWS", "IntrospectionSigner"]

JWKS_PATH: Final = "/.well-known/jwks.json"
JWT_RESPONSE_TYPE: Final = "application/token-introspection+jwt"
SIGNED_FLAWS: Final = (
    "unsigned",  # a plain JSON answer (action OK), as if the Accept were ignored
    "bad_signature",  # one bit of the signature flipped
    "unknown_kid",  # signed with a key the JWKS does not publish
    "wrong_typ",  # typ JWT
    "wrong_issuer",
    "wrong_audience",
    "stale_iat",  # iat an hour ago
    "no_introspection",  # token_introspection missing
)
_KID_PREFIX: Final = "sim-introspection-"


class IntrospectionSigner:
    """The simulator's introspection signing keys, one per algorithm, made on first use
    (an RSA key takes a while, and most simulators never sign)."""

    algorithms: Final = ("ES256", "PS256")

    def __init__(self) -> None:
        self._keys: dict[str, Any] = {}
        self._generation = 0

    def rotate(self) -> None:
        """New keys with new ``kid`` values from now on (the JWKS publishes only those)."""
        self._keys.clear()
        self._generation += 1

    def _key(self, alg: str) -> Any:
        key = self._keys.get(alg)
        if key is None:
            jwa = "PS256" if alg == "PS256" else "ES256"
            kid = f"{_KID_PREFIX}{alg.lower()}-{self._generation}"
            parameters: KeyParameters = {"kid": kid, "alg": jwa, "use": "sig"}
            if alg == "PS256":
                key = jose_jwk.RSAKey.generate_key(2048, parameters=parameters)
            else:  # ES256, and "retired": a key the JWKS never publishes
                key = jose_jwk.ECKey.generate_key("P-256", parameters=parameters)
            self._keys[alg] = key
        return key

    def jwks(self) -> dict[str, Any]:
        """The public key set (what ``/.well-known/jwks.json`` serves)."""
        return {"keys": [self._key(alg).as_dict(private=False) for alg in self.algorithms]}

    def sign(
        self,
        content: dict[str, Any],
        *,
        alg: str,
        issuer: str,
        audience: str,
        now: int,
        flaw: str | None = None,
    ) -> str:
        """The RFC 9701 JWT for the introspection answer ``content`` (``alg`` one of
        :attr:`algorithms`), broken as ``flaw`` says."""
        key = self._key("retired" if flaw == "unknown_kid" else alg)
        alg = "ES256" if flaw == "unknown_kid" else alg
        header = {
            "alg": alg,
            "kid": key.kid,
            "typ": "JWT" if flaw == "wrong_typ" else "token-introspection+jwt",
        }
        claims: dict[str, Any] = {
            "iss": "https://other-as.example.com" if flaw == "wrong_issuer" else issuer,
            "aud": "https://other-rs.example.com" if flaw == "wrong_audience" else audience,
            "iat": now - 3600 if flaw == "stale_iat" else now,
        }
        if flaw != "no_introspection":
            claims["token_introspection"] = content
        payload = json.dumps(claims, separators=(",", ":")).encode()
        token: str = jws.serialize_compact(header, payload, key, algorithms=[alg])
        if flaw == "bad_signature":
            head, body, signature = token.split(".")
            raw = bytearray(b64url_decode(signature))
            raw[0] ^= 1
            token = f"{head}.{body}.{b64url_encode(bytes(raw))}"
        return token
