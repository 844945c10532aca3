"""Token introspection: the seam between the middleware and an authorization server."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable
from urllib.parse import urlsplit

from .._env import EnvReader
from .._json import MAX_DOCUMENT_DEPTH
from .._reasons import IntrospectionReason, JWTReason
from ..errors import InvalidToken

if TYPE_CHECKING:
    from ..mtls import ClientCertificate

__all__ = [
    "RESOURCES_ENV",
    "Audience",
    "CacheScope",
    "InactiveToken",
    "Introspector",
    "Lookup",
    "RequestFacts",
    "ScopedIntrospector",
    "TokenInfo",
    "audiences",
    "authorization_details_from",
    "freeze_json",
    "resources_from_env",
    "standard_claims",
    "thaw_json",
    "validate_resources",
]

RESOURCES_ENV: Final = "DPOP_GUARD_RESOURCES"
# The confirmation members a binding is checked by: RFC 9449's key thumbprint and
# RFC 8705's certificate thumbprint.
_CHECKED_CONFIRMATIONS: Final = frozenset({"jkt", "x5t#S256"})


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


def freeze_json(value: Any, *, depth: int = 0) -> Any:
    """A deeply read-only copy of a parsed JSON value: objects become
    ``MappingProxyType``, arrays tuples.

    :raises ValueError: nested deeper than ``MAX_DOCUMENT_DEPTH`` (``dpop_guard._json``),
        or not JSON data.
    """
    if depth > MAX_DOCUMENT_DEPTH:
        raise ValueError("JSON nested too deeply")
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise ValueError("JSON object keys must be strings")
        return MappingProxyType({k: freeze_json(v, depth=depth + 1) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze_json(v, depth=depth + 1) for v in value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise ValueError(f"not JSON data: {type(value).__name__}")


def thaw_json(value: Any) -> Any:
    """The plain JSON form (dicts and lists) of a :func:`freeze_json` value."""
    if isinstance(value, Mapping):
        return {k: thaw_json(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw_json(v) for v in value]
    return value


def authorization_details_from(value: Any) -> tuple[Any, ...] | None:
    """RFC 9396 ``authorization_details``: ``None``, or a list of objects each with a string
    ``type``, frozen.

    :raises ValueError: for anything else.
    """
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(item, dict) and isinstance(item.get("type"), str) for item in value
    ):
        raise ValueError("authorization_details must be a list of objects with a type")
    frozen: tuple[Any, ...] = freeze_json(value)
    return frozen


def validate_resources(resources: Sequence[str]) -> tuple[str, ...]:
    """RFC 8707 resource indicators: absolute URIs without a fragment (section 2).

    :raises ValueError: naming the value that is not one.
    """
    checked = tuple(resources)
    for resource in checked:
        if not isinstance(resource, str):
            raise ValueError(f"resources must be strings, got {resource!r}")
        parts = urlsplit(resource)
        if not parts.scheme or not (parts.netloc or parts.path) or "#" in resource:
            raise ValueError(f"resources must be absolute URIs without a fragment: {resource!r}")
    return checked


def resources_from_env(
    environ: Mapping[str, str] | None = None, *, default: Sequence[str] = ()
) -> tuple[str, ...]:
    """``DPOP_GUARD_RESOURCES``: the RFC 8707 identifiers of this API, separated by
    whitespace; ``none`` turns the audience check off; unset gives ``default`` (the
    builder passes the public URL).

    :raises ValueError: naming the variable, for a value that is not an absolute URI.
    """
    env = EnvReader(environ, "DPOP_GUARD_")
    value = env.text("RESOURCES")
    if value is None:
        return tuple(default)
    if value.lower() == "none":
        return ()
    try:
        return validate_resources(value.split())
    except ValueError as exc:
        raise ValueError(f"{RESOURCES_ENV}: {exc}") from None


def audiences(audience: str | None, resources: Sequence[str]) -> frozenset[str]:
    """The identifiers a token's ``aud`` may name for this API: the configured
    ``resources`` and the older single ``audience`` setting together."""
    return frozenset(resources) | ({audience} if audience else frozenset())


@dataclass(frozen=True, slots=True)
class Audience:
    """The audience rule (RFC 8707 resources, RFC 7662/9068 ``aud``), in one place: run by
    an introspector on what the server answered, and by the cache on every answer it
    gives from memory or from a shared level (:class:`CacheScope`), since such an answer
    may have been written by another writer.

    :param accepted: this API's identifiers; empty: no check.
    :param required: whether a token naming no audience is refused (RFC 7662 ``aud`` and
        RFC 9068, where the server states it); ``False`` lets it pass (Authlete, which
        judges the ``resources`` it is sent itself).
    :param reason: the refusal's reason, named after the introspector.
    """

    accepted: frozenset[str]
    required: bool
    reason: IntrospectionReason | JWTReason

    def check(self, aud: object) -> None:
        """Refuse ``aud`` (a string, a list or tuple of strings, or ``None``) unless it
        names one of :attr:`accepted` (or nothing is accepted, or it names nothing and
        naming is not required). One method, one frame: it runs on every cache hit.

        :raises InactiveToken: with :attr:`reason` (an answer about the token alone).
        """
        accepted = self.accepted
        if not accepted:
            return
        try:
            if aud.__class__ is tuple and aud and not accepted.isdisjoint(aud):
                return  # the common case on a hit: TokenInfo.resources naming one of ours
        except TypeError:  # an unhashable member: judged one by one below
            pass
        values: object = (aud,) if isinstance(aud, str) else () if aud is None else aud
        if isinstance(values, (list, tuple)):
            if not values:
                if not self.required:
                    return
            else:
                try:
                    if not accepted.isdisjoint(values):
                        return
                except TypeError:  # an unhashable member (not a string): look one by one
                    if any(isinstance(v, str) and v in accepted for v in values):
                        return
        raise InactiveToken(self.reason, "The access token is not meant for this resource.")


@dataclass(frozen=True, slots=True)
class CacheScope:
    """What an introspector's answers are valid for, as a cache needs it.

    ``namespace`` is 16 bytes derived from everything that decides an answer (the mode,
    the endpoint or issuer, the service or client identity, the audience, the API
    version; never a secret): a shared cache keys every entry under it, so an entry
    written by one configuration is never read by another. ``audience`` is the rule the
    cache checks again on every hit, whoever wrote the entry.
    """

    namespace: bytes
    audience: Audience

    @classmethod
    def of(cls, mode: str, audience: Audience, **facts: object) -> CacheScope:
        """The scope of an introspector of ``mode`` whose answers depend on ``facts``
        (JSON values; identities only, never a secret: they are hashed, but a digest of
        a secret must not reach a shared store either)."""
        canonical = json.dumps(
            {
                "mode": mode,
                "audience": sorted(audience.accepted),
                "audience_required": audience.required,
                **facts,
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return cls(hashlib.sha256(canonical.encode()).digest()[:16], audience)


@runtime_checkable
class ScopedIntrospector(Introspector, Protocol):
    """An introspector that states its :class:`CacheScope` (all of ours do), which a
    :class:`~dpop_guard.introspection.cached.CachingIntrospector` needs for a shared
    level and uses to check the audience on every hit."""

    @property
    def cache_scope(self) -> CacheScope:
        """The scope of this introspector's answers."""
        ...


def standard_claims(data: Mapping[str, Any]) -> dict[str, Any]:
    """The facts an RFC 7662 answer or an RFC 9068 JWT carries beyond ``sub``, ``scope``,
    ``exp`` and ``cnf.jkt``: ``cnf["x5t#S256"]`` (RFC 8705), ``acr`` and ``auth_time``
    (RFC 9470, epoch seconds), ``authorization_details`` (RFC 9396) and ``aud`` as
    :attr:`TokenInfo.resources`, as :class:`TokenInfo` keyword arguments.

    :raises ValueError: a member of the wrong type.
    """
    cnf = data.get("cnf")
    if cnf is not None and not isinstance(cnf, dict):
        raise ValueError("cnf must be an object")
    if cnf and set(cnf) - _CHECKED_CONFIRMATIONS:
        # RFC 7800 allows other confirmation methods (a "jwk", a "jku", ...). One we
        # cannot check must not read as "unbound": that would serve a bound token to
        # anyone who holds it.
        raise ValueError("cnf holds a confirmation method that is not checked here")
    x5t = cnf.get("x5t#S256") if cnf else None
    acr, auth_time, aud = data.get("acr"), data.get("auth_time"), data.get("aud")
    if x5t is not None and not isinstance(x5t, str):
        raise ValueError("cnf.x5t#S256 must be a string")
    if acr is not None and not isinstance(acr, str):
        raise ValueError("acr must be a string")
    if auth_time is not None and (
        not isinstance(auth_time, int) or isinstance(auth_time, bool) or auth_time < 0
    ):
        raise ValueError("auth_time must be epoch seconds")
    if aud is None:
        resources: tuple[str, ...] = ()
    elif isinstance(aud, str):
        resources = (aud,)
    elif isinstance(aud, list) and all(isinstance(a, str) for a in aud):
        resources = tuple(aud)
    else:
        raise ValueError("aud must be a string or a list of strings")
    return {
        "x5t_s256": x5t or None,
        "acr": acr or None,
        "auth_time": auth_time,
        "resources": resources,
        "authorization_details": authorization_details_from(data.get("authorization_details")),
    }


@runtime_checkable
class SyncTokenLookup(Protocol):
    """An introspector that can answer from memory without a coroutine: a declared seam
    (:class:`~dpop_guard.introspection.cached.CachingIntrospector` implements it).

    The middleware calls :meth:`cached_sync` first on every DPoP request and awaits
    ``introspect`` only when it returns ``None``. So a subclass that wants to see every
    call (to log, to add a check) overrides ``cached_sync`` too (returning ``None`` sends
    every request through ``introspect``).
    """

    def cached_sync(self, token: str, request: RequestFacts | None = None) -> TokenInfo | None:
        """The answer ``introspect`` would give from memory, or ``None`` to await it.

        :raises InactiveToken: a remembered inactive-token answer.
        """
        ...
