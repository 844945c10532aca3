"""Starlette: the middleware installed by the guard, ``request.auth`` in the handler, the
scopes by the middleware's path rules."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from dpop_guard import DPoPCredentials

from .._cases import build_guard


async def accounts(request: Request) -> JSONResponse:
    auth: DPoPCredentials = request.auth
    return JSONResponse({"subject": auth.subject})


async def stream(websocket: WebSocket) -> None:
    # Accepts whatever reaches it: refusing an unauthenticated handshake is the guard's job.
    await websocket.accept()
    await websocket.send_text(repr(websocket.scope.get("auth")))
    await websocket.close()


def create_app(environ: Mapping[str, str] | None = None) -> Starlette:
    guard = build_guard(environ, "middleware")
    app = Starlette(
        routes=[
            Route("/accounts", accounts),
            Route("/accounts/transactions", accounts),
            WebSocketRoute("/ws", stream),
        ],
        lifespan=guard.lifespan,
    )
    guard.install(app)
    return app
