"""What a request proved: ``request.auth`` (:class:`DPoPCredentials`) and
``request.user`` (:class:`DPoPUser`), as Starlette's ``AuthenticationMiddleware`` sets
them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.authentication import BaseUser

from .errors import InsufficientScope, InsufficientUserAuthentication, InvalidToken
from .facts import TokenInfo

__all__ = [
    "DPoPCredentials",
    "DPoPUser",
    "check_granted_scopes",
    "check_step_up",
    "credentials_for",
]


@dataclass(frozen=True)
class DPoPCredentials:
    """What a request proved, set as ``scope["auth"]`` (``request.auth`` in Starlette and
    FastAPI; ``request.user`` is a :class:`DPoPUser`): the token's facts, by reference,
    and what this request added. ``scopes`` makes Starlette's ``@requires`` work
    unchanged; every fact of the token reads as an attribute (``request.auth.subject``).

    For example::

        DPoPCredentials(token=TokenInfo("alice", "c1", frozenset({"a"}), None, None),
                        scheme="Bearer", interaction_id=None)
    """

    # Slots written here, not by dataclass(slots=True): on Python 3.11 that remade class
    # answers an assignment to a read-only property with a TypeError, not an
    # AttributeError.
    __slots__ = ("interaction_id", "scheme", "token")

    token: TokenInfo
    """The token's facts, as the introspector (or its cache) answered and the guard
    checked them for this request (expiry, scopes, binding, step-up)."""
    scheme: str
    """``DPoP`` or ``Bearer``: the ``Authorization`` scheme the token came with."""
    interaction_id: str | None
    """The request's ``x-fapi-interaction-id`` (the client's UUID, or one minted for it),
    ``None`` for credentials not made by the middleware."""

    def __reduce__(self) -> tuple[type[DPoPCredentials], tuple[TokenInfo, str, str | None]]:
        # Frozen slots: rebuilt through __init__, not by setting attributes.
        return type(self), (self.token, self.scheme, self.interaction_id)

    @property
    def subject(self) -> str | None:
        return self.token.subject

    @property
    def client_id(self) -> str | None:
        return self.token.client_id

    @property
    def scopes(self) -> frozenset[str]:
        return self.token.scopes

    @property
    def jkt(self) -> str | None:
        """The thumbprint of the DPoP key the token is bound to (the proof was signed by
        it), or ``None`` for a token not bound to a DPoP key (certificate-bound, or an
        allowed unbound one)."""
        return self.token.jkt

    @property
    def expires_at(self) -> int | None:
        return self.token.expires_at

    @property
    def x5t_s256(self) -> str | None:
        """The RFC 8705 certificate thumbprint the token is bound to (it matched the
        request's client certificate), or ``None`` for a token not bound to a certificate."""
        return self.token.x5t_s256

    @property
    def acr(self) -> str | None:
        """The authentication context class the user authenticated with (``acr``)."""
        return self.token.acr

    @property
    def auth_time(self) -> int | None:
        """When the user authenticated, epoch seconds."""
        return self.token.auth_time

    @property
    def resources(self) -> tuple[str, ...]:
        """The resources (RFC 8707) the token was issued for."""
        return self.token.resources

    @property
    def authorization_details(self) -> tuple[Any, ...] | None:
        """RFC 9396 authorization details (the consent), deeply read-only."""
        return self.token.authorization_details

    @property
    def grant_id(self) -> str | None:
        """The grant (consent) the token belongs to."""
        return self.token.grant_id

    @property
    def consented_claims(self) -> tuple[str, ...]:
        """The claims the user consented to."""
        return self.token.consented_claims

    @property
    def client_id_alias(self) -> str | None:
        """The client's alias, where the authorization server has one."""
        return self.token.client_id_alias

    @property
    def introspection_jwt(self) -> str | None:
        """The authorization server's signed statement about the token (RFC 9701, a
        compact JWS the guard verified), for an audit trail; ``None`` unless signed
        introspection answers are required (``DPOP_GUARD_INTROSPECTION_SIGNED``). On a
        cache hit it is the answer of the introspection that filled the cache."""
        return self.token.introspection_jwt


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


def check_granted_scopes(granted: frozenset[str], required: tuple[str, ...]) -> None:
    """The one scope rule: the token's ``granted`` scopes cover every ``required`` one.

    :raises InsufficientScope: ``scope_missing``, naming ``required`` for the challenge.
    """
    if not granted.issuperset(required):
        raise InsufficientScope("scope_missing", scope=" ".join(required))


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
    scheme: str,
    interaction_id: str | None = None,
    acr_values: tuple[str, ...] = (),
    max_age: int | None = None,
) -> DPoPCredentials:
    """The credentials of a request whose token ``info`` describes, once its expiry and
    the required scopes are checked here, from the token's facts. (A cached answer is
    older than the request, and the cache serves every route, so whatever the
    introspector checked, these are checked again.)

    Positional or by keyword (the middleware calls it positionally, on every request:
    seven keyword arguments cost more to match than the checks themselves).

    :param acr_values: the route's step-up requirement (see :func:`check_step_up`).
    :param max_age: the route's step-up requirement (see :func:`check_step_up`).
    :raises InvalidToken: ``token_expired``.
    :raises InsufficientScope: ``scope_missing``, naming ``required``.
    :raises InsufficientUserAuthentication: see :func:`check_step_up`.
    """
    if info.expires_at is not None and info.expires_at <= now:
        raise InvalidToken("token_expired", "The access token has expired.")
    if required:
        check_granted_scopes(info.scopes, required)
    if acr_values or max_age is not None:
        check_step_up(info.acr, info.auth_time, now=now, acr_values=acr_values, max_age=max_age)
    return DPoPCredentials(info, scheme, interaction_id)
