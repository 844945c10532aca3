"""Authlete's ``/auth/introspection`` API (V2 and V3) as an :class:`Introspector`.

Authlete answers HTTP 200 with an ``action``; ``responseContent`` is a ready-made
``WWW-Authenticate`` value. Its response carries no ``cnf.jkt``: Authlete checks a DPoP
binding itself, and only when it is sent ``dpop``, ``htm`` and ``htu``. It also accepts an
*unbound* token sent with a proof. So on every call with a proof, two requests go out in
parallel:

1. ``{token, scopes, dpop, htm, htu}``: Authlete validates the token, the scopes, and, if
   the token is bound, that the proof's key is the bound key.
2. ``{token}``, the binding probe: a DPoP-bound token introspected without a proof is
   refused (``UNAUTHORIZED``, "Expected a DPoP header but none was provided"), while an
   unbound token is ``OK``.

Call 1 ``OK`` and probe ``UNAUTHORIZED``: the token is bound to the key of the proof
Authlete just accepted, so ``TokenInfo.jkt`` is that proof's verified thumbprint. Probe
``OK``: unbound, ``jkt=None``. Anything else from the probe: unavailable (fail closed).
Both run concurrently, so a miss costs one round trip.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import anyio
import httpx

from .._env import EnvReader
from .._reasons import IntrospectionReason
from ..challenges import parse_challenge
from ..errors import (
    DPoPGuardError,
    InsufficientScope,
    IntrospectionUnavailable,
    InvalidDPoPProof,
    InvalidRequest,
    InvalidToken,
    UseDPoPNonce,
)
from . import InactiveToken, RequestFacts, TokenInfo
from ._breaker import (
    DEFAULT_BREAKER,
    BreakerOption,
    CircuitBreaker,
    breaker_from,
    call_through,
    json_object,
    post,
)
from ._breaker import unavailable as _unavailable
from ._http import PostTransport, as_transport

__all__ = ["AuthleteIntrospector", "AuthleteSettings", "CircuitBreaker"]

logger = logging.getLogger("dpop_guard.introspection")

DEFAULT_AUTHLETE_TIMEOUT: Final = 5.0
_ACTION_STATUS = {"BAD_REQUEST": 400, "UNAUTHORIZED": 401, "FORBIDDEN": 403}
_ACTION_REASON: dict[str, IntrospectionReason] = {
    "BAD_REQUEST": "authlete_bad_request",
    "UNAUTHORIZED": "authlete_unauthorized",
    "FORBIDDEN": "authlete_forbidden",
}
_DEFAULT_CLASS: dict[str, type[DPoPGuardError]] = {
    "BAD_REQUEST": InvalidRequest,
    "UNAUTHORIZED": InvalidToken,
    "FORBIDDEN": InsufficientScope,
}
_ERROR_CLASS: dict[str, type[DPoPGuardError]] = {
    "invalid_request": InvalidRequest,
    "invalid_token": InvalidToken,
    "insufficient_scope": InsufficientScope,
    "invalid_dpop_proof": InvalidDPoPProof,
    "use_dpop_nonce": UseDPoPNonce,
}


ApiVersion = Literal["V2", "V3"]


@dataclass(frozen=True, kw_only=True, slots=True)
class AuthleteSettings:
    """How to reach Authlete's ``/auth/introspection``.

    V2: ``POST {base_url}/api/auth/introspection`` with Basic ``api_key:api_secret``.
    V3: ``POST {base_url}/api/{api_key}/auth/introspection`` with Bearer ``access_token``
    (``api_key`` is then the service id).

    :param timeout: seconds for one introspection in total, retries included.
    :param retries: extra attempts after a connection failure or a 429/502/503/504.
    :raises ValueError: naming the field that is wrong.
    """

    base_url: str
    api_version: ApiVersion = "V3"
    api_key: str
    api_secret: str | None = field(default=None, repr=False)
    access_token: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_AUTHLETE_TIMEOUT
    retries: int = 1

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an absolute http(s) URL, got {self.base_url!r}")
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        version = self.api_version.upper()
        if version not in ("V2", "V3"):
            raise ValueError(f"api_version must be V2 or V3, got {self.api_version!r}")
        object.__setattr__(self, "api_version", version)
        if not self.api_key:
            raise ValueError("api_key (the service API key / service id) is required")
        if version == "V2" and not self.api_secret:
            raise ValueError("api_secret is required for the V2 API")
        if version == "V3":
            if not self.access_token:
                raise ValueError("access_token is required for the V3 API")
            if not self.api_key.isdigit():
                raise ValueError("api_key must be the numeric service id for the V3 API")
        if not self.timeout > 0:  # also refuses nan
            raise ValueError(f"timeout must be positive, got {self.timeout!r}")
        if self.retries < 0:
            raise ValueError("retries must not be negative")

    @property
    def introspection_url(self) -> str:
        """The endpoint for this API version."""
        if self.api_version == "V2":
            return f"{self.base_url}/api/auth/introspection"
        return f"{self.base_url}/api/{self.api_key}/auth/introspection"

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header value for calls to Authlete."""
        if self.api_version == "V2":
            raw = f"{self.api_key}:{self.api_secret}".encode()
            return "Basic " + base64.b64encode(raw).decode("ascii")
        return f"Bearer {self.access_token}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AuthleteSettings:
        """Read Authlete's own variable names: ``AUTHLETE_BASE_URL``,
        ``AUTHLETE_API_VERSION``, ``AUTHLETE_SERVICE_APIKEY``,
        ``AUTHLETE_SERVICE_APISECRET``, ``AUTHLETE_SERVICE_ACCESSTOKEN``, plus our
        ``DPOP_GUARD_AUTHLETE_TIMEOUT``. Values are read by :class:`~dpop_guard._env.EnvReader`
        (stripped; control characters and non-finite numbers refused).

        :raises ValueError: naming what is missing or wrong (never a secret's value).
        """
        env = EnvReader(environ, "AUTHLETE_")
        base_url = env.required("BASE_URL")
        api_key = env.required("SERVICE_APIKEY")
        timeout = EnvReader(environ, "DPOP_GUARD_").number(
            "AUTHLETE_TIMEOUT", DEFAULT_AUTHLETE_TIMEOUT
        )
        version = env.text("API_VERSION", "V3")
        try:
            return cls(
                base_url=base_url,
                api_version=(version or "V3").upper(),  # type: ignore[arg-type]
                api_key=api_key,
                api_secret=env.text("SERVICE_APISECRET", secret=True),
                access_token=env.text("SERVICE_ACCESSTOKEN", secret=True),
                timeout=timeout,
            )
        except ValueError as exc:
            raise ValueError(f"AUTHLETE_*: {exc}") from None


class AuthleteIntrospector:
    """Introspect access tokens with Authlete.

    :param client: the HTTP client: an :class:`AsyncioHTTPClient` (the lean default, about a
        tenth of httpx's CPU per call, asyncio only) or a pooled ``httpx.AsyncClient``
        (tests use ``httpx.MockTransport``; use it under trio or behind an HTTP proxy).
        The owner closes it.
    :param settings: endpoint, API version and credentials.
    :param breaker: a :class:`CircuitBreaker`; by default 5 outages in a row open it for
        2 s. Pass ``None`` to disable.

    Every call is bounded by ``settings.timeout`` in total, retries included; retries
    happen only on a refused connection or a 429/502/503/504. Failures raise
    :class:`IntrospectionUnavailable`, which the middleware answers with 503. For example::

        async with httpx.AsyncClient() as client:
            introspector = AuthleteIntrospector(client, AuthleteSettings.from_env())
    """

    def __init__(
        self,
        client: httpx.AsyncClient | PostTransport,
        settings: AuthleteSettings,
        *,
        breaker: BreakerOption = DEFAULT_BREAKER,
    ) -> None:
        self.breaker = breaker_from(breaker)
        self._transport = as_transport(client, settings.timeout)
        self.settings = settings
        self._url = settings.introspection_url
        self._headers = (
            ("Authorization", settings.authorization),
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
        )

    async def introspect(self, token: str, *, request: RequestFacts) -> TokenInfo:
        """Introspect ``token``; see the module docstring for the two-call protocol."""
        return await call_through(
            self.breaker,
            lambda: self._introspect(token, request),
            open_reason="authlete_circuit_open",
        )

    async def _introspect(self, token: str, request: RequestFacts) -> TokenInfo:
        # No "scopes": Authlete would answer FORBIDDEN for a route the token does not
        # cover, an answer about the route that cannot be cached for the token. The token's
        # scopes come back in every OK answer, and the caller checks them locally, so a
        # token lacking a route's scope costs one round of calls, not one per request.
        body: dict[str, Any] = {"token": token}
        try:
            with anyio.fail_after(self.settings.timeout):
                if request.proof is None:
                    data = await self._post(body)
                    return self._token_info(data, request, jkt=None)
                body.update(dpop=request.proof, htm=request.method, htu=request.htu)
                results: dict[str, dict[str, Any] | BaseException] = {}

                async def run(name: str, payload: dict[str, Any]) -> None:
                    try:
                        results[name] = await self._post(payload)
                    except IntrospectionUnavailable as exc:
                        results[name] = exc

                async with anyio.create_task_group() as tg:
                    tg.start_soon(run, "check", body)
                    tg.start_soon(run, "probe", {"token": token})
        except TimeoutError as exc:
            raise _unavailable("authlete_timeout", exc) from exc

        check, probe = results["check"], results["probe"]
        if isinstance(check, BaseException):
            raise check
        if check.get("action") != "OK":
            raise _failure(check, request)
        if isinstance(probe, BaseException):
            raise probe
        probe_action = probe.get("action")
        if probe_action == "UNAUTHORIZED":
            return self._token_info(check, request, jkt=request.jkt)
        if probe_action == "OK":
            return self._token_info(check, request, jkt=None)
        raise _unavailable("authlete_probe_inconclusive")

    async def _post(self, body: Mapping[str, Any]) -> dict[str, Any]:
        payload = json.dumps(body, separators=(",", ":")).encode()
        response = await post(
            self._transport,
            self._url,
            self._headers,
            payload,
            prefix="authlete",
            retries=self.settings.retries,
        )
        return json_object(response, prefix="authlete")

    def _token_info(
        self, data: dict[str, Any], request: RequestFacts, *, jkt: str | None
    ) -> TokenInfo:
        if data.get("action") == "OK":
            return _parse_ok(data, jkt)
        raise _failure(data, request)


def _failure(data: dict[str, Any], request: RequestFacts) -> DPoPGuardError:
    """The error for an answer whose ``action`` is not ``OK``."""
    action = data.get("action")
    if action == "INTERNAL_SERVER_ERROR":
        return _unavailable("authlete_internal_error")
    if action not in _ACTION_STATUS:
        return _unavailable("authlete_unknown_action")
    return _rejection(action, data, request)


def _parse_ok(data: dict[str, Any], jkt: str | None) -> TokenInfo:
    subject = data.get("subject")
    client_id = data.get("clientId")
    scopes = data.get("scopes") or []
    expires_at = data.get("expiresAt")
    if (
        (subject is not None and not isinstance(subject, str))
        or (client_id is not None and not isinstance(client_id, (int, str)))
        or not isinstance(scopes, list)
        or not all(isinstance(s, str) for s in scopes)
        or (
            expires_at is not None
            and (not isinstance(expires_at, int) or isinstance(expires_at, bool))
        )
    ):
        raise _unavailable("authlete_bad_response")
    return TokenInfo(
        subject=subject,
        client_id=None if client_id is None else str(client_id),
        scopes=frozenset(scopes),
        # Authlete's expiresAt is in milliseconds.
        expires_at=None if expires_at is None else expires_at // 1000,
        jkt=jkt,
    )


def _rejection(action: str, data: dict[str, Any], request: RequestFacts) -> DPoPGuardError:
    """Turn a BAD_REQUEST/UNAUTHORIZED/FORBIDDEN answer into our typed error, keeping
    Authlete's error code, description and ``error_uri``. The scheme is always DPoP."""
    params: dict[str, str] = {}
    content = data.get("responseContent")
    if isinstance(content, str):
        try:
            _, params = parse_challenge(content)
        except ValueError:
            params = {}
    code = params.get("error", "")
    cls = _ERROR_CLASS.get(code, _DEFAULT_CLASS[action])
    description = params.get("error_description")
    status = _ACTION_STATUS[action]
    reason = _ACTION_REASON[action]
    extra = {k: v for k, v in params.items() if k == "error_uri"}
    logger.info(
        "authlete rejected the token: %s %s",
        action,
        data.get("resultCode"),
        extra={"dpop_guard_reason": reason},
    )
    if cls is InsufficientScope:
        scope = params.get("scope") or " ".join(request.scopes)
        return InsufficientScope(
            reason, description, scope=scope, status=status, challenge_params=extra
        )
    nonce = data.get("dpopNonce")
    if cls is UseDPoPNonce:
        if isinstance(nonce, str) and nonce:
            return UseDPoPNonce(reason, description, nonce=nonce)
        cls = InvalidDPoPProof
    if cls is InvalidToken and action == "UNAUTHORIZED" and data.get("usable") is False:
        # "does not exist" (existent false) or "has expired" (existent true, usable
        # false): about the token alone, so a cache may remember it. A binding or proof
        # failure comes with usable true and stays a plain InvalidToken.
        cls = InactiveToken
    return cls(reason, description, status=status, challenge_params=extra)
