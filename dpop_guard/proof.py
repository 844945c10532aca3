"""The DPoP proof verifier (RFC 9449 section 4.3) and its :class:`ProofPolicy`. Pure and
sans-IO.

No awaits, no clock reads, no network: the caller passes the request facts and ``now``.
The replay check is not done here (it needs a shared store); :class:`VerifiedProof`
carries the ``replay_key`` and ``replay_ttl`` the caller records.

Every rule a proof is held to lives in this file (the key's own rules in
:mod:`dpop_guard.jwk`, the JSON limits in :mod:`dpop_guard._json`), in this order,
cheapest and most structural first: size cap, three base64url segments, header is a
bounded JSON object, ``typ``, ``alg`` allow-list, ``crit``, ``jwk``, signature (all in
:meth:`ProofVerifier.verify` and ``_parse_header``), then the claims, each rule once in
:data:`CLAIM_RULES`, which every proof runs in full: claim types (``jti``, ``iat``),
``htm``, ``htu``, nonce, time (``iat`` window, ``nbf``, ``exp``), ``ath``. The
thumbprint is that of a key that has just verified the signature. Every member is
type-checked before it is used, and every refusal is an :class:`InvalidDPoPProof` (or
:class:`UseDPoPNonce`) whose ``reason`` is a :data:`~dpop_guard._reasons.ProofReason`.

Time, with ``now`` the whole second (the floor of the server clock), ``S`` the future skew
and ``W`` the past window (FAPI 2.0 Security Profile section 5.3.2.1):

- ``iat`` is accepted while ``now - W <= iat < now + S + 1``: the ``+ 1`` is the rest of
  the second ``now`` stands for, so a proof up to ``S`` seconds ahead of the true time is
  never refused, whatever its fraction;
- ``nbf``, when present, is refused from ``now + S + 1`` on, as ``iat`` is;
- ``exp``, when present, is refused once ``exp < now + 1``: part of the second ``now``
  stands for may already be past ``exp``;
- a valid server nonce widens ``W`` to the nonce lifetime (it proves freshness itself).

Server nonces are checked here when the caller passes a :class:`~dpop_guard.nonce.NonceSource`
(itself pure). Deliberately *not* done here: the ``jti`` replay check, and the binding of the
proof's key to the access token (the token's ``cnf.jkt`` comes from introspection).
"""

from __future__ import annotations

import hashlib
import hmac
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, AnyStr, Final, Literal, NamedTuple

from ._b64 import b64url_decode, b64url_decode_octets, b64url_encode
from ._bounded import MEMO_BUDGET, Memo
from ._digest import sha256
from ._json import MAX_DEPTH, JSONError, JSONLimits, parse_object
from ._reasons import ProofReason
from ._url import normalize_htu
from .errors import InvalidDPoPProof, InvalidRequest, UseDPoPNonce
from .jwk import (
    DEFAULT_MAX_RSA_BITS,
    DEFAULT_MIN_RSA_BITS,
    SUPPORTED_ALGORITHMS,
    JWKError,
    KeyLimits,
    PublicKey,
    import_public_jwk,
)
from .nonce import NonceSource

__all__ = [
    "DEFAULT_ALGORITHMS",
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_FUTURE_SKEW",
    "DPOP_TYP",
    "ProofPolicy",
    "ProofTimeRefused",
    "ProofVerifier",
    "VerifiedProof",
    "compute_ath",
    "select_proof",
    "verify_proof",
]

DPOP_TYP: Final = "dpop+jwt"
"""The proof's ``typ`` (RFC 9449 section 4.2), compared case-insensitively."""
_MEDIA_TYPE_PREFIX: Final = "application/"

# FAPI 2.0 Security Profile section 5.4: PS256, ES256 or EdDSA (Ed25519).
DEFAULT_ALGORITHMS: Final = ("ES256", "PS256", "EdDSA")
# FAPI 2.0 Security Profile section 5.3.2.1: accept iat and nbf 0 to 10 s in the future
# (the conformance suite sends +8 s), refuse more than 60 s.
DEFAULT_MAX_FUTURE_SKEW: Final = 10
# How old a proof's iat may be. RFC 9449 section 11.1 asks for a short window; peers use
# 25-300 s; the conformance suite sends -10 s. 60 s tolerates slow clients while keeping
# the replay store small.
DEFAULT_MAX_AGE: Final = 60
DEFAULT_MAX_PROOF_BYTES: Final = 8192
DEFAULT_MAX_JTI_LENGTH: Final = 256
DEFAULT_MAX_JSON_DEPTH: Final = MAX_DEPTH  # the one home: dpop_guard._json
# Configured windows beyond this are mistakes, and each second is a second of replay
# records to keep.
_MAX_CONFIGURED_SECONDS: Final = 3600
# RFC 7519 NumericDate bound for nbf and exp: the largest integer a double holds exactly,
# far beyond any real date (year 285 million), small enough for every consumer.
MAX_NUMERIC_DATE: Final = 2**53

# The wire texts (error_description) of the time refusals: what failed, never the
# server's time or the proof's values.
_TOO_OLD: Final = "The DPoP proof is too old."
_IN_FUTURE: Final = "The DPoP proof is issued in the future."
_NOT_YET_VALID: Final = "The DPoP proof is not yet valid."
_EXPIRED: Final = "The DPoP proof has expired."
_INVALID: Final = "The DPoP proof is not valid."


@dataclass(frozen=True, kw_only=True, slots=True)
class ProofPolicy:
    """What a DPoP proof must satisfy (RFC 9449 section 4.3, FAPI 2.0 Security Profile).

    :param algorithms: the ``alg`` allow-list, also advertised in ``algs``. ``EdDSA``
        also admits RFC 9864's ``Ed25519``. ``none`` and HMAC can never be listed.
    :param max_age: seconds a proof stays acceptable after its ``iat`` (the past window).
    :param max_future_skew: seconds a proof's ``iat`` or ``nbf`` may lie ahead of the
        server clock (client clocks run fast); FAPI 2.0 asks for at least 10.
    :param max_proof_bytes: the ``DPoP`` header is refused above this, before parsing.
    :param max_jti_length: ``jti`` longer than this is refused.
    :param max_json_depth: header and payload JSON nested deeper than this is refused.
    :param min_rsa_bits, max_rsa_bits: accepted RSA modulus sizes.
    :param rsa_exponent_65537_only: accept only RSA keys with ``e = 65537``; by default any
        odd ``3 <= e < 2**32`` is accepted (the bound keeps the cost of a proof bounded).
    :param allow_ed448: let ``EdDSA`` name Ed448 keys. FAPI 2.0 allows Ed25519 only.
    """

    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    max_age: int = DEFAULT_MAX_AGE
    max_future_skew: int = DEFAULT_MAX_FUTURE_SKEW
    max_proof_bytes: int = DEFAULT_MAX_PROOF_BYTES
    max_jti_length: int = DEFAULT_MAX_JTI_LENGTH
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH
    min_rsa_bits: int = DEFAULT_MIN_RSA_BITS
    max_rsa_bits: int = DEFAULT_MAX_RSA_BITS
    rsa_exponent_65537_only: bool = False
    allow_ed448: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.algorithms, str) or not self.algorithms:
            raise ValueError("algorithms must be a non-empty sequence of names")
        object.__setattr__(self, "algorithms", tuple(self.algorithms))
        unknown = [a for a in self.algorithms if a not in SUPPORTED_ALGORITHMS]
        if unknown:
            raise ValueError(
                f"algorithms: unsupported {unknown!r}; choose from {sorted(SUPPORTED_ALGORITHMS)}"
            )
        for name in ("max_age", "max_future_skew"):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= _MAX_CONFIGURED_SECONDS:
                raise ValueError(f"{name} must be whole seconds in 0..{_MAX_CONFIGURED_SECONDS}")
        if self.max_age == 0:
            raise ValueError("max_age must be positive")
        for name in ("max_proof_bytes", "max_jti_length", "max_json_depth"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not 1024 <= self.min_rsa_bits <= self.max_rsa_bits:
            raise ValueError("min_rsa_bits must be >= 1024 and <= max_rsa_bits")

    @property
    def accepted_algorithms(self) -> frozenset[str]:
        """The allow-list with ``Ed25519`` added wherever ``EdDSA`` is listed."""
        algs = set(self.algorithms)
        if "EdDSA" in algs:
            algs.add("Ed25519")
        return frozenset(algs)

    @property
    def key_limits(self) -> KeyLimits:
        """The bounds on the proof's key, for :func:`~dpop_guard.jwk.import_public_jwk`."""
        return KeyLimits(
            min_rsa_bits=self.min_rsa_bits,
            max_rsa_bits=self.max_rsa_bits,
            rsa_exponent_65537_only=self.rsa_exponent_65537_only,
            allow_ed448=self.allow_ed448,
        )

    def past_window(self, nonce_lifetime: int | None = None) -> int:
        """Seconds after its ``iat`` a proof is still accepted: ``max_age``, widened to
        the nonce lifetime when the proof carries a valid server nonce."""
        return self.max_age if nonce_lifetime is None else max(self.max_age, nonce_lifetime)

    def replay_ttl(self, nonce_lifetime: int | None = None) -> int:
        """Seconds a used proof must be remembered, counted from its first use.

        The one place this is derived. A proof used at whole second ``now`` has
        ``iat < now + S + 1``, so it is accepted up to the whole second ``iat + W <
        now + S + W + 1``, which lasts until ``now + S + W + 1``: the record must outlive
        that by the time of first use, at most ``S + W + 1`` seconds (``W`` the
        :meth:`past_window`, ``S`` the future skew, ``1`` the whole-second rounding).
        """
        return self.past_window(nonce_lifetime) + self.max_future_skew + 1


class ProofTimeRefused(InvalidDPoPProof):
    """An :class:`InvalidDPoPProof` refused for its time (``iat``, ``nbf`` or ``exp``).

    The wire text says only what failed. ``skew`` is for logs: the claim's value minus the
    server's ``now``, in seconds (positive: ahead of the server clock).
    """

    def __init__(
        self,
        reason: ProofReason,
        description: str,
        *,
        claim: Literal["iat", "nbf", "exp"],
        skew: float,
    ) -> None:
        super().__init__(reason, description)
        self.claim = claim
        self.skew = skew


def compute_ath(access_token: str) -> str:
    """``ath``: base64url(SHA-256(ASCII(access_token))), unpadded (RFC 9449 section 4.2).

    The example of RFC 9449 section 7.1:

    >>> compute_ath("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU")
    'fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo'
    """
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
    replay_ttl: int
    """Seconds the replay record must live from the proof's first use: every second at
    which any verifier with this policy could accept it again (see
    :meth:`ProofPolicy.replay_ttl`, the one place it is derived)."""
    next_nonce: str | None = None
    """A newer server nonce to send in ``DPoP-Nonce`` with the response, when the one used
    is about to expire."""

    @property
    def replay_key(self) -> str:
        """Hex SHA-256 of ``jkt:jti``: the one key under which every replay store records
        the proof (fixed length, and the same in every version of a fleet)."""
        return sha256(f"{self.jkt}:{self.jti}".encode()).hexdigest()


_DOT: Final = ord(".")  # ``int in bytes`` is a memchr; ``bytes in bytes`` first tries int()


def select_proof(values: Sequence[AnyStr]) -> AnyStr:
    """Pick the single ``DPoP`` header value (RFC 9449 section 4.3 step 1), as text or as
    octets.

    :raises InvalidDPoPProof: no ``DPoP`` header.
    :raises InvalidRequest: more than one.
    """
    if not values:
        raise InvalidDPoPProof("dpop_header_missing", "A DPoP proof is required.")
    if len(values) > 1:
        raise InvalidRequest("dpop_header_multiple", "Exactly one DPoP header is allowed.")
    return values[0]


def _fail(reason: ProofReason, description: str = _INVALID) -> InvalidDPoPProof:
    return InvalidDPoPProof(reason, description)


def _refusal(reason: ProofReason, data: bytes) -> InvalidDPoPProof:
    """``reason``'s refusal of the proof ``data``, or ``proof_malformed`` when it is not
    ASCII (octets are checked for that only once refused: see ProofVerifier.verify)."""
    return _fail(reason if data.isascii() else "proof_malformed")


def _no_compute(header: bytes) -> PublicKey:
    raise AssertionError("header keys are put after their signature verified")  # pragma: no cover


def _key_cost(header: bytes, key: PublicKey) -> int:
    # The header's octets; the key object is small and counted in ENTRY_OVERHEAD.
    return sys.getsizeof(header)


def _ath_cost(token: str, ath: str) -> int:
    return sys.getsizeof(token) + sys.getsizeof(ath)


class ProofVerifier:
    """Verifies DPoP proofs against one :class:`ProofPolicy`.

    It keeps a bounded cache of parsed headers keyed by the header segment exactly as
    sent: one client key always yields the same header bytes, so the JSON parse, the
    header checks, the key import and the thumbprint run once per key. Only headers whose
    key has verified a signature are cached.

    >>> from dpop_guard.testing import ProofSigner, make_proof
    >>> signer, now = ProofSigner.generate("ES256"), 1_700_000_000
    >>> dpop_header = make_proof(signer, htu="https://api.example.com/accounts",
    ...     access_token="an-access-token", iat=now)
    >>> verifier = ProofVerifier(ProofPolicy())
    >>> proof = verifier.verify(dpop_header, method="GET",
    ...     url="https://api.example.com/accounts", access_token="an-access-token", now=now)
    >>> proof.jkt == signer.jkt, proof.htm
    (True, 'GET')
    """

    def __init__(
        self, policy: ProofPolicy | None = None, *, memo_budget: int = MEMO_BUDGET
    ) -> None:
        self.policy = policy = policy or ProofPolicy()
        self._algorithms = policy.accepted_algorithms
        self._limits = policy.key_limits
        # Each verified header's key, and each access token's ath: a client presents the
        # same ones many times. Both are bounded in bytes (_bounded.Memo): a header or a
        # token over MAX_REMEMBERED octets is handled per request and never kept.
        self._keys: Memo[bytes, PublicKey] = Memo(_no_compute, _key_cost, budget=memo_budget)
        self._max_bytes = policy.max_proof_bytes
        self._json_limits = JSONLimits(max_depth=policy.max_json_depth)
        self._ath: Memo[str, str] = Memo(compute_ath, _ath_cost, budget=memo_budget)
        # The policy is immutable: the window and record lifetime without a nonce are
        # fixed (a nonce may widen them; they are then derived per proof).
        self._window = policy.past_window(None)
        self._replay_ttl = policy.replay_ttl(None)
        # Policy numbers the claim rules read on every proof, copied here once: an
        # attribute of the verifier is one lookup, ``verifier.policy.x`` two.
        self._max_jti_length = policy.max_jti_length
        self._future_bound = policy.max_future_skew + 1  # iat and nbf: < now + S + 1

    def verify(
        self,
        proof: str | bytes,
        *,
        method: str,
        url: str,
        access_token: str | None,
        now: int,
        nonces: NonceSource | None = None,
    ) -> VerifiedProof:
        """Check ``proof`` for a request ``method url`` at time ``now`` (whole epoch
        seconds: the floor of the clock).

        :param proof: the ``DPoP`` header value, as text or as the header's own octets
            (an ASCII-only value either way; anything else is ``proof_malformed``).
        :param url: the request URL as the client addressed it; query and fragment are
            ignored, scheme and host compared case-insensitively, default ports dropped.
        :param access_token: when given, ``ath`` must be its hash.
        :param nonces: when given, a server nonce is required (RFC 9449 section 9). A valid
            one widens the ``iat`` window to the nonce lifetime, since it proves freshness.
        :raises UseDPoPNonce: the nonce is missing, stale or foreign; carries a fresh one.
        :raises ProofTimeRefused: ``iat``, ``nbf`` or ``exp`` refuses the proof at ``now``.
        :raises InvalidDPoPProof: with ``reason`` naming the failed check.
        """
        # The size cap, then the three segments of the compact serialisation, split as
        # octets (each step a memchr; str.split walks the text in C and cost 4,000
        # instructions): the signing input and the signature octets need no other copy.
        if len(proof) > self._max_bytes:
            raise _fail("proof_too_large", "The DPoP proof is too large.")
        # Anything but ASCII is proof_malformed. Text is checked here (a flag on the str);
        # octets are not scanned up front: a proof that passes is base64url and dots only,
        # so only a refusal looks (_refusal), and names proof_malformed for a non-ASCII
        # value whatever check refused it (about 500 instructions fewer per proof).
        if isinstance(proof, bytes):
            # The DPoP header's own octets, as the middleware passes them: no text to
            # decode and encode again, two copies of the whole proof fewer.
            data = proof
        elif proof.isascii():
            data = proof.encode()
        else:
            raise _fail("proof_malformed")
        signing_input, _, signature_b64 = data.rpartition(b".")
        header_b64, dot, payload_b64 = signing_input.partition(b".")
        if not dot or _DOT in payload_b64:  # not exactly three segments
            raise _fail("proof_malformed")

        # The header: parsed, checked and its key imported once per distinct header.
        key = self._keys.get(header_b64)
        cache_after_signature = key is None
        if key is None:
            if not data.isascii():  # only ASCII headers are parsed (and cached)
                raise _fail("proof_malformed")
            key = self._parse_header(header_b64.decode())
        try:
            signature = b64url_decode_octets(signature_b64)
        except ValueError as exc:
            raise _fail("proof_malformed") from exc
        if not key.verify(signature, signing_input):
            raise _refusal("signature_invalid", data)
        if cache_after_signature:  # only a header whose key just verified a signature
            self._keys.put(header_b64, key, len(header_b64))

        try:
            claims = parse_object(b64url_decode_octets(payload_b64), self._json_limits)
        except (ValueError, JSONError) as exc:
            raise _refusal("payload_invalid", data) from exc

        # Every proof goes through every claim rule, in CLAIM_RULES' order. The request's
        # facts are passed as plain arguments: a per-proof object to carry them cost a
        # Python __init__ to build and an attribute lookup per read. A rule returns a
        # nonce to send next, or None.
        jkt = key.jkt
        next_nonce = None
        for rule in CLAIM_RULES:
            issued = rule(self, claims, method, url, access_token, now, nonces, jkt)
            if issued is not None:
                next_nonce = issued
        iat = claims["iat"]
        # _make, the named tuple's own constructor from a sequence: calling the class
        # goes through type.__call__ and a Python __new__ (3,000 instructions more).
        return VerifiedProof._make(
            (
                jkt,
                claims["jti"],
                iat if type(iat) is int else int(iat),
                claims["htm"],
                claims["htu"],
                claims.get("nonce"),  # a string or absent: _rule_nonce has checked it
                self._replay_ttl if nonces is None else self.policy.replay_ttl(nonces.lifetime),
                next_nonce,
            )
        )

    def _parse_header(self, segment: str) -> PublicKey:
        """The JOSE header: ``typ``, ``alg``, ``crit``, then the ``jwk`` import."""
        try:
            header = parse_object(b64url_decode(segment), self._json_limits)
        except (ValueError, JSONError) as exc:
            raise _fail("header_invalid") from exc
        typ = header.get("typ")
        # RFC 7515 section 4.1.9: media types compare case-insensitively and the
        # "application/" prefix may be omitted.
        if not isinstance(typ, str) or typ.lower().removeprefix(_MEDIA_TYPE_PREFIX) != DPOP_TYP:
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
            return import_public_jwk(header["jwk"], alg=alg, limits=self._limits)
        except JWKError as exc:
            raise _fail(exc.reason) from exc

    def _ath_of(self, access_token: str) -> str:
        """:func:`compute_ath` of ``access_token``, remembered (bounded in bytes)."""
        return self._ath.remember(access_token, len(access_token))


# The claim rules (RFC 9449 sections 4.2 and 4.3 steps 8-12, FAPI 2.0 section 5.3.2.1).
# Each reads one proof's claims against one request and either returns or raises its
# refusal; CLAIM_RULES runs them in order, and the first that refuses names the reason.
# Every rule takes the same arguments: the verifier (its policy numbers), the proof's
# claims, and the request they must match: its method and URL, the access token (or
# None), the time, the nonce source (or None) and the thumbprint of the key that
# verified the proof's signature.


def _rule_types(
    verifier: ProofVerifier,
    claims: dict[str, Any],
    method: str,
    url: str,
    access_token: str | None,
    now: int,
    nonces: NonceSource | None,
    jkt: str,
) -> None:
    """``jti`` is a non-empty string, at most ``max_jti_length`` long; ``iat`` is a number
    (RFC 9449 section 4.2; its window is :func:`_rule_time`'s)."""
    jti = claims.get("jti")
    if type(jti) is not str or not jti:  # str subclasses cannot come out of JSON
        raise _fail("jti_missing")
    if len(jti) > verifier._max_jti_length:
        raise _fail("jti_too_long")
    iat = claims.get("iat")
    if type(iat) is not int and type(iat) is not float:  # not bool, a subclass of int
        raise _fail("iat_missing")


def _rule_request(
    verifier: ProofVerifier,
    claims: dict[str, Any],
    method: str,
    url: str,
    access_token: str | None,
    now: int,
    nonces: NonceSource | None,
    jkt: str,
) -> None:
    """``htm`` is the request's method, exactly; ``htu`` is its URL without query and
    fragment, scheme and host compared case-insensitively, default ports dropped (RFC 9449
    section 4.3 steps 8 and 9, in that order)."""
    htm = claims.get("htm")
    if type(htm) is not str:
        raise _fail("htm_missing")
    if htm != method:
        raise _fail("htm_mismatch", "The DPoP proof does not match the HTTP method.")
    htu = claims.get("htu")
    if type(htu) is not str:
        raise _fail("htu_missing")
    if htu != url:
        try:
            matched = normalize_htu(htu) == normalize_htu(url)
        except ValueError:
            matched = False
        if not matched:
            raise _fail("htu_mismatch", "The DPoP proof does not match the request URL.")


def _rule_nonce(
    verifier: ProofVerifier,
    claims: dict[str, Any],
    method: str,
    url: str,
    access_token: str | None,
    now: int,
    nonces: NonceSource | None,
    jkt: str,
) -> str | None:
    """A present ``nonce`` is a string; with a nonce source, the proof carries one of its
    valid nonces (RFC 9449 section 9). Returns a fresh nonce to send next when the one
    used is about to expire. (A valid nonce also widens the past window and the replay
    record's lifetime: :func:`_rule_time` and :meth:`ProofVerifier.verify` ask the policy.)

    Checked before the time: a client with a skewed clock or a stale proof is told to use
    a nonce rather than simply refused."""
    if nonces is None and "nonce" not in claims:
        return None
    nonce = claims.get("nonce")
    if "nonce" in claims and type(nonce) is not str:
        raise _fail("nonce_invalid")  # a present nonce must be a string; null is not
    if nonces is None:
        return None
    if nonce is None:
        raise UseDPoPNonce("nonce_missing", nonce=nonces.issue(jkt, now))
    status = nonces.check(nonce, jkt, now)
    if status == "invalid":
        raise UseDPoPNonce("nonce_invalid", nonce=nonces.issue(jkt, now))
    if status == "expiring":
        return nonces.issue(jkt, now)
    return None


def _rule_time(
    verifier: ProofVerifier,
    claims: dict[str, Any],
    method: str,
    url: str,
    access_token: str | None,
    now: int,
    nonces: NonceSource | None,
    jkt: str,
) -> None:
    """``iat`` within ``[now - window, now + skew + 1)``; ``nbf`` and ``exp``, when
    present, NumericDates that hold at ``now`` (see the module docstring)."""
    iat = claims["iat"]
    # With a nonce source, _rule_nonce has passed: the proof carries a valid nonce, which
    # proves it is at most a nonce lifetime old.
    window = verifier._window if nonces is None else verifier.policy.past_window(nonces.lifetime)
    future_bound = now + verifier._future_bound
    # Most proofs carry neither: no call then.
    nbf = _numeric_date(claims, "nbf", "nbf_invalid") if "nbf" in claims else None
    exp = _numeric_date(claims, "exp", "exp_invalid") if "exp" in claims else None
    if iat < now - window:
        raise ProofTimeRefused("iat_too_old", _TOO_OLD, claim="iat", skew=iat - now)
    if iat >= future_bound:
        raise ProofTimeRefused("iat_in_future", _IN_FUTURE, claim="iat", skew=iat - now)
    if nbf is not None and nbf >= future_bound:
        raise ProofTimeRefused("nbf_in_future", _NOT_YET_VALID, claim="nbf", skew=nbf - now)
    if exp is not None and exp < now + 1:
        raise ProofTimeRefused("proof_expired", _EXPIRED, claim="exp", skew=exp - now)


def _rule_ath(
    verifier: ProofVerifier,
    claims: dict[str, Any],
    method: str,
    url: str,
    access_token: str | None,
    now: int,
    nonces: NonceSource | None,
    jkt: str,
) -> None:
    """With an access token, ``ath`` is its hash (step 11)."""
    if access_token is None:
        return
    ath = claims.get("ath")
    if type(ath) is not str:
        raise _fail("ath_missing")
    # compare_digest takes ASCII str directly; a non-ASCII ath cannot match.
    expected = verifier._ath.get(access_token) or verifier._ath_of(access_token)
    if not ath.isascii() or not hmac.compare_digest(ath, expected):
        raise _fail("ath_mismatch", "The DPoP proof is not bound to the access token.")


_ClaimRule = Callable[
    [ProofVerifier, dict[str, Any], str, str, str | None, int, NonceSource | None, str],
    str | None,
]

CLAIM_RULES: Final[tuple[_ClaimRule, ...]] = (
    _rule_types,
    _rule_request,
    _rule_nonce,
    _rule_time,
    _rule_ath,
)
"""Every claim rule, in the order RFC 9449 section 4.3 checks them: claim types, the
request, the nonce, time, ``ath``. Each reads one proof's claims against one request
and either returns (a nonce to send next, or None) or raises its refusal."""


def _numeric_date(claims: dict[str, Any], name: str, reason: ProofReason) -> float | None:
    """An optional RFC 7519 NumericDate: absent, or a finite number in range."""
    if name not in claims:
        return None
    value = claims[name]
    # JSON numbers here are always finite (the parser refuses NaN and overflow).
    if (type(value) is not int and type(value) is not float) or not (
        0 <= value <= MAX_NUMERIC_DATE
    ):
        raise _fail(reason)
    return value


def verify_proof(
    proof: str | bytes,
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
    return ProofVerifier(policy, memo_budget=0).verify(
        proof, method=method, url=url, access_token=access_token, now=now, nonces=nonces
    )
