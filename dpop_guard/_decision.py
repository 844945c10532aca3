"""One decision per protected request: a structured log record on the ``dpop_guard``
logger and a :class:`~dpop_guard.metrics.Decision` for the metrics hook.

A record's ``extra`` fields (:data:`FIELDS`): the outcome, the internal reason, the wire
``error``, the status, the method, the path (without the query string), the peer's
address, the token's client id and subject when the token was looked up, the time spent,
whether the token came from a cache, and the FAPI interaction id. Never a token, a proof,
a header value or a secret: the path and the identifiers are cut to
:data:`MAX_FIELD_CHARS` characters with control characters escaped (a percent-decoded path
may hold a line feed, which would forge a line in a plain-text log).

The facts travel as explicit values: the middleware runs the costly stages through a
:class:`Trace` (verification and introspection times) and hands the introspector chain a
:class:`~dpop_guard.introspection.Lookup` on the request facts, on which a caching
introspector notes whether it answered from its cache. No context variables.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

from .facts import RequestFacts, TokenInfo
from .introspection import InactiveToken, Introspector, SyncTokenLookup
from .metrics import DEPENDENCIES, Decision, DependencyMetrics, Metrics

if TYPE_CHECKING:
    from .challenges import ErrorResponse
    from .errors import DPoPGuardError
    from .nonce import NonceSource
    from .proof import ProofVerifier, VerifiedProof

__all__ = [
    "FIELDS",
    "MAX_FIELD_CHARS",
    "NO_TRACE",
    "DecisionLog",
    "Trace",
    "log_refusal",
    "log_unexpected",
    "render_traceback",
]

logger = logging.getLogger("dpop_guard")

FIELDS: Final = (
    "dpop_guard_outcome",
    "dpop_guard_reason",
    "dpop_guard_error",
    "dpop_guard_status",
    "dpop_guard_method",
    "dpop_guard_path",
    "dpop_guard_peer",
    "dpop_guard_client_id",
    "dpop_guard_subject",
    "dpop_guard_latency_ms",
    "dpop_guard_cache_hit",
    "dpop_guard_interaction_id",
)
"""The ``extra`` fields of a decision record."""

MAX_FIELD_CHARS: Final = 256
_ESCAPES: Final = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}


def _clean(value: object) -> str | None:
    """``value`` as text fit for a log line: at most :data:`MAX_FIELD_CHARS` characters,
    control characters escaped; ``None`` stays ``None``."""
    if value is None:
        return None
    return str(value)[:MAX_FIELD_CHARS].translate(_ESCAPES)


class Trace:
    """What one request cost, for the decision log and the metrics: the request's stages
    that cost time (proof verification, token lookup) run through it, and it notes their
    times and whether the token came from a cache. When nobody listens (no metrics, the
    ``dpop_guard`` logger below INFO) the middleware uses :data:`NO_TRACE` instead, which
    runs the same stages and notes nothing."""

    __slots__ = (
        "cache_hit",
        "info",
        "interaction_id",
        "introspection_seconds",
        "scope",
        "started",
        "verification_seconds",
    )

    def __init__(
        self,
        interaction_id: str | None = None,
        started: float | None = None,
        scope: Mapping[str, Any] | None = None,
    ) -> None:
        """:param started: when the request began (``time.perf_counter``); now if not given.
        :param scope: the request's ASGI scope, for the method, path and peer of its record.
        """
        self.started: float = time.perf_counter() if started is None else started
        self.interaction_id = interaction_id
        self.scope = scope
        self.verification_seconds: float | None = None
        self.introspection_seconds: float | None = None
        self.cache_hit: bool | None = None
        self.info: TokenInfo | None = None  # the token's facts, once looked up

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
            self.info = info
        return info

    async def introspect(
        self, introspector: Introspector, token: str, facts: RequestFacts
    ) -> TokenInfo:
        """``introspector.introspect(token, request=facts)``, timed, with what the
        introspector reported on ``facts.lookup`` (a cache hit)."""
        started = time.perf_counter()
        try:
            self.info = info = await introspector.introspect(token, request=facts)
        finally:
            self.introspection_seconds = time.perf_counter() - started
            self.cache_hit = facts.lookup.cache_hit
        return info

    def accepted(self, decisions: DecisionLog) -> None:
        """The request passed: one decision."""
        decisions.observe("accepted", None, None, self)


class _NoTrace(Trace):
    """The trace of a request nobody listens to: the same stages, nothing noted (one
    shared instance, :data:`NO_TRACE`: none of its methods stores anything, so it holds
    nothing of any request)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(None, 0.0, None)

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
    """Logs each decision (rejections at INFO, acceptances at DEBUG: why, in
    :mod:`dpop_guard.logs`) and hands it to ``metrics``, which also hears the dependencies
    when it has a ``dependency`` method (:class:`~dpop_guard.metrics.DependencyMetrics`).
    Never logs a token or a proof: only reasons, statuses, timings and the request's
    method, path, peer, client id and subject (:data:`FIELDS`)."""

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
        response: ErrorResponse | None = None,
    ) -> None:
        """Record one decision.

        :param response: the refusal sent, whose body's ``error`` the record repeats.
        """
        level = logging.INFO if outcome == "rejected" else logging.DEBUG
        logs = logger.isEnabledFor(level)
        if not logs and self.metrics is None:
            return  # nobody listens: an accepted request in production, usually
        seconds = time.perf_counter() - trace.started
        cache_hit = trace.cache_hit
        if logs:
            error = None if response is None else json.loads(response.body).get("error")
            _log(level, outcome, reason, error, status, seconds, trace, trace.info)
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


def log_refusal(exc: DPoPGuardError, response: ErrorResponse, scope: Mapping[str, Any]) -> None:
    """Log a refusal made in the app (a scope or step-up check at the endpoint,
    :mod:`dpop_guard.starlette`) like the middleware's: one INFO record with the same
    fields, the client id and subject from the request's credentials."""
    if not logger.isEnabledFor(logging.INFO):
        return
    auth = scope.get("auth")
    trace = Trace(getattr(auth, "interaction_id", None), None, scope)
    error = json.loads(response.body).get("error")
    fields = _Who(getattr(auth, "client_id", None), getattr(auth, "subject", None))
    _log(logging.INFO, "rejected", exc.reason, error, response.status, None, trace, fields)


class _Who:
    """Whose token it was, for the record: a client id and a subject, either unknown."""

    __slots__ = ("client_id", "subject")

    def __init__(self, client_id: object, subject: object) -> None:
        self.client_id = client_id
        self.subject = subject


def _log(
    level: int,
    outcome: Literal["accepted", "rejected"],
    reason: str | None,
    error: str | None,
    status: int | None,
    seconds: float | None,
    trace: Trace,
    who: TokenInfo | _Who | None,
) -> None:
    """The decision's record: its fields as ``extra``, and in the message too, so a
    plain-text formatter shows them."""
    scope = trace.scope or {}
    peer = scope.get("client")
    method = _clean(scope.get("method") or ("GET" if scope.get("type") == "websocket" else None))
    path = _clean(scope.get("path"))
    client_id = _clean(who.client_id) if who is not None else None
    subject = _clean(who.subject) if who is not None else None
    extra = {
        "dpop_guard_outcome": outcome,
        "dpop_guard_reason": reason,
        "dpop_guard_error": error,
        "dpop_guard_status": status,
        "dpop_guard_method": method,
        "dpop_guard_path": path,
        "dpop_guard_peer": _clean(peer[0]) if peer else None,
        "dpop_guard_client_id": client_id,
        "dpop_guard_subject": subject,
        "dpop_guard_latency_ms": None if seconds is None else round(seconds * 1000, 3),
        "dpop_guard_cache_hit": trace.cache_hit,
        "dpop_guard_interaction_id": _clean(trace.interaction_id),
    }
    known = (("client", client_id), ("subject", subject), ("peer", extra["dpop_guard_peer"]))
    who_text = "".join(f" {name}={value}" for name, value in known if value is not None)
    if outcome == "rejected":
        logger.log(
            level,
            "dpop_guard rejected %s %s: %s (%s %s)%s",
            method,
            path,
            reason,
            status,
            error or "-",
            who_text,
            extra=extra,
        )
    else:
        logger.log(level, "dpop_guard accepted %s %s%s", method, path, who_text, extra=extra)


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
