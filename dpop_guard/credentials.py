"""What a request proved: ``request.auth`` (:class:`DPoPCredentials`) and
``request.user`` (:class:`DPoPUser`), as Starlette's ``AuthenticationMiddleware`` sets
them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.authentication import BaseUser

from .errors import InsufficientScope, InsufficientUserAuthentication, InvalidToken
from .introspection import TokenInfo

__all__ = ["DPoPCredentials", "DPoPUser", "check_step_up", "credentials_for"]


@dataclass(frozen=True, slots=True)
class DPoPCredentials:
    """What a request proved, set as ``scope["auth"]`` (``request.auth`` in Starlette and
    FastAPI; ``request.user`` is a :class:`DPoPUser`). ``scopes`` makes Starlette's
    ``@requires`` work unchanged."""

    subject: str | None
    client_id: str | None
    scopes: frozenset[str]
    jkt: str | None
    """The thumbprint of the DPoP key the token is bound to (the proof was signed by it),
    or ``None`` for a token not bound to a DPoP key (certificate-bound, or an allowed
    unbound one)."""
    expires_at: int | None
    scheme: str
    interaction_id: str | None = None
    """The request's ``x-fapi-interaction-id`` (the client's UUID, or one minted for it)."""
    x5t_s256: str | None = None
    """The RFC 8705 certificate thumbprint the token is bound to (it matched the request's
    client certificate), or ``None`` for a token not bound to a certificate."""
    acr: str | None = None
    """The authentication context class the user authenticated with (``acr``)."""
    auth_time: int | None = None
    """When the user authenticated, epoch seconds."""
    resources: tuple[str, ...] = ()
    """The resources (RFC 8707) the token was issued for."""
    authorization_details: tuple[Any, ...] | None = None
    """RFC 9396 authorization details (the consent), deeply read-only."""
    grant_id: str | None = None
    """The grant (consent) the token belongs to."""
    consented_claims: tuple[str, ...] = ()
    """The claims the user consented to."""
    client_id_alias: str | None = None
    """The client's alias, where the authorization server has one."""


class _Draft:
    """A :class:`DPoPCredentials` under construction: the same slots in the same order,
    but settable, so :func:`credentials_for` fills it by plain slot stores and then turns
    it into the frozen class itself (``__class__`` assignment between two classes of one
    layout).

    Why: the frozen dataclass's own ``__init__`` sets each of its fifteen fields through
    ``object.__setattr__``, about 20,000 instructions per request; this costs about 4,000,
    and the object made is the same frozen, slotted dataclass (``benchmarks/README.md``,
    the hit path step by step)."""

    __slots__ = DPoPCredentials.__slots__  # the same layout: what __class__ assignment needs


class DPoPUser(BaseUser):
    """``request.user`` for a request that passed: authenticated, named by its subject (or,
    for a client-credentials token, its client id)."""

    __slots__ = ("credentials",)

    def __init__(self, credentials: DPoPCredentials) -> None:
        self.credentials = credentials

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.credentials.subject or self.credentials.client_id or ""

    @property
    def identity(self) -> str:
        return self.display_name


def check_step_up(
    acr: str | None,
    auth_time: int | None,
    *,
    now: int,
    acr_values: tuple[str, ...],
    max_age: int | None,
) -> None:
    """Check a token's authentication facts against a step-up requirement (RFC 9470).

    ``acr`` must be one of ``acr_values`` (when any are required); the user must have
    authenticated at most ``max_age`` seconds before ``now``. An unknown ``acr`` or
    ``auth_time`` is a shortfall: fail closed.

    :raises InsufficientUserAuthentication: ``acr_not_satisfied`` or ``auth_time_missing``
        or ``auth_too_old``, carrying the requirement for the challenge.
    """
    if acr_values and (acr is None or acr not in acr_values):
        raise InsufficientUserAuthentication(
            "acr_not_satisfied", acr_values=acr_values, max_age=max_age
        )
    if max_age is None:
        return
    if auth_time is None:
        raise InsufficientUserAuthentication(
            "auth_time_missing", acr_values=acr_values, max_age=max_age
        )
    if now - auth_time > max_age:
        raise InsufficientUserAuthentication("auth_too_old", acr_values=acr_values, max_age=max_age)


def credentials_for(
    info: TokenInfo,
    now: int,
    required: tuple[str, ...],
    jkt: str | None,
    scheme: str,
    interaction_id: str | None = None,
    acr_values: tuple[str, ...] = (),
    max_age: int | None = None,
) -> DPoPCredentials:
    """The credentials of a request whose token ``info`` describes, once its expiry and
    the required scopes are checked here, from the token's facts. (A cached answer is
    older than the request, and the cache serves every route, so whatever the
    introspector checked, these are checked again.) The middleware passes every argument
    by position.

    :param jkt: the thumbprint of the DPoP key the token is bound to, ``None`` when none.
    :param acr_values: the route's step-up requirement (see :func:`check_step_up`).
    :param max_age: the route's step-up requirement (see :func:`check_step_up`).
    :raises InvalidToken: ``token_expired``.
    :raises InsufficientScope: ``scope_missing``, naming ``required``.
    :raises InsufficientUserAuthentication: see :func:`check_step_up`.
    """
    if info.expires_at is not None and info.expires_at <= now:
        raise InvalidToken("token_expired", "The access token has expired.")
    if required and not info.scopes.issuperset(required):
        raise InsufficientScope("scope_missing", scope=" ".join(required))
    if acr_values or max_age is not None:
        check_step_up(info.acr, info.auth_time, now=now, acr_values=acr_values, max_age=max_age)
    # Filled here rather than in an __init__: one call frame fewer per request.
    draft: Any = _Draft()  # typed by DPoPCredentials: the same slots
    draft.subject = info.subject
    draft.client_id = info.client_id
    draft.scopes = info.scopes
    draft.jkt = jkt
    draft.expires_at = info.expires_at
    draft.scheme = scheme
    draft.interaction_id = interaction_id
    draft.x5t_s256 = info.x5t_s256
    draft.acr = info.acr
    draft.auth_time = info.auth_time
    draft.resources = info.resources
    draft.authorization_details = info.authorization_details
    draft.grant_id = info.grant_id
    draft.consented_claims = info.consented_claims
    draft.client_id_alias = info.client_id_alias
    draft.__class__ = DPoPCredentials  # now frozen, like any other (a plain store: _Draft is not)
    return draft  # type: ignore[no-any-return]  # its class is DPoPCredentials now
