"""Token introspection: the seam between the middleware and an authorization server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["Introspector", "Lookup", "RequestFacts", "TokenInfo"]


@dataclass(slots=True)
class Lookup:
    """What the introspector chain reports back about one call, for logs and metrics (an
    explicit value instead of a context variable): a caching introspector sets
    ``cache_hit`` to ``True`` on a hit and ``False`` on a miss; ``None`` means nothing was
    cached or looked up."""

    cache_hit: bool | None = None


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What the introspector may need about the request besides the token.

    ``proof`` is the raw ``DPoP`` header and ``jkt`` the thumbprint of its key, both from a
    proof that already passed local verification; they are ``None`` on the ``Bearer``
    scheme. ``scopes`` are the route's required scopes.
    """

    method: str
    htu: str
    proof: str | None
    jkt: str | None
    scopes: tuple[str, ...] = ()
    path: str | None = None
    """The decoded path relative to the app's mount, as the router and the path rules see
    it (match path-sensitive policy, such as revocation paths, on this, never on ``htu``)."""
    lookup: Lookup = field(default_factory=Lookup, compare=False, repr=False)
    """Filled in by the introspector chain (see :class:`Lookup`)."""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """The facts about an active access token.

    ``jkt`` is the thumbprint of the key the token is bound to, or ``None`` for a token
    that is not sender-constrained. ``expires_at`` is epoch seconds, or ``None`` if the
    server did not say.
    """

    subject: str | None
    client_id: str | None
    scopes: frozenset[str]
    expires_at: int | None
    jkt: str | None


@runtime_checkable
class Introspector(Protocol):
    """Answers "is this access token active, and what is it bound to?".

    Implementations raise :class:`~dpop_guard.errors.InvalidToken`,
    :class:`~dpop_guard.errors.InsufficientScope`, :class:`~dpop_guard.errors.InvalidRequest`
    or :class:`~dpop_guard.errors.InvalidDPoPProof` when the server rejects the token, and
    :class:`~dpop_guard.errors.IntrospectionUnavailable` when it cannot answer. They never
    return a :class:`TokenInfo` for a token they could not confirm.
    """

    async def introspect(self, token: str, *, request: RequestFacts) -> TokenInfo:
        """Introspect ``token`` for ``request``."""
        ...
