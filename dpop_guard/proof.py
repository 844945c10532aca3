"""The DPoP proof verifier (RFC 9449 section 4.3). Pure and sans-IO.

No awaits, no clock reads, no network: the caller passes the request facts and ``now``.
The replay check is not done here (it needs a shared store); :class:`VerifiedProof`
carries the ``replay_key`` and ``replay_ttl`` the caller records.

Check order, cheapest and most structural first: size cap, three base64url segments,
header is a JSON object, ``typ``, ``alg`` allow-list, ``crit``, ``jwk``, signature, claim
types, ``htm``, ``htu``, ``iat`` window, ``ath``. The thumbprint is that of a key that has
just verified the signature.

Server nonces are checked here when the caller passes a :class:`~dpop_guard.nonce.NonceSource`
(itself pure). Deliberately *not* done here: the ``jti`` replay check, and the binding of the
proof's key to the access token (the token's ``cnf.jkt`` comes from introspection).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any, Final, NamedTuple

from ._b64 import b64url_decode, b64url_encode
from ._json import JSONError, parse_object
from ._url import normalize_htu
from .errors import InvalidDPoPProof, InvalidRequest, UseDPoPNonce
from .jwk import JWKError, PublicKey, import_public_jwk
from .nonce import NonceSource
from .settings import ProofPolicy

__all__ = [
    "DPOP_TYP",
    "ProofVerifier",
    "VerifiedProof",
    "compute_ath",
    "select_proof",
    "verify_proof",
]

DPOP_TYP: Final = "dpop+jwt"
DEFAULT_KEY_CACHE_SIZE: Final = 4096
_ATH_CACHE_SIZE: Final = 4096


def compute_ath(access_token: str) -> str:
    """``ath``: base64url(SHA-256(ASCII(access_token))), unpadded (RFC 9449 section 4.2)."""
    return b64url_encode(hashlib.sha256(access_token.encode("utf-8")).digest())


class VerifiedProof(NamedTuple):
    """A proof that passed every stateless check. (Immutable; a named tuple because it is
    built on every request and a frozen dataclass costs five times as much to build.)"""

    jkt: str
    """RFC 7638 thumbprint of the key that signed the proof."""
    jti: str
    iat: int
    htm: str
    htu: str
    nonce: str | None
    replay_key: str
    """Hex SHA-256 of ``jkt:jti``: the key under which the caller records the proof."""
    replay_ttl: int
    """Seconds the replay record must live."""
    next_nonce: str | None = None
    """A newer server nonce to send in ``DPoP-Nonce`` with the response, when the one used
    is about to expire."""


def select_proof(values: Sequence[str]) -> str:
    """Pick the single ``DPoP`` header value (RFC 9449 section 4.3 step 1).

    :raises InvalidDPoPProof: no ``DPoP`` header.
    :raises InvalidRequest: more than one.
    """
    if not values:
        raise InvalidDPoPProof("dpop_header_missing", "A DPoP proof is required.")
    if len(values) > 1:
        raise InvalidRequest("dpop_header_multiple", "Exactly one DPoP header is allowed.")
    return values[0]


def _fail(reason: str, description: str = "The DPoP proof is not valid.") -> InvalidDPoPProof:
    return InvalidDPoPProof(reason, description)


class ProofVerifier:
    """Verifies DPoP proofs against one :class:`ProofPolicy`.

    It keeps a bounded LRU cache of parsed headers keyed by the header segment exactly
    as sent: one client key always yields the same header bytes, so the JSON parse, the
    header checks, the key import and the thumbprint run once per key. Only headers whose
    key has verified a signature are cached.

    >>> verifier = ProofVerifier(ProofPolicy())
    >>> proof = verifier.verify(dpop_header, method="GET",
    ...     url="https://api.example.com/accounts", access_token=token, now=int(time.time()))
    >>> proof.jkt
    """

    def __init__(
        self, policy: ProofPolicy | None = None, *, key_cache_size: int = DEFAULT_KEY_CACHE_SIZE
    ) -> None:
        self.policy = policy or ProofPolicy()
        self._algorithms = self.policy.accepted_algorithms
        # A plain dict bounded first-in-first-out: a lookup costs a dict lookup, where an
        # LRU's bookkeeping costs as much again as the rest of the header handling.
        self._keys: dict[str, PublicKey] = {}
        self._keys_max = key_cache_size
        policy = self.policy
        self._max_bytes = policy.max_proof_bytes
        self._max_jti = policy.max_jti_length
        self._max_depth = policy.max_json_depth
        self._window = policy.iat_window
        self._leeway = policy.iat_leeway
        self._replay_ttl = policy.replay_ttl
        # ath per access token: one token is presented many times.
        self._ath: dict[str, str] = {}

    def _parse_header(self, segment: str) -> PublicKey:
        try:
            header = parse_object(b64url_decode(segment), max_depth=self._max_depth)
        except (ValueError, JSONError) as exc:
            raise _fail("header_invalid") from exc
        typ = header.get("typ")
        # RFC 7515 section 4.1.9: media types compare case-insensitively and the
        # "application/" prefix may be omitted.
        if not isinstance(typ, str) or typ.lower().removeprefix("application/") != DPOP_TYP:
            raise _fail("typ_invalid")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise _fail("alg_not_allowed")
        if "crit" in header:
            # We implement no JWS extensions, so any critical one must be refused
            # (RFC 7515 section 4.1.11).
            raise _fail("crit_unsupported")
        if "jwk" not in header:
            raise _fail("jwk_missing")
        try:
            return import_public_jwk(
                header["jwk"],
                alg=alg,
                min_rsa_bits=self.policy.min_rsa_bits,
                max_rsa_bits=self.policy.max_rsa_bits,
            )
        except JWKError as exc:
            raise _fail(exc.reason) from exc

    def verify(
        self,
        proof: str,
        *,
        method: str,
        url: str,
        access_token: str | None,
        now: int,
        nonces: NonceSource | None = None,
    ) -> VerifiedProof:
        """Check ``proof`` for a request ``method url`` at time ``now`` (epoch seconds).

        :param url: the request URL as the client addressed it; query and fragment are
            ignored, scheme and host compared case-insensitively, default ports dropped.
        :param access_token: when given, ``ath`` must be its hash.
        :param nonces: when given, a server nonce is required (RFC 9449 section 9). A valid
            one relaxes the ``iat`` window to the nonce lifetime, since it proves freshness.
        :raises UseDPoPNonce: the nonce is missing, stale or foreign; carries a fresh one.
        :raises InvalidDPoPProof: with ``reason`` naming the failed check.
        """
        if len(proof) > self._max_bytes:
            raise _fail("proof_too_large", "The DPoP proof is too large.")
        if not proof.isascii():
            raise _fail("proof_malformed")
        segments = proof.split(".")
        if len(segments) != 3:
            raise _fail("proof_malformed")
        header_b64, payload_b64, signature_b64 = segments

        key = self._keys.get(header_b64)
        cache_after_signature = key is None and self._keys_max > 0
        if key is None:
            key = self._parse_header(header_b64)

        try:
            signature = b64url_decode(signature_b64)
        except ValueError as exc:
            raise _fail("proof_malformed") from exc
        signing_input = proof[: len(header_b64) + 1 + len(payload_b64)].encode("ascii")
        if not key.verify(signature, signing_input):
            raise _fail("signature_invalid")
        if cache_after_signature:
            if len(self._keys) >= self._keys_max:
                del self._keys[next(iter(self._keys))]
            self._keys[header_b64] = key

        try:
            claims = parse_object(b64url_decode(payload_b64), max_depth=self._max_depth)
        except (ValueError, JSONError) as exc:
            raise _fail("payload_invalid") from exc
        return self._check_claims(claims, key, method, url, access_token, now, nonces)

    def _check_claims(
        self,
        claims: dict[str, Any],
        key: PublicKey,
        method: str,
        url: str,
        access_token: str | None,
        now: int,
        nonces: NonceSource | None,
    ) -> VerifiedProof:
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise _fail("jti_missing")
        if len(jti) > self._max_jti:
            raise _fail("jti_too_long")
        iat = claims.get("iat")
        if type(iat) is not int and type(iat) is not float:  # not bool, a subclass of int
            raise _fail("iat_missing")
        htm = claims.get("htm")
        if not isinstance(htm, str):
            raise _fail("htm_missing")
        if htm != method:
            raise _fail("htm_mismatch", "The DPoP proof does not match the HTTP method.")
        htu = claims.get("htu")
        if not isinstance(htu, str):
            raise _fail("htu_missing")
        if htu != url:
            try:
                matched = normalize_htu(htu) == normalize_htu(url)
            except ValueError:
                matched = False
            if not matched:
                raise _fail("htu_mismatch", "The DPoP proof does not match the request URL.")
        nonce = claims.get("nonce")
        if "nonce" in claims and type(nonce) is not str:
            raise _fail("nonce_invalid")  # a present nonce must be a string; null is not
        jkt = key.jkt
        window, replay_ttl, next_nonce = self._window, self._replay_ttl, None
        if nonces is not None:
            # Before the iat check: a client with a skewed clock or a stale proof is told
            # to use a nonce rather than simply refused (RFC 9449 section 9).
            if nonce is None:
                raise UseDPoPNonce("nonce_missing", nonce=nonces.issue(jkt, now))
            status = nonces.check(nonce, jkt, now)
            if status == "invalid":
                raise UseDPoPNonce("nonce_invalid", nonce=nonces.issue(jkt, now))
            if status == "expiring":
                next_nonce = nonces.issue(jkt, now)
            # A valid nonce proves the proof is at most a nonce lifetime old.
            window = max(window, nonces.lifetime)
            replay_ttl = window + 2 * self._leeway
        if iat < now - window - self._leeway:
            raise _fail("iat_too_old", "The DPoP proof is outside the accepted time window.")
        if iat > now + self._leeway:
            raise _fail("iat_in_future", "The DPoP proof is outside the accepted time window.")
        if access_token is not None:
            ath = claims.get("ath")
            if not isinstance(ath, str):
                raise _fail("ath_missing")
            expected = self._ath.get(access_token)
            if expected is None:
                if len(self._ath) >= _ATH_CACHE_SIZE:
                    self._ath.clear()
                expected = self._ath[access_token] = compute_ath(access_token)
            # compare_digest takes ASCII str directly; a non-ASCII ath cannot match.
            if not ath.isascii() or not hmac.compare_digest(ath, expected):
                raise _fail("ath_mismatch", "The DPoP proof is not bound to the access token.")
        replay_key = hashlib.sha256(f"{jkt}:{jti}".encode()).hexdigest()
        return VerifiedProof(
            jkt, jti, int(iat), htm, htu, nonce, replay_key, replay_ttl, next_nonce
        )


def verify_proof(
    proof: str,
    *,
    method: str,
    url: str,
    access_token: str | None,
    now: int,
    policy: ProofPolicy | None = None,
    nonces: NonceSource | None = None,
) -> VerifiedProof:
    """One-shot :meth:`ProofVerifier.verify` with no key cache. Prefer a long-lived
    :class:`ProofVerifier` on a request path."""
    return ProofVerifier(policy, key_cache_size=0).verify(
        proof, method=method, url=url, access_token=access_token, now=now, nonces=nonces
    )
