"""The exception tree. Each class carries its wire code and HTTP status.

::

    DPoPGuardError                    base, never raised itself
      AuthenticationRequired   --     401  no credentials at all (RFC 6750 3.1: no code)
      InvalidRequest   "invalid_request"     400
      InvalidToken     "invalid_token"       401
      InsufficientScope "insufficient_scope" 403  .scope = the required scopes
      InvalidDPoPProof "invalid_dpop_proof"  401
      UseDPoPNonce     "use_dpop_nonce"      401  .nonce = the fresh nonce
      InsufficientUserAuthentication
               "insufficient_user_authentication" 401  .acr_values, .max_age (RFC 9470)
      ServiceUnavailable                     503  our fault, not the client's
        IntrospectionUnavailable             503  Authlete unreachable, failing or garbled
        ReplayStoreUnavailable               503  the replay store failed or is full

``reason`` is for logs and tests: a stable snake_case word such as ``htu_mismatch``, one of
the closed set :data:`dpop_guard._reasons.Reason` (so mypy rejects a misspelt one). The
client only ever sees ``error`` (the wire code) and ``description`` (short, stable, no
claim values, no token). ``challenge_params`` carries extra challenge attributes an
upstream (Authlete) supplied, such as ``error_uri``. The mapping to HTTP lives in
:mod:`dpop_guard.challenges` alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar

from ._reasons import Reason

__all__ = [
    "INSUFFICIENT_SCOPE",
    "INSUFFICIENT_USER_AUTHENTICATION",
    "INVALID_DPOP_PROOF",
    "INVALID_REQUEST",
    "INVALID_TOKEN",
    "USE_DPOP_NONCE",
    "AuthenticationRequired",
    "DPoPGuardError",
    "InsufficientScope",
    "InsufficientUserAuthentication",
    "IntrospectionUnavailable",
    "InvalidDPoPProof",
    "InvalidRequest",
    "InvalidToken",
    "ReplayStoreUnavailable",
    "ServiceUnavailable",
    "UseDPoPNonce",
]

INVALID_REQUEST = "invalid_request"
INVALID_TOKEN = "invalid_token"  # noqa: S105 - an error code, not a secret
INSUFFICIENT_SCOPE = "insufficient_scope"
INVALID_DPOP_PROOF = "invalid_dpop_proof"
USE_DPOP_NONCE = "use_dpop_nonce"
INSUFFICIENT_USER_AUTHENTICATION = "insufficient_user_authentication"

_EMPTY: Mapping[str, str] = MappingProxyType({})


class DPoPGuardError(Exception):
    """Base class of every rejection. Never raised itself."""

    error: ClassVar[str | None] = None
    status: int = 401
    default_description: ClassVar[str] = "The request could not be authorized."

    def __init__(
        self,
        reason: Reason,
        description: str | None = None,
        *,
        status: int | None = None,
        challenge_params: Mapping[str, str] | None = None,
    ) -> None:
        self.reason: Reason = reason
        self.description = description or self.default_description
        if status is not None:
            self.status = status
        self.challenge_params = (
            MappingProxyType(dict(challenge_params)) if challenge_params else _EMPTY
        )
        super().__init__(f"{reason}: {self.description}")


class AuthenticationRequired(DPoPGuardError):
    """No usable credentials were sent: the challenge carries no error code."""

    default_description = "Authentication with a DPoP-bound access token is required."


class InvalidRequest(DPoPGuardError):
    """The request is malformed (RFC 6750 section 3.1)."""

    error = INVALID_REQUEST
    status = 400
    default_description = "The request is malformed."


class InvalidToken(DPoPGuardError):
    """The access token is unknown, expired, revoked, malformed or not sender-constrained."""

    error = INVALID_TOKEN
    status = 401
    default_description = "The access token is not valid."


class InsufficientScope(DPoPGuardError):
    """The token does not cover the scopes the route requires."""

    error = INSUFFICIENT_SCOPE
    status = 403
    default_description = "The access token does not cover the required scope."

    def __init__(
        self,
        reason: Reason,
        description: str | None = None,
        *,
        scope: str,
        status: int | None = None,
        challenge_params: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(reason, description, status=status, challenge_params=challenge_params)
        self.scope = scope


class InsufficientUserAuthentication(DPoPGuardError):
    """The user authenticated too weakly or too long ago for the route (RFC 9470 step-up).

    ``acr_values`` (space-separated, possibly empty) and ``max_age`` (or ``None``) are the
    route's requirement; they go into the challenge so the client can ask the authorization
    server for a stronger or fresher authentication.
    """

    error = INSUFFICIENT_USER_AUTHENTICATION
    status = 401
    default_description = "A stronger or more recent user authentication is required."

    def __init__(
        self,
        reason: Reason,
        description: str | None = None,
        *,
        acr_values: tuple[str, ...] = (),
        max_age: int | None = None,
    ) -> None:
        super().__init__(reason, description)
        self.acr_values = tuple(acr_values)
        self.max_age = max_age


class InvalidDPoPProof(DPoPGuardError):
    """The DPoP proof is missing, malformed, or fails a check of RFC 9449 section 4.3."""

    error = INVALID_DPOP_PROOF
    status = 401
    default_description = "The DPoP proof is not valid."


class UseDPoPNonce(DPoPGuardError):
    """A server nonce is required (RFC 9449 section 9); ``nonce`` goes in ``DPoP-Nonce``."""

    error = USE_DPOP_NONCE
    status = 401
    default_description = "A DPoP nonce issued by this server is required."

    def __init__(self, reason: Reason, description: str | None = None, *, nonce: str) -> None:
        super().__init__(reason, description)
        self.nonce = nonce


class ServiceUnavailable(DPoPGuardError):
    """A dependency failed. Fail closed: 503, no challenge, nothing internal in the body."""

    status = 503
    default_description = "The service is temporarily unavailable."
    retry_after: ClassVar[int] = 1


class IntrospectionUnavailable(ServiceUnavailable):
    """The introspection endpoint could not be reached or gave no usable answer."""

    upstream_status: int | None = None
    """The HTTP status the endpoint answered with, when the outage is an answer
    (``*_credentials_refused``, ``*_server_error``, ``*_http_error``; logs only)."""
    upstream_url: str | None = None
    """The URL called, when the outage came from a call (logs only; it holds no secret)."""


class ReplayStoreUnavailable(ServiceUnavailable):
    """The replay store failed, timed out, or is full."""
