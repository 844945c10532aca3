"""What every introspector shares on its way out: the circuit breaker, the one bounded POST
(retries, timeouts, transport failures mapped to ``IntrospectionUnavailable``), and the
log line for an outage.

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

from .._reasons import IntrospectionReason, Outage, Upstream
from ..errors import DPoPGuardError, IntrospectionUnavailable
from ._http import (
    PostTransport,
    Response,
    TransportConnectError,
    TransportError,
    TransportTimeout,
)

__all__ = [
    "DEFAULT_BREAKER",
    "BreakerOption",
    "CircuitBreaker",
    "breaker_from",
    "call_through",
    "json_object",
    "outage",
    "post",
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
) -> IntrospectionUnavailable:
    """An outage with ``reason``, logged once. The reason (and the upstream's HTTP status,
    if any) is logged; never the request or the response body, which hold the token."""
    logger.warning(
        "introspection unavailable: %s%s",
        reason,
        "" if upstream_status is None else f" (HTTP {upstream_status})",
        extra={"dpop_guard_reason": reason, "dpop_guard_upstream_status": upstream_status},
    )
    exc = IntrospectionUnavailable(reason)
    exc.upstream_status = upstream_status
    exc.__cause__ = cause
    return exc


def outage(upstream: Upstream, what: Outage) -> IntrospectionReason:
    """``<upstream>_<what>``: every such pair is an :data:`IntrospectionReason`
    (tests/test_reasons.py checks each one)."""
    return cast(IntrospectionReason, f"{upstream}_{what}")


class CircuitBreaker:
    """Fail fast while the introspection endpoint is down.

    After ``threshold`` consecutive outages (timeouts, refused connections, 5xx, garbage)
    the circuit opens: calls fail at once with 503 for ``cooldown`` seconds instead of each
    holding a connection for the whole timeout. Then one call is let through; its success
    closes the circuit, its failure opens it again. Answers from the server, rejections
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
        return True

    def success(self) -> None:
        self._failures, self._open_until, self._probing = 0, None, False

    async def call(self, fn: Callable[[], Awaitable[T]], *, open_reason: IntrospectionReason) -> T:
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
    """``fn()`` through ``breaker``, or directly when there is none."""
    if breaker is None:
        return await fn()
    return await breaker.call(fn, open_reason=open_reason)


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
        raise unavailable(outage(prefix, "timeout"), exc) from exc


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
        except TransportTimeout as exc:
            raise unavailable(outage(prefix, "timeout"), exc) from exc
        except TransportConnectError as exc:
            if not last:
                await anyio.sleep(_RETRY_BACKOFF * (attempt + 1))
                continue
            raise unavailable(outage(prefix, "unreachable"), exc) from exc
        except TransportError as exc:
            raise unavailable(outage(prefix, "transport_error"), exc) from exc
        if response.status in RETRY_STATUSES and not last:
            await anyio.sleep(_RETRY_BACKOFF * (attempt + 1))
            continue
        if response.status != 200:
            raise unavailable(outage(prefix, "http_error"), upstream_status=response.status)
        return response
    raise AssertionError("unreachable")  # pragma: no cover


def json_object(response: Response, *, prefix: Upstream) -> dict[str, Any]:
    """The response body as a JSON object, or a ``<prefix>_bad_response`` outage."""
    try:
        data = json.loads(response.body)
    except ValueError as exc:
        raise unavailable(outage(prefix, "bad_response"), exc) from exc
    if not isinstance(data, dict):
        raise unavailable(outage(prefix, "bad_response"))
    return data
