"""The internal reasons for every refusal and outage, as closed sets mypy checks.

A reason is for logs, metrics and tests; it never reaches the client (the wire carries the
error code and a fixed description). Each one names the check that failed, so a test can
assert exactly which rule refused a request. :attr:`dpop_guard.errors.DPoPGuardError.reason`
is a :data:`Reason`, so a misspelt reason at a raise site fails ``mypy --strict``.

A reason is a fixed word, never built from what a peer sent: an upstream's HTTP status is a
class (``authlete_credentials_refused`` for 401/403, ``authlete_server_error`` for 5xx,
``authlete_http_error`` otherwise; ``introspection_*`` alike) with the status logged beside it
(``dpop_guard_upstream_status``) and kept on
:attr:`dpop_guard.errors.IntrospectionUnavailable.upstream_status`, so metrics labelled by
reason stay bounded.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "INTROSPECTION_REASONS",
    "JSON_REASONS",
    "JWK_REASONS",
    "PROOF_REASONS",
    "REASONS",
    "ForwardAuthReason",
    "IntrospectionReason",
    "JSONReason",
    "JWKReason",
    "JWTReason",
    "MTLSReason",
    "Outage",
    "ProofReason",
    "ProxyReason",
    "Reason",
    "ReplayReason",
    "RequestReason",
    "ServiceReason",
    "StepUpReason",
    "TokenReason",
    "Upstream",
]

JSONReason = Literal[
    "not_json",
    "not_object",
    "duplicate_member",
    "non_standard_number",
    "lone_surrogate",
    "too_deep",
    # refused before parsing, by counting octets (limits in dpop_guard._json)
    "too_many_containers",
    "too_many_values",
    "number_too_long",
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
    "jwk_small_order",
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

RequestReason = Literal[
    # the Authorization header (RFC 6750 section 2.1, RFC 9449 section 7.1)
    "authorization_missing",
    "authorization_multiple",
    "authorization_scheme_unsupported",
    "bearer_with_dpop_proof",
    # the request target and Host (RFC 9110 section 7.2)
    "path_control_character",
    "request_target_invalid",
    "host_invalid",
    "host_multiple",
    # an endpoint decorator found no credentials (the middleware is missing or the path
    # is public)
    "not_authenticated",
]
"""Why the request itself was refused, before any token was looked at."""

TokenReason = Literal[
    "token_missing",
    "token_too_long",
    "token_malformed",
    "token_expired",
    # sender constraint (RFC 9449 sections 6 and 7.1)
    "token_not_bound",
    "bearer_scheme_refused",
    "bound_token_as_bearer",
    "jkt_mismatch",
    "scope_missing",
]
"""Why the access token, its binding or its scopes were refused."""

JWTReason = Literal[
    "jwt_malformed",
    "jwt_typ",
    "jwt_alg",
    "jwt_unknown_key",
    "jwt_signature",
    "jwt_issuer",
    "jwt_audience",
    "jwt_expired",
    "jwt_not_yet_valid",
    "jwt_claims",
]
"""Why :mod:`dpop_guard.introspection.jwt` refused a JWT access token (RFC 9068)."""

Upstream = Literal["authlete", "introspection"]
"""The prefix of an introspection endpoint's reasons: Authlete's API, or an RFC 7662
endpoint."""

Outage = Literal[
    "dns",
    "unreachable",
    "tls",
    "proxy",
    "timeout",
    "transport_error",
    "credentials_refused",
    "server_error",
    "http_error",
    "bad_response",
]
"""What went wrong on the way to an upstream; ``<upstream>_<outage>`` is the reason. The
classification has one home, :class:`dpop_guard.introspection._http.UpstreamCause`: the
name did not resolve; the connection was refused or the host unreachable; the TLS handshake
or certificate failed; the outbound proxy failed or refused the tunnel; no answer in time;
a garbled or cut exchange; 401/403 (the service's credentials refused); 5xx; another status;
a 200 whose body is not a JSON object."""

IntrospectionReason = Literal[
    # outages (503), shared by every upstream: <upstream>_<outage>
    "authlete_dns",
    "authlete_unreachable",
    "authlete_tls",
    "authlete_proxy",
    "authlete_timeout",
    "authlete_transport_error",
    "authlete_credentials_refused",
    "authlete_server_error",
    "authlete_http_error",
    "authlete_bad_response",
    "introspection_dns",
    "introspection_unreachable",
    "introspection_tls",
    "introspection_proxy",
    "introspection_timeout",
    "introspection_transport_error",
    "introspection_credentials_refused",
    "introspection_server_error",
    "introspection_http_error",
    "introspection_bad_response",
    "authlete_circuit_open",
    "introspection_circuit_open",
    # outages particular to Authlete's /auth/introspection
    "authlete_internal_error",
    "authlete_unknown_action",
    "authlete_probe_inconclusive",
    # more proof keys than a token's bound have calls in flight for one token (503, at
    # once, never queued: see dpop_guard.introspection.cached)
    "introspection_token_contested",
    # the JWKS of a JWT access token issuer could not be fetched
    "jwks_unavailable",
    # Authlete's refusals: its action, in lower case
    "authlete_bad_request",
    "authlete_unauthorized",
    "authlete_forbidden",
    # Authlete's refusals we tell apart: a token for another API (RFC 8707), a step-up
    # shortfall (RFC 9470), a proof without Authlete's current DPoP nonce
    "authlete_resource_mismatch",
    "authlete_insufficient_user_authentication",
    "authlete_use_dpop_nonce",
    # an RFC 7662 answer that refuses the token
    "introspection_inactive",
    "introspection_audience",
    # RFC 9701 signed answers, required but not given or not valid: the authorization
    # server's side failing (503), never the client's (dpop_guard.introspection._signed)
    "introspection_unsigned",
    "introspection_jwt_too_large",
    "introspection_jwt_malformed",
    "introspection_jwt_typ",
    "introspection_jwt_alg",
    "introspection_jwt_unknown_key",
    "introspection_jwt_signature",
    "introspection_jwt_issuer",
    "introspection_jwt_audience",
    "introspection_jwt_iat",
    "introspection_jwt_expired",
    "introspection_jwt_content",
]
"""Why an introspector refused a token, or could not ask (the JWKS fetch included)."""

ReplayReason = Literal[
    "jti_replayed",
    "replay_state_uncertain",
    "replay_store_error",
    "replay_store_full",
    "replay_store_unsafe",
]
"""Why the replay check (:class:`dpop_guard.replay._guard.ReplayGuard`) refused a proof."""

ProxyReason = Literal["proxy_header_malformed", "proxy_header_too_large"]
"""Why a trusted proxy's ``Forwarded``/``X-Forwarded-*`` header was refused."""

MTLSReason = Literal[
    "client_cert_malformed",
    "client_cert_unverified",
    "certificate_missing",
    "certificate_mismatch",
    "token_not_certificate_bound",
]
"""Why a client certificate (RFC 8705) could not be used, or did not bind the token."""

StepUpReason = Literal["acr_not_satisfied", "auth_time_missing", "auth_too_old"]
"""Why the user's authentication falls short of the route's RFC 9470 requirement."""

ForwardAuthReason = Literal[
    "forward_auth_peer_untrusted",
    "forward_auth_header_missing",
    "forward_auth_header_invalid",
    "forward_auth_target_ambiguous",
    "forward_auth_path_unmatched",
]
"""Why the forward-auth server (:mod:`dpop_guard.forward_auth`) refused a check request
before the guard saw it: a peer that is not a trusted proxy, a header of the proxy's
contract missing (the proxy's misconfiguration) or unusable, a target another router could
read as another path, a path no rule covers (where unmatched paths are refused)."""

ServiceReason = Literal["internal_error"]
"""An unexpected exception inside the guard: 503, logged with its type only."""

Reason = (
    ProofReason
    | RequestReason
    | TokenReason
    | JWTReason
    | IntrospectionReason
    | ReplayReason
    | ProxyReason
    | MTLSReason
    | StepUpReason
    | ForwardAuthReason
    | ServiceReason
)
"""Every reason a :class:`~dpop_guard.errors.DPoPGuardError` carries."""


def _members(annotation: object) -> frozenset[str]:
    """The strings of a Literal, or of a union of Literals, however nested."""
    args = get_args(annotation)
    if not args:
        return frozenset({annotation}) if isinstance(annotation, str) else frozenset()
    return frozenset(r for part in args for r in _members(part))


JSON_REASONS: frozenset[str] = _members(JSONReason)
JWK_REASONS: frozenset[str] = _members(JWKReason)
PROOF_REASONS: frozenset[str] = _members(ProofReason)
INTROSPECTION_REASONS: frozenset[str] = _members(IntrospectionReason)
REASONS: frozenset[str] = _members(Reason)
