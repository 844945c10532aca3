"""RFC 9701 (JWT Response for OAuth Token Introspection): the one home of the rules a signed
introspection answer must pass before its ``token_introspection`` object is read.

An RFC 7662 endpoint (or Authlete's ``/auth/introspection/standard``) asked with
``Accept: application/token-introspection+jwt`` answers with a compact JWS. The checks, in
order, each with its own reason (all :class:`~dpop_guard.errors.IntrospectionUnavailable`,
a 503: a missing or broken signature is the authorization server's side failing, never the
client's, and never a pass):

1. size: at most :data:`MAX_SIGNED_RESPONSE_BYTES`, counted before anything is parsed
   (``introspection_jwt_too_large``); a JSON object instead of a JWS is
   ``introspection_unsigned`` (a downgrade to plain RFC 7662);
2. three base64url segments, the header a bounded JSON object (``dpop_guard._json``
   limits for JOSE headers) (``introspection_jwt_malformed``);
3. ``typ`` is ``token-introspection+jwt``, with or without ``application/``, in any case
   (RFC 7515 section 4.1.9) (``introspection_jwt_typ``);
4. ``alg`` in the configured allow-list, FAPI 2.0's PS256, ES256 and EdDSA by default;
   never ``none`` or HMAC, whatever is configured (``introspection_jwt_alg``);
5. ``kid`` names a key of the authorization server's JWKS, fetched, cached, rotated and
   rate-limited by the JWT access-token validator's machinery
   (:class:`~dpop_guard.introspection.jwt.JWTAccessTokenValidator`; one home)
   (``introspection_jwt_unknown_key``; an unreachable JWKS is ``jwks_unavailable``);
6. the signature with that key (``introspection_jwt_signature``); the payload is parsed
   only then, with the bounds of a server's document;
7. ``iss`` is the configured issuer (``introspection_jwt_issuer``), ``aud`` names the
   configured audience (``introspection_jwt_audience``), ``iat`` is an integer no older
   than ``max_age`` and no further ahead than ``leeway`` (``introspection_jwt_iat``), and
   an ``exp``, if present, has not passed (``introspection_jwt_expired``);
8. ``token_introspection`` is an object whose ``active`` is a boolean
   (``introspection_jwt_content``). What it says is then read by the same fact parser as a
   plain answer (:func:`dpop_guard.introspection.rfc7662.token_info_from`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx
from joserfc import jws
from joserfc.errors import JoseError

from .._b64 import b64url_decode
from .._env import EnvReader
from .._json import DOCUMENT_LIMITS, JOSE_LIMITS, JSONError, parse_object
from .._reasons import IntrospectionReason
from ..errors import IntrospectionUnavailable, InvalidToken
from ._breaker import unavailable
from ._endpoint import check_service_url
from .jwt import FAPI_ALGORITHMS, JWTAccessTokenSettings, JWTAccessTokenValidator

__all__ = [
    "JWT_RESPONSE_TYPE",
    "MAX_SIGNED_RESPONSE_BYTES",
    "SignedAnswer",
    "SignedResponseSettings",
    "SignedResponseVerifier",
]

JWT_RESPONSE_TYPE: Final = "application/token-introspection+jwt"
"""The media type a resource server asks for (RFC 9701 section 4) and gets back."""
MAX_SIGNED_RESPONSE_BYTES: Final = 64 << 10
"""Octets a signed answer may hold: the introspection object with room for RFC 9396
``authorization_details``; counted before the JWS is split or decoded."""
_TYPS: Final = frozenset({"token-introspection+jwt", "application/token-introspection+jwt"})
_JSON_WHITESPACE: Final = b" \t\r\n"

KeyLookup = Callable[[str], Awaitable[Any]]
"""``await keys(kid)``: the authorization server's public key (a joserfc key) named
``kid``; raises :class:`~dpop_guard.errors.InvalidToken` for an unknown one and
:class:`~dpop_guard.errors.IntrospectionUnavailable` when no key set can be had."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SignedResponseSettings:
    """What a signed introspection answer must be.

    :param issuer: the authorization server's issuer identifier: ``iss`` must equal it.
    :param audience: the identifier ``aud`` must name: this resource server's client id at
        an RFC 7662 endpoint; for Authlete's standard API, the ``rsUri`` it is sent.
    :param jwks_uri: where the authorization server publishes its signing keys.
    :param algorithms: the JWS algorithms accepted (FAPI 2.0's by default; RFC 9701's own
        default, RS256, only if added).
    :param max_age: seconds an answer's ``iat`` may lie in the past.
    :param leeway: seconds of clock skew: how far ``iat`` may lie ahead, and ``exp`` behind.
    :param timeout: seconds for one JWKS fetch.
    """

    issuer: str
    audience: str
    jwks_uri: str
    algorithms: tuple[str, ...] = FAPI_ALGORITHMS
    max_age: int = 60
    leeway: int = 5
    timeout: float = 5.0

    def __post_init__(self) -> None:
        check_service_url("issuer", self.issuer)
        check_service_url("jwks_uri", self.jwks_uri)
        if not self.audience:
            raise ValueError("audience is required")
        bad = [a for a in self.algorithms if a.lower() == "none" or a.upper().startswith("HS")]
        if bad or not self.algorithms:
            raise ValueError(f"algorithms must be asymmetric, got {bad or 'none'}")
        for name in ("max_age", "leeway"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number of seconds, 0 or more")
        timeout = self.timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise ValueError("timeout must be a number of seconds")
        if not math.isfinite(timeout) or timeout <= 0:
            raise ValueError("timeout must be a finite number of seconds above 0")

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, default_audience: str | None
    ) -> SignedResponseSettings | None:
        """``DPOP_GUARD_INTROSPECTION_SIGNED`` (``off``, the default, or ``required``),
        ``_ISSUER``, ``_JWKS_URI`` (both required when signed: never guessed),
        ``_SIGNED_AUDIENCE`` (default ``default_audience``), ``_SIGNED_ALGORITHMS``
        (space-separated) and ``_SIGNED_MAX_AGE`` (seconds).

        :returns: ``None`` when signing is off (and then none of the others may be set).
        :raises ValueError: naming the variable.
        """
        env = EnvReader(environ, "DPOP_GUARD_INTROSPECTION_")
        mode = env.choice("SIGNED", ("off", "required"), "off")
        names = ("ISSUER", "JWKS_URI", "SIGNED_AUDIENCE", "SIGNED_ALGORITHMS", "SIGNED_MAX_AGE")
        if mode == "off":
            stray = [n for n in names if env.is_set(n)]
            if stray:
                raise ValueError(
                    f"{env.prefix}{stray[0]} is set but {env.prefix}SIGNED is not 'required'"
                )
            return None
        extra: dict[str, Any] = {}
        if algorithms := env.items("SIGNED_ALGORITHMS"):
            extra["algorithms"] = algorithms
        if env.is_set("SIGNED_MAX_AGE"):
            extra["max_age"] = env.integer("SIGNED_MAX_AGE", 60)
        issuer, jwks_uri = env.text("ISSUER"), env.text("JWKS_URI")
        audience = env.text("SIGNED_AUDIENCE") or default_audience
        for name, value in (("ISSUER", issuer), ("JWKS_URI", jwks_uri)):
            if not value:
                raise ValueError(f"{env.prefix}{name} is required when {env.prefix}SIGNED=required")
        if not audience:
            raise ValueError(f"{env.prefix}SIGNED_AUDIENCE is required")
        try:
            return cls(issuer=issuer or "", audience=audience, jwks_uri=jwks_uri or "", **extra)
        except ValueError as exc:
            raise ValueError(f"{env.prefix}*: {exc}") from None

    def scope_facts(self) -> dict[str, object]:
        """What these settings add to an introspector's cache scope: answers accepted under
        one signing rule are never served under another."""
        return {
            "signed": {
                "issuer": self.issuer,
                "audience": self.audience,
                "jwks_uri": self.jwks_uri,
                "algorithms": sorted(self.algorithms),
            }
        }


def _refuse(
    reason: IntrospectionReason, cause: BaseException | None = None
) -> IntrospectionUnavailable:
    return unavailable(reason, cause)


def read_header(body: bytes, algorithms: tuple[str, ...]) -> tuple[str, str]:
    """Steps 1-4: the JWS text and its ``kid``, from the raw answer (no key looked up yet).

    :raises IntrospectionUnavailable: with the step's reason.
    """
    if len(body) > MAX_SIGNED_RESPONSE_BYTES:
        raise _refuse("introspection_jwt_too_large")
    stripped = body.strip(_JSON_WHITESPACE)
    if stripped.startswith(b"{"):
        raise _refuse("introspection_unsigned")
    try:
        token = stripped.decode("ascii")
    except UnicodeDecodeError as exc:
        raise _refuse("introspection_jwt_malformed", exc) from exc
    segments = token.split(".")
    if len(segments) != 3:  # an empty signature (alg none) is refused by its alg
        raise _refuse("introspection_jwt_malformed")
    try:
        header = parse_object(b64url_decode(segments[0]), JOSE_LIMITS)
    except (ValueError, JSONError) as exc:
        raise _refuse("introspection_jwt_malformed", exc) from exc
    typ, alg, kid = header.get("typ"), header.get("alg"), header.get("kid")
    if not isinstance(typ, str) or typ.lower() not in _TYPS:
        raise _refuse("introspection_jwt_typ")
    if not isinstance(alg, str) or alg not in algorithms:
        raise _refuse("introspection_jwt_alg")
    if not isinstance(kid, str) or not kid:
        raise _refuse("introspection_jwt_unknown_key")
    return token, kid


def check_claims(
    claims: Mapping[str, Any], settings: SignedResponseSettings, now: float
) -> dict[str, Any]:
    """Step 7 and 8: the signed claims' ``iss``, ``aud``, ``iat`` and ``exp``, then the
    ``token_introspection`` object.

    :raises IntrospectionUnavailable: with the rule's reason.
    """
    if claims.get("iss") != settings.issuer:
        raise _refuse("introspection_jwt_issuer")
    aud = claims.get("aud")
    named = aud == settings.audience or (
        isinstance(aud, list) and all(isinstance(a, str) for a in aud) and settings.audience in aud
    )
    if not named:
        raise _refuse("introspection_jwt_audience")
    iat, exp = claims.get("iat"), claims.get("exp")
    if (
        not isinstance(iat, int)
        or isinstance(iat, bool)
        or not now - settings.max_age - settings.leeway <= iat <= now + settings.leeway
    ):
        raise _refuse("introspection_jwt_iat")
    if exp is not None and (
        not isinstance(exp, int) or isinstance(exp, bool) or exp <= now - settings.leeway
    ):
        raise _refuse("introspection_jwt_expired")
    content = claims.get("token_introspection")
    if not isinstance(content, dict) or not isinstance(content.get("active"), bool):
        raise _refuse("introspection_jwt_content")
    return content


@dataclass(frozen=True, slots=True)
class SignedAnswer:
    """A verified RFC 9701 answer: its ``token_introspection`` object and the JWS itself
    (kept for the application's audit trail)."""

    content: dict[str, Any]
    jwt: str


class SignedResponseVerifier:
    """Verifies RFC 9701 answers (see the module's rules) and returns their
    ``token_introspection`` object.

    :param keys: the authorization server's keys by ``kid`` (:meth:`remote` builds the
        fetching, caching one; a test may pass a fixed key set).
    :param clock: epoch seconds, read once per answer.
    """

    def __init__(
        self,
        keys: KeyLookup,
        settings: SignedResponseSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._keys = keys
        self._clock = clock
        self._registry = jws.JWSRegistry(algorithms=list(settings.algorithms))

    @classmethod
    def remote(
        cls,
        client: httpx.AsyncClient,
        settings: SignedResponseSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> SignedResponseVerifier:
        """A verifier whose keys come from ``settings.jwks_uri`` over ``client``, with the
        JWT access-token validator's key-set machinery: cached for its TTL, fetched again on
        an unknown ``kid`` at most once per refresh interval, a failing endpoint asked at
        most once per retry interval, concurrent refreshes collapsed into one."""
        key_set = JWTAccessTokenValidator(
            client,
            JWTAccessTokenSettings(
                issuer=settings.issuer,
                audience=settings.audience,
                jwks_uri=settings.jwks_uri,
                algorithms=settings.algorithms,
                timeout=settings.timeout,
            ),
            clock=clock,
        )
        # The validator is used for its key set only (JWTAccessTokenValidator._key, the one
        # home of fetching, caching and rotating an authorization server's JWKS).
        return cls(key_set._key, settings, clock=clock)

    async def verify(self, body: bytes) -> SignedAnswer:
        """The ``token_introspection`` object of the signed answer ``body``, and the JWS.

        :raises IntrospectionUnavailable: with the reason of the first rule it fails.
        """
        token, kid = read_header(body, self.settings.algorithms)
        try:
            key = await self._keys(kid)
        except InvalidToken as exc:  # the key set holds no such kid, even refreshed
            raise _refuse("introspection_jwt_unknown_key", exc) from exc
        return SignedAnswer(self.check(token, key), token)

    def check(self, token: str, key: Any) -> dict[str, Any]:
        """Steps 6-8 for ``token`` (already through :func:`read_header`) and its ``key``."""
        try:
            verified = jws.deserialize_compact(token, key, registry=self._registry)
        except (JoseError, ValueError) as exc:
            raise _refuse("introspection_jwt_signature", exc) from exc
        try:
            claims = parse_object(verified.payload, DOCUMENT_LIMITS)
        except (ValueError, JSONError) as exc:
            raise _refuse("introspection_jwt_content", exc) from exc
        return check_claims(claims, self.settings, self._clock())
