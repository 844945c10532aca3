"""Token introspection: the seam between the middleware and an authorization server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..errors import InvalidToken

if TYPE_CHECKING:
    from ..mtls import ClientCertificate

__all__ = ["InactiveToken", "Introspector", "Lookup", "RequestFacts", "TokenInfo"]


@dataclass(slots=True)
class Lookup:
    """What the introspector chain reports back about one call, for logs and metrics (an
    explicit value instead of a context variable): a caching introspector sets
    ``cache_hit`` to ``True`` on a hit and ``False`` on a miss; ``None`` means nothing was
    cached or looked up."""

    cache_hit: bool | None = None
    dpop_nonce: str | None = None


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What the introspector may need about the request besides the token.

    ``proof`` is the raw ``DPoP`` header and ``jkt`` the thumbprint of its key, both from a
    proof that already passed local verification; they are ``None`` on the ``Bearer``
    scheme. ``scopes`` are the route's required scopes, for information only: answers are
    cached per token whatever the route, so no introspector may let them change its
    answer, and the caller checks :attr:`TokenInfo.scopes` itself. ``path`` is the routed
    path (the request path relative to the app's ``root_path``, decoded, as the route
    rules see it); ``""`` means the caller did not say, and path-dependent checks (JWT
    revocation paths) then treat the request as sensitive: fail closed.
    """

    method: str
    htu: str
    proof: str | None
    jkt: str | None
    scopes: tuple[str, ...] = ()
    path: str = ""
    """The decoded path relative to the app's mount, as the router and the path rules see
    it (match path-sensitive policy, such as revocation paths, on this, never on ``htu``).
    Empty means unknown, which path-sensitive policy treats as sensitive."""
    lookup: Lookup = field(default_factory=Lookup, compare=False, repr=False)
    """Filled in by the introspector chain (see :class:`Lookup`)."""
    client_certificate: ClientCertificate | None = None
    acr_values: tuple[str, ...] = ()
    max_age: int | None = None


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
    x5t_s256: str | None = None
    acr: str | None = None
    auth_time: int | None = None
    resources: tuple[str, ...] = ()
    authorization_details: tuple[Any, ...] | None = None
    grant_id: str | None = None
    consented_claims: tuple[str, ...] = ()
    client_id_alias: str | None = None


class InactiveToken(InvalidToken):
    """The token itself is not active: unknown, expired, revoked, or (for a JWT) not
    validly issued. Such an answer depends on the token alone, never on the proof, the
    key, the route or the request, so a cache may remember it briefly (negative caching in
    :class:`~dpop_guard.introspection.cached.CachingIntrospector`). Raise plain
    :class:`~dpop_guard.errors.InvalidToken` for anything that depends on the request
    (a binding or proof failure): that is never remembered. On the wire it is the same
    401 ``invalid_token``."""


@runtime_checkable
class Introspector(Protocol):
    """Answers "is this access token active, and what is it bound to?".

    Implementations raise :class:`InactiveToken` when the token itself is not active,
    :class:`~dpop_guard.errors.InvalidToken`, :class:`~dpop_guard.errors.InvalidRequest` or
    :class:`~dpop_guard.errors.InvalidDPoPProof` when the server rejects the request, and
    :class:`~dpop_guard.errors.IntrospectionUnavailable` when it cannot answer. They never
    return a :class:`TokenInfo` for a token they could not confirm. They do not check
    the route's scopes (the caller does, from :attr:`TokenInfo.scopes`), so that one answer
    per token serves every route.
    """

    async def introspect(self, token: str, *, request: RequestFacts) -> TokenInfo:
        """Introspect ``token`` for ``request``."""
        ...
