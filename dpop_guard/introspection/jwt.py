"""JWT access tokens (RFC 9068) checked locally against the authorization server's JWKS:
no network call per request in the steady state.

The JWKS is fetched once, cached, and fetched again when a token names an unknown ``kid``
(key rotation), at most once per ``refresh_interval``: a flood of tokens with made-up key ids
cannot turn into a flood of JWKS requests. A failed fetch counts as an attempt too: the next
one waits ``retry_interval`` (meanwhile the keys already held are used, or, with none, the
request is a 503), and concurrent refreshes are one fetch. So a failing JWKS endpoint is asked
at most once per ``retry_interval``, whatever the traffic.

Revocation: on ``revocation_paths`` the token is also introspected. The paths are matched on
the *routed* path (:attr:`RequestFacts.path`, the request path relative to ``root_path``, as
the route rules see it), never on the proof's ``htu``: ``/%70ayments`` is ``/payments``, and
a public URL with a path prefix changes nothing. :meth:`JWTAccessTokenValidator.requires_fresh`
tells a :class:`~dpop_guard.introspection.cached.CachingIntrospector` to bypass its cache on
those paths, so a revoked token is refused there on the first request after the revocation.

Caching: wrapped in a :class:`~dpop_guard.introspection.cached.CachingIntrospector` (as
:func:`dpop_guard.from_env` does unless ``DPOP_GUARD_CACHE_TTL=0``), a token verified once is
answered from memory until the earliest of its ``exp``, the cache TTL and the withdrawal of a
key from the key set: the validator is a
:class:`~dpop_guard.introspection.cached.KeyWithdrawals`, and a refresh that drops a key (or
replaces one under its ``kid``) tells the cache, which drops its entries. What is cached is
what the signature proved (:meth:`JWTAccessTokenValidator._claims`), never a fact of the
request: the binding, expiry, scopes and audience are checked again on every hit.
"""

from __future__ import annotations

import logging
import math
import posixpath
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote

import anyio
import httpx
from joserfc import jwk as jose_jwk
from joserfc import jws
from joserfc.errors import JoseError

from .._b64 import b64url_decode
from .._binding import check_token_binding
from .._env import EnvReader
from .._json import ISSUER_LIMITS, JSONError, parse_object
from ..errors import InvalidToken
from . import (
    Audience,
    CacheScope,
    InactiveToken,
    Introspector,
    RequestFacts,
    TokenInfo,
    audiences,
    resources_from_env,
    standard_claims,
    validate_resources,
)
from ._breaker import report_fetch
from ._breaker import unavailable as _unavailable
from ._endpoint import check_service_url

__all__ = ["FAPI_ALGORITHMS", "JWTAccessTokenSettings", "JWTAccessTokenValidator"]

FAPI_ALGORITHMS: Final = ("ES256", "PS256", "EdDSA")
"""FAPI 2.0 Security Profile section 5.4.1: the JWS algorithms a FAPI party may use."""

logger = logging.getLogger("dpop_guard.introspection")

_AT_JWT = ("at+jwt", "application/at+jwt")


@dataclass(frozen=True, kw_only=True, slots=True)
class JWTAccessTokenSettings:
    """:param issuer: the ``iss`` to require.
    :param audience: a value the ``aud`` claim must contain (this resource): the older,
        single-valued spelling of ``resources``. Give either or both; ``aud`` must name one.
    :param resources: this API's RFC 8707 identifiers (``DPOP_GUARD_RESOURCES``).
    :param jwks_uri: where the authorization server publishes its keys.
    :param algorithms: accepted signing algorithms (never ``none`` or HMAC). The default is
        FAPI 2.0 Security Profile section 5.4.1's list (PS256, ES256, EdDSA); RS256
        (PKCS#1 v1.5) may be added explicitly for an issuer outside FAPI.
    :param leeway: seconds of clock skew for ``exp`` and ``nbf``.
    :param jwks_ttl: seconds the key set is reused before it is fetched again.
    :param refresh_interval: the least seconds between two fetches on unknown ``kid``.
    :param retry_interval: the least seconds between a failed fetch and the next attempt.
    :param revocation_paths: routed-path prefixes (relative to ``root_path``) for which the
        token is also introspected (revocation-sensitive routes); needs ``revocation`` on the
        validator. Matched case-insensitively, after collapsing ``//`` and resolving dot
        segments, so the match is at least as broad as common routers.
    """

    issuer: str
    audience: str = ""
    jwks_uri: str
    algorithms: tuple[str, ...] = FAPI_ALGORITHMS
    leeway: int = 5
    jwks_ttl: float = 600.0
    refresh_interval: float = 30.0
    retry_interval: float = 5.0
    timeout: float = 5.0
    revocation_paths: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, default_resources: tuple[str, ...] = ()
    ) -> JWTAccessTokenSettings:
        """``DPOP_GUARD_JWT_ISSUER``, ``_AUDIENCE``, ``_JWKS_URI`` (default: the issuer's
        ``/jwks``), ``_ALGORITHMS`` (space-separated), ``_REVOCATION_PATHS``, and
        ``DPOP_GUARD_RESOURCES`` (unset: ``default_resources`` unless ``_AUDIENCE`` is set,
        so an existing configuration keeps its meaning).

        :raises ValueError: naming what is missing or wrong.
        """
        env = EnvReader(environ, "DPOP_GUARD_JWT_")
        issuer = env.text("ISSUER") or ""
        extra: dict[str, Any] = {}
        if algorithms := env.items("ALGORITHMS"):
            extra["algorithms"] = algorithms
        if paths := env.items("REVOCATION_PATHS"):
            extra["revocation_paths"] = paths
        audience = env.text("AUDIENCE") or ""
        extra["resources"] = resources_from_env(
            environ, default=() if audience else default_resources
        )
        try:
            return cls(
                issuer=issuer,
                audience=audience,
                jwks_uri=env.text("JWKS_URI") or issuer.rstrip("/") + "/jwks",
                **extra,
            )
        except ValueError as exc:
            raise ValueError(f"{env.prefix}*: {exc}") from None

    def __post_init__(self) -> None:
        check_service_url("jwks_uri", self.jwks_uri)  # https unless loopback, no query
        if self.issuer:
            check_service_url("issuer", self.issuer)
        object.__setattr__(self, "resources", validate_resources(self.resources))
        if not self.issuer or not (self.audience or self.resources):
            raise ValueError("issuer and audience (or resources) are required")
        bad = [a for a in self.algorithms if a == "none" or a.startswith("HS")]
        if bad or not self.algorithms:
            raise ValueError(f"algorithms must be asymmetric, got {bad or 'none'}")
        for name in ("jwks_ttl", "refresh_interval", "retry_interval", "timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number of seconds above 0")
        if isinstance(self.leeway, bool) or not isinstance(self.leeway, int) or self.leeway < 0:
            raise ValueError("leeway must be a whole number of seconds, 0 or more")
        if any(not p.startswith("/") for p in self.revocation_paths):
            raise ValueError("revocation_paths must be paths starting with '/'")


class JWTAccessTokenValidator:
    """An :class:`Introspector` for JWT access tokens (RFC 9068).

    Checks the signature against the JWKS, ``typ`` (``at+jwt``), ``iss``, ``aud``, ``exp``
    and ``nbf`` with leeway; returns ``sub``, ``client_id``, ``scope``, ``exp``,
    ``cnf.jkt`` and ``cnf["x5t#S256"]`` (the RFC 8705 certificate binding), ``acr`` and
    ``auth_time`` (RFC 9470), ``authorization_details`` (RFC 9396) and ``aud`` (as
    :attr:`TokenInfo.resources`). ``aud`` must name one of ``settings.resources`` or
    ``settings.audience``; a claim of the wrong type makes the token invalid. Failures are
    401 ``invalid_token``; a JWKS that cannot be fetched when it is needed is a 503.

    :param client: an ``httpx.AsyncClient`` for the (rare) JWKS fetches.
    :param revocation: an introspector asked as well on ``settings.revocation_paths``.
    :raises ValueError: ``revocation_paths`` without ``revocation`` (the check would
        silently never run).

    Failures about the token itself (malformed, bad signature, wrong issuer or audience,
    expired) are :class:`~dpop_guard.introspection.InactiveToken`, which a cache may
    remember briefly; an unknown ``kid`` or a token not valid *yet* is a plain
    :class:`~dpop_guard.errors.InvalidToken` (the answer may change within seconds).
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        settings: JWTAccessTokenSettings,
        *,
        revocation: Introspector | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if settings.revocation_paths and revocation is None:
            raise ValueError("revocation_paths needs a revocation introspector")
        self._client = client
        self.settings = settings
        self.revocation = revocation
        self._clock = clock
        self._registry = jws.JWSRegistry(algorithms=list(settings.algorithms))
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last attempt, successful or not
        self._failed = False  # whether the last attempt failed
        self._lock = anyio.Lock()
        self._revocation_prefixes = tuple(p.lower() for p in settings.revocation_paths)
        self._audience = Audience(
            audiences(settings.audience, settings.resources), required=True, reason="jwt_audience"
        )
        self.cache_scope = CacheScope.of(
            "jwt",
            self._audience,
            issuer=settings.issuer,
            jwks_uri=settings.jwks_uri,
            algorithms=sorted(settings.algorithms),
            leeway=settings.leeway,
        )
        """What a cache of this validator's answers is keyed by (issuer, key set,
        algorithms, audience) and checks again on every hit (the audience)."""
        self.fetches = 0  # successful fetches
        self.attempts = 0  # requests sent to the JWKS endpoint
        self.withdrawn = 0  # keys withdrawn by refreshes (gone, or replaced under their kid)
        self._subscribers: list[Callable[[], None]] = []

    def subscribe_withdrawals(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after each refresh that withdraws a key (it is gone from the
        new key set, or another key now has its ``kid``): answers resting on it no longer
        hold (:class:`~dpop_guard.introspection.cached.KeyWithdrawals`)."""
        self._subscribers.append(callback)

    def _may_fetch(self, now: float, *, unknown_kid: bool) -> bool:
        """Whether a fetch may go out now (checked again under the lock, so concurrent
        refreshes collapse into the first one's attempt)."""
        attempted = self._attempted_at
        if attempted is None:
            return True
        age = now - attempted
        if self._failed:
            return age >= self.settings.retry_interval
        if unknown_kid:
            return age >= self.settings.refresh_interval
        return self._fetched_at is None or now - self._fetched_at >= self.settings.jwks_ttl

    async def _refresh(self, *, unknown_kid: bool) -> None:
        """Fetch the key set if the rate limits allow; keep the old keys on failure.

        :raises IntrospectionUnavailable: no keys at all, and none could be fetched.
        """
        async with self._lock:
            now = self._clock()
            if self._may_fetch(now, unknown_kid=unknown_kid):
                self._attempted_at = now
                self.attempts += 1
                started = time.perf_counter()
                try:
                    with anyio.fail_after(self.settings.timeout):
                        response = await self._client.get(self.settings.jwks_uri)
                    response.raise_for_status()
                    key_set = jose_jwk.KeySet.import_key_set(response.json())
                except (httpx.HTTPError, TimeoutError, ValueError, JoseError) as exc:
                    report_fetch("jwks", started, exc)
                    self._failed = True
                    # The type only: a response body could echo anything.
                    logger.warning(
                        "jwks fetch failed: %s",
                        type(exc).__name__,
                        extra={"dpop_guard_reason": "jwks_fetch_failed"},
                    )
                else:
                    report_fetch("jwks", started, None)
                    self._failed = False
                    self.fetches += 1
                    self._fetched_at = now
                    self._replace_keys({key.kid: key for key in key_set.keys if key.kid})
            if not self._keys:
                raise _unavailable("jwks_unavailable")

    def _replace_keys(self, keys: dict[str, Any]) -> None:
        """Hold ``keys`` from now on; tell the subscribers if a key held so far is withdrawn
        (its ``kid`` gone, or naming another key: compared by RFC 7638 thumbprint)."""
        old, self._keys = self._keys, keys
        withdrawn = [
            kid
            for kid, key in old.items()
            if kid not in keys or keys[kid].thumbprint() != key.thumbprint()
        ]
        if not withdrawn:
            return
        self.withdrawn += len(withdrawn)
        logger.info(
            "jwks refresh withdrew %d key(s): cached tokens dropped",
            len(withdrawn),
            extra={"dpop_guard_reason": "jwks_key_withdrawn"},
        )
        for callback in self._subscribers:
            callback()

    async def _key(self, kid: str) -> Any:
        now = self._clock()
        if self._fetched_at is None or now - self._fetched_at >= self.settings.jwks_ttl:
            if self._may_fetch(now, unknown_kid=False) or not self._keys:
                await self._refresh(unknown_kid=False)
        if kid not in self._keys and self._may_fetch(self._clock(), unknown_kid=True):
            await self._refresh(unknown_kid=True)
        key = self._keys.get(kid)
        if key is None:
            raise InvalidToken("jwt_unknown_key", "The access token is not valid.")
        return key

    def requires_fresh(self, request: RequestFacts) -> bool:
        """Whether ``request`` is on a revocation-sensitive path, where no cached answer
        may stand in for asking the revocation introspector.

        The routed path is compared with each prefix case-insensitively, as sent and also
        decoded once more, with ``\\`` read as ``/``, ``//`` collapsed and dot segments
        resolved: broader than any one router, so no spelling a router might dispatch to a
        sensitive endpoint escapes the check. An unknown path (``""``) is sensitive.
        """
        if not self._revocation_prefixes:
            return False
        path = request.path
        if not path:
            return True
        lowered = path.lower()
        candidates = {lowered}
        for spelling in (lowered, unquote(lowered)):
            resolved = posixpath.normpath("/" + spelling.replace("\\", "/"))
            if spelling.endswith("/") and not resolved.endswith("/"):
                resolved += "/"
            candidates.add(resolved.replace("//", "/"))
        return any(
            candidate.startswith(prefix)
            for candidate in candidates
            for prefix in self._revocation_prefixes
        )

    async def introspect(self, token: str, *, request: RequestFacts) -> TokenInfo:
        """Validate ``token`` locally (and by introspection on revocation-sensitive paths).

        The revocation introspector is asked last, only for a request that would otherwise
        pass what the token itself decides: signature, issuer, audience and expiry
        (:meth:`_validate`), then the token's sender constraints against this request's
        proof key and certificate (:func:`~dpop_guard._binding.check_token_binding`). So a
        thief holding a stolen JWT but not its key costs no call to the authorization
        server.

        :raises InvalidDPoPProof: ``jkt_mismatch`` (before any revocation call).
        :raises InvalidToken: ``certificate_missing``, ``certificate_mismatch``,
            ``bound_token_as_bearer`` (before any revocation call), or what
            :meth:`_validate` and the revocation introspector raise.
        """
        info = await self._validate(token)
        if self.revocation is not None and self.requires_fresh(request):
            certificate = request.client_certificate
            check_token_binding(
                info.jkt,
                info.x5t_s256,
                request.jkt,
                None if certificate is None else certificate.thumbprint,
            )
            await self.revocation.introspect(token, request=request)  # raises if revoked
        return info

    async def _validate(self, token: str) -> TokenInfo:
        parts = token.split(".")
        if len(parts) != 3:
            raise InactiveToken("jwt_malformed", "The access token is not valid.")
        try:
            header = parse_object(b64url_decode(parts[0]))
        except (ValueError, JSONError) as exc:
            raise InactiveToken("jwt_malformed", "The access token is not valid.") from exc
        typ, kid, alg = header.get("typ"), header.get("kid"), header.get("alg")
        if not isinstance(typ, str) or typ.lower() not in _AT_JWT:
            raise InactiveToken("jwt_typ", "The access token is not valid.")
        if not isinstance(alg, str) or alg not in self.settings.algorithms:
            raise InactiveToken("jwt_alg", "The access token is not valid.")
        if not isinstance(kid, str):
            raise InvalidToken("jwt_unknown_key", "The access token is not valid.")
        key = await self._key(kid)
        try:
            verified = jws.deserialize_compact(token, key, registry=self._registry)
            claims = parse_object(verified.payload, ISSUER_LIMITS)
        except (JoseError, ValueError, JSONError) as exc:
            raise InactiveToken("jwt_signature", "The access token is not valid.") from exc
        return self._claims(claims)

    def _claims(self, claims: dict[str, Any]) -> TokenInfo:
        s, now = self.settings, self._clock()
        if claims.get("iss") != s.issuer:
            raise InactiveToken("jwt_issuer", "The access token is not valid.")
        self._audience.check(claims.get("aud"))
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, int) or isinstance(exp, bool) or exp <= now - s.leeway:
            raise InactiveToken("jwt_expired", "The access token has expired.")
        if nbf is not None and (not isinstance(nbf, int) or nbf > now + s.leeway):
            raise InvalidToken("jwt_not_yet_valid", "The access token is not valid yet.")
        scope, sub, client_id = claims.get("scope", ""), claims.get("sub"), claims.get("client_id")
        cnf = claims.get("cnf")
        jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
        if not isinstance(scope, str) or not all(
            v is None or isinstance(v, str) for v in (sub, client_id, jkt)
        ):
            raise InactiveToken("jwt_claims", "The access token is not valid.")
        try:
            # cnf["x5t#S256"], acr, auth_time, authorization_details, aud (RFC 9068 2.2).
            extra = standard_claims(claims)
        except ValueError as exc:
            raise InactiveToken("jwt_claims", "The access token is not valid.") from exc
        return TokenInfo(
            subject=sub,
            client_id=client_id,
            scopes=frozenset(scope.split()),
            expires_at=exp,
            jkt=jkt,
            **extra,
        )
