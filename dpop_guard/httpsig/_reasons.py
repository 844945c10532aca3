"""The internal reasons of every HTTP message signature refusal, and the one exception.

A reason names the check that failed, for logs, metrics and tests; it never reaches the
client, which sees the error code and a fixed description. This module is the package's
only home for both, kept apart from :mod:`dpop_guard._reasons` so that the signature
layer can grow without touching the DPoP guard's closed set.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

__all__ = ["SIGNATURE_REASONS", "HTTPSignatureError", "SignatureReason"]

SignatureReason = Literal[
    # the fields themselves (RFC 9421 section 4, RFC 8941/9651)
    "signature_missing",
    "signature_field_too_large",
    "signature_malformed",
    "signature_too_many",
    "signature_label_unpaired",
    "signature_not_fapi",
    "signature_ambiguous",
    # the covered components (RFC 9421 section 2, FAPI HTTP Signatures 5.3.1.2)
    "signature_components_too_many",
    "signature_component_invalid",
    "signature_component_duplicate",
    "signature_component_unsupported",
    "signature_component_absent",
    "signature_component_required",
    # the signature parameters (RFC 9421 section 2.3)
    "signature_parameter_invalid",
    "signature_created_missing",
    "signature_too_old",
    "signature_created_in_future",
    "signature_expired",
    "signature_keyid_missing",
    "signature_key_unknown",
    "signature_alg_mismatch",
    "signature_invalid",
    "signature_replayed",
    # the body (RFC 9530)
    "content_digest_malformed",
    "content_digest_unsupported",
    "content_digest_mismatch",
    "content_digest_not_covered",
    "body_too_large",
    # the request itself (400)
    "request_invalid",
    # outages: the client is not at fault
    "key_source_unavailable",
    "replay_store_unavailable",
    # a response that cannot be signed within its bound (our fault)
    "response_too_large_to_sign",
    "response_not_signable",
]
"""Why a signed request was refused or a response could not be signed."""

SIGNATURE_REASONS: Final = frozenset(get_args(SignatureReason))

_WIRE: Final[dict[int, tuple[str, str]]] = {
    400: ("invalid_request", "The request is not valid."),
    401: ("invalid_signature", "The HTTP message signature is missing or not valid."),
    413: ("invalid_request", "The request body is larger than this resource accepts."),
    500: ("server_error", "The response could not be signed."),
    503: ("temporarily_unavailable", "The signature cannot be checked right now."),
}


class HTTPSignatureError(Exception):
    """A signed message was refused (401, 413) or could not be handled (500, 503).

    :param reason: the failing check, one of :data:`SignatureReason`.
    :param status: the HTTP status; 401 unless the reason is not the client's signature.
    """

    def __init__(self, reason: SignatureReason, *, status: int = 401) -> None:
        self.reason: SignatureReason = reason
        self.status = status
        self.error, self.description = _WIRE[status]
        super().__init__(f"{reason}: {self.description}")
