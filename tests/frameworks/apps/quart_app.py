"""Quart: the middleware around ``app.asgi_app``, the guard opened and closed with
``before_serving``/``after_serving``, ``request.scope["auth"]`` in the handler, the scopes
by the middleware's path rules."""

from __future__ import annotations

from collections.abc import Mapping

from quart import Quart, request, websocket

from dpop_guard import DPoPCredentials, DPoPGuardMiddleware

from .._cases import build_guard


def create_app(environ: Mapping[str, str] | None = None) -> Quart:
    guard = build_guard(environ, "middleware")
    app = Quart(__name__)
    app.before_serving(guard.startup)
    app.after_serving(guard.aclose)

    @app.get("/accounts")
    @app.get("/accounts/transactions")
    async def accounts() -> dict[str, str | None]:
        auth: DPoPCredentials = request.scope["auth"]
        return {"subject": auth.subject}

    @app.websocket("/ws")
    async def stream() -> None:
        await websocket.accept()
        await websocket.send(repr(websocket.scope.get("auth")))

    app.asgi_app = DPoPGuardMiddleware(  # type: ignore[method-assign]
        app.asgi_app, **guard.middleware_options
    )
    return app
