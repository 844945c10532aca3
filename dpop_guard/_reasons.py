"""The internal reasons the proof core gives for a refusal, as closed sets mypy checks.

A reason is for logs, metrics and tests; it never reaches the client (the wire carries the
error code and a fixed description). Each one names the check that failed, so a test can
assert exactly which rule refused a proof.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["JSON_REASONS", "JWK_REASONS", "PROOF_REASONS", "JSONReason", "JWKReason", "ProofReason"]

JSONReason = Literal[
    "not_json",
    "not_object",
    "duplicate_member",
    "non_standard_number",
    "lone_surrogate",
    "too_deep",
]
"""Why :func:`dpop_guard._json.parse_object` refused a document."""

JWKReason = Literal[
    "jwk_not_object",
    "jwk_symmetric",
    "jwk_private",
    "jwk_kty_unsupported",
    "jwk_alg_mismatch",
    "jwk_use_not_sig",
    "jwk_key_ops",
    "jwk_curve_mismatch",
    "jwk_curve_not_allowed",
    "jwk_invalid",
    "jwk_rsa_size",
    "jwk_rsa_exponent",
]
"""Why :func:`dpop_guard.jwk.import_public_jwk` refused the ``jwk`` header."""

ProofReason = (
    Literal[
        # the DPoP header field itself (RFC 9449 section 4.3 steps 1-2)
        "dpop_header_missing",
        "dpop_header_multiple",
        "proof_too_large",
        "proof_malformed",
        # the JOSE header (steps 4-7)
        "header_invalid",
        "typ_invalid",
        "alg_not_allowed",
        "crit_unsupported",
        "jwk_missing",
        # the signature and the claims (steps 3, 8-12)
        "signature_invalid",
        "payload_invalid",
        "jti_missing",
        "jti_too_long",
        "iat_missing",
        "htm_missing",
        "htm_mismatch",
        "htu_missing",
        "htu_mismatch",
        "nonce_invalid",
        "nonce_missing",
        "ath_missing",
        "ath_mismatch",
        # time (FAPI 2.0 Security Profile section 5.3.2.1 and RFC 7519 section 4.1)
        "iat_too_old",
        "iat_in_future",
        "nbf_invalid",
        "nbf_in_future",
        "exp_invalid",
        "proof_expired",
    ]
    | JWKReason
)
"""Every reason :mod:`dpop_guard.proof` gives, the ``jwk`` ones included."""

JSON_REASONS: frozenset[str] = frozenset(get_args(JSONReason))
JWK_REASONS: frozenset[str] = frozenset(get_args(JWKReason))
PROOF_REASONS: frozenset[str] = frozenset(
    r for part in get_args(ProofReason) for r in (get_args(part) or (part,))
)
