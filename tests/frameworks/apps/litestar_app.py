"""Litestar: the middleware as Litestar middleware, the guard's lifespan in Litestar's,
and the scopes enforced by a Litestar guard reading ``connection.scope["auth"]``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from litestar import Litestar, WebSocket, get, websocket
from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import DefineMiddleware
from starlette.types import ASGIApp

from dpop_guard import DPoPCredentials, DPoPGuardMiddleware, InsufficientScope, challenge_for

from .._cases import build_guard

Connection = ASGIConnection[Any, Any, Any, Any]
Guard = Callable[[Connection, BaseRouteHandler], None]


def scope_guard(algs: Sequence[str]) -> Callable[..., Guard]:
    """``requires(*scopes)``: a Litestar guard that answers 403 ``insufficient_scope``, with
    the DPoP challenge, unless the token the middleware verified carries ``scopes``."""

    def requires(*scopes: str) -> Guard:
        def guard(connection: Connection, _: BaseRouteHandler) -> None:
            auth: DPoPCredentials = connection.scope["auth"]
            if not auth.scopes.issuperset(scopes):
                exc = InsufficientScope("scope_missing", scope=" ".join(scopes))
                refusal = challenge_for(exc, algs=algs)
                headers = {k.decode(): v.decode() for k, v in refusal.headers}
                raise HTTPException(status_code=refusal.status, headers=headers)

        return guard

    return requires


def create_app(environ: Mapping[str, str] | None = None) -> ASGIApp:
    guard = build_guard(environ, "framework")
    requires = scope_guard(guard.settings.policy.algorithms)

    @get("/accounts", guards=[requires("read:accounts")])
    async def accounts(request: Connection) -> dict[str, str | None]:
        auth: DPoPCredentials = request.scope["auth"]
        return {"subject": auth.subject}

    @get("/accounts/transactions", guards=[requires("read:transactions")])
    async def transactions(request: Connection) -> dict[str, str | None]:
        auth: DPoPCredentials = request.scope["auth"]
        return {"subject": auth.subject}

    @websocket("/ws")
    async def stream(socket: WebSocket) -> None:  # type: ignore[type-arg]
        await socket.accept()
        await socket.send_text(repr(socket.scope.get("auth")))
        await socket.close()

    app = Litestar(
        route_handlers=[accounts, transactions, stream],
        middleware=[DefineMiddleware(cast(Any, DPoPGuardMiddleware), **guard.middleware_options)],
        lifespan=[guard.lifespan],
    )
    # Litestar's and Starlette's ASGI types differ only in how precisely they are spelt.
    return cast("ASGIApp", app)
