"""The environment becomes a guard: :func:`from_env` builds the middleware's settings, the
introspector chain, the caches, the replay store, the nonce source and the lifespan that
opens and closes their connections. The examples, the demo and ``dpop-guard check-config``
all use it, so what is checked is what runs.

For example::

    guard = dpop_guard.from_env(routes=(Route("/health", public=True),))
    app = Starlette(routes=[...], lifespan=guard.lifespan)
    guard.install(app)

Variables, besides those of :meth:`GuardSettings.from_env` and the introspectors' own:

- ``DPOP_GUARD_INTROSPECTION``: ``authlete`` (default), ``authlete-standard``, ``rfc7662``
  or ``jwt``; anything else stops start-up.
- ``DPOP_GUARD_DEVELOPMENT_SIMULATOR``: ``1`` runs against the embedded Authlete simulator,
  mounted at ``/__authlete``, whose credentials are public. It is never chosen for you: a
  missing or invalid Authlete configuration stops start-up instead.
- ``DPOP_GUARD_JWT_REVOCATION_INTROSPECTION``: in ``jwt`` mode with
  ``DPOP_GUARD_JWT_REVOCATION_PATHS`` set, which introspector those paths also ask:
  ``authlete`` (Authlete's ``/auth/introspection``), ``authlete-standard`` (its RFC 7662
  API) or ``rfc7662``, configured by the same variables as that introspection mode
  (``AUTHLETE_*``, or ``DPOP_GUARD_INTROSPECTION_URL`` and its siblings). Required then,
  never guessed; it is asked uncached, so a revocation is seen on the next request to
  those paths. Set without revocation paths it stops start-up too (nothing would ask it).
- ``DPOP_GUARD_INTROSPECTION_CACHE`` (a Redis URL; refused in ``jwt`` mode, whose cache of
  verified tokens is per process), ``DPOP_GUARD_CACHE_TTL`` (``0``: no cache),
  ``DPOP_GUARD_CACHE_MAXSIZE``.
- ``DPOP_GUARD_START_DEGRADED``: start even when a dependency fails its start-up probe
  (readiness answers 503 until it recovers); by default the lifespan refuses to start.
- ``DPOP_GUARD_READINESS_PATH`` (default ``/readyz``), ``DPOP_GUARD_LIVENESS_PATH``
  (default ``/livez``), each ``off`` to serve none; ``DPOP_GUARD_READINESS_TIMEOUT``
  (seconds, default 2): see :mod:`dpop_guard._health`.

Start-up is strict: a ``DPOP_GUARD_*`` name that nothing reads, a missing
``DPOP_GUARD_PUBLIC_URL`` (outside the development simulator; ``request`` says to believe
the request's host) and every invalid value raise a one-line
:class:`~dpop_guard._env.ConfigurationError` naming the variable.
"""

from __future__ import annotations

import contextlib
import difflib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlsplit

from ._env import ConfigurationError, EnvReader
from ._extras import missing_extra
from ._health import (
    DEFAULT_READINESS_TIMEOUT,
    FATAL_CAUSES,
    Liveness,
    ProbeResult,
    Readiness,
    probe_all,
)
from ._url import is_redis_url
from .introspection import Introspector
from .nonce import HMACNonceSource, NonceSource
from .replay import ReplayStore, replay_store_from_url
from .settings import (
    ENV_PREFIX,
    GuardSettings,
    Route,
    check_env_names,
    field_error,
)

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from .devtools.simulator import SimulatorState
    from .httpsig._settings import HTTPSignatureSettings
    from .introspection._breaker import CircuitBreaker
    from .introspection._signed import SignedResponseVerifier
    from .introspection.cached import SharedTokenCache
    from .metrics import Metrics
    from .mtls import ClientCertificateSource

__all__ = [
    "DEVELOPMENT_SIMULATOR",
    "INTROSPECTION_MODES",
    "SIMULATOR_MOUNT",
    "DPoPGuard",
    "IntrospectionMode",
    "StoreSettings",
    "from_env",
]

logger = logging.getLogger("dpop_guard")

IntrospectionMode = Literal["authlete", "authlete-standard", "rfc7662", "jwt"]
INTROSPECTION_MODES: Final[tuple[IntrospectionMode, ...]] = (
    "authlete",
    "authlete-standard",
    "rfc7662",
    "jwt",
)
DEVELOPMENT_SIMULATOR: Final = ENV_PREFIX + "DEVELOPMENT_SIMULATOR"
SIMULATOR_MOUNT: Final = "/__authlete"
# Never resolved: the embedded simulator is reached through an in-process ASGI transport.
_EMBEDDED_BASE_URL: Final = "http://authlete-simulator.invalid"
_AUTHLETE_NAMES: Final = (
    "AUTHLETE_BASE_URL",
    "AUTHLETE_API_VERSION",
    "AUTHLETE_SERVICE_APIKEY",
    "AUTHLETE_SERVICE_APISECRET",
    "AUTHLETE_SERVICE_ACCESSTOKEN",
)
DEFAULT_CACHE_TTL: Final = 60.0
DEFAULT_CACHE_MAXSIZE: Final = 100_000
DEFAULT_READINESS_PATH: Final = "/readyz"
DEFAULT_LIVENESS_PATH: Final = "/livez"
# What the variables of each introspector's settings class set, for messages that name the
# variable rather than the field.
_AUTHLETE_FIELDS: Final = {
    "base_url": "AUTHLETE_BASE_URL",
    "api_version": "AUTHLETE_API_VERSION",
    "api_key": "AUTHLETE_SERVICE_APIKEY",
    "api_secret": "AUTHLETE_SERVICE_APISECRET",
    "access_token": "AUTHLETE_SERVICE_ACCESSTOKEN",
    "timeout": ENV_PREFIX + "AUTHLETE_TIMEOUT",
    "resources": ENV_PREFIX + "RESOURCES",
    "binding_ttl": ENV_PREFIX + "AUTHLETE_BINDING_TTL",
}
_RFC7662_FIELDS: Final = {
    "url": ENV_PREFIX + "INTROSPECTION_URL",
    "client_id": ENV_PREFIX + "INTROSPECTION_CLIENT_ID",
    "client_secret": ENV_PREFIX + "INTROSPECTION_CLIENT_SECRET",
    "private_key": ENV_PREFIX + "INTROSPECTION_PRIVATE_KEY",
    "audience": ENV_PREFIX + "INTROSPECTION_AUDIENCE",
    "timeout": ENV_PREFIX + "INTROSPECTION_TIMEOUT",
    "resources": ENV_PREFIX + "RESOURCES",
}
_JWT_FIELDS: Final = {
    "issuer": ENV_PREFIX + "JWT_ISSUER",
    "audience": ENV_PREFIX + "JWT_AUDIENCE",
    "jwks_uri": ENV_PREFIX + "JWT_JWKS_URI",
    "algorithms": ENV_PREFIX + "JWT_ALGORITHMS",
    "revocation_paths": ENV_PREFIX + "JWT_REVOCATION_PATHS",
    "resources": ENV_PREFIX + "RESOURCES",
}
# The fix each variable's message ends with, when the problem does not say it.
_FIXES: Final = {
    "AUTHLETE_BASE_URL": "set it to your Authlete cluster, e.g. https://jp.authlete.com",
    "AUTHLETE_SERVICE_APIKEY": "set it to the service id (V3) or API key (V2) from the "
    "Authlete console",
    "AUTHLETE_SERVICE_APISECRET": "set it to the service's API secret (V2)",
    "AUTHLETE_SERVICE_ACCESSTOKEN": "set it to a service access token from the Authlete "
    "console (V3)",
    "AUTHLETE_API_VERSION": "set it to V3 (or V2 for a legacy service)",
    ENV_PREFIX + "PUBLIC_URL": "set it to the URL clients address, e.g. "
    "https://api.example.com (or to 'request' to believe the request's host)",
}


@dataclass(frozen=True, kw_only=True, slots=True)
class StoreSettings:
    """What the builder reads besides the middleware's settings: which introspector, its
    caches, the replay store.

    The replay store is the middleware's setting (:class:`GuardSettings`), read once.

    :param introspection: the introspector to build.
    :param development_simulator: run against the embedded simulator (development only).
    :param introspection_cache: a Redis URL for the fleet-wide second cache level.
    :param cache_ttl: seconds introspection results are reused (revocations are seen up to
        this late); ``0`` disables the cache.
    :param cache_maxsize: entries of the local introspection cache.
    :param start_degraded: start when a dependency fails its start-up probe.
    :param freeze_heap: at start-up, freeze what the process has built out of the cyclic
        GC (:func:`_freeze_heap`; process-wide).
    :param readiness_path: where :attr:`DPoPGuard.readiness` answers (``None``: nowhere).
    :param liveness_path: where :attr:`DPoPGuard.liveness` answers (``None``: nowhere).
    :param readiness_timeout: seconds a readiness answer may take, probes included.
    :raises ValueError: naming the field that is wrong.
    """

    introspection: IntrospectionMode = "authlete"
    development_simulator: bool = False
    introspection_cache: str | None = field(default=None, repr=False)  # may carry a password
    cache_ttl: float = DEFAULT_CACHE_TTL
    cache_maxsize: int = DEFAULT_CACHE_MAXSIZE
    start_degraded: bool = False
    freeze_heap: bool = True
    readiness_path: str | None = DEFAULT_READINESS_PATH
    liveness_path: str | None = DEFAULT_LIVENESS_PATH
    readiness_timeout: float = DEFAULT_READINESS_TIMEOUT

    def __post_init__(self) -> None:
        if self.introspection not in INTROSPECTION_MODES:
            raise ValueError(
                f"introspection must be one of {', '.join(INTROSPECTION_MODES)}, "
                f"got {self.introspection!r}"
            )
        if self.introspection_cache is not None and not is_redis_url(self.introspection_cache):
            raise ValueError("introspection_cache must be a redis:// or rediss:// URL")
        if not self.cache_ttl >= 0:  # also refuses nan
            raise ValueError("cache_ttl must not be negative")
        if self.cache_maxsize <= 0:
            raise ValueError("cache_maxsize must be positive")
        for name in ("readiness_path", "liveness_path"):
            path = getattr(self, name)
            if path is not None and not (path.startswith("/") and path.isprintable()):
                raise ValueError(f"{name} must be a path beginning with /, got {path!r}")
        if not 0 < self.readiness_timeout <= 60:  # also refuses nan
            raise ValueError("readiness_timeout must be between 0 and 60 seconds")
        if self.development_simulator and self.introspection not in (
            "authlete",
            "authlete-standard",
        ):
            raise ValueError(
                f"{DEVELOPMENT_SIMULATOR}=1 runs against the embedded Authlete simulator; "
                f"it cannot serve {ENV_PREFIX}INTROSPECTION={self.introspection}"
            )

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, prefix: str = ENV_PREFIX
    ) -> StoreSettings:
        """``INTROSPECTION``, ``DEVELOPMENT_SIMULATOR``, ``INTROSPECTION_CACHE``,
        ``CACHE_TTL``, ``CACHE_MAXSIZE``, ``START_DEGRADED``, ``READINESS_PATH``,
        ``LIVENESS_PATH``, ``READINESS_TIMEOUT``.

        :raises ConfigurationError: naming the variable that is wrong.
        """
        env = EnvReader(environ, prefix)

        def path(key: str, default: str) -> str | None:
            value = env.text(key, default) or default
            return None if value.lower() == "off" else value

        fields = (
            "introspection introspection_cache cache_ttl cache_maxsize readiness_path "
            "liveness_path readiness_timeout"
        ).split()
        try:
            return cls(
                introspection=env.choice("INTROSPECTION", INTROSPECTION_MODES, "authlete"),  # type: ignore[arg-type]
                development_simulator=env.flag("DEVELOPMENT_SIMULATOR", False),
                introspection_cache=env.text("INTROSPECTION_CACHE"),
                cache_ttl=env.number("CACHE_TTL", DEFAULT_CACHE_TTL),
                cache_maxsize=env.integer("CACHE_MAXSIZE", DEFAULT_CACHE_MAXSIZE),
                start_degraded=env.flag("START_DEGRADED", False),
                freeze_heap=env.flag("FREEZE_HEAP", True),
                readiness_path=path("READINESS_PATH", DEFAULT_READINESS_PATH),
                liveness_path=path("LIVENESS_PATH", DEFAULT_LIVENESS_PATH),
                readiness_timeout=env.number("READINESS_TIMEOUT", DEFAULT_READINESS_TIMEOUT),
            )
        except ValueError as exc:
            table = {name: prefix + name.upper() for name in fields}
            raise field_error(exc, table, fallback=prefix + "*") from None


Closer = Callable[[], Awaitable[None]]


class DPoPGuard:
    """A built guard: what :class:`~dpop_guard.middleware.DPoPGuardMiddleware` needs, and
    the connections it owns.

    :param settings: the middleware's settings.
    :param introspector: the chain the middleware asks (cached, where caching applies).
    :param upstream: the introspector behind any cache (``check-config`` asks it).
    :param replay_store: where used proofs are recorded.
    :param nonce_source: the fleet's nonce source, or ``None`` for the middleware's default.
    :param simulator: the embedded simulator's state, in development-simulator mode only.
    :param simulator_app: the embedded simulator's ASGI app, mounted by :meth:`install`.
    :param closers: called, in order, when the guard closes.
    :param breaker: the upstream's circuit breaker, whose state readiness reports.
    :param upstream_variable: the variable that points at the upstream (for messages).
    :param upstream_target: where the upstream is, without credentials (for messages).
    :param credential_variables: the variables holding the upstream's credentials, named
        when it refuses them.
    :param httpsig: RFC 9421 message signing (``DPOP_GUARD_HTTPSIG``), which
        :meth:`install` adds behind the DPoP middleware; ``None``: none.

    :attr:`readiness` and :attr:`liveness` are mountable ASGI apps; :meth:`install`
    answers them at ``stores.readiness_path`` and ``stores.liveness_path`` before
    authentication, so they are public without a second declaration.
    """

    def __init__(
        self,
        *,
        settings: GuardSettings,
        stores: StoreSettings,
        introspector: Introspector,
        upstream: Introspector,
        replay_store: ReplayStore,
        shared_cache: SharedTokenCache | None = None,
        nonce_source: NonceSource | None = None,
        metrics: Metrics | None = None,
        simulator: SimulatorState | None = None,
        simulator_app: Any = None,
        closers: Sequence[Closer] = (),
        certificate_source: ClientCertificateSource | None = None,
        breaker: CircuitBreaker | None = None,
        upstream_variable: str = "AUTHLETE_BASE_URL",
        upstream_target: str = "",
        credential_variables: str | None = None,
        httpsig: HTTPSignatureSettings | None = None,
    ) -> None:
        self.settings = settings
        self.stores = stores
        self.introspector = introspector
        self.upstream = upstream
        self.replay_store = replay_store
        self.shared_cache = shared_cache
        self.nonce_source = nonce_source
        self.metrics = metrics
        self.simulator = simulator
        self.simulator_app = simulator_app
        self.certificate_source = certificate_source
        self.breaker = breaker
        self.upstream_variable = upstream_variable
        self.upstream_target = upstream_target
        self.credential_variables = credential_variables
        self.httpsig = httpsig
        self.readiness = Readiness(self, stores.readiness_timeout)
        self.liveness = Liveness()
        self._closers = list(closers)
        self._closed = False
        self._started = False
        self._installed: tuple[Any, tuple[Route, ...]] | None = None

    @property
    def probes(self) -> dict[str, Any]:
        """The probe apps by path, as :meth:`install` serves them."""
        paths: dict[str, Any] = {}
        if self.stores.readiness_path is not None:
            paths[self.stores.readiness_path] = self.readiness
        if self.stores.liveness_path is not None:
            paths[self.stores.liveness_path] = self.liveness
        return paths

    def probe_token(self) -> str:
        """The made-up token a probe introspects (see :func:`_check_token`)."""
        return _check_token(self.stores)

    @property
    def middleware_options(self) -> dict[str, Any]:
        """Keyword arguments for ``DPoPGuardMiddleware`` (or ``app.add_middleware``)."""
        options: dict[str, Any] = {
            "settings": self.settings,
            "introspector": self.introspector,
            "replay_store": self.replay_store,
        }
        if self.nonce_source is not None:
            options["nonce_source"] = self.nonce_source
        if self.metrics is not None:
            options["metrics"] = self.metrics
        if self.certificate_source is not None:
            options["certificate_source"] = self.certificate_source
        return options

    def install(self, app: Starlette) -> None:
        """Add the middleware to a Starlette (or FastAPI) ``app``, in front of it the
        probes (answered before authentication) and the start-up check (a failure ends
        start-up with its one line, no traceback); in development-simulator mode, also mount
        the simulator at ``/__authlete``. FastAPI's documentation routes become public rules,
        and refusals raised in the app get the middleware's answer. The guard's connections
        are closed at shutdown; passing :meth:`lifespan` to the app as well does no harm."""
        from ._install import prepare_app
        from .middleware import DPoPGuardMiddleware

        if self.simulator_app is not None:
            app.mount(SIMULATOR_MOUNT, app=self.simulator_app)
        self.settings, learned = prepare_app(app, self.settings)
        self._installed = (app, learned)
        if self.httpsig is not None:
            # Added first, so it runs behind the DPoP middleware: it sees the token's
            # client_id (per-client keys) and only requests whose token and proof passed.
            from .httpsig import HTTPSignatureMiddleware

            options = self.httpsig.middleware_options(
                public_url=self.settings.public_url, replay_store=self.replay_store
            )
            app.add_middleware(HTTPSignatureMiddleware, **options)
        app.add_middleware(DPoPGuardMiddleware, **self.middleware_options)
        app.add_middleware(OperationsMiddleware, guard=self)  # added last: runs first

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """An ASGI lifespan: probes the dependencies at start-up (:meth:`startup`), closes
        every client the guard opened (HTTP pools, Redis) at shutdown. Nest it in your own
        lifespan with ``async with guard.lifespan(app):``; :meth:`install` runs the same
        start-up check in front of the app, ending a failed start-up with one line."""
        await self.startup()
        try:
            yield
        finally:
            await self.aclose()

    async def startup(self) -> None:
        """Probe every dependency (:mod:`dpop_guard._health`) once; safe to call twice.

        A failure that waiting does not cure (an unresolvable name, refused credentials, a
        TLS failure: :data:`~dpop_guard._health.FATAL_CAUSES`) stops start-up; any other (a
        refused connection, a timeout, a 5xx, an evicting Redis) is logged as a warning and
        the guard starts, answering 503 on readiness and failing protected requests closed
        until it clears.

        :raises ConfigurationError: one line naming the variable, where it points and the
            cause, unless ``DPOP_GUARD_START_DEGRADED=1`` (then it is logged too).
        :raises ValueError: a route added to the installed app since ``install`` would take
            a public rule's requests, or is itself marked public
            (:func:`~dpop_guard._install.check_still_served`).
        """
        if self._started:
            return
        self._started = True
        if self._installed is not None:
            from ._install import check_still_served

            check_still_served(*self._installed)
        if self.stores.freeze_heap:
            _freeze_heap()
        ping = getattr(self.replay_store, "ping", None)
        if ping is not None:  # the store's own check logs an evicting Redis, once
            with contextlib.suppress(Exception):
                await ping()
        failures = [r for r in await self.probe() if not r.ok]
        fatal = [r for r in failures if r.cause in FATAL_CAUSES]
        degraded = self.stores.start_degraded
        for result in failures:
            if degraded or result not in fatal:
                logger.warning(
                    "starting degraded: %s",
                    _probe_line(result),
                    extra={"dpop_guard_reason": result.cause},
                )
        if not fatal or degraded:
            return
        failures = fatal
        first = failures[0]
        others = "".join(f"; also {_probe_line(r)}" for r in failures[1:])
        raise ConfigurationError(
            first.variable,
            _probe_line(first) + others,
            f"set {ENV_PREFIX}START_DEGRADED=1 to start anyway",
        )

    async def probe(self) -> list[ProbeResult]:
        """Every dependency probed once, within the readiness timeout, or within the
        upstream's own timeout when that is longer (a start-up probe must not report a
        timeout the requests would not see)."""
        return await probe_all(self, max(self.stores.readiness_timeout, self._upstream_timeout))

    @property
    def _upstream_timeout(self) -> float:
        settings = getattr(self.upstream, "settings", None)
        timeout = getattr(settings, "timeout", None)
        return float(timeout) + 1.0 if isinstance(timeout, (int, float)) else 0.0

    async def aclose(self) -> None:
        """Close every client the guard opened; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for close in self._closers:
            try:
                await close()
            except Exception as exc:  # one failing close must not leak the others
                logger.warning("closing a guard client failed: %s", type(exc).__name__)

    def describe(self) -> list[str]:
        """What ``dpop-guard check-config`` reports as information (not problems)."""
        source = self.certificate_source
        if source is None:
            lines = ["client certificates: none (DPoP-bound tokens only)"]
        else:
            where = "trusted proxies only" if source.requires_trusted_proxy else "the ASGI server"
            lines = [f"client certificates: {source.name} (believed from {where})"]
        verifier: SignedResponseVerifier | None = getattr(self.upstream, "signed", None)
        if verifier is not None:
            s = verifier.settings
            lines.append(
                f"introspection answers: signed (RFC 9701) by {s.issuer}, keys from "
                f"{s.jwks_uri}, aud {s.audience}, alg {' '.join(s.algorithms)}"
            )
        if self.httpsig is not None:
            key = self.httpsig.signing_key
            signed = f"signed with keyid {key.keyid}" if key is not None else "not signed"
            lines.append(f"message signatures (RFC 9421): {self.httpsig.mode}; responses {signed}")
        return lines

    async def check(self) -> list[str]:
        """What ``dpop-guard check-config`` reports: problems, as sentences (empty when all
        is well). Runs the start-up probes (the introspection endpoint asked about a made-up
        token with our credentials, Redis pinged and its eviction policy read)."""
        problems: list[str] = []
        if self.simulator is not None:
            problems.append(
                f"{DEVELOPMENT_SIMULATOR}=1: requests are checked against the embedded "
                "development simulator, whose credentials are public"
            )
        problems.extend(_probe_line(r) for r in await self.probe() if not r.ok)
        settings = self.settings
        if settings.nonce_routes and settings.nonce_secret is None:
            problems.append(
                "nonces are required but DPOP_GUARD_NONCE_SECRET is not set: "
                "nonces will only be valid in the process that issued them"
            )
        source = self.certificate_source
        if source is not None and source.requires_trusted_proxy and not settings.trusted_proxies:
            problems.append(
                f"DPOP_GUARD_CLIENT_CERT_SOURCE={source.name} reads a header but "
                "DPOP_GUARD_TRUSTED_PROXIES is not set: no certificate will ever be believed"
            )
        if settings.public_url is None and not settings.trusted_proxies and not self.simulator:
            problems.append(
                "DPOP_GUARD_PUBLIC_URL=request and DPOP_GUARD_TRUSTED_PROXIES is not set: "
                "htu is checked against the Host header, which clients control"
            )
        return problems


def _probe_line(result: ProbeResult) -> str:
    """A failed probe as one line, with the cause's reason in brackets."""
    from ._health import sentence

    return f"{sentence(result)} [{result.cause}]"


class OperationsMiddleware:
    """What :meth:`DPoPGuard.install` puts in front of the app: the probe paths answered
    before authentication, and the lifespan's start-up probe, whose failure ends start-up
    with its one line (``lifespan.startup.failed``) instead of a traceback."""

    def __init__(self, app: Any, guard: DPoPGuard) -> None:
        self.app = app
        self.guard = guard
        self.probes = guard.probes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            probe = self.probes.get(scope["path"])
            if probe is not None:
                await probe(scope, receive, send)
                return
        elif scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _lifespan(self, scope: Any, receive: Any, send: Any) -> None:
        first = await receive()
        if first["type"] == "lifespan.startup":
            try:
                await self.guard.startup()
            except ConfigurationError as exc:  # the server logs the message: once
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                await self.guard.aclose()
                return
            except Exception as exc:
                # A bug in a probe must not pass for "lifespan unsupported" (uvicorn would
                # then serve without the start-up checks): start-up fails, and says why.
                await send(
                    {
                        "type": "lifespan.startup.failed",
                        "message": f"dpop_guard start-up check failed: {type(exc).__name__}",
                    }
                )
                await self.guard.aclose()
                return
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return first
            return await receive()

        async def closing_send(message: Any) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self.guard.aclose()
            await send(message)

        await self.app(scope, replay, closing_send)


_heap_frozen = False


def _freeze_heap() -> None:
    """Take what the process has built before serving (modules, the app, the settings:
    about 46,000 objects for the accounts example) out of the cyclic GC's later
    collections, once per process, after collecting what is already garbage.

    A full collection walks every tracked object (about 10 ms for those 46,000 here), and a
    guard serving cache misses allocates enough to run one often: those pauses were what
    kept cache hits waiting behind misses. Measured (``benchmarks/tail.py``, paced hits, 10%
    misses against a 200 ms Authlete, 5 rounds; ``benchmarks/README.md``): hit p99 4.2x that
    of hits alone before, 1.8x after. ``gc.unfreeze()`` undoes it.
    """
    global _heap_frozen
    if not _heap_frozen:
        _heap_frozen = True
        gc.collect()
        gc.freeze()


def _check_token(stores: StoreSettings) -> str:
    """A token no server issued. For JWT mode it names an unknown key, so that the
    validator has to reach the JWKS endpoint before refusing it."""
    if stores.introspection != "jwt":
        return "dpop-guard-check-config-not-a-token"
    from ._b64 import b64url_encode

    header = b64url_encode(b'{"typ":"at+jwt","alg":"ES256","kid":"dpop-guard-check-config"}')
    return f"{header}.e30.c2ln"


def _authlete_problem(environ: Mapping[str, str], exc: ValueError) -> ConfigurationError:
    """The Authlete configuration error naming the variable, with a hint at look-alike
    names that are set. (Authlete's SDKs read other ``AUTHLETE_*`` names, so an unknown one
    is not refused.) A production error never suggests the development simulator."""
    error = field_error(exc, _AUTHLETE_FIELDS, fallback="AUTHLETE_*", fixes=_FIXES)
    present = [k for k in environ if k.startswith("AUTHLETE") and k not in _AUTHLETE_NAMES]
    hints = []
    for name in sorted(present):
        close = difflib.get_close_matches(name, _AUTHLETE_NAMES, n=1)
        if close:
            hints.append(f"{name} is set: did you mean {close[0]}?")
    if not hints:
        return error
    return ConfigurationError(error.variable, error.problem, "; ".join([*hints, error.fix]))


def _require(module: str, extra: str, purpose: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise missing_extra(extra, purpose)


@dataclass(slots=True)
class _Chain:
    """What building the introspector opened, for the guard to close."""

    introspector: Introspector
    closers: list[Closer]
    simulator: SimulatorState | None = None
    simulator_app: Any = None
    breaker: CircuitBreaker | None = None
    where: tuple[str, str] = ("AUTHLETE_BASE_URL", "")
    credentials: str | None = None


REVOCATION_MODES: Final = ("authlete", "authlete-standard", "rfc7662")


def _jwt(env: Mapping[str, str], resources: tuple[str, ...], *, embedded: bool) -> _Chain:
    """The JWT validator, and on revocation paths the introspector it also asks.

    :raises ValueError: naming ``DPOP_GUARD_JWT_REVOCATION_INTROSPECTION`` when revocation
        paths are set without it, or a variable of the revocation introspector.
    """
    import httpx

    from .introspection.jwt import JWTAccessTokenSettings, JWTAccessTokenValidator

    try:
        settings = JWTAccessTokenSettings.from_env(env, default_resources=resources)
    except ValueError as exc:
        raise field_error(exc, _JWT_FIELDS, fallback=ENV_PREFIX + "JWT_*") from None
    reader = EnvReader(env, ENV_PREFIX)
    revocation: _Chain | None = None
    if settings.revocation_paths:
        if not reader.is_set("JWT_REVOCATION_INTROSPECTION"):
            raise ValueError(
                f"{ENV_PREFIX}JWT_REVOCATION_PATHS needs "
                f"{ENV_PREFIX}JWT_REVOCATION_INTROSPECTION (one of "
                f"{', '.join(REVOCATION_MODES)}): the introspector asked on those paths"
            )
        kind = reader.choice("JWT_REVOCATION_INTROSPECTION", REVOCATION_MODES, "authlete")
        # No resources for it: the validator has checked the JWT's audience already.
        revocation = (
            _rfc7662(env, ())
            if kind == "rfc7662"
            else _authlete(env, (), standard=kind == "authlete-standard", embedded=embedded)
        )
    elif reader.is_set("JWT_REVOCATION_INTROSPECTION"):
        raise ValueError(
            f"{ENV_PREFIX}JWT_REVOCATION_INTROSPECTION is set but "
            f"{ENV_PREFIX}JWT_REVOCATION_PATHS is not: no path would ask it"
        )
    jwks_client = httpx.AsyncClient()  # JWKS fetches are rare: httpx is fine here
    validator = JWTAccessTokenValidator(
        jwks_client,
        settings,
        revocation=revocation.introspector if revocation is not None else None,
    )
    where = (ENV_PREFIX + "JWT_JWKS_URI", settings.jwks_uri)
    if revocation is None:
        return _Chain(validator, [jwks_client.aclose], where=where)
    return _Chain(
        validator,
        [jwks_client.aclose, *revocation.closers],
        revocation.simulator,
        revocation.simulator_app,
        where=where,
    )


def _signed(
    env: Mapping[str, str], default_audience: str | None
) -> tuple[SignedResponseVerifier | None, list[Closer]]:
    """The RFC 9701 verifier ``DPOP_GUARD_INTROSPECTION_SIGNED=required`` asks for (``None``
    when off), and what it opened."""
    from .introspection._signed import SignedResponseSettings, SignedResponseVerifier

    try:
        signed = SignedResponseSettings.from_env(env, default_audience=default_audience)
    except ValueError as exc:
        raise field_error(exc, {}, fallback=ENV_PREFIX + "INTROSPECTION_SIGNED") from None
    if signed is None:
        return None, []
    import httpx

    jwks_client = httpx.AsyncClient()  # JWKS fetches are rare: httpx is fine here
    return SignedResponseVerifier.remote(jwks_client, signed), [jwks_client.aclose]


def _no_signed_answers(env: Mapping[str, str], mode: str) -> None:
    """Refuse ``DPOP_GUARD_INTROSPECTION_SIGNED`` where no introspector would read it: a
    setting that silently does nothing is a pass where a refusal was asked for."""
    if EnvReader(env, ENV_PREFIX).is_set("INTROSPECTION_SIGNED"):
        raise ConfigurationError(
            ENV_PREFIX + "INTROSPECTION_SIGNED",
            f"is set, but {mode} introspection never asks for signed answers (RFC 9701)",
            "use DPOP_GUARD_INTROSPECTION=rfc7662 or authlete-standard, or unset it",
        )


def _rfc7662(env: Mapping[str, str], resources: tuple[str, ...]) -> _Chain:
    from .introspection._http import AsyncioHTTPClient
    from .introspection.rfc7662 import RFC7662Introspector, RFC7662Settings

    try:
        settings = RFC7662Settings.from_env(env, default_resources=resources)
    except ValueError as exc:
        raise field_error(exc, _RFC7662_FIELDS, fallback=ENV_PREFIX + "INTROSPECTION_*") from None
    # RFC 9701: the signed answer's aud is our client id there (oidc-provider's choice too).
    verifier, signed_closers = _signed(env, settings.client_id)
    client = AsyncioHTTPClient()
    introspector = RFC7662Introspector(client, settings, signed=verifier)
    where = (ENV_PREFIX + "INTROSPECTION_URL", settings.url)
    secret = "CLIENT_SECRET" if settings.client_secret is not None else "PRIVATE_KEY"
    credentials = f"{ENV_PREFIX}INTROSPECTION_CLIENT_ID/{ENV_PREFIX}INTROSPECTION_{secret}"
    return _Chain(
        introspector,
        [client.aclose, *signed_closers],
        breaker=introspector.breaker,
        where=where,
        credentials=credentials,
    )


def _authlete(
    env: Mapping[str, str],
    resources: tuple[str, ...],
    *,
    standard: bool,
    embedded: bool,
    rs_uri: str | None = None,
) -> _Chain:
    from .introspection.authlete import AuthleteIntrospector
    from .introspection.rfc7662 import AuthleteStandardIntrospector

    if embedded:
        from .introspection import resources_from_env

        authlete, http, simulator, simulator_app = _embedded_simulator(
            resources_from_env(env, default=resources)
        )
    else:
        from .introspection._http import AsyncioHTTPClient
        from .introspection.authlete import AuthleteSettings

        try:
            authlete = AuthleteSettings.from_env(env, default_resources=resources)
        except ValueError as exc:
            raise _authlete_problem(env, exc) from None
        http, simulator, simulator_app = AsyncioHTTPClient(), None, None
    # authlete-standard: Authlete's RFC 7662 helper API, cnf.jkt checked locally; signed
    # (RFC 9701) on request, its aud the rsUri sent (this API's first resource identifier).
    signed_closers: list[Closer] = []
    if standard:
        from .introspection import resources_from_env

        ours = resources_from_env(env, default=(rs_uri,) if rs_uri else ())
        verifier, signed_closers = _signed(env, ours[0] if ours else None)
        try:
            introspector: AuthleteIntrospector | AuthleteStandardIntrospector = (
                AuthleteStandardIntrospector(http, authlete, signed=verifier)
            )
        except ValueError as exc:  # RFC 9701 with the V2 API
            raise ConfigurationError(
                ENV_PREFIX + "INTROSPECTION_SIGNED", str(exc), "set AUTHLETE_API_VERSION=V3"
            ) from None
    else:
        _no_signed_answers(env, "authlete")
        introspector = AuthleteIntrospector(http, authlete)
    where = ("AUTHLETE_BASE_URL", authlete.base_url)
    secret = "ACCESSTOKEN" if authlete.api_version == "V3" else "APISECRET"
    return _Chain(
        introspector,
        [http.aclose, *signed_closers],
        simulator,
        simulator_app,
        breaker=introspector.breaker,
        where=where,
        credentials=f"AUTHLETE_SERVICE_APIKEY/AUTHLETE_SERVICE_{secret}",
    )


def _embedded_simulator(resources: tuple[str, ...]) -> tuple[Any, Any, SimulatorState, Any]:
    """Settings, an in-process client, state and app of the embedded simulator."""
    import httpx

    from .devtools.simulator import (
        DEFAULT_API_SECRET,
        DEFAULT_SERVICE_ID,
        SimulatorState,
        create_simulator_app,
    )
    from .introspection.authlete import AuthleteSettings

    logger.warning(
        "%s=1: using the embedded Authlete simulator, mounted at %s; its credentials are "
        "public (development only, never in production)",
        DEVELOPMENT_SIMULATOR,
        SIMULATOR_MOUNT,
    )
    settings = AuthleteSettings(
        base_url=_EMBEDDED_BASE_URL,
        api_version="V2",
        api_key=DEFAULT_SERVICE_ID,
        api_secret=DEFAULT_API_SECRET,
        resources=resources,
    )
    state = SimulatorState()
    app = create_simulator_app(state)
    return settings, httpx.AsyncClient(transport=httpx.ASGITransport(app=app)), state, app


def from_env(
    *,
    routes: Sequence[Route] = (),
    environ: Mapping[str, str] | None = None,
    metrics: Metrics | None = None,
) -> DPoPGuard:
    """Build a :class:`DPoPGuard` from ``environ`` (default: ``os.environ``).

    ``environ`` holds the guard's own settings (``DPOP_GUARD_*``, ``AUTHLETE_*``). Outbound
    proxies (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``) are the
    process's, read from ``os.environ`` by the HTTP clients as every client does, whatever
    ``environ`` is passed.

    :param routes: the path rules (code, not environment); in development-simulator mode
        ``/__authlete/*`` is added in front of them as public.
    :param metrics: handed to the middleware.
    :raises ConfigurationError: one line naming the variable that is missing, unknown or
        wrong (a :class:`ValueError`; uncaught, it ends the process with that line).
    :raises ImportError: a configured backend needs an extra that is not installed.
    """
    import os

    env: Mapping[str, str] = os.environ if environ is None else environ
    # 1. Read and check every setting before the first client is opened.
    check_env_names(env)
    stores = StoreSettings.from_env(env)
    if stores.development_simulator:
        if EnvReader(env).is_set("AUTHLETE_BASE_URL"):
            raise ConfigurationError(
                DEVELOPMENT_SIMULATOR,
                "is set together with AUTHLETE_BASE_URL: the embedded simulator would hide "
                "the real Authlete",
                "unset one of them",
            )
        routes = (Route(SIMULATOR_MOUNT + "/*", public=True), *routes)
    settings = GuardSettings.from_env(env, routes=routes)
    from .mtls import certificate_source_from_env

    certificate_source = certificate_source_from_env(env)
    # The middleware refuses the same settings; here the message names the variable.
    mtls_routes = settings.certificate_routes
    if mtls_routes and certificate_source is None:
        raise ConfigurationError(
            f"{ENV_PREFIX}CLIENT_CERT_SOURCE",
            "is not set, but routes accept certificate-bound tokens: " + ", ".join(mtls_routes),
            "set it to the proxy or server that passes client certificates",
        )
    if stores.introspection == "jwt" and stores.introspection_cache is not None:
        # A local verification is cheaper than a Redis round trip: the JWT cache has no
        # shared level, and the revocation introspector is asked uncached.
        raise ConfigurationError(
            f"{ENV_PREFIX}INTROSPECTION_CACHE",
            f"is set, but {ENV_PREFIX}INTROSPECTION=jwt caches verified tokens in memory "
            "only (verifying a JWT locally costs less than asking Redis)",
            "unset it",
        )
    httpsig = _httpsig(env)
    for url, name in (
        (settings.replay_store, "REPLAY_STORE"),
        (stores.introspection_cache or "", "INTROSPECTION_CACHE"),
    ):
        if is_redis_url(url):
            _require("redis", "redis", f"{ENV_PREFIX}{name}={urlsplit(url).scheme}://...")

    # 2. The introspector for the mode (its own settings are read first, then it opens).
    # DPOP_GUARD_RESOURCES (RFC 8707 audience) defaults to the public URL, this API's name,
    # where the default cannot lock out tokens issued without one: Authlete lets a token
    # without resources through, and RFC 9068 makes aud mandatory in JWTs. RFC 7662's aud
    # is optional (many servers omit it), so there it is checked only when configured.
    mode = stores.introspection
    public = (settings.public_url,) if settings.public_url else ()
    if mode == "jwt":
        if not EnvReader(env, ENV_PREFIX).is_set("JWT_REVOCATION_INTROSPECTION"):
            _no_signed_answers(env, "jwt")  # else the revocation introspector reads it
        chain = _jwt(env, public, embedded=stores.development_simulator)
    elif mode == "rfc7662":
        chain = _rfc7662(env, ())
    else:
        chain = _authlete(
            env,
            public if mode == "authlete" else (),
            standard=mode == "authlete-standard",
            embedded=stores.development_simulator,
            rs_uri=settings.public_url,
        )

    # Required outside development, once the introspector's own settings are known good.
    if not stores.development_simulator and not EnvReader(env, ENV_PREFIX).is_set("PUBLIC_URL"):
        raise ConfigurationError(
            ENV_PREFIX + "PUBLIC_URL",
            "is not set: htu would be checked against the Host header, which clients "
            "control, and tokens for other APIs would not be told apart",
            _FIXES[ENV_PREFIX + "PUBLIC_URL"],
        )

    # 3. The stores, then the cache in front of the introspector.
    closers = chain.closers
    replay_store = replay_store_from_url(settings.replay_store, maxsize=settings.replay_maxsize)
    _add_closer(closers, replay_store)
    shared: SharedTokenCache | None = None
    if stores.introspection_cache is not None:
        from .introspection.redis_cache import RedisTokenCache

        shared = RedisTokenCache.from_env(stores.introspection_cache, env)
        _add_closer(closers, shared)
    introspector = chain.introspector
    # JWT access tokens too: a hit verifies the proof alone (what the token's signature
    # proved is cached, in memory only, until a JWKS refresh withdraws the key).
    if stores.cache_ttl > 0:
        from .introspection.cached import CachingIntrospector

        introspector = CachingIntrospector(
            introspector, ttl=stores.cache_ttl, maxsize=stores.cache_maxsize, shared=shared
        )
    # Without a secret the middleware makes a per-process source and says so in the log.
    nonce_source: NonceSource | None = None
    if settings.nonce_routes and settings.nonce_secret is not None:
        nonce_source = HMACNonceSource(settings.nonce_secret, step=settings.nonce_step)
    return DPoPGuard(
        settings=settings,
        stores=stores,
        introspector=introspector,
        upstream=chain.introspector,
        replay_store=replay_store,
        shared_cache=shared,
        nonce_source=nonce_source,
        metrics=metrics,
        simulator=chain.simulator,
        simulator_app=chain.simulator_app,
        closers=closers,
        certificate_source=certificate_source,
        breaker=chain.breaker,
        upstream_variable=chain.where[0],
        upstream_target=chain.where[1],
        credential_variables=chain.credentials,
        httpsig=httpsig,
    )


def _httpsig(env: Mapping[str, str]) -> HTTPSignatureSettings | None:
    """``DPOP_GUARD_HTTPSIG`` and its siblings (:mod:`dpop_guard.httpsig._settings`), read
    only when switched on (the ``httpsig`` extra is needed then)."""
    reader = EnvReader(env, ENV_PREFIX)
    if not any(name.startswith(ENV_PREFIX + "HTTPSIG") and env[name].strip() for name in env):
        return None
    if reader.is_set("HTTPSIG") and (reader.text("HTTPSIG") or "").lower() != "off":
        _require("http_sf", "httpsig", f"{ENV_PREFIX}HTTPSIG")
    from .httpsig._settings import HTTPSignatureSettings

    return HTTPSignatureSettings.from_env(env)


def _add_closer(closers: list[Closer], component: object) -> None:
    close = getattr(component, "aclose", None)
    if close is not None:
        closers.append(close)
