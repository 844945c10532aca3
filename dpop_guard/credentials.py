"""What a request proved: ``request.auth`` (:class:`DPoPCredentials`) and
``request.user`` (:class:`DPoPUser`), as Starlette's ``AuthenticationMiddleware`` sets
them."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.authentication import BaseUser

__all__ = ["DPoPCredentials", "DPoPUser"]


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
