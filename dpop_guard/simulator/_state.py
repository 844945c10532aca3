"""The simulator's registry and test hooks: issued tokens, faults, latency, call counts.

Kept apart from the HTTP app so other parts of the simulator (and tests running it in
process) share one state object.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Final

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
    ) -> str:
        """Issue a token (what Authlete's ``/auth/token/create`` does)."""
        token = secrets.token_urlsafe(32)
        self.tokens[token] = SimToken(
            subject=subject,
            scopes=tuple(scopes),
            expires_at=time.time() + lifetime,
            client_id=client_id,
            jkt=jkt,
            refreshable=refreshable,
        )
        return token

    def set_fault(
        self, fault: str | None, *, count: int | None = None, latency: float | None = None
    ) -> None:
        """Inject ``fault`` (one of :data:`FAULTS`) for the next ``count`` calls, or
        until cleared; ``latency`` delays every answer."""
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
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
