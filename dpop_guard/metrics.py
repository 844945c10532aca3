"""Observability: one :class:`Decision` per protected request, handed to a :class:`Metrics`
hook, and the same facts as structured ``extra`` fields on the ``dpop_guard`` log records
(``dpop_guard_outcome``, ``dpop_guard_reason``, ``dpop_guard_status``,
``dpop_guard_latency_ms``, ``dpop_guard_cache_hit``). Never a token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

__all__ = ["Decision", "Metrics"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What the guard decided about one protected request."""

    outcome: Literal["accepted", "rejected"]
    reason: str | None
    """The internal reason of a rejection (``htu_mismatch``, ...); ``None`` when accepted."""
    status: int | None
    """The status the guard answered, or ``None`` when the app answers."""
    seconds: float
    """Time spent in the guard (verification, introspection, replay record)."""
    introspection_seconds: float | None
    """Time spent introspecting, when the introspector was called."""
    verification_seconds: float | None
    """Time spent verifying the proof, when there was one to verify."""
    cache_hit: bool | None
    """``True`` when a caching introspector answered from its cache, ``False`` on a miss,
    ``None`` when nothing was cached or looked up."""


@runtime_checkable
class Metrics(Protocol):
    """Receives every decision; must be fast and must not raise."""

    def observe(self, decision: Decision) -> None:
        """Record ``decision``."""
        ...
