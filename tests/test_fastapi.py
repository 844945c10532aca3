"""FastAPI: per-route scopes through Security, OpenAPI's DPoP scheme, and Starlette's
@requires, with the Authlete simulator over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Security
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route as HTTPRoute

from dpop_guard import DPoPAuth, DPoPCredentials, DPoPGuardMiddleware, ProofSigner
from dpop_guard.challenges import parse_challenge
from dpop_guard.demo.fastapi_accounts import create_app
from dpop_guard.fastapi import DPoPSecurity
from dpop_guard.simulator import (
    DEFAULT_SERVICE_ID,
    DEFAULT_SERVICE_TOKEN,
    SimulatorState,
)

ORIGIN = "https://api.bank.test"


@pytest.fixture(name="client")
async def _client(simulator_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        {
            "AUTHLETE_BASE_URL": simulator_url,
            "AUTHLETE_API_VERSION": "V3",
            "AUTHLETE_SERVICE_APIKEY": DEFAULT_SERVICE_ID,
            "AUTHLETE_SERVICE_ACCESSTOKEN": DEFAULT_SERVICE_TOKEN,
            "DPOP_GUARD_PUBLIC_URL": ORIGIN,
        }
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN) as client,
    ):
        yield client


class TestFastAPIAccounts:
    async def test_routes_and_scopes(
        self, client: httpx.AsyncClient, simulator: SimulatorState, signer: ProofSigner
    ) -> None:
        """Each route's Security scopes are enforced, from cached facts as well."""
        token = simulator.create_token(subject="alice", scopes=["read:accounts"], jkt=signer.jkt)
        auth = DPoPAuth(signer, token)
        listing = await client.get("/accounts", auth=auth)
        assert listing.status_code == 200 and listing.json()["subject"] == "alice"
        one = await client.get("/accounts/acc-1001", auth=auth)
        assert one.status_code == 200 and one.json()["currency"] == "EUR"
        assert (await client.get("/accounts/acc-2001", auth=auth)).status_code == 404
        refused = await client.get("/accounts/acc-1001/balances", auth=auth)
        assert refused.status_code == 403
        _, params = parse_challenge(refused.headers["www-authenticate"])
        assert params["error"] == "insufficient_scope" and params["scope"] == "read:balances"
        assert refused.headers["cache-control"] == "no-store"
        assert refused.json()["detail"]["error"] == "insufficient_scope"
        assert simulator.calls["auth/introspection"] == 2  # one round, then the cache

    async def test_balances_with_scope(
        self, client: httpx.AsyncClient, simulator: SimulatorState, signer: ProofSigner
    ) -> None:
        """With read:balances, balances are served."""
        token = simulator.create_token(subject="alice", scopes=["read:balances"], jkt=signer.jkt)
        response = await client.get("/accounts/acc-1002/balances", auth=DPoPAuth(signer, token))
        assert response.status_code == 200
        assert response.json()["balances"][0]["amount"] == "9800.00"

    async def test_middleware_still_authenticates(self, client: httpx.AsyncClient) -> None:
        """Without credentials the middleware answers before FastAPI does."""
        response = await client.get("/accounts")
        assert response.status_code == 401
        assert parse_challenge(response.headers["www-authenticate"])[1] == {
            "algs": "ES256 PS256 EdDSA"
        }

    async def test_openapi_shows_dpop(self, client: httpx.AsyncClient) -> None:
        """/openapi.json (public) declares the DPoP HTTP scheme and the routes' use of it."""
        spec = (await client.get("/openapi.json")).json()
        scheme = spec["components"]["securitySchemes"]["DPoP"]
        assert scheme["type"] == "http" and scheme["scheme"] == "DPoP"
        assert {"DPoP": ["read:balances"]} in spec["paths"]["/accounts/{account_id}/balances"][
            "get"
        ]["security"]
        assert (await client.get("/docs")).status_code == 200


class TestWithoutMiddleware:
    async def test_dependency_refuses_unauthenticated(self) -> None:
        """If the middleware is missing (or the path public), the dependency refuses."""
        app = FastAPI()
        dpop = DPoPSecurity()

        @app.get("/x")
        async def x(auth: DPoPCredentials = Security(dpop)) -> dict[str, str]:  # noqa: B008
            return {}

        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=ORIGIN
        ) as client:
            response = await client.get("/x")
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("DPoP ")


class TestStarletteRequires:
    async def test_requires_decorator(
        self, simulator: SimulatorState, simulator_url: str, signer: ProofSigner
    ) -> None:
        """request.auth.scopes makes Starlette's @requires work unchanged; request.user is the
        authenticated subject."""
        from dpop_guard import AuthleteIntrospector, AuthleteSettings, GuardSettings

        @requires(["read:accounts"])
        async def ok(request: Request) -> JSONResponse:
            user = request.user
            return JSONResponse({"user": user.display_name, "auth": user.is_authenticated})

        @requires(["admin"])
        async def admin(request: Request) -> JSONResponse:
            return JSONResponse({"ok": True})

        http = httpx.AsyncClient()
        inner = Starlette(routes=[HTTPRoute("/ok", ok), HTTPRoute("/admin", admin)])
        settings = GuardSettings(public_url=ORIGIN)
        app: Any = DPoPGuardMiddleware(
            inner,
            settings=settings,
            introspector=AuthleteIntrospector(
                http,
                AuthleteSettings(
                    base_url=simulator_url,
                    api_key=DEFAULT_SERVICE_ID,
                    access_token=DEFAULT_SERVICE_TOKEN,
                ),
            ),
        )
        token = simulator.create_token(subject="a", scopes=["read:accounts"], jkt=signer.jkt)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=ORIGIN, auth=DPoPAuth(signer, token)
        ) as client:
            response = await client.get("/ok")
            assert response.json() == {"user": "a", "auth": True}
            assert (await client.get("/admin")).status_code == 403
        await http.aclose()
