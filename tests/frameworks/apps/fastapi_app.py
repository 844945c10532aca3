"""FastAPI: the scopes are the endpoint's, through ``Security(DPoPSecurity(), scopes=...)``;
the middleware only authenticates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from fastapi import FastAPI, Security, WebSocket

from dpop_guard import DPoPCredentials
from dpop_guard.fastapi import DPoPSecurity

from .._cases import build_guard

dpop = DPoPSecurity()


def create_app(environ: Mapping[str, str] | None = None) -> FastAPI:
    guard = build_guard(environ, "framework")
    app = FastAPI(lifespan=guard.lifespan)

    @app.get("/accounts")
    async def accounts(
        auth: Annotated[DPoPCredentials, Security(dpop, scopes=["read:accounts"])],
    ) -> dict[str, str | None]:
        return {"subject": auth.subject}

    @app.get("/accounts/transactions")
    async def transactions(
        auth: Annotated[DPoPCredentials, Security(dpop, scopes=["read:transactions"])],
    ) -> dict[str, str | None]:
        return {"subject": auth.subject}

    @app.websocket("/ws")
    async def stream(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(repr(websocket.scope.get("auth")))
        await websocket.close()

    guard.install(app)
    return app
