"""Quart: the middleware around ``app.asgi_app``, the guard opened and closed with
``before_serving``/``after_serving``, ``request.scope["auth"]`` in the handler, the scopes
by the middleware's path rules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from quart import Quart, request, websocket
from starlette.types import ASGIApp

from dpop_guard import DPoPCredentials, DPoPGuardMiddleware

from .._cases import build_guard


def create_app(environ: Mapping[str, str] | None = None) -> ASGIApp:
    guard = build_guard(environ, "middleware")
    app = Quart(__name__)
    app.before_serving(guard.startup)
    app.after_serving(guard.aclose)

    @app.get("/accounts")
    @app.get("/accounts/transactions")
    async def accounts() -> dict[str, str | None]:
        auth: DPoPCredentials = request.scope["auth"]  # type: ignore[typeddict-item]
        return {"subject": auth.subject}

    @app.websocket("/ws")
    async def stream() -> None:
        await websocket.accept()
        await websocket.send(repr(websocket.scope.get("auth")))

    # Quart's and Starlette's ASGI types differ only in how precisely they are spelt.
    inner = cast("ASGIApp", app.asgi_app)
    app.asgi_app = cast(Any, DPoPGuardMiddleware(inner, **guard.middleware_options))  # type: ignore[method-assign]
    return cast("ASGIApp", app)
