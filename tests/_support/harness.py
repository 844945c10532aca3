"""The guarded app most middleware tests drive: an inner Starlette app, the middleware in
front of it over ``httpx.ASGITransport``, and the Authlete simulator behind it over real
HTTP. The fixtures that build it (``make_harness``, ``h``) are in ``tests/conftest.py``."""

from __future__ import annotations

import time
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route as HTTPRoute
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from dpop_guard import (
    AuthleteIntrospector,
    AuthleteSettings,
    CachingIntrospector,
    DPoPCredentials,
    DPoPGuardMiddleware,
    GuardSettings,
    ProofSigner,
    Route,
)
from dpop_guard.challenges import parse_challenge
from dpop_guard.devtools.simulator import (
    DEFAULT_SERVICE_ID,
    DEFAULT_SERVICE_TOKEN,
    SimulatorState,
)
from dpop_guard.replay import MemoryReplayStore
from dpop_guard.testing import make_proof

__all__ = [
    "ORIGIN",
    "ROUTES",
    "Harness",
    "assert_rejected",
    "authlete_settings",
    "echo",
    "health",
    "inner_app",
    "ws_endpoint",
]

ORIGIN = "https://api.bank.test"
ROUTES = (
    Route("/health", public=True),
    Route("/accounts", scopes=("read:accounts",)),
    Route("/accounts/{account_id}/transactions", scopes=("read:transactions",)),
)


async def echo(request: Request) -> JSONResponse:
    auth: DPoPCredentials = request.auth
    return JSONResponse(
        {
            "subject": auth.subject,
            "client_id": auth.client_id,
            "scopes": sorted(auth.scopes),
            "jkt": auth.jkt,
            "scheme": auth.scheme,
            "expires_at": auth.expires_at,
            "interaction_id": auth.interaction_id,
            "state_interaction_id": request.state.fapi_interaction_id,
        }
    )


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok", "auth": "auth" in request.scope})


async def ws_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("hello")
    await websocket.close()


def inner_app() -> Starlette:
    return Starlette(
        routes=[
            HTTPRoute("/health", health),
            HTTPRoute("/accounts", echo),
            HTTPRoute("/accounts/{account_id}/transactions", echo),
            HTTPRoute("/other", echo),
            WebSocketRoute("/ws", ws_endpoint),
        ]
    )


def authlete_settings(base_url: str, timeout: float = 2.0) -> AuthleteSettings:
    return AuthleteSettings(
        base_url=base_url,
        api_version="V3",
        api_key=DEFAULT_SERVICE_ID,
        access_token=DEFAULT_SERVICE_TOKEN,
        timeout=timeout,
    )


class Harness:
    """A guarded app, an httpx client into it, and the simulator behind it."""

    def __init__(self, simulator: SimulatorState, simulator_url: str, **options: Any) -> None:
        self.simulator = simulator
        timeout = options.pop("timeout", 2.0)
        base_url = options.pop("authlete_url", simulator_url)
        self.http = httpx.AsyncClient()
        introspector: Any = AuthleteIntrospector(self.http, authlete_settings(base_url, timeout))
        if options.pop("cache", True):
            introspector = CachingIntrospector(
                introspector, ttl=60, shared=options.pop("shared", None)
            )
        self.introspector = options.pop("introspector", introspector)
        setting_names = (
            "allow_unbound_tokens",
            "realm",
            "nonce",
            "nonce_secret",
            "nonce_step",
            "date_header",
        )
        settings = GuardSettings(
            routes=options.pop("routes", ROUTES),
            public_url=ORIGIN,
            **{k: options.pop(k) for k in list(options) if k in setting_names},
        )
        # A store standing in for a process that has been up for an hour: a brand-new
        # store rightly refuses proofs older than itself (replay_state_uncertain).
        options.setdefault("replay_store", MemoryReplayStore(epoch=int(time.time()) - 3600))
        self.app = DPoPGuardMiddleware(
            inner_app(), settings=settings, introspector=self.introspector, **options
        )
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url=ORIGIN
        )

    def token(
        self,
        signer: ProofSigner | None,
        scopes: tuple[str, ...] = ("read:accounts",),
        **kwargs: Any,
    ) -> str:
        return self.simulator.create_token(
            subject="alice", scopes=scopes, jkt=signer.jkt if signer else None, **kwargs
        )

    async def call(
        self,
        token: str | None,
        signer: ProofSigner | None = None,
        *,
        path: str = "/accounts",
        method: str = "GET",
        proof: str | None = None,
        scheme: str = "DPoP",
        headers: list[tuple[str, str]] | None = None,
        **proof_kwargs: Any,
    ) -> httpx.Response:
        sent: list[tuple[str, str]] = list(headers or [])
        if token is not None:
            sent.append(("Authorization", f"{scheme} {token}"))
        if proof is None and signer is not None:
            proof = make_proof(
                signer, htm=method, htu=ORIGIN + path, access_token=token, **proof_kwargs
            )
        if proof is not None:
            sent.append(("DPoP", proof))
        return await self.client.request(method, path, headers=sent)

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.http.aclose()


def assert_rejected(
    response: httpx.Response, status: int, error: str | None, reason: str, reasons: list[str]
) -> dict[str, str]:
    assert response.status_code == status, response.text
    assert response.headers["cache-control"] == "no-store"
    assert reasons[-1] == reason
    if status == 503:
        assert "www-authenticate" not in response.headers
        assert response.json()["error"] == "temporarily_unavailable"
        return {}
    scheme, params = parse_challenge(response.headers["www-authenticate"])
    assert scheme == "DPoP"
    assert params.get("error") == error
    assert params["algs"] == "ES256 PS256 EdDSA"
    if error is not None:
        assert response.json()["error"] == error
    return params
