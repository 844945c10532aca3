"""A FAPI 2.0-style accounts API protected by dpop_guard.

Run from the repository root::

    uvicorn examples.accounts:app

Configuration comes from the environment: Authlete's own names (``AUTHLETE_BASE_URL``,
``AUTHLETE_API_VERSION``, ``AUTHLETE_SERVICE_APIKEY``, ``AUTHLETE_SERVICE_APISECRET``,
``AUTHLETE_SERVICE_ACCESSTOKEN``) and ours (``DPOP_GUARD_PUBLIC_URL``,
``DPOP_GUARD_INTROSPECTION=rfc7662`` with ``DPOP_GUARD_INTROSPECTION_URL``/``_CLIENT_ID``/
``_CLIENT_SECRET`` for any RFC 7662 authorization server, ``DPOP_GUARD_INTROSPECTION=jwt``
with ``DPOP_GUARD_JWT_ISSUER``/``_AUDIENCE`` for JWT access tokens,
``DPOP_GUARD_CACHE_TTL``, ``DPOP_GUARD_REPLAY_STORE``, ``DPOP_GUARD_NONCE``, ...). For a
fleet::

    DPOP_GUARD_REPLAY_STORE=redis://127.0.0.1:6379/0 \
    DPOP_GUARD_INTROSPECTION_CACHE=redis://127.0.0.1:6379/0 \
    uvicorn examples.accounts:app --workers 4 Without ``AUTHLETE_BASE_URL`` the app runs against the
embedded Authlete simulator, mounted at ``/__authlete`` so a client can mint test tokens;
that mode is for development only and says so in the log.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount
from starlette.routing import Route as HTTPRoute

from dpop_guard import (
    AsyncioHTTPClient,
    AuthleteIntrospector,
    AuthleteSettings,
    CachingIntrospector,
    DPoPCredentials,
    DPoPGuardMiddleware,
    GuardSettings,
    Route,
)
from dpop_guard.introspection.cached import SharedTokenCache
from dpop_guard.introspection.jwt import JWTAccessTokenSettings, JWTAccessTokenValidator
from dpop_guard.introspection.rfc7662 import (
    AuthleteStandardIntrospector,
    RFC7662Introspector,
    RFC7662Settings,
)
from dpop_guard.introspection.simulator import (
    DEFAULT_API_SECRET,
    DEFAULT_SERVICE_ID,
    SimulatorState,
    create_simulator_app,
)
from dpop_guard.replay import replay_store_from_url

logger = logging.getLogger("examples.accounts")

EMBEDDED_BASE_URL = "http://authlete-simulator.invalid"

# The seed scenario: two customers and their accounts, keyed by the token's subject.
ACCOUNTS: dict[str, list[dict[str, str]]] = {
    "alice": [
        {"account_id": "acc-1001", "currency": "EUR", "nickname": "Current", "balance": "1520.40"},
        {"account_id": "acc-1002", "currency": "EUR", "nickname": "Savings", "balance": "9800.00"},
    ],
    "bob": [
        {"account_id": "acc-2001", "currency": "GBP", "nickname": "Main", "balance": "310.12"},
    ],
}
TRANSACTIONS: dict[str, list[dict[str, str]]] = {
    "acc-1001": [
        {"transaction_id": "tx-1", "amount": "-42.10", "description": "Groceries"},
        {"transaction_id": "tx-2", "amount": "2300.00", "description": "Salary"},
    ],
    "acc-1002": [{"transaction_id": "tx-3", "amount": "500.00", "description": "Transfer in"}],
    "acc-2001": [{"transaction_id": "tx-4", "amount": "-9.99", "description": "Streaming"}],
}

ROUTES = (
    Route("/health", public=True),
    Route("/__authlete/*", public=True),  # exists only with the embedded simulator
    Route("/accounts", scopes=("read:accounts",), methods=("GET",)),
    Route("/accounts/{account_id}/transactions", scopes=("read:transactions",), methods=("GET",)),
)


async def health(request: Request) -> JSONResponse:
    # The worker's pid lets a load test see that every worker took part.
    return JSONResponse({"status": "ok", "worker": os.getpid()})


async def accounts(request: Request) -> JSONResponse:
    auth: DPoPCredentials = request.auth
    return JSONResponse({"subject": auth.subject, "accounts": ACCOUNTS.get(auth.subject or "", [])})


async def transactions(request: Request) -> JSONResponse:
    auth: DPoPCredentials = request.auth
    account_id = request.path_params["account_id"]
    owned = {a["account_id"] for a in ACCOUNTS.get(auth.subject or "", [])}
    if account_id not in owned:
        return JSONResponse({"error": "not_found"}, status_code=404)
    return JSONResponse({"account_id": account_id, "transactions": TRANSACTIONS[account_id]})


@dataclass
class Guard:
    """Everything the middleware needs, built from the environment, plus the lifespan that
    opens and closes its connections. Shared by this example and the FastAPI one."""

    settings: GuardSettings
    introspector: Any
    replay_store: Any
    simulator: SimulatorState | None
    simulator_app: Starlette | None
    lifespan: Callable[[Any], contextlib.AbstractAsyncContextManager[None]]

    @property
    def middleware_options(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "introspector": self.introspector,
            "replay_store": self.replay_store,
        }


def build_guard(environ: Mapping[str, str] | None, routes: tuple[Route, ...]) -> Guard:
    """Read the environment and build the introspector, cache and stores."""
    env = dict(os.environ if environ is None else environ)
    simulator: SimulatorState | None = None
    sim_app: Starlette | None = None
    standard = env.get("DPOP_GUARD_INTROSPECTION", "authlete").lower() in ("rfc7662", "jwt")
    if not standard and not env.get("AUTHLETE_BASE_URL"):
        logger.warning(
            "AUTHLETE_BASE_URL is not set: using the embedded Authlete simulator (development only)"
        )
        simulator = SimulatorState()
        sim_app = create_simulator_app(simulator)
        env.update(
            AUTHLETE_BASE_URL=EMBEDDED_BASE_URL,
            AUTHLETE_API_VERSION="V2",
            AUTHLETE_SERVICE_APIKEY=DEFAULT_SERVICE_ID,
            AUTHLETE_SERVICE_APISECRET=DEFAULT_API_SECRET,
        )
        client: httpx.AsyncClient | AsyncioHTTPClient = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=sim_app)
        )
    else:
        # The lean asyncio client: a quarter of httpx's CPU per introspection call.
        client = AsyncioHTTPClient()

    settings = GuardSettings.from_env(env, routes=routes)
    replay_store = replay_store_from_url(settings.replay_store, maxsize=settings.replay_maxsize)
    shared: SharedTokenCache | None = None
    if settings.introspection_cache is not None:
        from dpop_guard.introspection.redis_cache import RedisTokenCache

        shared = RedisTokenCache.from_url(settings.introspection_cache)
    closers: list[Callable[[], Awaitable[None]]] = [
        f for c in (replay_store, shared) if (f := getattr(c, "aclose", None)) is not None
    ]
    introspector: Any
    mode = env.get("DPOP_GUARD_INTROSPECTION", "authlete").lower()
    if mode == "jwt":
        # JWT access tokens (RFC 9068), checked locally against the issuer's JWKS.
        jwks_client = httpx.AsyncClient()  # JWKS fetches are rare: httpx is fine here
        closers.append(jwks_client.aclose)
        introspector = JWTAccessTokenValidator(jwks_client, JWTAccessTokenSettings.from_env(env))
    elif mode == "authlete-standard":
        # Authlete's RFC 7662 helper API: cnf.jkt checked locally, one call per miss.
        introspector = AuthleteStandardIntrospector(client, AuthleteSettings.from_env(env))
    elif mode == "rfc7662":
        # Any authorization server with RFC 7662 introspection that returns cnf.jkt.
        introspector = RFC7662Introspector(client, RFC7662Settings.from_env(env))
    else:
        introspector = AuthleteIntrospector(client, AuthleteSettings.from_env(env))
    if settings.cache_ttl > 0 and mode != "jwt":  # JWT tokens are checked locally anyway
        introspector = CachingIntrospector(
            introspector, ttl=settings.cache_ttl, maxsize=settings.cache_maxsize, shared=shared
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        ping = getattr(replay_store, "ping", None)
        if ping is not None:
            try:
                await ping()
            except Exception as exc:  # requests fail closed (503) until it is back
                logger.warning("replay store unreachable at start-up: %s", type(exc).__name__)
        yield
        await client.aclose()
        for close in closers:
            await close()

    return Guard(settings, introspector, replay_store, simulator, sim_app, lifespan)


def create_app(environ: Mapping[str, str] | None = None) -> Starlette:
    """Build the protected app from ``environ`` (default: ``os.environ``)."""
    guard = build_guard(environ, ROUTES)
    routes: list[Any] = [
        HTTPRoute("/health", health),
        HTTPRoute("/accounts", accounts),
        HTTPRoute("/accounts/{account_id}/transactions", transactions),
    ]
    if guard.simulator_app is not None:
        routes.append(Mount("/__authlete", app=guard.simulator_app))
    app = Starlette(routes=routes, lifespan=guard.lifespan)
    app.add_middleware(DPoPGuardMiddleware, **guard.middleware_options)
    app.state.introspector = guard.introspector
    app.state.replay_store = guard.replay_store
    app.state.simulator = guard.simulator
    return app


app = create_app()
