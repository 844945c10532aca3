"""What every introspector shares on its way out: the circuit breaker, the one bounded POST
(retries, timeouts, transport failures mapped to ``IntrospectionUnavailable``), and the
log lines for an outage.

An outage is logged once per transition, not once per request: the first failure after a
success ("unavailable", with the reason, the URL and the cause), the circuit opening, a
trial call failing with another reason than the last logged, and the recovery. Without a
circuit breaker there is no state to follow, so every failed call is logged. A line holds
the upstream's URL (service URLs hold no user info: :mod:`._endpoint`), the reason and the
exception's type; never a request, a response body, a token or a credential.

``breaker`` means the same for every introspector: left out, a new :class:`CircuitBreaker`
with the defaults; ``None``, no breaker at all; an instance, that breaker (which several
introspectors may share).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Literal, TypeVar, cast

import anyio
import httpx

from .._reasons import IntrospectionReason, Outage, Upstream
from ..errors import DPoPGuardError, IntrospectionUnavailable
from ..metrics import DEPENDENCIES, BreakerState, BreakerTransition, UpstreamCall
from ._http import (
    PostTransport,
    Response,
    TransportConnectError,
    TransportError,
    UpstreamCause,
    cause_of,
    status_cause,
)

__all__ = [
    "DEFAULT_BREAKER",
    "BreakerOption",
    "CircuitBreaker",
    "breaker_from",
    "call_through",
    "json_object",
    "log_outage",
    "outage",
    "post",
    "report_fetch",
    "unavailable",
]

logger = logging.getLogger("dpop_guard.introspection")

T = TypeVar("T")
# Worth a second attempt: the server said "not now", or a gateway in front of it did.
RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
_RETRY_BACKOFF: Final = 0.05


def unavailable(
    reason: IntrospectionReason,
    cause: BaseException | None = None,
    *,
    upstream_status: int | None = None,
    url: str | None = None,
) -> IntrospectionUnavailable:
    """An outage with ``reason``; logged where its breaker changes state
    (:func:`log_outage`), not here, so that a request is one line at most.

    :param url: the upstream's URL, for the log line.
    """
    exc = IntrospectionUnavailable(reason)
    exc.upstream_status = upstream_status
    exc.upstream_url = url
    exc.__cause__ = cause
    return exc


def log_outage(exc: IntrospectionUnavailable, what: str = "unavailable") -> None:
    """One WARNING line for an outage: ``introspection <what>: <reason> <url> (<detail>)``.
    The detail is the upstream's HTTP status or the failure's exception type, never its
    message (an answer's text could echo anything)."""
    status = exc.upstream_status
    source = exc.__cause__
    detail = f"HTTP {status}" if status is not None else type(source).__name__ if source else ""
    logger.warning(
        "introspection %s: %s%s%s",
        what,
        exc.reason,
        f" {exc.upstream_url}" if exc.upstream_url else "",
        f" ({detail})" if detail else "",
        extra={
            "dpop_guard_reason": exc.reason,
            "dpop_guard_upstream_status": status,
            "dpop_guard_upstream_url": exc.upstream_url,
        },
    )


def outage(upstream: Upstream, what: Outage | UpstreamCause) -> IntrospectionReason:
    """``<upstream>_<what>``: every such pair is an :data:`IntrospectionReason`
    (tests/test_reasons.py checks each one, and that each cause is an outage word)."""
    word = what.value if isinstance(what, UpstreamCause) else what
    return cast(IntrospectionReason, f"{upstream}_{word}")


class CircuitBreaker:
    """Fail fast while the introspection endpoint is down.

    After ``threshold`` consecutive outages (timeouts, refused connections, 5xx, garbage)
    the circuit opens: calls fail at once with 503 for ``cooldown`` seconds instead of each
    holding a connection for the whole timeout. Then one call is let through; its success
    closes the circuit, its failure opens it again. Answers from the server, rejections
    included, count as success: the service is up.

    Its state is reported to :data:`~dpop_guard.metrics.DEPENDENCIES` (a gauge read on
    each scrape, and an event per transition), labelled ``upstream``.

    :param upstream: the label; by default the upstream of its first call (``authlete``
        or ``introspection``, from the reason it refuses calls with while open).
    """

    def __init__(
        self,
        threshold: int = 5,
        cooldown: float = 2.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        upstream: str | None = None,
    ) -> None:
        self.upstream = upstream or "introspection"
        self._named = upstream is not None
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._open_until: float | None = None
        self._probing = False
        self._logged: str | None = None  # the reason last logged in this outage
        DEPENDENCIES.track_breaker(self)

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    @property
    def state(self) -> Literal["closed", "open", "half-open"]:
        """``closed`` (calls go out), ``open`` (refused at once until the cooldown ends) or
        ``half-open`` (the cooldown is over: the next call is the trial). For readiness
        probes and metrics; reading it changes nothing."""
        if self._open_until is None:
            return "closed"
        if self._probing or self._clock() >= self._open_until:
            return "half-open"
        return "open"

    def allow(self) -> bool:
        """Whether a call may go out now."""
        if self._open_until is None:
            return True
        if self._probing or self._clock() < self._open_until:
            return False
        self._probing = True  # half-open: exactly one trial call
        self._moved("open", "half-open")
        return True

    def _moved(self, old: BreakerState, new: BreakerState) -> None:
        if DEPENDENCIES.listening:
            DEPENDENCIES.emit(BreakerTransition(self.upstream, old, new))

    def success(self) -> None:
        if self._logged is not None:
            logger.warning(
                "introspection available again (%s before)",
                self._logged,
                extra={"dpop_guard_reason": self._logged},
            )
            self._logged = None
        if self._open_until is not None:
            self._moved("half-open" if self._probing else "open", "closed")
        self._failures, self._open_until, self._probing = 0, None, False

    async def call(self, fn: Callable[[], Awaitable[T]], *, open_reason: IntrospectionReason) -> T:
        """Run ``fn`` through the breaker: refused at once while open; its outcome counts."""
        if not self._named:  # the label: this breaker's upstream, named by its first call
            self.upstream, self._named = open_reason.removesuffix("_circuit_open"), True
        if not self.allow():
            raise IntrospectionUnavailable(open_reason)
        try:
            result = await fn()
        except IntrospectionUnavailable as exc:
            self.failure(exc, open_reason=open_reason)
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

    def failure(
        self,
        exc: IntrospectionUnavailable | None = None,
        *,
        open_reason: IntrospectionReason = "authlete_circuit_open",
    ) -> None:
        """Count an outage; log it when it changes the state (see the module docstring)."""
        self._failures += 1
        opens = self._probing or self._failures >= self.threshold
        if exc is not None and exc.reason != self._logged:
            log_outage(exc)  # the first failure, or a trial call failing another way
            self._logged = exc.reason
        if opens:
            if self._open_until is None or self._probing:
                self._moved("half-open" if self._probing else "closed", "open")
            if self._open_until is None:
                logger.warning(
                    "introspection circuit open: %s for %.1f s after %d outages in a row",
                    open_reason,
                    self.cooldown,
                    self._failures,
                    extra={"dpop_guard_reason": open_reason},
                )
            self._open_until = self._clock() + self.cooldown
            self._probing = False


class _Default:
    """The "not given" sentinel: ``None`` means no circuit breaker."""

    def __repr__(self) -> str:
        return "DEFAULT_BREAKER"


DEFAULT_BREAKER: Final = _Default()
BreakerOption = CircuitBreaker | _Default | None


def breaker_from(option: BreakerOption) -> CircuitBreaker | None:
    """The breaker an introspector uses for its ``breaker=`` argument."""
    return CircuitBreaker() if isinstance(option, _Default) else option


async def call_through(
    breaker: CircuitBreaker | None,
    fn: Callable[[], Awaitable[T]],
    *,
    open_reason: IntrospectionReason,
) -> T:
    """``fn()`` through ``breaker``, or directly when there is none.

    Each call that goes out is reported to :data:`~dpop_guard.metrics.DEPENDENCIES` as an
    :class:`~dpop_guard.metrics.UpstreamCall` when anyone listens (one introspection: its
    HTTP requests, retries and time limit included); a call the open breaker refuses is
    not a call (the breaker's state tells it).
    """
    if DEPENDENCIES.listening:
        fn = _observed(fn, open_reason.removesuffix("_circuit_open"))
    if breaker is None:
        try:
            return await fn()
        except IntrospectionUnavailable as exc:
            log_outage(exc)  # no breaker, no state: every failed call is a line
            raise
    return await breaker.call(fn, open_reason=open_reason)


def report_fetch(upstream: str, started: float, exc: BaseException | None) -> None:
    """Report a call made with httpx outside :func:`call_through` (the JWKS fetch) as an
    :class:`~dpop_guard.metrics.UpstreamCall`, classified as the introspection calls are
    (``exc`` ``None``: it succeeded; a body that is no key set: ``bad_response``).

    :param started: ``time.perf_counter()`` when the call began.
    """
    if not DEPENDENCIES.listening:
        return
    status = None
    if exc is None:
        cause = "ok"
    elif isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        cause = (status_cause(status) or UpstreamCause.HTTP_STATUS).value
    elif isinstance(exc, httpx.TimeoutException | TimeoutError):
        cause = UpstreamCause.TIMEOUT.value
    elif isinstance(exc, httpx.ProxyError):
        cause = UpstreamCause.PROXY.value
    elif isinstance(exc, httpx.ConnectError):
        cause = cause_of(exc, UpstreamCause.CONNECT).value
    elif isinstance(exc, httpx.HTTPError):
        cause = cause_of(exc, UpstreamCause.PROTOCOL).value
    else:
        cause = UpstreamCause.BAD_RESPONSE.value
    DEPENDENCIES.emit(UpstreamCall(upstream, cause, time.perf_counter() - started, status))


def _observed(fn: Callable[[], Awaitable[T]], upstream: str) -> Callable[[], Awaitable[T]]:
    """``fn``, timed and reported: ``ok`` when the upstream answered (a token it refused
    included), else the outage's cause (its reason less the ``<upstream>_`` prefix: an
    :class:`~dpop_guard.introspection._http.UpstreamCause` value, ``timeout``, ...)."""

    async def observed() -> T:
        started = time.perf_counter()
        try:
            result = await fn()
        except IntrospectionUnavailable as exc:
            cause = exc.reason.removeprefix(f"{upstream}_")
            seconds = time.perf_counter() - started
            DEPENDENCIES.emit(UpstreamCall(upstream, cause, seconds, exc.upstream_status))
            raise
        except DPoPGuardError:
            DEPENDENCIES.emit(UpstreamCall(upstream, "ok", time.perf_counter() - started))
            raise
        DEPENDENCIES.emit(UpstreamCall(upstream, "ok", time.perf_counter() - started))
        return result

    return observed


async def post(
    transport: PostTransport,
    url: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    *,
    prefix: Upstream,
    timeout: float | None = None,
    retries: int = 0,
) -> Response:
    """One POST that answered 200; every failure is :class:`IntrospectionUnavailable` with
    a ``<prefix>_<what>`` reason.

    :param timeout: seconds for the whole call, retries included; ``None`` when the caller
        bounds it already.
    :param retries: extra attempts after a refused connection or a 429/502/503/504.
    """
    if timeout is None:
        return await _attempts(transport, url, headers, body, prefix, retries)
    try:
        with anyio.fail_after(timeout):
            return await _attempts(transport, url, headers, body, prefix, retries)
    except TimeoutError as exc:
        raise unavailable(outage(prefix, "timeout"), exc, url=url) from exc


async def _attempts(
    transport: PostTransport,
    url: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    prefix: Upstream,
    retries: int,
) -> Response:
    attempts = retries + 1
    for attempt in range(attempts):
        last = attempt + 1 == attempts
        try:
            response = await transport.post(url, headers, body)
        except TransportConnectError as exc:
            if not last:
                await anyio.sleep(_RETRY_BACKOFF * (attempt + 1))
                continue
            raise unavailable(outage(prefix, exc.cause), exc, url=url) from exc
        except TransportError as exc:
            raise unavailable(outage(prefix, exc.cause), exc, url=url) from exc
        if response.status in RETRY_STATUSES and not last:
            await anyio.sleep(_RETRY_BACKOFF * (attempt + 1))
            continue
        cause = status_cause(response.status)
        if cause is not None:
            reason = outage(prefix, cause)
            raise unavailable(reason, upstream_status=response.status, url=url)
        return response
    raise AssertionError("unreachable")  # pragma: no cover


def json_object(response: Response, *, prefix: Upstream) -> dict[str, Any]:
    """The response body as a JSON object, or a ``<prefix>_bad_response`` outage."""
    try:
        data = json.loads(response.body)
    except ValueError as exc:
        raise unavailable(outage(prefix, UpstreamCause.BAD_RESPONSE), exc) from exc
    if not isinstance(data, dict):
        raise unavailable(outage(prefix, UpstreamCause.BAD_RESPONSE))
    return data
