"""The simulator's registry and test hooks: issued tokens, faults, latency, call counts.

Kept apart from the HTTP app so other parts of the simulator (and tests running it in
process) share one state object.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from ._signed import IntrospectionSigner

__all__ = [
    "DEFAULT_API_SECRET",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_SERVICE_ID",
    "DEFAULT_SERVICE_TOKEN",
    "FAULTS",
    "SimToken",
    "SimulatorState",
]

DEFAULT_SERVICE_ID: Final = "715948317"
DEFAULT_API_SECRET: Final = "sim-api-secret-not-for-production"  # noqa: S105
DEFAULT_SERVICE_TOKEN: Final = "sim-service-token-not-for-production"  # noqa: S105
DEFAULT_CLIENT_ID: Final = 1_727_421_520
FAULTS: Final = ("http_500", "http_429", "garbage", "truncated", "internal_error", "hang")


@dataclass(slots=True)
class SimToken:
    """One issued access token."""

    subject: str | None
    scopes: tuple[str, ...]
    expires_at: float  # epoch seconds
    client_id: int = DEFAULT_CLIENT_ID
    jkt: str | None = None
    refreshable: bool = False
    grant_type: str = "AUTHORIZATION_CODE"
    x5t_s256: str | None = None  # RFC 8705: bound to this certificate thumbprint
    resources: tuple[str, ...] = ()  # RFC 8707; empty: not restricted to any resource [U]
    acr: str | None = None  # RFC 9470
    auth_time: int | None = None  # epoch seconds
    authorization_details: tuple[dict[str, Any], ...] | None = None  # RFC 9396 elements
    grant_id: str | None = None
    consented_claims: tuple[str, ...] = ()
    client_id_alias: str | None = None
    client_id_alias_used: bool = False


@dataclass
class SimulatorState:
    """The simulator's registry and test hooks. Tests running it in-process may use this
    object directly; over HTTP the ``/sim/`` routes do the same."""

    service_id: str = DEFAULT_SERVICE_ID
    api_secret: str = field(default=DEFAULT_API_SECRET, repr=False)
    service_token: str = field(default=DEFAULT_SERVICE_TOKEN, repr=False)
    tokens: dict[str, SimToken] = field(default_factory=dict)
    latency: float = 0.0
    fault: str | None = None
    fault_remaining: int | None = None  # None: until cleared
    accept_unbound_with_proof: bool = True  # what Authlete is observed to do [S]
    iat_skew: int = 60  # [U] Authlete's window is not published
    calls: Counter[str] = field(default_factory=Counter)
    log: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=1000))
    signer: IntrospectionSigner = field(default_factory=IntrospectionSigner, repr=False)
    """The keys RFC 9701 answers are signed with (``rotate()`` them to test rotation)."""
    signed_flaw: str | None = None
    """How ``/auth/introspection/standard`` breaks its RFC 9701 answers (one of
    ``dpop_guard.devtools.simulator._signed.SIGNED_FLAWS``), until cleared; ``None``: it
    does not."""
    clock: Callable[[], float] = time.time
    """Drives every time check of the introspection APIs (expiry, ``iat``, ``maxAge``,
    nonces); tests inject one instead of sleeping."""
    _seen_jti: dict[str, float] = field(default_factory=dict, repr=False)

    def create_token(
        self,
        *,
        subject: str | None,
        scopes: tuple[str, ...] | list[str],
        lifetime: float = 3600.0,
        jkt: str | None = None,
        client_id: int = DEFAULT_CLIENT_ID,
        refreshable: bool = False,
        x5t_s256: str | None = None,
        resources: tuple[str, ...] | list[str] = (),
        acr: str | None = None,
        auth_time: int | None = None,
        authorization_details: tuple[dict[str, Any], ...] | list[dict[str, Any]] | None = None,
        grant_id: str | None = None,
        consented_claims: tuple[str, ...] | list[str] = (),
        client_id_alias: str | None = None,
        client_id_alias_used: bool = False,
    ) -> str:
        """Issue a token (what Authlete's ``/auth/token/create`` does), bound to ``jkt``
        (DPoP) and/or ``x5t_s256`` (a certificate), carrying the given facts."""
        token = secrets.token_urlsafe(32)
        self.tokens[token] = SimToken(
            subject=subject,
            scopes=tuple(scopes),
            expires_at=self.clock() + lifetime,
            client_id=client_id,
            jkt=jkt,
            refreshable=refreshable,
            x5t_s256=x5t_s256,
            resources=tuple(resources),
            acr=acr,
            auth_time=auth_time,
            authorization_details=(
                None if authorization_details is None else tuple(authorization_details)
            ),
            grant_id=grant_id,
            consented_claims=tuple(consented_claims),
            client_id_alias=client_id_alias,
            client_id_alias_used=client_id_alias_used,
        )
        return token

    def set_fault(
        self, fault: str | None, *, count: int | None = None, latency: float | None = None
    ) -> None:
        """Inject ``fault`` (one of :data:`FAULTS`) for the next ``count`` calls, or
        until cleared; ``latency`` delays every answer."""
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        if count is not None and (
            isinstance(count, bool) or not isinstance(count, int) or not 0 < count <= 1_000_000
        ):
            raise ValueError("count must be a whole number from 1 to 1000000")
        if latency is not None and (
            isinstance(latency, bool)
            or not isinstance(latency, int | float)
            or not 0 <= latency <= 60  # also refuses nan
        ):
            raise ValueError("latency must be a number of seconds from 0 to 60")
        self.fault, self.fault_remaining = fault, count
        if latency is not None:
            self.latency = latency

    def reset_counters(self) -> None:
        self.calls.clear()
        self.log.clear()

    def _take_fault(self) -> str | None:
        if self.fault is None:
            return None
        fault = self.fault
        if self.fault_remaining is not None:
            self.fault_remaining -= 1
            if self.fault_remaining <= 0:
                self.fault, self.fault_remaining = None, None
        return fault
