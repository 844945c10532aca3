"""Every binding refusal lives in this module (RFC 9449 section 7.1, RFC 8705 section 3).

Rule 1: a request's binding is judged by :func:`check_binding` and nowhere else. It has two
halves, and each refusal reason is raised once, below:

- :func:`check_token_binding`, the token's own half, which no route can relax: a token
  bound to a certificate needs that certificate (``certificate_missing``,
  ``certificate_mismatch``); a token bound to a DPoP key needs the DPoP scheme and a proof
  by that key (``bound_token_as_bearer``, ``jkt_mismatch``). An unbound token passes.
  It needs only thumbprints, so the introspection cache runs it against a binding it
  remembers (refusing a thief without an upstream call) and the JWT validator before its
  revocation call: they refuse exactly what the middleware would refuse on a hit.
- the route's half: what the route demands of the token (``token_not_bound``,
  ``token_not_certificate_bound``), unless unbound tokens are allowed.

Rule 2: what may ride the ``Bearer`` scheme is judged by :func:`check_bearer`, before any
lookup: no proof beside it (``bearer_with_dpop_proof``), a route that accepts
certificate-bound tokens (``bearer_scheme_refused``) and a certificate presented
(``certificate_missing``), unless unbound tokens are allowed.

Rule 3: each route's :class:`Policy` is computed once (:class:`Policies`), and so is the
challenge's scheme list for a refusal on any path.

Sans-IO: thumbprints and the policy in, an error out. No x509, no framework, no settings
object is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from hmac import compare_digest
from typing import TYPE_CHECKING, Protocol

from .challenges import BEARER_SCHEME, DPOP_SCHEME
from .errors import InvalidDPoPProof, InvalidRequest, InvalidToken
from .routes import route_for

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .facts import TokenInfo
    from .routes import Route, SenderConstraint

__all__ = [
    "Policies",
    "Policy",
    "check_bearer",
    "check_binding",
    "check_sender_constrained",
    "check_token_binding",
    "policy_for",
]

_SCHEMES: dict[SenderConstraint, tuple[str, ...]] = {
    "dpop": (DPOP_SCHEME,),
    "mtls": (BEARER_SCHEME,),
    "either": (DPOP_SCHEME, BEARER_SCHEME),
}


class _Certificate(Protocol):
    """What the check needs of a client certificate: its RFC 8705 ``x5t#S256``."""

    @property
    def thumbprint(self) -> str: ...


class _NonceRule(Protocol):
    """What :func:`policy_for` needs of the settings."""

    def nonce_required(self, route: Route | None) -> bool: ...


class _Rules(_NonceRule, Protocol):
    """What :class:`Policies` needs of the settings."""

    @property
    def routes(self) -> Sequence[Route]: ...


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


def policy_for(route: Route | None, settings: _NonceRule) -> Policy:
    """The policy of ``route`` (``None``: the default, DPoP only) under ``settings``
    (a :class:`~dpop_guard.settings.GuardSettings`)."""
    constraint: SenderConstraint = "dpop" if route is None else route.sender_constraint
    return Policy(
        scopes=() if route is None else route.scopes,
        acr_values=() if route is None else route.acr_values,
        max_age=None if route is None else route.max_age,
        nonce=settings.nonce_required(route),
        constraint=constraint,
        schemes=_SCHEMES[constraint],
    )


class Policies:
    """The policy of every rule of ``settings`` (a
    :class:`~dpop_guard.settings.GuardSettings`), computed once: keyed by identity (rules
    are frozen and held by the settings), and one for paths no rule matches."""

    def __init__(self, settings: _Rules) -> None:
        self._settings = settings
        self._by_rule = {id(rule): policy_for(rule, settings) for rule in settings.routes}
        self.default = policy_for(None, settings)

    def __call__(self, route: Route | None) -> Policy:
        """The policy of ``route`` (``None``: no rule matched)."""
        if route is None:
            return self.default
        return self._by_rule.get(id(route)) or policy_for(route, self._settings)

    def schemes(self, path: str, method: str) -> tuple[str, ...]:
        """The challenge schemes of a refusal on ``path`` (on the refusal path only, so
        the route is matched again rather than carried through the hot path)."""
        route = route_for(self._settings.routes, path, method)
        if route is None or route.public:
            return self.default.schemes
        return self(route).schemes


def check_bearer(
    dpop_sent: bool, policy: Policy, certificate: _Certificate | None, allow_unbound: bool
) -> None:
    """Whether a token may be presented with the ``Bearer`` scheme here, judged before
    any lookup: only a certificate-bound token may (where the route accepts mTLS), or any
    token where unbound tokens are allowed. Without a certificate no certificate-bound
    token can pass, so no introspection is spent on it.

    :param dpop_sent: whether the request carries a ``DPoP`` header.
    :raises InvalidRequest: ``bearer_with_dpop_proof``.
    :raises InvalidToken: ``bearer_scheme_refused``, ``certificate_missing``.
    """
    if dpop_sent:
        raise InvalidRequest(
            "bearer_with_dpop_proof", "A DPoP proof requires the DPoP authorization scheme."
        )
    if allow_unbound:
        return
    if not policy.bearer:
        raise InvalidToken("bearer_scheme_refused", "A DPoP-bound access token is required.")
    if certificate is None:
        raise _certificate_missing()


def _certificate_missing() -> InvalidToken:
    return InvalidToken("certificate_missing", "The access token requires a client certificate.")


def check_token_binding(
    jkt: str | None,
    x5t_s256: str | None,
    proof_jkt: str | None,
    certificate_thumbprint: str | None,
) -> None:
    """The token's own half: refuse a request that does not present what the token is
    bound to, whatever the route.

    :param jkt: the DPoP key thumbprint the token is bound to, or ``None``.
    :param x5t_s256: the certificate thumbprint the token is bound to, or ``None``.
    :param proof_jkt: the verified proof's key thumbprint, ``None`` on ``Bearer``.
    :param certificate_thumbprint: the presented certificate's ``x5t#S256``, or ``None``.
    :raises InvalidToken: ``certificate_missing``, ``certificate_mismatch``,
        ``bound_token_as_bearer``.
    :raises InvalidDPoPProof: ``jkt_mismatch``.
    """
    if x5t_s256 is not None:
        if certificate_thumbprint is None:
            raise _certificate_missing()
        if not compare_digest(x5t_s256, certificate_thumbprint):
            raise InvalidToken(
                "certificate_mismatch",
                "The client certificate does not match the access token.",
            )
    if jkt is not None:
        if proof_jkt is None:
            raise InvalidToken(
                "bound_token_as_bearer", "A DPoP-bound access token requires the DPoP scheme."
            )
        if not compare_digest(jkt, proof_jkt):
            raise InvalidDPoPProof(
                "jkt_mismatch", "The DPoP proof key does not match the access token."
            )


def check_binding(
    info: TokenInfo,
    policy: Policy,
    proof_jkt: str | None,
    certificate: _Certificate | None,
    allow_unbound: bool,
) -> None:
    """Check the token's sender constraints against this request, on every request
    (a cache hit included: the cached facts say what the token is bound to, this
    request says what it presents).

    - The token's own binding first (:func:`check_token_binding`).
    - The route then demands its own binding: ``dpop`` a DPoP-bound token, ``mtls`` a
      certificate-bound one, ``either`` one of them (unless unbound tokens are
      allowed). A token bound both ways has satisfied both above.

    :param proof_jkt: the verified proof's key thumbprint, ``None`` on ``Bearer``.
    :param certificate: the presented client certificate (anything with a
        ``thumbprint``), or ``None``.
    :raises InvalidToken: ``certificate_missing``, ``certificate_mismatch``,
        ``bound_token_as_bearer``, ``token_not_bound``, ``token_not_certificate_bound``.
    :raises InvalidDPoPProof: ``jkt_mismatch``.
    """
    check_token_binding(
        info.jkt,
        info.x5t_s256,
        proof_jkt,
        None if certificate is None else certificate.thumbprint,
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
            raise _not_bound("The access token is not DPoP-bound.")


def check_sender_constrained(jkt: str | None, x5t_s256: str | None) -> None:
    """An endpoint's rule (:func:`dpop_guard.starlette.check_scopes`,
    :class:`dpop_guard.fastapi.DPoPSecurity`): the token is bound to a DPoP key or a
    certificate, whichever, unless the endpoint serves unbound tokens.

    :raises InvalidToken: ``token_not_bound``.
    """
    if jkt is None and x5t_s256 is None:
        raise _not_bound("The access token is not sender-constrained.")


def _not_bound(description: str) -> InvalidToken:
    return InvalidToken("token_not_bound", description)
