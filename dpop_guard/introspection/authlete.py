"""Authlete's ``/auth/introspection`` API (V2 and V3) as an :class:`Introspector`.

Authlete answers HTTP 200 with an ``action``; ``responseContent`` is a ready-made
``WWW-Authenticate`` value. Its response carries no ``cnf.jkt``: Authlete checks a DPoP
binding itself, and only when it is sent ``dpop``, ``htm`` and ``htu``. It also accepts an
*unbound* token sent with a proof. So on a token's first call with a proof, two requests go
out in parallel:

1. ``{token, scopes, dpop, htm, htu}``: Authlete validates the token, the scopes, and, if
   the token is bound, that the proof's key is the bound key.
2. ``{token}``, the binding probe: a DPoP-bound token introspected without a proof is
   refused (``UNAUTHORIZED``, "Expected a DPoP header but none was provided"), while an
   unbound token is ``OK``.

Call 1 ``OK`` and probe ``UNAUTHORIZED``: the token is bound to the key of the proof
Authlete just accepted, so ``TokenInfo.jkt`` is that proof's verified thumbprint. Probe
``OK``: unbound, ``jkt=None``. Anything else from the probe: unavailable (fail closed).
Both run concurrently, so a miss costs one round trip.

A token's binding rarely changes, so the probe's answer is remembered (:class:`Bindings`),
keyed by the token's SHA-256, for ``binding_ttl`` seconds (5 minutes by default) and never
past the token's ``expiresAt``: a token seen before (a cache entry past its TTL, a cache TTL
of 0) costs the check call alone. Only the binding is remembered, never whether the token
is active: every check still goes to Authlete, which still checks a bound token's proof
against its key. A check that answers another ``expiresAt`` (a token deleted and issued
again under the same value) runs the probe again before its answer is used; Authlete
refusing the token itself (gone, expired, for another API) forgets it; a binding added
later by ``/auth/token/update`` is seen within ``binding_ttl``.

What else the check call carries (fixed configuration or the route's requirement, never
something that makes a cached answer wrong for another request):

- ``resources`` (RFC 8707): :attr:`AuthleteSettings.resources`, this API's identifiers, so
  Authlete refuses a token issued for another API (the "cuckoo's token"). They are fixed
  configuration, part of :attr:`AuthleteIntrospector.cache_scope`, so a shared cache never
  serves one API's answer to another. On ``OK`` the token's own resources
  (``accessTokenResources``, else ``resources``), when it lists any, must also name one of
  ours: the same rule (:class:`~dpop_guard.introspection.Audience`), checked again here in
  case an Authlete ignores the parameter, and by the cache on every hit.
- ``acrValues`` and ``maxAge`` (RFC 9470) from the route: Authlete refuses a shortfall on a
  miss; ``acr`` and ``authTime`` come back in every ``OK`` and are cached, so the caller
  checks them locally on hits (the answer itself stays valid for every route).
- ``clientCertificate`` and ``clientCertificatePath`` (RFC 8705) when the request came with
  a client certificate, on **both** calls. Authlete then checks a certificate binding
  itself and returns ``certificateThumbprint``. The probe needs the certificate too: a
  token bound only to a certificate, probed without one, would be refused, and that
  refusal would be read as "bound to the DPoP key".

DPoP nonces issued by Authlete (a service with ``dpopNonceRequired``): a refusal that
carries ``dpopNonce`` because the proof lacked it (``use_dpop_nonce``, or
``invalid_dpop_proof`` for a proof whose ``nonce`` is not the one Authlete now expects)
raises :class:`UseDPoPNonce` with that nonce, which the middleware sends as the one
``DPoP-Nonce`` of a 401 ``use_dpop_nonce`` challenge; on ``OK`` the next nonce is put in
``request.lookup.dpop_nonce``. Neither is cached. Authlete checks its nonce only on a
miss: on a cache hit no Authlete nonce is checked (the middleware's own nonces, where a
route requires them, are checked on every request). Use one source per route, not both: a
proof carries one ``nonce``, and Authlete's and the middleware's are different values, so
a route requiring both could never be satisfied.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import anyio
import httpx

from .._bounded import MEMO_BUDGET, Memo
from .._digest import token_digest
from .._env import EnvReader
from .._reasons import IntrospectionReason
from ..challenges import parse_challenge
from ..errors import (
    DPoPGuardError,
    InsufficientScope,
    InsufficientUserAuthentication,
    IntrospectionUnavailable,
    InvalidDPoPProof,
    InvalidRequest,
    InvalidToken,
    UseDPoPNonce,
)
from . import (
    Audience,
    CacheScope,
    InactiveToken,
    RequestFacts,
    TokenInfo,
    authorization_details_from,
    resources_from_env,
    validate_resources,
)
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
from ._endpoint import check_header_secret, check_service_url
from ._http import PostTransport, as_transport

__all__ = ["AuthleteIntrospector", "AuthleteSettings", "Bindings", "CircuitBreaker"]

logger = logging.getLogger("dpop_guard.introspection")

DEFAULT_AUTHLETE_TIMEOUT: Final = 5.0
BINDINGS_BUDGET: Final = 4 * MEMO_BUDGET
"""Bytes :class:`Bindings` holds at most before it starts over: about 9,000 tokens."""
FORGOTTEN_LIMIT: Final = 4096
"""Tokens whose last forget :class:`Bindings` keeps, to refuse answers of probes that
raced it; past this it starts over and refuses every probe then in flight (safe)."""
DEFAULT_BINDING_TTL: Final = 300.0
"""Seconds a token's binding is remembered at most (``DPOP_GUARD_AUTHLETE_BINDING_TTL``)."""
_ACTION_STATUS = {"BAD_REQUEST": 400, "UNAUTHORIZED": 401, "FORBIDDEN": 403}
_ACTION_REASON: dict[str, IntrospectionReason] = {
    "BAD_REQUEST": "authlete_bad_request",
    "UNAUTHORIZED": "authlete_unauthorized",
    "FORBIDDEN": "authlete_forbidden",
}
# FORBIDDEN without a known code is not read as insufficient_scope: we never send
# ``scopes``, so Authlete cannot have judged them (a subject mismatch, for one, is
# FORBIDDEN with invalid_request).
_DEFAULT_CLASS: dict[str, type[DPoPGuardError]] = {
    "BAD_REQUEST": InvalidRequest,
    "UNAUTHORIZED": InvalidToken,
    "FORBIDDEN": InvalidToken,
}
_ERROR_CLASS: dict[str, type[DPoPGuardError]] = {
    "invalid_request": InvalidRequest,
    "invalid_token": InvalidToken,
    "insufficient_scope": InsufficientScope,
    "invalid_dpop_proof": InvalidDPoPProof,
    "use_dpop_nonce": UseDPoPNonce,
}
_STEP_UP: Final = "insufficient_user_authentication"
_RESOURCE_MISMATCH: Final = "invalid_target"
# RFC 9449 section 8.1: the DPoP-Nonce value is 1*NQCHAR; bounded so it fits a header.
_NONCE: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,512}")
_THUMBPRINT: Final = re.compile(r"[A-Za-z0-9_-]{43}")


ApiVersion = Literal["V2", "V3"]


@dataclass(frozen=True, kw_only=True, slots=True)
class AuthleteSettings:
    """How to reach Authlete's ``/auth/introspection``.

    V2: ``POST {base_url}/api/auth/introspection`` with Basic ``api_key:api_secret``.
    V3: ``POST {base_url}/api/{api_key}/auth/introspection`` with Bearer ``access_token``
    (``api_key`` is then the service id).

    :param timeout: seconds for one introspection in total, retries included.
    :param retries: extra attempts after a connection failure or a 429/502/503/504.
    :param binding_ttl: seconds a token's binding probe answer is used at most
        (:class:`Bindings`): how long a binding added later by Authlete's
        ``/auth/token/update`` may go unseen; ``0``: every miss probes.
    :param resources: this API's RFC 8707 resource identifiers, sent as ``resources`` on
        every miss so Authlete refuses tokens issued for another API (Authlete requires the
        token to cover each one sent, so list the one identifier tokens are issued for).
        ``()``: no audience check. :func:`dpop_guard.from_env` defaults it to the public URL.
    :raises ValueError: naming the field that is wrong.
    """

    base_url: str
    api_version: ApiVersion = "V3"
    api_key: str
    api_secret: str | None = field(default=None, repr=False)
    access_token: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_AUTHLETE_TIMEOUT
    retries: int = 1
    resources: tuple[str, ...] = ()
    binding_ttl: float = DEFAULT_BINDING_TTL

    def __post_init__(self) -> None:
        object.__setattr__(self, "resources", validate_resources(self.resources))
        # An origin and an optional path only; https unless loopback (see _endpoint).
        check_service_url("base_url", self.base_url)
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        for name in ("api_key", "api_secret", "access_token"):
            check_header_secret(name, getattr(self, name))
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
        if not 0 <= self.binding_ttl <= 86_400:  # also refuses nan
            raise ValueError(f"binding_ttl must be 0-86400 seconds, got {self.binding_ttl!r}")

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
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, default_resources: tuple[str, ...] = ()
    ) -> AuthleteSettings:
        """Read Authlete's own variable names: ``AUTHLETE_BASE_URL``,
        ``AUTHLETE_API_VERSION``, ``AUTHLETE_SERVICE_APIKEY``,
        ``AUTHLETE_SERVICE_APISECRET``, ``AUTHLETE_SERVICE_ACCESSTOKEN``, plus our
        ``DPOP_GUARD_AUTHLETE_TIMEOUT``, ``DPOP_GUARD_AUTHLETE_BINDING_TTL`` and
        ``DPOP_GUARD_RESOURCES`` (unset:
        ``default_resources``, which the builder sets to the public URL). Values are read
        by :class:`~dpop_guard._env.EnvReader` (stripped; control characters and non-finite
        numbers refused).

        :raises ValueError: naming what is missing or wrong (never a secret's value).
        """
        env = EnvReader(environ, "AUTHLETE_")
        base_url = check_service_url("AUTHLETE_BASE_URL", env.required("BASE_URL"))
        api_key = env.required("SERVICE_APIKEY")
        ours = EnvReader(environ, "DPOP_GUARD_")
        timeout = ours.number("AUTHLETE_TIMEOUT", DEFAULT_AUTHLETE_TIMEOUT)
        binding_ttl = ours.number("AUTHLETE_BINDING_TTL", DEFAULT_BINDING_TTL)
        version = env.text("API_VERSION", "V3")
        resources = resources_from_env(environ, default=default_resources)
        try:
            return cls(
                base_url=base_url,
                api_version=(version or "V3").upper(),  # type: ignore[arg-type]
                api_key=api_key,
                api_secret=env.text("SERVICE_APISECRET", secret=True),
                access_token=env.text("SERVICE_ACCESSTOKEN", secret=True),
                timeout=timeout,
                resources=resources,
                binding_ttl=binding_ttl,
            )
        except ValueError as exc:
            raise ValueError(f"AUTHLETE_*: {exc}") from None


@dataclass(frozen=True, slots=True)
class Binding:
    """What the binding probe said about one token, and when."""

    bound: bool
    """Refused without a proof: bound to a DPoP key."""
    expires_at: int
    """The token's ``expiresAt`` (Authlete's milliseconds) when the probe ran: a check
    answering another value is about a token issued again under the same value."""
    until: float
    """``clock`` time after which the answer is not used."""


class Bindings:
    """Whether each token seen is DPoP-bound (the binding probe's answer), remembered.

    Authlete issues a token bound or unbound, but its ``/auth/token/update`` can bind a
    token later, and a deleted token's value can be issued again. So an answer is used for
    ``ttl`` seconds at most (and never past the token's ``expiresAt``), is dropped when a
    check answers another ``expiresAt`` (a token issued again), and is forgotten when
    Authlete refuses the token itself (it does not exist, has expired, or is not meant for
    this API). A probe's answer is not remembered when its token was forgotten while the
    probe ran (:meth:`moment`, :meth:`learn`). Keys are the tokens' SHA-256 (no token is
    kept); the memo is bounded in bytes (:class:`~dpop_guard._bounded.Memo`, ``budget``)
    and starts over when full, which costs the probe again, nothing else. ``ttl=0``
    remembers nothing.
    """

    __slots__ = ("_clock", "_floor", "_forgotten", "_memo", "_moment", "ttl")

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        ttl: float = DEFAULT_BINDING_TTL,
        budget: int = BINDINGS_BUDGET,
    ) -> None:
        self._clock = clock
        self.ttl = ttl
        self._memo: Memo[bytes, Binding] = Memo(_unknown, _key_cost, budget=budget)
        # Forgets are numbered; a probe's answer is learned only if its token's last forget
        # (or the floor, once the map of last forgets started over) came before the probe.
        self._moment = 0
        self._forgotten: dict[bytes, int] = {}
        self._floor = 0

    def __len__(self) -> int:
        return len(self._memo)

    key = staticmethod(token_digest)

    def moment(self) -> int:
        """Read before a probe, given back to :meth:`learn`."""
        return self._moment

    def recall(self, key: bytes) -> Binding | None:
        """The remembered answer, or ``None`` (never seen, or no longer to be used)."""
        entry = self._memo.get(key)
        if entry is not None and entry.until <= self._clock():
            self._memo.discard(key)
            return None
        return entry

    def learn(self, key: bytes, bound: bool, expires_at: object, moment: int) -> None:
        """Remember the probe's answer for the token whose check answered ``expires_at``
        (Authlete's milliseconds): not when that token was forgotten since ``moment``
        (:meth:`moment` read before the probe), nor for a token without an expiry or one
        already expired."""
        if max(self._forgotten.get(key, 0), self._floor) > moment:
            return
        if type(expires_at) is not int:
            return
        now = self._clock()
        until = min(expires_at / 1000, now + self.ttl)
        if until > now:
            self._memo.put(key, Binding(bound, expires_at, until), len(key))

    def forget(self, key: bytes) -> None:
        self._moment += 1
        if len(self._forgotten) >= FORGOTTEN_LIMIT:
            self._forgotten.clear()
            self._floor = self._moment  # every probe in flight now is refused
        self._forgotten[key] = self._moment
        self._memo.discard(key)


def _unknown(key: bytes) -> Binding:
    raise LookupError("a binding is learned from the probe, never computed")


def _key_cost(key: bytes, value: Binding) -> int:
    return sys.getsizeof(key)


class AuthleteIntrospector:
    """Introspect access tokens with Authlete.

    :param client: the HTTP client: an :class:`AsyncioHTTPClient` (the lean default, about a
        tenth of httpx's CPU per call, asyncio only) or a pooled ``httpx.AsyncClient``
        (tests use ``httpx.MockTransport``; use it under trio or behind an HTTP proxy).
        The owner closes it.
    :param settings: endpoint, API version and credentials.
    :param breaker: a :class:`CircuitBreaker`; by default 5 outages in a row open it for
        2 s. Pass ``None`` to disable.
    :param clock: seconds since the epoch, for the remembered bindings' expiry
        (:class:`Bindings`).

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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.breaker = breaker_from(breaker)
        self.bindings = Bindings(clock, ttl=settings.binding_ttl)
        """What the binding probe answered for each token seen (see the module docstring)."""
        self._transport = as_transport(client, settings.timeout)
        self.settings = settings
        self._url = settings.introspection_url
        # Authlete's rule: a token listing resources must name one of ours; one listing
        # none passes (Authlete judges the ``resources`` we send it).
        self._audience = Audience(
            frozenset(settings.resources), required=False, reason="authlete_resource_mismatch"
        )
        self.cache_scope = CacheScope.of(
            "authlete",
            self._audience,
            url=self._url,
            version=settings.api_version,
            service=settings.api_key,
        )
        """What a cache of these answers is keyed by (API version, endpoint, service,
        resources) and checks again on every hit (the resources)."""
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
        certificate: dict[str, Any] = {}
        if (cert := request.client_certificate) is not None:
            certificate["clientCertificate"] = cert.pem()
            if chain := list(cert.chain_pems()):
                certificate["clientCertificatePath"] = chain
        body: dict[str, Any] = {"token": token, **certificate}
        if self.settings.resources:
            body["resources"] = list(self.settings.resources)
        if request.acr_values:
            body["acrValues"] = list(request.acr_values)
        if request.max_age is not None and request.max_age > 0:  # Authlete: 0 is no check
            body["maxAge"] = request.max_age
        try:
            with anyio.fail_after(self.settings.timeout):
                if request.proof is None:
                    data = await self._post(body)
                    return self._token_info(data, request, jkt=None)
                body.update(dpop=request.proof, htm=request.method, htu=request.htu)
                key = Bindings.key(token)
                moment = self.bindings.moment()
                known = self.bindings.recall(key)
                probe_body = {"token": token, **certificate}
                check: dict[str, Any] | BaseException
                probe: dict[str, Any] | BaseException | None = None
                if known is None:
                    # The probe differs from the check only by the missing proof: with the
                    # same certificate, its refusal can only mean "needs the DPoP proof".
                    check, probe = await self._both(body, probe_body)
                else:  # the probe answered before: the check alone
                    check = await self._post(body)
                    reissued = check.get("expiresAt") != known.expires_at
                    if check.get("action") == "OK" and reissued:  # under the same value
                        self.bindings.forget(key)
                        moment, known = self.bindings.moment(), None
                        probe = await self._post(probe_body)
        except TimeoutError as exc:
            raise _unavailable("authlete_timeout", exc) from exc

        if isinstance(check, BaseException):
            raise check
        if check.get("action") != "OK":
            error = _failure(check, request)
            if isinstance(error, InactiveToken):  # the token itself: gone, expired, elsewhere
                self.bindings.forget(key)
            raise error
        bound = known.bound if known is not None else _bound_by(probe)
        info = self._token_info(check, request, jkt=request.jkt if bound else None)
        if known is None:
            self.bindings.learn(key, bound, check.get("expiresAt"), moment)
        return info

    async def _both(
        self, check: dict[str, Any], probe: dict[str, Any]
    ) -> tuple[dict[str, Any] | BaseException, dict[str, Any] | BaseException]:
        """The check and the probe, concurrently; each one's answer or its outage."""
        results: dict[str, dict[str, Any] | BaseException] = {}

        async def run(name: str, payload: dict[str, Any]) -> None:
            try:
                results[name] = await self._post(payload)
            except IntrospectionUnavailable as exc:
                results[name] = exc

        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "check", check)
            tg.start_soon(run, "probe", probe)
        return results["check"], results["probe"]

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
        try:
            return json_object(response, prefix="authlete")
        except RecursionError as exc:  # nested deeper than the JSON parser goes
            raise _unavailable("authlete_bad_response", exc) from exc

    def _token_info(
        self, data: dict[str, Any], request: RequestFacts, *, jkt: str | None
    ) -> TokenInfo:
        if data.get("action") != "OK":
            raise _failure(data, request)
        info = _parse_ok(data, jkt)
        self._audience.check(info.resources)
        nonce = data.get("dpopNonce")
        if nonce is not None:
            request.lookup.dpop_nonce = _nonce(nonce)
        return info


def _bound_by(probe: dict[str, Any] | BaseException | None) -> bool:
    """What the probe's answer says: ``UNAUTHORIZED`` bound to a DPoP key, ``OK`` not;
    anything else, or an outage, fails closed."""
    if isinstance(probe, BaseException):
        raise probe
    action: object = None if probe is None else probe.get("action")
    if action not in ("UNAUTHORIZED", "OK"):
        raise _unavailable("authlete_probe_inconclusive")
    return action == "UNAUTHORIZED"


def _failure(data: dict[str, Any], request: RequestFacts) -> DPoPGuardError:
    """The error for an answer whose ``action`` is not ``OK``."""
    action = data.get("action")
    if action == "INTERNAL_SERVER_ERROR":
        return _unavailable("authlete_internal_error")
    if action not in _ACTION_STATUS:
        return _unavailable("authlete_unknown_action")
    return _rejection(action, data, request)


def _nonce(value: object) -> str:
    """Authlete's ``dpopNonce``, checked before it can reach a header."""
    if not isinstance(value, str) or not _NONCE.fullmatch(value):
        raise _unavailable("authlete_bad_response")
    return value


def _strings(value: object) -> tuple[str, ...] | None:
    """A JSON array of strings (``null`` is empty), or ``None`` when it is anything else."""
    if value is None:
        return ()
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def _optional_str(value: object) -> bool:
    return value is None or isinstance(value, str)


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
    thumbprint, acr, auth_time = (
        data.get("certificateThumbprint"),
        data.get("acr"),
        data.get("authTime"),
    )
    grant_id, alias = data.get("grantId"), data.get("clientIdAlias")
    # The token's own (possibly narrowed) resources; the original request's otherwise.
    raw_resources = data.get("accessTokenResources")
    if raw_resources is None:
        raw_resources = data.get("resources")
    resources = _strings(raw_resources)
    claims = _strings(data.get("consentedClaims"))
    details = data.get("authorizationDetails")
    if (
        (
            thumbprint is not None
            and not (isinstance(thumbprint, str) and _THUMBPRINT.fullmatch(thumbprint))
        )
        or not all(_optional_str(v) for v in (acr, grant_id, alias))
        or (
            auth_time is not None
            and (not isinstance(auth_time, int) or isinstance(auth_time, bool) or auth_time < 0)
        )
        or resources is None
        or claims is None
        or (details is not None and not isinstance(details, dict))
    ):
        raise _unavailable("authlete_bad_response")
    try:
        # Authlete wraps RFC 9396's array: {"elements": [...]}.
        authorization_details = (
            None if details is None else authorization_details_from(details.get("elements"))
        )
    except ValueError as exc:
        raise _unavailable("authlete_bad_response", exc) from exc
    return TokenInfo(
        subject=subject,
        client_id=None if client_id is None else str(client_id),
        scopes=frozenset(scopes),
        # Authlete's expiresAt is in milliseconds.
        expires_at=None if expires_at is None else expires_at // 1000,
        jkt=jkt,
        x5t_s256=thumbprint,
        acr=acr or None,
        # authTime is in seconds; Authlete's Java DTO sends 0 when it is not known.
        auth_time=auth_time or None,
        resources=resources,
        authorization_details=authorization_details,
        grant_id=grant_id or None,
        consented_claims=claims,
        client_id_alias=alias or None,
    )


def _proof_nonce(proof: str | None) -> str | None:
    """The ``nonce`` claim of a proof the middleware has already verified, or ``None``."""
    if proof is None:
        return None
    try:
        payload = proof.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error, RecursionError):
        return None
    nonce = claims.get("nonce") if isinstance(claims, dict) else None
    return nonce if isinstance(nonce, str) else None


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
    if code == _RESOURCE_MISMATCH:
        # Resources are fixed configuration: an answer about the token alone.
        return InactiveToken(
            "authlete_resource_mismatch",
            "The access token is not meant for this resource.",
            challenge_params=extra,
        )
    if code == _STEP_UP:
        # RFC 9470: the challenge names the route's requirement, not Authlete's wording.
        return InsufficientUserAuthentication(
            "authlete_insufficient_user_authentication",
            description,
            acr_values=request.acr_values,
            max_age=request.max_age,
        )
    nonce = data.get("dpopNonce")
    if action == "UNAUTHORIZED" and nonce is not None:
        fresh = _nonce(nonce)
        # A proof refused while Authlete expects a nonce the proof does not carry: ask for
        # it. A proof that already carried exactly this nonce was refused for another cause.
        if cls is UseDPoPNonce or (
            cls is InvalidDPoPProof and _proof_nonce(request.proof) != fresh
        ):
            return UseDPoPNonce("authlete_use_dpop_nonce", description, nonce=fresh)
    if cls is UseDPoPNonce:
        cls = InvalidDPoPProof
    if cls is InvalidToken and action == "UNAUTHORIZED" and data.get("usable") is False:
        # "does not exist" (existent false) or "has expired" (existent true, usable
        # false): about the token alone, so a cache may remember it. A binding or proof
        # failure comes with usable true and stays a plain InvalidToken.
        cls = InactiveToken
    return cls(reason, description, status=status, challenge_params=extra)
