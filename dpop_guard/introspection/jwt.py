"""JWT access tokens (RFC 9068) checked locally against the authorization server's JWKS:
no network call per request in the steady state.

The JWKS is fetched once, cached, and fetched again when a token names an unknown ``kid``
(key rotation), at most once per ``refresh_interval``: a flood of tokens with made-up key ids
cannot turn into a flood of JWKS requests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
from joserfc import jwk as jose_jwk
from joserfc import jws
from joserfc.errors import JoseError

from .._b64 import b64url_decode
from .._env import EnvReader
from .._json import JSONError, parse_object
from ..errors import InvalidToken
from . import Introspector, RequestFacts, TokenInfo
from ._breaker import unavailable as _unavailable

__all__ = ["JWTAccessTokenSettings", "JWTAccessTokenValidator"]

_AT_JWT = ("at+jwt", "application/at+jwt")


@dataclass(frozen=True, kw_only=True, slots=True)
class JWTAccessTokenSettings:
    """:param issuer: the ``iss`` to require.
    :param audience: a value the ``aud`` claim must contain (this resource).
    :param jwks_uri: where the authorization server publishes its keys.
    :param algorithms: accepted signing algorithms (never ``none`` or HMAC).
    :param leeway: seconds of clock skew for ``exp`` and ``nbf``.
    :param jwks_ttl: seconds the key set is reused before it is fetched again.
    :param refresh_interval: the least seconds between two fetches on unknown ``kid``.
    :param revocation_paths: request path prefixes for which the token is also introspected
        (revocation-sensitive routes); needs ``revocation`` on the validator.
    """

    issuer: str
    audience: str
    jwks_uri: str
    algorithms: tuple[str, ...] = ("ES256", "PS256", "EdDSA", "RS256")
    leeway: int = 5
    jwks_ttl: float = 600.0
    refresh_interval: float = 30.0
    timeout: float = 5.0
    revocation_paths: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> JWTAccessTokenSettings:
        """``DPOP_GUARD_JWT_ISSUER``, ``_AUDIENCE``, ``_JWKS_URI`` (default: the issuer's
        ``/jwks``), ``_ALGORITHMS`` (space-separated), ``_REVOCATION_PATHS``.

        :raises ValueError: naming what is missing or wrong.
        """
        env = EnvReader(environ, "DPOP_GUARD_JWT_")
        issuer = env.text("ISSUER") or ""
        extra: dict[str, Any] = {}
        if algorithms := env.items("ALGORITHMS"):
            extra["algorithms"] = algorithms
        if paths := env.items("REVOCATION_PATHS"):
            extra["revocation_paths"] = paths
        try:
            return cls(
                issuer=issuer,
                audience=env.text("AUDIENCE") or "",
                jwks_uri=env.text("JWKS_URI") or issuer.rstrip("/") + "/jwks",
                **extra,
            )
        except ValueError as exc:
            raise ValueError(f"{env.prefix}*: {exc}") from None

    def __post_init__(self) -> None:
        if urlsplit(self.jwks_uri).scheme not in ("http", "https"):
            raise ValueError("jwks_uri must be an http(s) URL")
        if not self.issuer or not self.audience:
            raise ValueError("issuer and audience are required")
        bad = [a for a in self.algorithms if a == "none" or a.startswith("HS")]
        if bad or not self.algorithms:
            raise ValueError(f"algorithms must be asymmetric, got {bad or 'none'}")


class JWTAccessTokenValidator:
    """An :class:`Introspector` for JWT access tokens (RFC 9068).

    Checks the signature against the JWKS, ``typ`` (``at+jwt``), ``iss``, ``aud``, ``exp``
    and ``nbf`` with leeway; returns ``sub``, ``client_id``, ``scope``, ``exp`` and
    ``cnf.jkt``. Failures are 401 ``invalid_token``; a JWKS that cannot be fetched when it is
    needed is a 503.

    :param client: an ``httpx.AsyncClient`` for the (rare) JWKS fetches.
    :param revocation: an introspector asked as well on ``settings.revocation_paths``.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        settings: JWTAccessTokenSettings,
        *,
        revocation: Introspector | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self.settings = settings
        self.revocation = revocation
        self._clock = clock
        self._registry = jws.JWSRegistry(algorithms=list(settings.algorithms))
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self._lock = anyio.Lock()
        self.fetches = 0

    async def _refresh(self, *, unknown_kid: bool) -> None:
        async with self._lock:
            now = self._clock()
            if self._fetched_at is not None:
                age = now - self._fetched_at
                if unknown_kid and age < self.settings.refresh_interval:
                    return  # rate limit: a made-up kid must not cost a fetch each time
                if not unknown_kid and age < self.settings.jwks_ttl:
                    return  # another task refreshed it meanwhile
            try:
                with anyio.fail_after(self.settings.timeout):
                    response = await self._client.get(self.settings.jwks_uri)
                response.raise_for_status()
                key_set = jose_jwk.KeySet.import_key_set(response.json())
            except (httpx.HTTPError, TimeoutError, ValueError, JoseError) as exc:
                if not self._keys:
                    raise _unavailable("jwks_unavailable", exc) from exc
                return  # keep the keys we have
            self.fetches += 1
            self._fetched_at = now
            self._keys = {key.kid: key for key in key_set.keys if key.kid}

    async def _key(self, kid: str) -> Any:
        if self._fetched_at is None or self._clock() - self._fetched_at >= self.settings.jwks_ttl:
            await self._refresh(unknown_kid=False)
        if kid not in self._keys:
            await self._refresh(unknown_kid=True)
        key = self._keys.get(kid)
        if key is None:
            raise InvalidToken("jwt_unknown_key", "The access token is not valid.")
        return key

    async def introspect(self, token: str, *, request: RequestFacts) -> TokenInfo:
        """Validate ``token`` locally (and by introspection on revocation-sensitive paths)."""
        info = await self._validate(token)
        if self.revocation is not None and self.settings.revocation_paths:
            path = urlsplit(request.htu).path
            if any(path.startswith(prefix) for prefix in self.settings.revocation_paths):
                await self.revocation.introspect(token, request=request)  # raises if revoked
        return info

    async def _validate(self, token: str) -> TokenInfo:
        parts = token.split(".")
        if len(parts) != 3:
            raise InvalidToken("jwt_malformed", "The access token is not valid.")
        try:
            header = parse_object(b64url_decode(parts[0]))
        except (ValueError, JSONError) as exc:
            raise InvalidToken("jwt_malformed", "The access token is not valid.") from exc
        typ, kid, alg = header.get("typ"), header.get("kid"), header.get("alg")
        if not isinstance(typ, str) or typ.lower() not in _AT_JWT:
            raise InvalidToken("jwt_typ", "The access token is not valid.")
        if not isinstance(alg, str) or alg not in self.settings.algorithms:
            raise InvalidToken("jwt_alg", "The access token is not valid.")
        if not isinstance(kid, str):
            raise InvalidToken("jwt_unknown_key", "The access token is not valid.")
        key = await self._key(kid)
        try:
            verified = jws.deserialize_compact(token, key, registry=self._registry)
            claims = parse_object(verified.payload)
        except (JoseError, ValueError, JSONError) as exc:
            raise InvalidToken("jwt_signature", "The access token is not valid.") from exc
        return self._claims(claims)

    def _claims(self, claims: dict[str, Any]) -> TokenInfo:
        s, now = self.settings, self._clock()
        if claims.get("iss") != s.issuer:
            raise InvalidToken("jwt_issuer", "The access token is not valid.")
        aud = claims.get("aud")
        if s.audience not in (aud if isinstance(aud, list) else [aud]):
            raise InvalidToken("jwt_audience", "The access token is not meant for this resource.")
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, int) or isinstance(exp, bool) or exp <= now - s.leeway:
            raise InvalidToken("jwt_expired", "The access token has expired.")
        if nbf is not None and (not isinstance(nbf, int) or nbf > now + s.leeway):
            raise InvalidToken("jwt_not_yet_valid", "The access token is not valid yet.")
        scope, sub, client_id = claims.get("scope", ""), claims.get("sub"), claims.get("client_id")
        cnf = claims.get("cnf")
        jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
        if not isinstance(scope, str) or not all(
            v is None or isinstance(v, str) for v in (sub, client_id, jkt)
        ):
            raise InvalidToken("jwt_claims", "The access token is not valid.")
        return TokenInfo(
            subject=sub,
            client_id=client_id,
            scopes=frozenset(scope.split()),
            expires_at=exp,
            jkt=jkt,
        )
