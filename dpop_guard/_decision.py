"""One decision per protected request: a structured log record on the ``dpop_guard``
logger and a :class:`~dpop_guard.metrics.Decision` for the metrics hook.

The facts travel as explicit values: the middleware runs the costly stages through a
:class:`Trace` (verification and introspection times) and hands the introspector chain a
:class:`~dpop_guard.introspection.Lookup` on the request facts, on which a caching
introspector notes whether it answered from its cache. No context variables.
"""

from __future__ import annotations

import logging
import time
import traceback
from typing import TYPE_CHECKING, Final, Literal

from .introspection import InactiveToken, Introspector, RequestFacts, SyncTokenLookup, TokenInfo
from .metrics import DEPENDENCIES, Decision, DependencyMetrics, Metrics

if TYPE_CHECKING:
    from .nonce import NonceSource
    from .proof import ProofVerifier, VerifiedProof

__all__ = ["NO_TRACE", "DecisionLog", "Trace", "log_unexpected", "render_traceback"]

logger = logging.getLogger("dpop_guard")


class Trace:
    """What one request cost, for the decision log and the metrics: the request's stages
    that cost time (proof verification, token lookup) run through it, and it notes their
    times and whether the token came from a cache. When nobody listens (no metrics, the
    ``dpop_guard`` logger below INFO) the middleware uses :data:`NO_TRACE` instead, which
    runs the same stages and notes nothing."""

    __slots__ = (
        "cache_hit",
        "interaction_id",
        "introspection_seconds",
        "started",
        "verification_seconds",
    )

    def __init__(self, interaction_id: str | None = None, started: float | None = None) -> None:
        """:param started: when the request began (``time.perf_counter``); now if not given."""
        self.started: float = time.perf_counter() if started is None else started
        self.interaction_id = interaction_id
        self.verification_seconds: float | None = None
        self.introspection_seconds: float | None = None
        self.cache_hit: bool | None = None

    def verify(
        self,
        verifier: ProofVerifier,
        raw: bytes,
        method: str,
        url: str,
        token: str,
        now: int,
        nonces: NonceSource | None,
    ) -> VerifiedProof:
        """``verifier.verify(...)``, timed."""
        started = time.perf_counter()
        try:
            return verifier.verify(
                raw, method=method, url=url, access_token=token, now=now, nonces=nonces
            )
        finally:
            self.verification_seconds = time.perf_counter() - started

    def look_up(self, lookup: SyncTokenLookup, token: str) -> TokenInfo | None:
        """``lookup.cached_sync(token)``, timed; a remembered answer is a cache hit."""
        started = time.perf_counter()
        try:
            info = lookup.cached_sync(token)
        except InactiveToken:
            self.cache_hit = True  # a remembered dead token
            raise
        if info is not None:
            self.cache_hit = True
            self.introspection_seconds = time.perf_counter() - started
        return info

    async def introspect(
        self, introspector: Introspector, token: str, facts: RequestFacts
    ) -> TokenInfo:
        """``introspector.introspect(token, request=facts)``, timed, with what the
        introspector reported on ``facts.lookup`` (a cache hit)."""
        started = time.perf_counter()
        try:
            return await introspector.introspect(token, request=facts)
        finally:
            self.introspection_seconds = time.perf_counter() - started
            self.cache_hit = facts.lookup.cache_hit

    def accepted(self, decisions: DecisionLog) -> None:
        """The request passed: one decision."""
        decisions.observe("accepted", None, None, self)


class _NoTrace(Trace):
    """The trace of a request nobody listens to: the same stages, nothing noted (one
    shared instance, :data:`NO_TRACE`: none of its methods stores anything, so it holds
    nothing of any request)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(None, 0.0)

    def verify(
        self,
        verifier: ProofVerifier,
        raw: bytes,
        method: str,
        url: str,
        token: str,
        now: int,
        nonces: NonceSource | None,
    ) -> VerifiedProof:
        return verifier.verify(
            raw, method=method, url=url, access_token=token, now=now, nonces=nonces
        )

    def look_up(self, lookup: SyncTokenLookup, token: str) -> TokenInfo | None:
        return lookup.cached_sync(token)

    async def introspect(
        self, introspector: Introspector, token: str, facts: RequestFacts
    ) -> TokenInfo:
        return await introspector.introspect(token, request=facts)

    def accepted(self, decisions: DecisionLog) -> None:
        return None


NO_TRACE: Final[Trace] = _NoTrace()
"""The trace of every request nobody listens to."""


class DecisionLog:
    """Logs each decision (rejections at INFO, acceptances at DEBUG) and hands it to
    ``metrics``. Never logs a token or a proof: only reasons, statuses and timings."""

    __slots__ = ("metrics",)

    def __init__(self, metrics: Metrics | None) -> None:
        self.metrics = metrics
        if isinstance(metrics, DependencyMetrics):  # it hears the dependencies too
            DEPENDENCIES.listen(metrics)

    def observe(
        self,
        outcome: Literal["accepted", "rejected"],
        reason: str | None,
        status: int | None,
        trace: Trace,
    ) -> None:
        """Record one decision."""
        level = logging.INFO if outcome == "rejected" else logging.DEBUG
        logs = logger.isEnabledFor(level)
        if not logs and self.metrics is None:
            return  # nobody listens: an accepted request in production, usually
        seconds = time.perf_counter() - trace.started
        cache_hit = trace.cache_hit
        if logs:
            extra = {
                "dpop_guard_outcome": outcome,
                "dpop_guard_reason": reason,
                "dpop_guard_status": status,
                "dpop_guard_latency_ms": round(seconds * 1000, 3),
                "dpop_guard_cache_hit": cache_hit,
                "dpop_guard_interaction_id": trace.interaction_id,
            }
            if outcome == "rejected":
                logger.info("dpop_guard rejected a request: %s (%s)", reason, status, extra=extra)
            else:
                logger.debug("dpop_guard accepted a request", extra=extra)
        if self.metrics is not None:
            self.metrics.observe(
                Decision(
                    outcome,
                    reason,
                    status,
                    seconds,
                    introspection_seconds=trace.introspection_seconds,
                    verification_seconds=trace.verification_seconds,
                    cache_hit=cache_hit,
                )
            )


def log_unexpected(exc: BaseException) -> None:
    """Log an unexpected exception at ERROR: its type and a traceback rendered without
    locals and without exception messages.

    Never ``exc_info``: the frames of a request hold the token and the proof as locals,
    and common renderers (rich, structlog's, Sentry's) print them. Messages are left out
    too, since a library may quote its input (``int(token)`` puts the token in its
    ``ValueError``). The record carries no exception object.
    """
    logger.error(
        "dpop_guard: unexpected %s; answering 503\n%s",
        type(exc).__name__,
        render_traceback(exc),
        extra={"dpop_guard_reason": "internal_error", "dpop_guard_exception": type(exc).__name__},
    )


_MAX_CHAIN = 8


def render_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` and of the exceptions it was raised from (at most
    eight), as file, line, function and source line: no locals, no messages."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < _MAX_CHAIN and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    blocks = []
    for item in reversed(chain):
        stack = traceback.StackSummary.extract(
            traceback.walk_tb(item.__traceback__), capture_locals=False
        )
        kind = type(item)
        name = (
            kind.__qualname__
            if kind.__module__ == "builtins"
            else (f"{kind.__module__}.{kind.__qualname__}")
        )
        blocks.append(
            "Traceback (most recent call last):\n"
            + "".join(stack.format())
            + f"{name}: (message withheld)\n"
        )
    return "\nThe above exception led to the following exception:\n\n".join(blocks)
