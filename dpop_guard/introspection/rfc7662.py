"""Standard token introspection (RFC 7662) as an :class:`Introspector`: any authorization
server that returns ``cnf.jkt`` (RFC 9449 section 6.2) for DPoP-bound tokens.

Unlike Authlete's API, the answer says what the token is bound to, so the binding is checked
locally (the proof is never sent) and one call per miss suffices. Client authentication is
``client_secret_basic`` or ``private_key_jwt`` (RFC 7523).

With a :class:`~dpop_guard.introspection._signed.SignedResponseVerifier` both introspectors
ask for RFC 9701 signed answers (``Accept: application/token-introspection+jwt``, or
Authlete's ``httpAcceptHeader``) and accept nothing else: a plain JSON answer is a 503
``introspection_unsigned``. The verified ``token_introspection`` object then goes through
:func:`token_info_from`, the one reader of an answer's facts, signed or not.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

import httpx
from joserfc import jwk as jose_jwk
from joserfc import jwt as jose_jwt

from .._env import EnvReader
from .._reasons import Upstream
from ..errors import IntrospectionUnavailable
from . import (
    Audience,
    CacheScope,
    InactiveToken,
    RequestFacts,
    TokenInfo,
    audiences,
    resources_from_env,
    standard_claims,
    validate_resources,
)
from ._breaker import (
    DEFAULT_BREAKER,
    BreakerOption,
    breaker_from,
    call_through,
    outage,
    post,
)
from ._breaker import unavailable as _unavailable
from ._endpoint import check_service_url
from ._http import PostTransport, as_transport
from ._signed import JWT_RESPONSE_TYPE, SignedAnswer, SignedResponseVerifier
from .authlete import AuthleteSettings

__all__ = [
    "AuthleteStandardIntrospector",
    "RFC7662Introspector",
    "RFC7662Settings",
    "token_info_from",
]

AuthMethod = Literal["client_secret_basic", "private_key_jwt"]


@dataclass(frozen=True, kw_only=True, slots=True)
class RFC7662Settings:
    """Where and how to introspect.

    :param url: the introspection endpoint.
    :param client_id: the resource server's client id at the authorization server.
    :param client_secret: for ``client_secret_basic``.
    :param private_key: a private JWK (dict) for ``private_key_jwt``.
    :param audience: if set, the token's ``aud`` must contain it (the older, single-valued
        spelling of ``resources``; both may be given, and either then matches).
    :param resources: this API's RFC 8707 identifiers: the token's ``aud`` must name one.
    :param timeout: seconds per introspection in total.
    """

    url: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    private_key: Mapping[str, Any] | None = field(default=None, repr=False)
    audience: str | None = None
    timeout: float = 5.0
    resources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "resources", validate_resources(self.resources))
        check_service_url("url", self.url)  # an origin and a path; https unless loopback
        if not self.client_id:
            raise ValueError("client_id is required")
        if (self.client_secret is None) == (self.private_key is None):
            raise ValueError("give exactly one of client_secret and private_key")
        if not self.timeout > 0:  # also refuses nan
            raise ValueError(f"timeout must be positive, got {self.timeout!r}")

    @property
    def auth_method(self) -> AuthMethod:
        return "client_secret_basic" if self.client_secret is not None else "private_key_jwt"

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, default_resources: tuple[str, ...] = ()
    ) -> RFC7662Settings:
        """``DPOP_GUARD_INTROSPECTION_URL``, ``_CLIENT_ID``, ``_CLIENT_SECRET`` or
        ``_PRIVATE_KEY`` (a JWK as JSON), ``_AUDIENCE``, ``DPOP_GUARD_AUTHLETE_TIMEOUT``'s
        sibling ``DPOP_GUARD_INTROSPECTION_TIMEOUT``, and ``DPOP_GUARD_RESOURCES`` (unset:
        ``default_resources`` unless ``_AUDIENCE`` is set, so an existing configuration
        keeps its meaning).

        :raises ValueError: naming what is missing or wrong (never a secret's value).
        """
        env = EnvReader(environ, "DPOP_GUARD_INTROSPECTION_")
        private_key = env.json_object("PRIVATE_KEY", what="a JWK in JSON", secret=True)
        timeout = env.number("TIMEOUT", 5.0)
        audience = env.text("AUDIENCE")
        resources = resources_from_env(environ, default=() if audience else default_resources)
        try:
            return cls(
                url=env.text("URL") or "",
                client_id=env.text("CLIENT_ID") or "",
                client_secret=env.text("CLIENT_SECRET", secret=True),
                private_key=private_key,
                audience=audience,
                timeout=timeout,
                resources=resources,
            )
        except ValueError as exc:
            raise ValueError(f"{env.prefix}*: {exc}") from None


class RFC7662Introspector:
    """Introspect with a standard RFC 7662 endpoint.

    ``active: false`` is 401 ``invalid_token``; an answer for a token whose ``aud`` names
    none of the configured resources (or the older ``audience``) likewise. ``cnf.jkt``
    becomes :attr:`TokenInfo.jkt`, ``cnf["x5t#S256"]`` :attr:`TokenInfo.x5t_s256`; ``acr``,
    ``auth_time`` and ``authorization_details`` are kept. A member of the wrong type is the
    server's fault: :class:`IntrospectionUnavailable`, never read as "unbound". Outages (a
    non-200, a timeout, garbage) are :class:`IntrospectionUnavailable`, behind the same
    circuit breaker as the Authlete client.

    :param client: an :class:`~dpop_guard.introspection._http.AsyncioHTTPClient` or an
        ``httpx.AsyncClient``.
    :param signed: ask for RFC 9701 signed answers only, and verify them with this.
    """

    def __init__(
        self,
        client: httpx.AsyncClient | PostTransport,
        settings: RFC7662Settings,
        *,
        breaker: BreakerOption = DEFAULT_BREAKER,
        signed: SignedResponseVerifier | None = None,
    ) -> None:
        self._transport = as_transport(client, settings.timeout)
        self.settings = settings
        self.breaker = breaker_from(breaker)
        self.signed = signed
        self._audience = _audience(audiences(settings.audience, settings.resources))
        self.cache_scope = CacheScope.of(
            "rfc7662",
            self._audience,
            url=settings.url,
            client_id=settings.client_id,
            **(signed.settings.scope_facts() if signed is not None else {}),
        )
        """What a cache of these answers is keyed by (the endpoint and our client id at
        it, the audience), and checks again on every hit."""
        self._key = (
            jose_jwk.import_key(dict(settings.private_key))
            if settings.private_key is not None
            else None
        )
        if settings.client_secret is not None:
            import base64
            from urllib.parse import quote

            raw = f"{quote(settings.client_id, safe='')}:{quote(settings.client_secret, safe='')}"
            self._basic: str | None = "Basic " + base64.b64encode(raw.encode()).decode()
        else:
            self._basic = None

    def _assertion(self) -> str:
        assert self._key is not None
        now = int(time.time())
        claims = {
            "iss": self.settings.client_id,
            "sub": self.settings.client_id,
            "aud": self.settings.url,
            "jti": secrets.token_urlsafe(16),
            "iat": now,
            "exp": now + 60,
        }
        alg = self.settings.private_key.get("alg") if self.settings.private_key else None
        alg = alg or {"EC": "ES256", "RSA": "PS256", "OKP": "EdDSA"}[self._key.key_type]
        return jose_jwt.encode({"alg": alg, "typ": "JWT"}, claims, self._key, algorithms=[alg])

    async def introspect(self, token: str, *, request: RequestFacts) -> TokenInfo:
        """Introspect ``token`` (the proof is not sent: the binding is checked locally)."""
        return await call_through(
            self.breaker, lambda: self._introspect(token), open_reason="introspection_circuit_open"
        )

    async def _introspect(self, token: str) -> TokenInfo:
        form = {"token": token, "token_type_hint": "access_token"}
        headers = [
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Accept", "application/json" if self.signed is None else JWT_RESPONSE_TYPE),
        ]
        if self._basic is not None:
            headers.append(("Authorization", self._basic))
        else:
            form["client_id"] = self.settings.client_id
            form["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            form["client_assertion"] = self._assertion()
        response = await post(
            self._transport,
            self.settings.url,
            headers,
            urlencode(form).encode(),
            prefix="introspection",
            timeout=self.settings.timeout,
        )
        if self.signed is not None:
            answer = await _verified(self.signed, response.body, self.settings.url)
            return token_info_from(answer.content, self._audience, signed_jwt=answer.jwt)
        try:
            data = json.loads(response.body)
        except ValueError as exc:
            raise _unavailable("introspection_bad_response", exc) from exc
        if not isinstance(data, dict) or not isinstance(data.get("active"), bool):
            raise _unavailable("introspection_bad_response")
        return token_info_from(data, self._audience)


async def _verified(verifier: SignedResponseVerifier, body: bytes, url: str) -> SignedAnswer:
    """The verified signed answer from ``url``."""
    try:
        return await verifier.verify(body)
    except IntrospectionUnavailable as exc:
        exc.upstream_url = exc.upstream_url or url  # for the outage's log line
        raise


def _audience(accepted: frozenset[str]) -> Audience:
    """RFC 7662's rule: ``aud`` must name one of ``accepted`` (when any is configured)."""
    return Audience(accepted, required=True, reason="introspection_audience")


def token_info_from(
    data: dict[str, Any],
    audience: Audience | str | frozenset[str] | None,
    *,
    prefix: Upstream = "introspection",
    signed_jwt: str | None = None,
) -> TokenInfo:
    """The facts in an RFC 7662 answer (``active`` already known to be a bool), signed
    (RFC 9701, its ``token_introspection`` object) or not.

    :param audience: the rule ``aud`` must pass, or the identifiers it must name one of
        (a single one, or none: no check).
    :param signed_jwt: the verified signed answer the facts come from, kept with them.
    """
    if not data["active"]:
        raise InactiveToken("introspection_inactive", "The access token is not active.")
    if not isinstance(audience, Audience):
        audience = _audience(
            audience if isinstance(audience, frozenset) else audiences(audience, ())
        )
    audience.check(data.get("aud"))
    try:
        extra = standard_claims(data)
    except ValueError as exc:
        raise _unavailable(outage(prefix, "bad_response"), exc) from exc
    scope, exp, sub, client_id = (
        data.get("scope"),
        data.get("exp"),
        data.get("sub"),
        data.get("client_id"),
    )
    cnf = data.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    if (
        (scope is not None and not isinstance(scope, str))
        or (exp is not None and (not isinstance(exp, int) or isinstance(exp, bool)))
        or (sub is not None and not isinstance(sub, str))
        or (client_id is not None and not isinstance(client_id, str))
        or (jkt is not None and not isinstance(jkt, str))
    ):
        raise _unavailable("introspection_bad_response")
    return TokenInfo(
        subject=sub,
        client_id=client_id,
        scopes=frozenset((scope or "").split()),
        expires_at=exp,
        jkt=jkt,
        introspection_jwt=signed_jwt,
        **extra,
    )


class AuthleteStandardIntrospector:
    """RFC 7662 introspection through Authlete's ``/auth/introspection/standard`` API.

    Authlete answers with ``action`` and, on ``OK``, the RFC 7662 response as a JSON string
    in ``responseContent``; its ``cnf.jkt`` (when present) carries the binding, which is then
    checked locally as for any RFC 7662 server. Whether Authlete includes ``cnf.jkt`` there
    is not documented (see ``authlete-introspection.md``); without it, bound tokens look
    unbound and are refused by default: fail closed.

    With ``signed``, Authlete is asked for an RFC 9701 answer (``httpAcceptHeader``,
    ``rsUri`` = the verifier's audience, ``introspectionSignAlg`` = its first algorithm,
    so never RS256 unless configured first): action ``JWT`` carries the signed answer, and
    ``OK`` (plain JSON) is a 503 ``introspection_unsigned``. Those parameters exist in
    Authlete 3.0's API (V3) only: with V2, ``signed`` is refused when built.

    :raises ValueError: ``signed`` with the V2 API.
    """

    def __init__(
        self,
        client: httpx.AsyncClient | PostTransport,
        settings: AuthleteSettings,
        *,
        audience: str | None = None,
        breaker: BreakerOption = DEFAULT_BREAKER,
        signed: SignedResponseVerifier | None = None,
    ) -> None:
        if signed is not None and settings.api_version != "V3":
            raise ValueError(
                "signed introspection responses (RFC 9701) need Authlete's V3 API "
                "(Authlete 3.0); the V2 API has no JWT answer"
            )
        self._transport = as_transport(client, settings.timeout)
        self.settings = settings
        self.audience = audience
        self.signed = signed
        # The same resources as the Authlete introspector's, checked against ``aud``.
        self._audience = _audience(audiences(audience, settings.resources))
        self.cache_scope = CacheScope.of(
            "authlete-standard",
            self._audience,
            url=settings.introspection_url + "/standard",
            service=settings.api_key,
            **(signed.settings.scope_facts() if signed is not None else {}),
        )
        """What a cache of these answers is keyed by (endpoint, service, audience)."""
        self.breaker = breaker_from(breaker)
        self._url = settings.introspection_url + "/standard"
        self._headers = (
            ("Authorization", settings.authorization),
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
        )

    async def introspect(self, token: str, *, request: RequestFacts) -> TokenInfo:
        """Introspect ``token``; the proof is not sent."""
        return await call_through(
            self.breaker, lambda: self._introspect(token), open_reason="introspection_circuit_open"
        )

    def _request(self, token: str) -> dict[str, Any]:
        request: dict[str, Any] = {
            "parameters": urlencode({"token": token, "token_type_hint": "access_token"})
        }
        if self.signed is not None:
            signed = self.signed.settings
            request["httpAcceptHeader"] = JWT_RESPONSE_TYPE
            request["rsUri"] = signed.audience
            request["introspectionSignAlg"] = signed.algorithms[0]
        return request

    async def _introspect(self, token: str) -> TokenInfo:
        response = await post(
            self._transport,
            self._url,
            self._headers,
            json.dumps(self._request(token)).encode(),
            prefix="authlete",
            timeout=self.settings.timeout,
        )
        try:
            answer = json.loads(response.body)
            action = answer.get("action")
            content = answer["responseContent"] if action in ("OK", "JWT") else None
            if not isinstance(content, str):
                raise TypeError("responseContent is not a string")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise _unavailable("authlete_bad_response", exc) from exc
        if self.signed is not None:
            # ``OK`` is a plain answer: the verifier refuses it as unsigned.
            signed = await _verified(self.signed, content.encode(), self._url)
            return token_info_from(
                signed.content, self._audience, prefix="authlete", signed_jwt=signed.jwt
            )
        try:
            data = json.loads(content) if action == "OK" else None
        except ValueError as exc:
            raise _unavailable("authlete_bad_response", exc) from exc
        if not isinstance(data, dict) or not isinstance(data.get("active"), bool):
            raise _unavailable("authlete_bad_response")
        return token_info_from(data, self._audience, prefix="authlete")
