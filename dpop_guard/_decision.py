"""One decision per protected request: a structured log record on the ``dpop_guard``
logger and a :class:`~dpop_guard.metrics.Decision` for the metrics hook.

The facts travel as explicit values: the middleware fills a :class:`Trace` as it goes
(verification and introspection times) and hands the introspector chain a
:class:`~dpop_guard.introspection.Lookup` on the request facts, on which a caching
introspector notes whether it answered from its cache. No context variables.
"""

from __future__ import annotations

import logging
import time
import traceback
from typing import Literal

from .introspection import Lookup
from .metrics import Decision, Metrics

__all__ = ["DecisionLog", "Trace", "log_unexpected", "render_traceback"]

logger = logging.getLogger("dpop_guard")


class Trace:
    """What one request cost, filled in by the middleware as it goes. (A plain slotted
    class: built on every request, where a dataclass with default factories costs about
    three times as much.)"""

    __slots__ = (
        "interaction_id",
        "introspection_seconds",
        "lookup",
        "started",
        "verification_seconds",
    )

    def __init__(self, interaction_id: str | None = None, started: float | None = None) -> None:
        """:param started: when the request began (``time.perf_counter``); now if not given."""
        self.started: float = time.perf_counter() if started is None else started
        self.interaction_id = interaction_id
        self.verification_seconds: float | None = None
        self.introspection_seconds: float | None = None
        self.lookup = Lookup()


class DecisionLog:
    """Logs each decision (rejections at INFO, acceptances at DEBUG) and hands it to
    ``metrics``. Never logs a token or a proof: only reasons, statuses and timings."""

    __slots__ = ("metrics",)

    def __init__(self, metrics: Metrics | None) -> None:
        self.metrics = metrics

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
        cache_hit = trace.lookup.cache_hit
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
