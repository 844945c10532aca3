"""What a route demands of a request's binding, and the check itself: pure functions of the
token's facts, the route's policy and what the request presented (after RFC 9449 section 7.1
and RFC 8705 section 3), run on every request, cache hits included.
"""

from __future__ import annotations

from dataclasses import dataclass
from hmac import compare_digest

from .challenges import BEARER_SCHEME, DPOP_SCHEME
from .errors import InvalidDPoPProof, InvalidToken
from .introspection import TokenInfo
from .mtls import ClientCertificate
from .routes import Route, SenderConstraint
from .settings import GuardSettings

__all__ = ["Policy", "check_binding", "policy_for"]

_SCHEMES: dict[SenderConstraint, tuple[str, ...]] = {
    "dpop": (DPOP_SCHEME,),
    "mtls": (BEARER_SCHEME,),
    "either": (DPOP_SCHEME, BEARER_SCHEME),
}


@dataclass(frozen=True, slots=True)
class Policy:
    """What a request on one route must satisfy, precomputed per route at start-up."""

    scopes: tuple[str, ...]
    acr_values: tuple[str, ...]
    max_age: int | None
    nonce: bool
    constraint: SenderConstraint
    schemes: tuple[str, ...]

    @property
    def bearer(self) -> bool:
        """Whether the ``Bearer`` scheme can carry a (certificate-bound) token here."""
        return self.constraint != "dpop"


def policy_for(route: Route | None, settings: GuardSettings) -> Policy:
    constraint: SenderConstraint = "dpop" if route is None else route.sender_constraint
    return Policy(
        scopes=() if route is None else route.scopes,
        acr_values=() if route is None else route.acr_values,
        max_age=None if route is None else route.max_age,
        nonce=settings.nonce_required(route),
        constraint=constraint,
        schemes=_SCHEMES[constraint],
    )


def check_binding(
    info: TokenInfo,
    policy: Policy,
    proof_jkt: str | None,
    certificate: ClientCertificate | None,
    allow_unbound: bool,
) -> None:
    """Check the token's sender constraints against this request, on every request
    (a cache hit included: the cached facts say what the token is bound to, this
    request says what it presents).

    - A token bound to a certificate (``x5t#S256``) needs that certificate, whatever
      the route (RFC 8705 section 3).
    - A token bound to a DPoP key needs the DPoP scheme and a proof by that key.
    - The route then demands its own binding: ``dpop`` a DPoP-bound token, ``mtls`` a
      certificate-bound one, ``either`` one of them (unless unbound tokens are
      allowed). A token bound both ways has satisfied both above.

    :param proof_jkt: the verified proof's key thumbprint, ``None`` on ``Bearer``.
    :raises InvalidToken: ``certificate_missing``, ``certificate_mismatch``,
        ``bound_token_as_bearer``, ``token_not_bound``, ``token_not_certificate_bound``.
    :raises InvalidDPoPProof: ``jkt_mismatch``.
    """
    if info.x5t_s256 is not None:
        if certificate is None:
            raise InvalidToken(
                "certificate_missing", "The access token requires a client certificate."
            )
        if not compare_digest(info.x5t_s256, certificate.thumbprint):
            raise InvalidToken(
                "certificate_mismatch",
                "The client certificate does not match the access token.",
            )
    if proof_jkt is None:
        if info.jkt is not None:
            raise InvalidToken(
                "bound_token_as_bearer", "A DPoP-bound access token requires the DPoP scheme."
            )
    elif info.jkt is not None and not compare_digest(info.jkt, proof_jkt):
        raise InvalidDPoPProof(
            "jkt_mismatch", "The DPoP proof key does not match the access token."
        )
    if allow_unbound:
        return
    constraint = policy.constraint
    if constraint == "mtls" or (constraint == "either" and proof_jkt is None):
        if info.x5t_s256 is None:
            raise InvalidToken(
                "token_not_certificate_bound",
                "The access token is not bound to a client certificate.",
            )
    elif constraint == "dpop" or info.x5t_s256 is None:
        if info.jkt is None:
            raise InvalidToken("token_not_bound", "The access token is not DPoP-bound.")
