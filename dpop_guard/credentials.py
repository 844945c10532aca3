"""What a request proved: ``request.auth`` (:class:`DPoPCredentials`) and
``request.user`` (:class:`DPoPUser`), as Starlette's ``AuthenticationMiddleware`` sets
them."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.authentication import BaseUser

from .errors import InsufficientScope, InvalidToken
from .introspection import TokenInfo

__all__ = ["DPoPCredentials", "DPoPUser", "credentials_for"]


@dataclass(frozen=True, slots=True)
class DPoPCredentials:
    """What a request proved, set as ``scope["auth"]`` (``request.auth`` in Starlette and
    FastAPI; ``request.user`` is a :class:`DPoPUser`). ``scopes`` makes Starlette's
    ``@requires`` work unchanged."""

    subject: str | None
    client_id: str | None
    scopes: frozenset[str]
    jkt: str | None
    """The proof key's thumbprint; ``None`` only for an allowed unbound Bearer token."""
    expires_at: int | None
    scheme: str
    interaction_id: str | None = None
    """The request's ``x-fapi-interaction-id`` (the client's UUID, or one minted for it)."""


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


def credentials_for(
    info: TokenInfo,
    *,
    now: int,
    required: tuple[str, ...],
    jkt: str | None,
    scheme: str,
    interaction_id: str | None = None,
) -> DPoPCredentials:
    """The credentials of a request whose token ``info`` describes, once its expiry and
    the required scopes are checked here, from the token's facts. (A cached answer is
    older than the request, and the cache serves every route, so whatever the
    introspector checked, these are checked again.)

    :param jkt: the thumbprint of the proof key that passed, ``None`` on ``Bearer``.
    :raises InvalidToken: ``token_expired``.
    :raises InsufficientScope: ``scope_missing``, naming ``required``.
    """
    if info.expires_at is not None and info.expires_at <= now:
        raise InvalidToken("token_expired", "The access token has expired.")
    if required and not info.scopes.issuperset(required):
        raise InsufficientScope("scope_missing", scope=" ".join(required))
    return DPoPCredentials(
        subject=info.subject,
        client_id=info.client_id,
        scopes=info.scopes,
        jkt=jkt,
        expires_at=info.expires_at,
        scheme=scheme,
        interaction_id=interaction_id,
    )
