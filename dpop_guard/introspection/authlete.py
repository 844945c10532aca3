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

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import anyio
import httpx

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
from ..settings import AuthleteSettings
from . import RequestFacts, TokenInfo
from ._http import (
    AsyncioHTTPClient,
    PostTransport,
    TransportConnectError,
    TransportError,
    TransportTimeout,
    as_transport,
)

__all__ = ["AuthleteIntrospector"]

logger = logging.getLogger("dpop_guard.introspection")

_RETRY_STATUSES = frozenset({429, 502, 503, 504})
T = TypeVar("T")


class _Default:
    """The "not given" sentinel: ``None`` means no circuit breaker."""


_DEFAULT = _Default()
_ACTION_STATUS = {"BAD_REQUEST": 400, "UNAUTHORIZED": 401, "FORBIDDEN": 403}
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


def _unavailable(reason: str, cause: BaseException | None = None) -> IntrospectionUnavailable:
    # The reason is logged; never the request or response body (they hold the token).
    logger.warning("introspection unavailable: %s", reason, extra={"dpop_guard_reason": reason})
    exc = IntrospectionUnavailable(reason)
    exc.__cause__ = cause
    return exc


class CircuitBreaker:
    """Fail fast while Authlete is down.

    After ``threshold`` consecutive outages (timeouts, refused connections, 5xx, garbage)
    the circuit opens: calls fail at once with 503 for ``cooldown`` seconds instead of each
    holding a connection for the whole timeout. Then one call is let through; its success
    closes the circuit, its failure opens it again. Answers from Authlete, rejections
    included, count as success: the service is up.
    """

    def __init__(
        self,
        threshold: int = 5,
        cooldown: float = 2.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._open_until: float | None = None
        self._probing = False

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    def allow(self) -> bool:
        """Whether a call may go out now."""
        if self._open_until is None:
            return True
        if self._probing or self._clock() < self._open_until:
            return False
        self._probing = True  # half-open: exactly one trial call
        return True

    def success(self) -> None:
        self._failures, self._open_until, self._probing = 0, None, False

    async def call(self, fn: Callable[[], Awaitable[T]], *, open_reason: str) -> T:
        """Run ``fn`` through the breaker: refused at once while open; its outcome counts."""
        if not self.allow():
            raise IntrospectionUnavailable(open_reason)
        try:
            result = await fn()
        except IntrospectionUnavailable:
            self.failure()
            raise
        except DPoPGuardError:
            self.success()  # the server answered: it is up
            raise
        except BaseException:
            self.abandon()  # cancelled: neither verdict
            raise
        self.success()
        return result

    def abandon(self) -> None:
        """A call ended without a verdict (cancelled): let another trial through."""
        self._probing = False

    def failure(self) -> None:
        self._failures += 1
        if self._probing or self._failures >= self.threshold:
            if self._open_until is None or self._probing:
                logger.warning(
                    "authlete circuit open for %.1f s",
                    self.cooldown,
                    extra={"dpop_guard_reason": "authlete_circuit_open"},
                )
            self._open_until = self._clock() + self.cooldown
            self._probing = False


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
    :class:`IntrospectionUnavailable`, which the middleware answers with 503.

    >>> async with httpx.AsyncClient() as client:
    ...     introspector = AuthleteIntrospector(client, AuthleteSettings.from_env())
    """

    def __init__(
        self,
        client: httpx.AsyncClient | PostTransport,
        settings: AuthleteSettings,
        *,
        breaker: CircuitBreaker | _Default | None = _DEFAULT,
    ) -> None:
        self.breaker = CircuitBreaker() if isinstance(breaker, _Default) else breaker
        self._transport = as_transport(client, settings.timeout)
        self.settings = settings
        self._url = settings.introspection_url
        self._headers = (
            ("Authorization", settings.authorization),
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
        )

    @classmethod
    def lean(cls, settings: AuthleteSettings) -> tuple[AuthleteIntrospector, AsyncioHTTPClient]:
        """An introspector on a new :class:`AsyncioHTTPClient`; close the client at
        shutdown."""
        client = AsyncioHTTPClient()
        return cls(client, settings), client

    async def introspect(self, token: str, *, request: RequestFacts) -> TokenInfo:
        """Introspect ``token``; see the module docstring for the two-call protocol."""
        if self.breaker is None:
            return await self._introspect(token, request)
        return await self.breaker.call(
            lambda: self._introspect(token, request), open_reason="authlete_circuit_open"
        )

    async def _introspect(self, token: str, request: RequestFacts) -> TokenInfo:
        body: dict[str, Any] = {"token": token}
        if request.scopes:
            body["scopes"] = list(request.scopes)
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
        attempts = self.settings.retries + 1
        payload = json.dumps(body, separators=(",", ":")).encode()
        for attempt in range(attempts):
            last = attempt + 1 == attempts
            try:
                response = await self._transport.post(self._url, self._headers, payload)
            except TransportTimeout as exc:
                raise _unavailable("authlete_timeout", exc) from exc
            except TransportConnectError as exc:
                if not last:
                    await anyio.sleep(0.05 * (attempt + 1))
                    continue
                raise _unavailable("authlete_unreachable", exc) from exc
            except TransportError as exc:
                raise _unavailable("authlete_transport_error", exc) from exc
            if response.status in _RETRY_STATUSES and not last:
                await anyio.sleep(0.05 * (attempt + 1))
                continue
            if response.status != 200:
                raise _unavailable(f"authlete_http_{response.status}")
            try:
                data = json.loads(response.body)
            except ValueError as exc:
                raise _unavailable("authlete_bad_response", exc) from exc
            if not isinstance(data, dict):
                raise _unavailable("authlete_bad_response")
            return data
        raise AssertionError("unreachable")  # pragma: no cover

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
    reason = f"authlete_{action.lower()}"
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
    return cls(reason, description, status=status, challenge_params=extra)
