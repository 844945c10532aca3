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
- ``DPOP_GUARD_REPLAY_STORE`` (``memory`` or a Redis URL), ``DPOP_GUARD_REPLAY_MAXSIZE``,
  ``DPOP_GUARD_INTROSPECTION_CACHE`` (a Redis URL), ``DPOP_GUARD_CACHE_TTL`` (``0``: no
  cache), ``DPOP_GUARD_CACHE_MAXSIZE``.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlsplit

from ._env import EnvReader
from ._extras import missing_extra
from ._url import is_redis_url
from .introspection import Introspector
from .nonce import HMACNonceSource, NonceSource
from .replay import ReplayStore, replay_store_from_url
from .settings import ENV_PREFIX, GuardSettings, Route

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from .introspection.cached import SharedTokenCache
    from .metrics import Metrics
    from .mtls import ClientCertificateSource
    from .simulator import SimulatorState

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
DEFAULT_REPLAY_MAXSIZE: Final = 1_000_000


@dataclass(frozen=True, kw_only=True, slots=True)
class StoreSettings:
    """What the builder reads besides the middleware's settings: which introspector, its
    caches, the replay store.

    :param introspection: the introspector to build.
    :param development_simulator: run against the embedded simulator (development only).
    :param replay_store: ``memory`` or a ``redis://``/``rediss://``/``unix://`` URL.
    :param replay_maxsize: entries of the in-memory replay store; when full, requests
        fail closed.
    :param introspection_cache: a Redis URL for the fleet-wide second cache level.
    :param cache_ttl: seconds introspection results are reused (revocations are seen up to
        this late); ``0`` disables the cache.
    :param cache_maxsize: entries of the local introspection cache.
    :raises ValueError: naming the field that is wrong.
    """

    introspection: IntrospectionMode = "authlete"
    development_simulator: bool = False
    replay_store: str = "memory"
    replay_maxsize: int = DEFAULT_REPLAY_MAXSIZE
    introspection_cache: str | None = None
    cache_ttl: float = DEFAULT_CACHE_TTL
    cache_maxsize: int = DEFAULT_CACHE_MAXSIZE

    def __post_init__(self) -> None:
        if self.introspection not in INTROSPECTION_MODES:
            raise ValueError(
                f"introspection must be one of {', '.join(INTROSPECTION_MODES)}, "
                f"got {self.introspection!r}"
            )
        if self.replay_store != "memory" and not is_redis_url(self.replay_store):
            raise ValueError("replay_store must be 'memory' or a redis:// or rediss:// URL")
        if self.introspection_cache is not None and not is_redis_url(self.introspection_cache):
            raise ValueError("introspection_cache must be a redis:// or rediss:// URL")
        if not self.cache_ttl >= 0:  # also refuses nan
            raise ValueError("cache_ttl must not be negative")
        if self.cache_maxsize <= 0 or self.replay_maxsize <= 0:
            raise ValueError("cache_maxsize and replay_maxsize must be positive")
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
        """``INTROSPECTION``, ``DEVELOPMENT_SIMULATOR``, ``REPLAY_STORE``,
        ``REPLAY_MAXSIZE``, ``INTROSPECTION_CACHE``, ``CACHE_TTL``, ``CACHE_MAXSIZE``.

        :raises ValueError: naming the variable that is wrong.
        """
        env = EnvReader(environ, prefix)
        mode = env.choice("INTROSPECTION", INTROSPECTION_MODES, "authlete")
        # Strict on purpose: only "1" turns on a mode whose credentials are public.
        flag = env.text("DEVELOPMENT_SIMULATOR")
        if flag not in (None, "0", "1"):
            raise ValueError(
                f"{env.name('DEVELOPMENT_SIMULATOR')} must be 1 (use the embedded simulator) "
                f"or 0, got {flag!r}"
            )
        try:
            return cls(
                introspection=mode,  # type: ignore[arg-type]
                development_simulator=flag == "1",
                replay_store=env.text("REPLAY_STORE", "memory") or "memory",
                replay_maxsize=env.integer("REPLAY_MAXSIZE", DEFAULT_REPLAY_MAXSIZE),
                introspection_cache=env.text("INTROSPECTION_CACHE"),
                cache_ttl=env.number("CACHE_TTL", DEFAULT_CACHE_TTL),
                cache_maxsize=env.integer("CACHE_MAXSIZE", DEFAULT_CACHE_MAXSIZE),
            )
        except ValueError as exc:
            raise ValueError(f"{prefix}*: {exc}") from None


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
        self._closers = list(closers)
        self._closed = False

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
        """Add the middleware to a Starlette (or FastAPI) ``app``; in development-simulator
        mode, also mount the simulator at ``/__authlete``. Pass :meth:`lifespan` to the app
        so the guard's connections are closed at shutdown."""
        from .middleware import DPoPGuardMiddleware

        if self.simulator_app is not None:
            app.mount(SIMULATOR_MOUNT, app=self.simulator_app)
        app.add_middleware(DPoPGuardMiddleware, **self.middleware_options)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """An ASGI lifespan: checks the replay store at start-up, closes every client the
        guard opened (HTTP pools, Redis) at shutdown. Nest it in your own lifespan with
        ``async with guard.lifespan(app):``."""
        await self.startup()
        try:
            yield
        finally:
            await self.aclose()

    async def startup(self) -> None:
        """Log (do not fail on) a replay store that does not answer: requests fail closed
        with 503 until it is back."""
        ping = getattr(self.replay_store, "ping", None)
        if ping is None:
            return
        try:
            await ping()
        except Exception as exc:
            logger.warning("replay store unreachable at start-up: %s", type(exc).__name__)

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
            return ["client certificates: none (DPoP-bound tokens only)"]
        where = "trusted proxies only" if source.requires_trusted_proxy else "the ASGI server"
        return [f"client certificates: {source.name} (believed from {where})"]

    async def check(self) -> list[str]:
        """What ``dpop-guard check-config`` reports: problems, as sentences (empty when all
        is well). Asks the introspection endpoint about a made-up token and pings Redis."""
        from .errors import DPoPGuardError, ServiceUnavailable
        from .introspection import RequestFacts

        problems: list[str] = []
        if self.simulator is not None:
            problems.append(
                f"{DEVELOPMENT_SIMULATOR}=1: requests are checked against the embedded "
                "development simulator, whose credentials are public"
            )
        target = {
            "authlete": "Authlete",
            "authlete-standard": "Authlete",
            "rfc7662": "the RFC 7662 endpoint",
            "jwt": "the JWKS endpoint",
        }[self.stores.introspection]
        facts = RequestFacts("GET", "https://check-config.invalid/", None, None)
        try:
            await self.upstream.introspect(_check_token(self.stores), request=facts)
            problems.append(f"{target} accepted a made-up token: is it the right endpoint?")
        except ServiceUnavailable as exc:
            status = getattr(exc, "upstream_status", None)
            http = "" if status is None else f" (HTTP {status})"
            problems.append(f"{target} cannot be used: {exc.reason}{http}")
        except DPoPGuardError:
            pass  # refused, as it should: the endpoint answers and our credentials work
        for name, component in (
            (ENV_PREFIX + "REPLAY_STORE", self.replay_store),
            (ENV_PREFIX + "INTROSPECTION_CACHE", self.shared_cache),
        ):
            client = getattr(component, "client", None)
            if client is None:
                continue
            try:
                await client.ping()
            except Exception as exc:
                problems.append(f"{name}: Redis does not answer ({type(exc).__name__})")
                continue
            # An evicting Redis reopens replayed proofs (see dpop_guard.replay.redis).
            check_eviction = getattr(component, "check_eviction", None)
            if check_eviction is not None:
                outcome, sentence = await check_eviction()
                if outcome == "evicting":
                    problems.append(f"{name}: {sentence}")
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
        if settings.public_url is None and not settings.trusted_proxies:
            problems.append(
                "neither DPOP_GUARD_PUBLIC_URL nor DPOP_GUARD_TRUSTED_PROXIES is set: "
                "htu is checked against the Host header, which clients control"
            )
        return problems


def _check_token(stores: StoreSettings) -> str:
    """A token no server issued. For JWT mode it names an unknown key, so that the
    validator has to reach the JWKS endpoint before refusing it."""
    if stores.introspection != "jwt":
        return "dpop-guard-check-config-not-a-token"
    from ._b64 import b64url_encode

    header = b64url_encode(b'{"typ":"at+jwt","alg":"ES256","kid":"dpop-guard-check-config"}')
    return f"{header}.e30.c2ln"


def _authlete_problem(environ: Mapping[str, str], exc: ValueError) -> ValueError:
    """The Authlete configuration error, with a hint at look-alike names that are set."""
    message = str(exc)
    present = [k for k in environ if k.startswith("AUTHLETE") and k not in _AUTHLETE_NAMES]
    hints = []
    for name in sorted(present):
        close = difflib.get_close_matches(name, _AUTHLETE_NAMES, n=1)
        if close:
            hints.append(f"{name} is set: did you mean {close[0]}?")
    suffix = (
        f" ({'; '.join(hints)})"
        if hints
        else f" (to develop against the embedded simulator, set {DEVELOPMENT_SIMULATOR}=1)"
    )
    return ValueError(message + suffix)


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


REVOCATION_MODES: Final = ("authlete", "authlete-standard", "rfc7662")


def _jwt(env: Mapping[str, str], resources: tuple[str, ...], *, embedded: bool) -> _Chain:
    """The JWT validator, and on revocation paths the introspector it also asks.

    :raises ValueError: naming ``DPOP_GUARD_JWT_REVOCATION_INTROSPECTION`` when revocation
        paths are set without it, or a variable of the revocation introspector.
    """
    import httpx

    from .introspection.jwt import JWTAccessTokenSettings, JWTAccessTokenValidator

    settings = JWTAccessTokenSettings.from_env(env, default_resources=resources)
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
    if revocation is None:
        return _Chain(validator, [jwks_client.aclose])
    return _Chain(
        validator,
        [jwks_client.aclose, *revocation.closers],
        revocation.simulator,
        revocation.simulator_app,
    )


def _rfc7662(env: Mapping[str, str], resources: tuple[str, ...]) -> _Chain:
    from .introspection._http import AsyncioHTTPClient
    from .introspection.rfc7662 import RFC7662Introspector, RFC7662Settings

    settings = RFC7662Settings.from_env(env, default_resources=resources)
    client = AsyncioHTTPClient()
    return _Chain(RFC7662Introspector(client, settings), [client.aclose])


def _authlete(
    env: Mapping[str, str], resources: tuple[str, ...], *, standard: bool, embedded: bool
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
    # authlete-standard: Authlete's RFC 7662 helper API, cnf.jkt checked locally.
    introspector: Introspector = (
        AuthleteStandardIntrospector(http, authlete)
        if standard
        else AuthleteIntrospector(http, authlete)
    )
    return _Chain(introspector, [http.aclose], simulator, simulator_app)


def _embedded_simulator(resources: tuple[str, ...]) -> tuple[Any, Any, SimulatorState, Any]:
    """Settings, an in-process client, state and app of the embedded simulator."""
    import httpx

    from .introspection.authlete import AuthleteSettings
    from .simulator import (
        DEFAULT_API_SECRET,
        DEFAULT_SERVICE_ID,
        SimulatorState,
        create_simulator_app,
    )

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

    :param routes: the path rules (code, not environment); in development-simulator mode
        ``/__authlete/*`` is added in front of them as public.
    :param metrics: handed to the middleware.
    :raises ValueError: one message naming the variable that is missing or wrong.
    :raises ImportError: a configured backend needs an extra that is not installed.
    """
    import os

    env: Mapping[str, str] = os.environ if environ is None else environ
    # 1. Read and check every setting before the first client is opened.
    stores = StoreSettings.from_env(env)
    if stores.development_simulator:
        if EnvReader(env).is_set("AUTHLETE_BASE_URL"):
            raise ValueError(
                f"{DEVELOPMENT_SIMULATOR}=1 and AUTHLETE_BASE_URL are both set: the embedded "
                "simulator would hide the real Authlete; unset one of them"
            )
        routes = (Route(SIMULATOR_MOUNT + "/*", public=True), *routes)
    settings = GuardSettings.from_env(env, routes=routes)
    from .mtls import certificate_source_from_env

    certificate_source = certificate_source_from_env(env)
    mtls_routes = [r.pattern for r in settings.routes if r.sender_constraint != "dpop"]
    if mtls_routes and certificate_source is None:
        raise ValueError(
            f"{ENV_PREFIX}CLIENT_CERT_SOURCE is not set, but routes accept certificate-bound "
            f"tokens: {', '.join(mtls_routes)}"
        )
    for url, name in (
        (stores.replay_store, "REPLAY_STORE"),
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
        chain = _jwt(env, public, embedded=stores.development_simulator)
    elif mode == "rfc7662":
        chain = _rfc7662(env, ())
    else:
        chain = _authlete(
            env,
            public if mode == "authlete" else (),
            standard=mode == "authlete-standard",
            embedded=stores.development_simulator,
        )

    # 3. The stores, then the cache in front of the introspector.
    closers = chain.closers
    replay_store = replay_store_from_url(stores.replay_store, maxsize=stores.replay_maxsize)
    _add_closer(closers, replay_store)
    shared: SharedTokenCache | None = None
    if stores.introspection_cache is not None:
        from .introspection.redis_cache import RedisTokenCache

        shared = RedisTokenCache.from_env(stores.introspection_cache, env)
        _add_closer(closers, shared)
    introspector = chain.introspector
    # JWT access tokens are checked locally: there is nothing to cache.
    if stores.cache_ttl > 0 and mode != "jwt":
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
    )


def _add_closer(closers: list[Closer], component: object) -> None:
    close = getattr(component, "aclose", None)
    if close is not None:
        closers.append(close)
