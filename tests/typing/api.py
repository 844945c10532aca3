"""Uses the public API as a user would. Only type-checked (mypy), never run."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route as HTTPRoute

from dpop_guard import (
    AuthleteIntrospector,
    AuthleteSettings,
    CachingIntrospector,
    DPoPAuth,
    DPoPCredentials,
    DPoPGuard,
    DPoPGuardMiddleware,
    GuardSettings,
    Introspector,
    MemoryReplayStore,
    ProofPolicy,
    ProofSigner,
    ProofVerifier,
    ReplayStore,
    Route,
    VerifiedProof,
    from_env,
)


async def accounts(request: Request) -> JSONResponse:
    auth: DPoPCredentials = request.auth
    return JSONResponse({"sub": auth.subject, "scopes": sorted(auth.scopes)})


def build(client: httpx.AsyncClient) -> Starlette:
    settings = GuardSettings(
        policy=ProofPolicy(algorithms=("ES256", "EdDSA"), iat_window=30),
        routes=(Route("/health", public=True), Route("/accounts", scopes=("read:accounts",))),
        public_url="https://api.example.com",
    )
    introspector: Introspector = CachingIntrospector(
        AuthleteIntrospector(client, AuthleteSettings.from_env()), ttl=30
    )
    store: ReplayStore = MemoryReplayStore(maxsize=100_000)
    app = Starlette(routes=[HTTPRoute("/accounts", accounts)])
    app.add_middleware(
        DPoPGuardMiddleware, settings=settings, introspector=introspector, replay_store=store
    )
    return app


def from_the_environment() -> Starlette:
    guard: DPoPGuard = from_env(routes=(Route("/health", public=True),))
    app = Starlette(routes=[HTTPRoute("/accounts", accounts)], lifespan=guard.lifespan)
    guard.install(app)
    return app


def verify(header: str, token: str) -> str:
    proof: VerifiedProof = ProofVerifier(ProofPolicy()).verify(
        header, method="GET", url="https://api.example.com/accounts", access_token=token, now=0
    )
    return proof.jkt


async def call(token: str) -> int:
    signer = ProofSigner.generate("ES256")
    async with httpx.AsyncClient(auth=DPoPAuth(signer, token)) as client:
        response = await client.get("https://api.example.com/accounts")
        return response.status_code
