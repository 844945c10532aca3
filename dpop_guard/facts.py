"""The request's central facts, in the sans-IO core: what an access token is
(:class:`TokenInfo`, from whichever introspector or validator), what the introspector may
need about the request (:class:`RequestFacts`), and what the introspector chain reports back
about one call (:class:`Lookup`).

Plain frozen values with no behaviour: the rules that read them live in
:mod:`dpop_guard._binding` (binding), :mod:`dpop_guard.credentials` (expiry, scopes,
step-up) and the introspectors (how each server's answer becomes a :class:`TokenInfo`).
Also importable from :mod:`dpop_guard.introspection`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .mtls import ClientCertificate

__all__ = ["Lookup", "RequestFacts", "TokenInfo"]


@dataclass(slots=True)
class Lookup:
    """What the introspector chain reports back about one call, for logs and metrics (an
    explicit value instead of a context variable): a caching introspector sets
    ``cache_hit`` to ``True`` on a hit and ``False`` on a miss; ``None`` means nothing was
    cached or looked up."""

    cache_hit: bool | None = None
    dpop_nonce: str | None = None
    """The next DPoP nonce the authorization server (Authlete's ``dpopNonce``) sent with a
    success, for the middleware to relay as ``DPoP-Nonce``; never cached, so ``None`` on a
    cache hit."""


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
    client_certificate: ClientCertificate | None = field(default=None, repr=False)
    """The certificate the client presented (RFC 8705), or ``None``. Authlete is sent it on
    a miss so it can check a certificate binding itself."""
    acr_values: tuple[str, ...] = ()
    """The route's RFC 9470 ``acr_values`` (one must be met); sent to Authlete on a miss.
    Like ``scopes`` it must not change a cacheable answer: the caller checks
    :attr:`TokenInfo.acr` itself on every request."""
    max_age: int | None = None
    """The route's RFC 9470 ``max_age`` in seconds, or ``None``; sent to Authlete on a miss,
    checked by the caller against :attr:`TokenInfo.auth_time` on every request."""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """The facts about an active access token.

    ``jkt`` is the thumbprint of the key the token is bound to, or ``None`` for a token
    not bound to a DPoP key. ``expires_at`` is epoch seconds, or ``None`` if the server did
    not say. The fields after ``jkt`` are ``None`` or empty when the server did not say:

    - ``x5t_s256``: RFC 8705 ``x5t#S256`` (base64url SHA-256 of the leaf certificate's DER)
      the token is bound to; ``None``: not bound to a certificate.
    - ``acr``: the RFC 9470 authentication context class of the user authentication behind
      the token; ``None``: unknown (a route requiring ``acr_values`` then refuses).
    - ``auth_time``: when the user authenticated, **epoch seconds** (Authlete's
      ``authTime``, RFC 7662/9068 ``auth_time``); ``None``: unknown (Authlete's ``0``), so a
      route with ``max_age`` refuses.
    - ``resources``: the RFC 8707 resources (audiences) the token is for; ``()``: not said.
    - ``authorization_details``: RFC 9396 details, deeply read-only (tuples and
      ``MappingProxyType``); ``None``: the token carries none.
    - ``grant_id``, ``consented_claims``, ``client_id_alias``: Authlete's ``grantId``,
      ``consentedClaims``, ``clientIdAlias`` (the client's alias, whether or not the client
      used it in the request).
    - ``introspection_jwt``: the authorization server's RFC 9701 signed answer these facts
      were read from (a compact JWS, verified), for the application's audit trail; kept
      with the facts in the caches. ``None``: the answer was not signed.
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
    introspection_jwt: str | None = field(default=None, repr=False)
