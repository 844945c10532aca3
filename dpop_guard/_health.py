"""What the guard depends on, probed: at start-up (the lifespan refuses to start on a
failure unless ``DPOP_GUARD_START_DEGRADED=1``), by ``dpop-guard check-config``, and by the
readiness probe (:class:`Readiness`, an ASGI app answering 200 or 503 with a JSON body that
names each failing dependency). :class:`Liveness` answers 200 while the process serves.

Rules that live here: which dependencies a guard has (:func:`dependencies`), how a failure
is told apart (:func:`classify`: ``dns``, ``connect``, ``tls``, ``proxy``, ``timeout``,
``credentials``, ``server_error``, ``bad_response``, ``circuit_open``, ``eviction``,
``other``, read from the exception chain and the upstream's HTTP status), and the one
sentence each cause gets (:func:`sentence`). Nothing here logs a token or a secret: a probe
sends a made-up token, and a message names a host and a variable, never a credential.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from .introspection._http import UpstreamCause, cause_of, status_cause

if TYPE_CHECKING:
    from .guard import DPoPGuard

__all__ = [
    "DEFAULT_READINESS_TIMEOUT",
    "FATAL_CAUSES",
    "Cause",
    "Liveness",
    "ProbeResult",
    "Readiness",
    "classify",
    "dependencies",
    "probe_all",
    "sentence",
]

DEFAULT_READINESS_TIMEOUT: Final = 2.0

Cause = Literal[
    "dns",
    "connect",
    "tls",
    "proxy",
    "timeout",
    "credentials",
    "server_error",
    "bad_response",
    "circuit_open",
    "eviction",
    "accepts_any_token",
    "other",
]
"""Why a dependency is not usable."""

_CAUSE_TEXT: Final[Mapping[Cause, str]] = {
    "dns": "its host name does not resolve (DNS)",
    "connect": "the connection was refused or reset",
    "tls": "the TLS handshake failed (certificate or protocol)",
    "proxy": "the outbound proxy (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY) could not be used",
    "timeout": "it did not answer in time",
    "credentials": "it refused our credentials",
    "server_error": "it answered with a server error",
    "bad_response": "its answer is not what its protocol says",
    "circuit_open": "the circuit breaker is open after repeated outages",
    "eviction": "it can evict keys, which would reopen replayed proofs",
    "accepts_any_token": "it accepted a made-up token: is it the right endpoint?",
    "other": "it cannot be used",
}


def classify(exc: BaseException) -> Cause:
    """The cause of ``exc``, from its chain (``__cause__``, then ``__context__``).

    The deepest operating-system or TLS error decides first (through the outbound
    client's :func:`~dpop_guard.introspection._http.cause_of`); then the client's own
    classification (:class:`~dpop_guard.introspection._http.UpstreamCause`: carried as
    ``cause``, as the upstream's HTTP status, or as the suffix of an introspection reason);
    then a Redis client's error type.
    """
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 16:
        seen.append(current)
        current = current.__cause__ or current.__context__
    for link in reversed(seen):  # the root cause first
        if isinstance(link, TimeoutError):
            return "timeout"
        if isinstance(link, OSError):
            return _FROM_UPSTREAM[cause_of(link, UpstreamCause.CONNECT)]
    for link in seen:
        upstream = _upstream_cause(link)
        if upstream is not None:
            return _FROM_UPSTREAM[upstream]
        if str(getattr(link, "reason", "") or "").endswith("_circuit_open"):
            return "circuit_open"
    for link in seen:
        if type(link).__name__ in ("ConnectionError", "RedisConnectionError"):
            return "connect"
        if type(link).__name__ == "TimeoutError":
            return "timeout"
    return "other"


def _upstream_cause(link: BaseException) -> UpstreamCause | None:
    cause = getattr(link, "cause", None)
    if isinstance(cause, UpstreamCause):
        return cause
    status = getattr(link, "upstream_status", None)
    if isinstance(status, int) and (by_status := status_cause(status)) is not None:
        return by_status
    reason = str(getattr(link, "reason", "") or "")
    return next((c for c in UpstreamCause if reason.endswith("_" + c.value)), None)


_FROM_UPSTREAM: Final[Mapping[UpstreamCause, Cause]] = {
    UpstreamCause.DNS: "dns",
    UpstreamCause.CONNECT: "connect",
    UpstreamCause.TLS: "tls",
    UpstreamCause.PROXY: "proxy",
    UpstreamCause.TIMEOUT: "timeout",
    UpstreamCause.PROTOCOL: "bad_response",
    UpstreamCause.CREDENTIALS: "credentials",
    UpstreamCause.SERVER_ERROR: "server_error",
    UpstreamCause.HTTP_STATUS: "bad_response",
    UpstreamCause.BAD_RESPONSE: "bad_response",
}


Failure = tuple[Cause, str]
"""A probe's finding: the cause, and a sentence when the cause's own is not enough."""

FATAL_CAUSES: Final[frozenset[Cause]] = frozenset(
    {"dns", "credentials", "tls", "accepts_any_token"}
)
"""Causes that waiting does not cure: they stop start-up (unless started degraded). The
others (a refused connection, a timeout, a 5xx, an evicting Redis) are logged and leave the
guard starting, with readiness 503 until they clear: a dependency may be briefly down at a
deploy."""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One dependency's state.

    :param dependency: ``introspection``, ``jwks``, ``replay_store`` or
        ``introspection_cache``.
    :param variable: the environment variable that points at it.
    :param target: where it is (a URL without credentials), for the message.
    :param cause: ``None`` when usable.
    """

    dependency: str
    variable: str
    target: str
    cause: Cause | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.cause is None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": self.ok}
        if self.cause is not None:
            body["reason"] = self.cause
            body["message"] = sentence(self)
        return body


def sentence(result: ProbeResult) -> str:
    """One line for a failed probe: the variable, where it points, what went wrong."""
    text = result.detail or _CAUSE_TEXT[result.cause or "other"]
    return f"{result.variable} ({result.target}): {result.dependency} unusable, {text}"


@dataclass(frozen=True, slots=True)
class _Dependency:
    name: str
    variable: str
    target: str
    probe: Callable[[], Awaitable[Failure | None]]
    credentials: str | None = None  # the variables to blame for a refused credential


def _safe_target(url: str) -> str:
    """``url`` without user info, query or fragment (a Redis password lives in the user
    info). Split by hand, never through ``urlsplit(...).port``: a cluster's
    ``redis+cluster://h1:7000,h2:7001`` has no single port, and this must never raise."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return "(not a URL)"
    authority, slash, path = rest.partition("/")
    host = authority.rpartition("@")[2]
    path = path.split("?", 1)[0].split("#", 1)[0]
    return f"{scheme}://{host}{slash}{path}"


def dependencies(guard: DPoPGuard) -> list[_Dependency]:
    """What ``guard`` needs to serve a request, each with its probe."""
    from .settings import ENV_PREFIX

    if guard.stores.introspection == "jwt":
        # The key set itself, not the validator's cached copy of it.
        jwks = guard.upstream_target
        first = _Dependency("jwks", guard.upstream_variable, jwks, lambda: _probe_jwks(jwks))
    else:
        first = _Dependency(
            "introspection",
            guard.upstream_variable,
            guard.upstream_target,
            lambda: _probe_introspection(guard),
            guard.credential_variables,
        )
    deps = [first]
    for name, variable, component, url in (
        (
            "replay_store",
            ENV_PREFIX + "REPLAY_STORE",
            guard.replay_store,
            guard.settings.replay_store,
        ),
        (
            "introspection_cache",
            ENV_PREFIX + "INTROSPECTION_CACHE",
            guard.shared_cache,
            guard.stores.introspection_cache or "",
        ),
    ):
        client = getattr(component, "client", None)
        if client is None:
            continue
        deps.append(_Dependency(name, variable, _safe_target(url), _redis_probe(component, client)))
    return deps


async def _probe_introspection(guard: DPoPGuard) -> Failure | None:
    from .errors import DPoPGuardError, ServiceUnavailable
    from .introspection import RequestFacts

    breaker = guard.breaker
    if breaker is not None and breaker.state == "open":
        return "circuit_open", ""
    facts = RequestFacts("GET", "https://probe.invalid/", None, None)
    try:
        await guard.upstream.introspect(guard.probe_token(), request=facts)
    except ServiceUnavailable as exc:
        cause = classify(exc)
        # An answer that came but broke a rule (an RFC 9701 signed answer's issuer, say):
        # name the rule, which the cause alone ("other") would not.
        return cause, f"its answer was refused ({exc.reason})" if cause == "other" else ""
    except DPoPGuardError:
        return None  # refused, as it should: the endpoint answers and our credentials work
    except Exception as exc:  # an HTTP client's own error, not mapped by the introspector
        return classify(exc), ""
    return "accepts_any_token", ""


async def _probe_jwks(url: str) -> Failure | None:
    import httpx

    try:
        async with httpx.AsyncClient() as client:
            response = await client.get(url)
    except httpx.HTTPError as exc:
        return classify(exc), ""
    if response.status_code in (401, 403):
        return "credentials", ""
    if response.status_code >= 500:
        return "server_error", ""
    try:
        keys = response.json().get("keys") if response.status_code == 200 else None
    except (ValueError, AttributeError):
        keys = None
    return None if isinstance(keys, list) else ("bad_response", "")


def _redis_probe(component: object, client: Any) -> Callable[[], Awaitable[Failure | None]]:
    async def probe() -> Failure | None:
        try:
            await client.ping()
        except Exception as exc:
            return classify(exc), ""
        check_eviction = getattr(component, "check_eviction", None)
        if check_eviction is not None:
            outcome, why = await check_eviction()
            if outcome == "evicting":
                return "eviction", str(why)
            if outcome == "unknown":  # serving refuses every record while it cannot tell
                return "other", str(why)
        return None

    return probe


async def probe_all(guard: DPoPGuard, timeout: float) -> list[ProbeResult]:
    """Every dependency probed at once; one still running after ``timeout`` seconds is
    reported as ``timeout`` (and cancelled), so the whole answer takes at most that."""
    deps = dependencies(guard)
    tasks = [asyncio.ensure_future(dep.probe()) for dep in deps]
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    results = []
    for dep, task in zip(deps, tasks, strict=True):
        failure: Failure | None
        if task in pending:
            failure = "timeout", ""
        elif (error := task.exception()) is not None:
            failure = classify(error), ""
        else:
            failure = task.result()
        cause, detail = failure if failure is not None else (None, "")
        blamed = dep.credentials if cause == "credentials" and dep.credentials else dep.variable
        results.append(ProbeResult(dep.name, blamed, dep.target, cause, detail))
    return results


_JSON_HEADERS: Final = [
    (b"content-type", b"application/json"),
    (b"cache-control", b"no-store"),
]


async def _answer(send: Any, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body, separators=(",", ":")).encode()
    headers = [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class Readiness:
    """The readiness probe, an ASGI app: 200 ``{"status": "ready", ...}`` when every
    dependency answers, else 503 ``{"status": "unavailable", "failing": [...], ...}``
    naming each failing dependency and its reason; always within the guard's readiness
    timeout. ``breaker`` reports the introspection circuit breaker's state."""

    def __init__(self, guard: DPoPGuard, timeout: float = DEFAULT_READINESS_TIMEOUT) -> None:
        self.guard = guard
        self.timeout = timeout

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        try:
            results = await probe_all(self.guard, self.timeout)
        except Exception as exc:  # never a traceback from a probe: not ready, and why
            await _answer(send, 503, {"status": "unavailable", "error": type(exc).__name__})
            return
        failing = [r.dependency for r in results if not r.ok]
        breaker = self.guard.breaker
        body: dict[str, Any] = {
            "status": "unavailable" if failing else "ready",
            "failing": failing,
            "checks": {r.dependency: r.as_json() for r in results},
            "breaker": breaker.state if breaker is not None else None,
        }
        await _answer(send, 503 if failing else 200, body)


class Liveness:
    """The liveness probe, an ASGI app: 200 ``{"status": "alive"}`` whenever the process
    answers. It never asks a dependency: restarting a pod does not bring Authlete back."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await _answer(send, 200, {"status": "alive"})
