"""FastAPI and the Starlette endpoint helpers: per-route scopes through Security, one error
shape wherever a request is refused, the docs routes public by construction, and the
refusals declared in OpenAPI; with the Authlete simulator over real HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping, MutableMapping
from contextlib import AsyncExitStack
from typing import Annotated, Any

import httpx
import pytest
from fastapi import FastAPI, Security
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Host, Mount, WebSocketRoute
from starlette.routing import Route as HTTPRoute
from starlette.websockets import WebSocket

from dpop_guard import DPoPAuth, DPoPCredentials, ProofSigner, Route, from_env
from dpop_guard.challenges import ERROR_BODY_SCHEMA, parse_challenge
from dpop_guard.devtools.demo.fastapi_accounts import create_app
from dpop_guard.devtools.simulator import (
    DEFAULT_SERVICE_ID,
    DEFAULT_SERVICE_TOKEN,
    SimulatorState,
)
from dpop_guard.fastapi import DPoPSecurity, document_refusals
from dpop_guard.starlette import DPoPRefusal, public, refusal_handler, requires_dpop

ORIGIN = "https://api.bank.test"
NO_CREDENTIALS = {
    "error": "authentication_required",
    "error_description": "Authentication with a DPoP-bound access token is required.",
}


def environ(simulator_url: str) -> dict[str, str]:
    return {
        "AUTHLETE_BASE_URL": simulator_url,
        "AUTHLETE_API_VERSION": "V3",
        "AUTHLETE_SERVICE_APIKEY": DEFAULT_SERVICE_ID,
        "AUTHLETE_SERVICE_ACCESSTOKEN": DEFAULT_SERVICE_TOKEN,
        "DPOP_GUARD_PUBLIC_URL": ORIGIN,
    }


@pytest.fixture(name="serve")
async def _serve(simulator_url: str) -> AsyncIterator[Callable[..., Any]]:
    """Builds a guarded app (``build(guard)`` returns it), runs its lifespan and returns an
    in-process client."""
    async with AsyncExitStack() as stack:

        async def serve(
            build: Callable[[Any], Any], routes: tuple[Route, ...] = ()
        ) -> httpx.AsyncClient:
            guard = from_env(routes=routes, environ=environ(simulator_url))
            app = build(guard)
            await stack.enter_async_context(guard.lifespan(app))
            transport = httpx.ASGITransport(app=app)
            return await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url=ORIGIN)
            )

        yield serve


@pytest.fixture(name="client")
async def _client(simulator_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(environ(simulator_url))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN) as client,
    ):
        yield client


def shape(response: httpx.Response) -> tuple[int, list[str], dict[str, str | None], Any]:
    """What a client sees of a refusal: status, every challenge, the caching and type
    headers, and the parsed body."""
    kept = ("cache-control", "pragma", "content-type", "dpop-nonce", "retry-after")
    headers = {name: response.headers.get(name) for name in kept}
    return (
        response.status_code,
        response.headers.get_list("www-authenticate"),
        headers,
        response.json(),
    )


class TestFastAPIAccounts:
    async def test_routes_and_scopes(
        self, client: httpx.AsyncClient, simulator: SimulatorState, signer: ProofSigner
    ) -> None:
        """Each route's Security scopes are enforced, from cached facts as well, and a
        refusal has the middleware's body, not FastAPI's {"detail": ...}."""
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
        assert refused.headers["content-type"] == "application/json"
        assert refused.json() == {
            "error": "insufficient_scope",
            "error_description": "The access token does not cover the required scope.",
        }
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
        """Without credentials the middleware answers before FastAPI does: a challenge with
        no error (RFC 6750 section 3.1) and the body's authentication_required."""
        response = await client.get("/accounts")
        assert response.status_code == 401
        assert parse_challenge(response.headers["www-authenticate"])[1] == {
            "algs": "ES256 PS256 EdDSA"
        }
        assert response.headers["cache-control"] == "no-store"
        assert response.json() == NO_CREDENTIALS

    async def test_openapi_shows_dpop(self, client: httpx.AsyncClient) -> None:
        """/openapi.json declares the DPoP HTTP scheme, the routes' use of it, and their 401
        and 403 with the error body's schema; /health, which is public, declares none."""
        spec = (await client.get("/openapi.json")).json()
        scheme = spec["components"]["securitySchemes"]["DPoP"]
        assert scheme["type"] == "http" and scheme["scheme"] == "DPoP"
        assert "Swagger UI cannot sign proofs" in scheme["description"]
        balances = spec["paths"]["/accounts/{account_id}/balances"]["get"]
        assert {"DPoP": ["read:balances"]} in balances["security"]
        for status in ("401", "403"):
            declared = balances["responses"][status]
            assert declared["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/DPoPError"
            }
            assert set(declared["headers"]) == {"WWW-Authenticate", "Cache-Control"}
        assert spec["components"]["schemas"]["DPoPError"] == ERROR_BODY_SCHEMA
        assert set(spec["paths"]["/health"]["get"]["responses"]) == {"200"}


class TestDocsRoutes:
    """FastAPI serves its documentation itself; guard.install(app) makes exactly those
    routes public, with no rule declared for them."""

    @pytest.mark.parametrize("path", ["/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc"])
    async def test_default_urls_public(self, serve: Callable[..., Any], path: str) -> None:
        """Each of FastAPI's default documentation routes answers 200 with no credentials,
        GET and HEAD."""
        client = await serve(install(FastAPI))
        assert (await client.get(path)).status_code == 200
        assert (await client.head(path)).status_code != 401

    async def test_other_methods_stay_protected(self, serve: Callable[..., Any]) -> None:
        """The learned rules cover GET (and HEAD) only: a POST to /docs is refused by the
        middleware, and a path under /docs is not public."""
        client = await serve(install(FastAPI))
        assert (await client.post("/docs")).status_code == 401
        assert (await client.get("/docs/x")).status_code == 401
        assert (await client.get("/openapi.json/..")).status_code in (400, 401)

    async def test_custom_urls_learned(self, serve: Callable[..., Any]) -> None:
        """Moved docs are learned where they are; the default paths are then protected."""
        client = await serve(
            install(lambda **kw: FastAPI(docs_url="/api/docs", openapi_url="/api/spec.json"))
        )
        assert (await client.get("/api/docs")).status_code == 200
        assert (await client.get("/api/spec.json")).status_code == 200
        assert (await client.get("/docs")).status_code == 401
        assert (await client.get("/openapi.json")).status_code == 401

    async def test_docs_off_learns_nothing(self, serve: Callable[..., Any]) -> None:
        """With openapi_url=None FastAPI serves no docs, and nothing is made public."""
        client = await serve(install(lambda **kw: FastAPI(openapi_url=None)))
        for path in ("/docs", "/openapi.json", "/redoc"):
            response = await client.get(path)
            assert response.status_code == 401 and response.json() == NO_CREDENTIALS

    @pytest.mark.parametrize("docs_url", ["/docs*", "/docs/{page}"])
    async def test_pattern_characters_refused(self, docs_url: str, simulator_url: str) -> None:
        """A docs URL that a rule would read as a pattern (wider than the literal path
        FastAPI serves) stops install instead of opening more than the docs."""
        guard = from_env(environ=environ(simulator_url))
        with pytest.raises(ValueError, match="docs_url"):
            install(lambda **kw: FastAPI(docs_url=docs_url))(guard)
        await guard.aclose()

    async def test_declared_once_kept(self, serve: Callable[..., Any]) -> None:
        """A rule the app already declares is not duplicated, and settings keep the order:
        learned rules first, then the configured ones."""
        guards: list[Any] = []

        def build(guard: Any) -> FastAPI:
            guards.append(guard)
            return install(FastAPI)(guard)

        await serve(build, routes=(Route("/docs", public=True, methods=("GET",)),))
        patterns = [rule.pattern for rule in guards[0].settings.routes]
        assert patterns.count("/docs") == 1 and patterns[-1] == "/docs"
        assert "/openapi.json" in patterns


async def _health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def _accounts(request: Request) -> JSONResponse:
    return JSONResponse({"subject": request.auth.subject})


async def _socket(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.close()


def starlette_app(*routes: BaseRoute) -> Callable[[Any], Starlette]:
    def build(guard: Any) -> Starlette:
        app = Starlette(routes=list(routes))
        guard.install(app)
        return app

    return build


class TestStarlettePublicEndpoints:
    """A plain Starlette endpoint marked ``@public`` is public through install() alone,
    for its route's methods and path, and only where the router dispatches to it."""

    async def test_marked_endpoint_public(self, serve: Callable[..., Any]) -> None:
        """The marked route answers without credentials (GET and HEAD); the unmarked one
        and other methods on the public path stay protected."""
        client = await serve(
            starlette_app(HTTPRoute("/health", public(_health)), HTTPRoute("/accounts", _accounts))
        )
        assert (await client.get("/health")).json() == {"status": "ok"}
        assert (await client.head("/health")).status_code == 200
        for method, path in (("GET", "/accounts"), ("POST", "/health"), ("GET", "/health/x")):
            response = await client.request(method, path)
            assert response.status_code == 401 and response.json() == NO_CREDENTIALS

    async def test_learned_rule(self, serve: Callable[..., Any]) -> None:
        """The learned rule is the literal path with the route's methods, in front of the
        configured rules."""
        guards: list[Any] = []

        def build(guard: Any) -> Starlette:
            guards.append(guard)
            return starlette_app(HTTPRoute("/health", public(_health), methods=["POST"]))(guard)

        client = await serve(build)
        (rule,) = guards[0].settings.routes
        assert (rule.pattern, rule.public, rule.methods) == ("/health", True, ("POST",))
        assert (await client.post("/health")).status_code == 200
        assert (await client.get("/health")).status_code == 401

    @pytest.mark.parametrize(
        ("routes", "message"),
        [
            # The router would dispatch GET /health to /{page}, which is protected.
            (
                [HTTPRoute("/{page}", _accounts), HTTPRoute("/health", public(_health))],
                "shadowed",
            ),
            ([Mount("/", routes=[]), HTTPRoute("/health", public(_health))], "shadowed"),
            ([HTTPRoute("/items/{item}", public(_health))], "path parameter"),
            # A public websocket route opens the GET handshake: no HTTP route may serve it.
            (
                [WebSocketRoute("/live", public(_socket)), HTTPRoute("/live", _accounts)],
                "shadowed",
            ),
            # A public HTTP GET route opens the handshake too: no websocket route may take
            # it, before or after.
            (
                [HTTPRoute("/health", public(_health)), WebSocketRoute("/{channel}", _socket)],
                "websocket GET",
            ),
            ([HTTPRoute("/health", public(_health)), Mount("/", routes=[])], "websocket GET"),
            # HEAD on a GET-only route falls through to a later Mount (FastAPI's @app.get).
            (
                [
                    HTTPRoute("/health", public(_health), methods=["GET"]),
                    Mount("/", routes=[]),
                ],
                "shadowed",
            ),
            # A Host route's matching depends on the Host header: refused before or after.
            (
                [Host("admin.rs.test", app=Starlette()), HTTPRoute("/health", public(_health))],
                "Host",
            ),
        ],
    )
    async def test_never_wider_than_the_router(
        self, routes: list[BaseRoute], message: str, simulator_url: str
    ) -> None:
        """A marked route the rule would widen stops install: a parameter, or an earlier
        route (or Mount) the router dispatches the path to."""
        guard = from_env(environ=environ(simulator_url))
        with pytest.raises(ValueError, match=message):
            starlette_app(*routes)(guard)
        await guard.aclose()

    async def test_later_protected_route_is_not_opened(self, serve: Callable[..., Any]) -> None:
        """A public route first and a protected /{page} after it: only the literal public
        path is opened; every other page stays protected."""
        client = await serve(
            starlette_app(HTTPRoute("/health", public(_health)), HTTPRoute("/{page}", _accounts))
        )
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/healthz")).status_code == 401

    async def test_head_of_a_get_only_fastapi_route(self, simulator_url: str) -> None:
        """FastAPI's docs routes are learned under the same check: a later Mount that would
        take their HEAD (or websocket) requests stops install."""

        def build(guard: Any) -> FastAPI:
            app = FastAPI()
            app.mount("/", Starlette())
            guard.install(app)
            return app

        guard = from_env(environ=environ(simulator_url))
        with pytest.raises(ValueError, match="shadowed"):
            build(guard)
        await guard.aclose()

    async def test_mark_is_not_inherited(self, serve: Callable[..., Any]) -> None:
        """The mark belongs to the endpoint it was put on: a subclass of a public endpoint
        class is protected."""

        @public
        class Health(HTTPEndpoint):
            async def get(self, request: Request) -> JSONResponse:
                return JSONResponse({"status": "ok"})

        class Admin(Health):
            pass

        client = await serve(
            starlette_app(HTTPRoute("/health", Health), HTTPRoute("/admin", Admin))
        )
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/admin")).status_code == 401

    @pytest.mark.parametrize(
        ("added", "message"),
        [
            (WebSocketRoute("/{channel}", _socket), "shadowed"),
            (HTTPRoute("/status", public(_health)), "added after guard.install"),
        ],
    )
    async def test_routes_added_after_install(
        self, serve: Callable[..., Any], added: BaseRoute, message: str
    ) -> None:
        """The router is checked again at start-up: a route added after install that
        would take a public rule's requests, or a public endpoint install did not see,
        stops the lifespan."""

        def build(guard: Any) -> Starlette:
            app = starlette_app(HTTPRoute("/health", public(_health)))(guard)
            app.router.routes.append(added)
            return app

        with pytest.raises(ValueError, match=message):
            await serve(build)

    async def test_inside_a_mount_stays_protected(self, serve: Callable[..., Any]) -> None:
        """Routes inside a Mount are not walked: a marked endpoint there stays protected
        (fail closed) until a rule in the settings opens it."""
        client = await serve(
            starlette_app(Mount("/v1", routes=[HTTPRoute("/health", public(_health))]))
        )
        assert (await client.get("/v1/health")).status_code == 401


def install(factory: Callable[..., FastAPI]) -> Callable[[Any], FastAPI]:
    def build(guard: Any) -> FastAPI:
        app = factory()

        @app.get("/accounts")
        async def accounts(
            auth: Annotated[DPoPCredentials, Security(DPoPSecurity(), scopes=["a"])],
        ) -> dict[str, str | None]:
            return {"subject": auth.subject}

        guard.install(app)
        return app

    return build


def starlette_middleware_rule(guard: Any) -> Starlette:
    """The scope as a path rule: the middleware refuses."""

    async def endpoint(request: Request) -> JSONResponse:
        return JSONResponse({"subject": request.auth.subject})

    app = Starlette(routes=[HTTPRoute("/x", endpoint)])
    guard.install(app)
    return app


def starlette_requires_dpop(guard: Any) -> Starlette:
    """The scope on the endpoint with requires_dpop."""

    @requires_dpop("read:balances")
    async def endpoint(request: Request) -> JSONResponse:
        return JSONResponse({"subject": request.auth.subject})

    app = Starlette(routes=[HTTPRoute("/x", endpoint)])
    guard.install(app)
    return app


def fastapi_security(guard: Any) -> FastAPI:
    """The scope on the endpoint with Security(DPoPSecurity())."""
    app = FastAPI()

    @app.get("/x")
    async def endpoint(
        auth: Annotated[DPoPCredentials, Security(DPoPSecurity(), scopes=["read:balances"])],
    ) -> dict[str, str | None]:
        return {"subject": auth.subject}

    guard.install(app)
    return app


SCOPED = (Route("/x", scopes=("read:balances",)),)
PUBLIC = (Route("/x", public=True),)
ADAPTERS: Mapping[str, tuple[Callable[[Any], Any], tuple[Route, ...], tuple[Route, ...]]] = {
    # name: (app, rules when the scope is refused, rules when no credentials reach it)
    "middleware": (starlette_middleware_rule, SCOPED, ()),
    "requires_dpop": (starlette_requires_dpop, (), PUBLIC),
    "DPoPSecurity": (fastapi_security, (), PUBLIC),
}


class TestOneShape:
    """The middleware, requires_dpop and DPoPSecurity answer the same refusal identically:
    status, challenges, Cache-Control, Content-Type and body."""

    async def test_scope_refused(
        self, serve: Callable[..., Any], simulator: SimulatorState, signer: ProofSigner
    ) -> None:
        """A token without read:balances: 403 insufficient_scope, the same everywhere."""
        token = simulator.create_token(subject="alice", scopes=["read:accounts"], jkt=signer.jkt)
        seen = {}
        for name, (build, rules, _) in ADAPTERS.items():
            client = await serve(build, rules)
            seen[name] = shape(await client.get("/x", auth=DPoPAuth(signer, token)))
        status, challenges, headers, body = seen["middleware"]
        assert status == 403 and len(challenges) == 1
        scheme, params = parse_challenge(challenges[0])
        assert (scheme, params["error"], params["scope"]) == (
            "DPoP",
            "insufficient_scope",
            "read:balances",
        )
        assert params["algs"] == "ES256 PS256 EdDSA"
        assert headers["cache-control"] == "no-store"
        assert headers["content-type"] == "application/json"
        assert body["error"] == "insufficient_scope" and set(body) == {
            "error",
            "error_description",
        }
        assert seen["requires_dpop"] == seen["middleware"]
        assert seen["DPoPSecurity"] == seen["middleware"]

    async def test_no_credentials(self, serve: Callable[..., Any]) -> None:
        """No credentials (the middleware on a protected path; the endpoint helpers behind
        a public rule): 401, a challenge with no error, the body's authentication_required."""
        seen = {}
        for name, (build, _, rules) in ADAPTERS.items():
            client = await serve(build, rules)
            seen[name] = shape(await client.get("/x"))
        status, challenges, headers, body = seen["middleware"]
        assert status == 401
        assert [parse_challenge(c) for c in challenges] == [("DPoP", {"algs": "ES256 PS256 EdDSA"})]
        assert headers["cache-control"] == "no-store"
        assert body == NO_CREDENTIALS
        assert seen["requires_dpop"] == seen["middleware"]
        assert seen["DPoPSecurity"] == seen["middleware"]

    async def test_unbound_token_refused_by_helpers(
        self, serve: Callable[..., Any], simulator: SimulatorState, simulator_url: str
    ) -> None:
        """Under allow_unbound_tokens the middleware lets a Bearer token through; both
        endpoint helpers refuse it with the same 401 invalid_token."""
        token = simulator.create_token(subject="alice", scopes=["read:balances"])
        seen = {}
        for name in ("requires_dpop", "DPoPSecurity"):
            build = ADAPTERS[name][0]
            guard = from_env(
                environ={**environ(simulator_url), "DPOP_GUARD_ALLOW_UNBOUND_TOKENS": "true"}
            )
            app = build(guard)
            async with (
                guard.lifespan(app),
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url=ORIGIN
                ) as client,
            ):
                response = await client.get("/x", headers={"Authorization": f"Bearer {token}"})
            seen[name] = shape(response)
        status, challenges, headers, body = seen["requires_dpop"]
        assert status == 401 and parse_challenge(challenges[0])[1]["error"] == "invalid_token"
        assert headers["cache-control"] == "no-store"
        assert body == {
            "error": "invalid_token",
            "error_description": "The access token is not sender-constrained.",
        }
        assert seen["DPoPSecurity"] == seen["requires_dpop"]


class TestWithoutInstall:
    async def test_handler_by_hand(self) -> None:
        """Without guard.install, registering refusal_handler by hand gives the same body;
        the dependency refuses an unauthenticated request (no middleware)."""
        app = FastAPI()
        app.add_exception_handler(DPoPRefusal, refusal_handler)
        dpop = DPoPSecurity()

        @app.get("/x")
        async def x(auth: DPoPCredentials = Security(dpop)) -> dict[str, str]:  # noqa: B008
            return {}

        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=ORIGIN
        ) as client:
            response = await client.get("/x")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'DPoP algs="ES256 PS256 EdDSA"'
        assert response.headers["cache-control"] == "no-store"
        assert response.json() == NO_CREDENTIALS

    async def test_without_handler_still_challenges(self) -> None:
        """Without the handler, FastAPI's own HTTPException handler answers: the same
        status, challenge and Cache-Control, FastAPI's body (never a 500)."""
        app = FastAPI()

        @app.get("/x")
        async def x(
            auth: DPoPCredentials = Security(DPoPSecurity(realm="bank")),  # noqa: B008
        ) -> dict[str, str]:
            return {}

        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=ORIGIN
        ) as client:
            response = await client.get("/x")
        assert response.status_code == 401
        assert parse_challenge(response.headers["www-authenticate"]) == (
            "DPoP",
            {"realm": "bank", "algs": "ES256 PS256 EdDSA"},
        )
        assert response.headers["cache-control"] == "no-store"
        assert response.json() == {"detail": NO_CREDENTIALS["error_description"]}

    def test_document_refusals_keeps_declared(self) -> None:
        """An operation's own 403 is kept; an unprotected operation gets nothing; calling
        document_refusals twice adds nothing twice."""
        app = FastAPI()
        dpop = DPoPSecurity()

        @app.get("/a", responses={403: {"description": "mine"}})
        async def a(auth: DPoPCredentials = Security(dpop)) -> dict[str, str]:  # noqa: B008
            return {}

        @app.get("/b")
        async def b() -> dict[str, str]:
            return {}

        document_refusals(app)
        document_refusals(app)
        spec = app.openapi()
        assert spec["paths"]["/a"]["get"]["responses"]["403"]["description"] == "mine"
        assert "DPoPError" in json.dumps(spec["paths"]["/a"]["get"]["responses"]["401"])
        assert set(spec["paths"]["/b"]["get"]["responses"]) == {"200"}
        assert app.openapi() is spec


class TestStarletteRequires:
    async def test_plain_requires_differs(
        self, simulator: SimulatorState, serve: Callable[..., Any], signer: ProofSigner
    ) -> None:
        """Starlette's own @requires reads request.auth.scopes, so it works, but a shortfall
        is its plain-text 403 with no challenge and no Cache-Control: what the docs say,
        and why requires_dpop replaces it."""

        @requires(["read:accounts"])
        async def ok(request: Request) -> JSONResponse:
            user = request.user
            return JSONResponse({"user": user.display_name, "auth": user.is_authenticated})

        @requires(["admin"])
        async def admin(request: Request) -> JSONResponse:
            return JSONResponse({"ok": True})

        def build(guard: Any) -> Starlette:
            app = Starlette(routes=[HTTPRoute("/ok", ok), HTTPRoute("/admin", admin)])
            guard.install(app)
            return app

        client = await serve(build)
        token = simulator.create_token(subject="a", scopes=["read:accounts"], jkt=signer.jkt)
        response = await client.get("/ok", auth=DPoPAuth(signer, token))
        assert response.json() == {"user": "a", "auth": True}
        refused = await client.get("/admin", auth=DPoPAuth(signer, token))
        assert refused.status_code == 403 and refused.text == "Forbidden"
        assert "www-authenticate" not in refused.headers
        assert "cache-control" not in refused.headers


class TestRefusalHandler:
    """DPoPRefusal raised by an app's own code gets the middleware's answer."""

    @staticmethod
    def app() -> Starlette:
        from starlette.routing import WebSocketRoute

        from dpop_guard.errors import InsufficientScope

        refusal = InsufficientScope("scope_missing", scope="admin")

        async def endpoint(request: Request) -> JSONResponse:
            raise DPoPRefusal(refusal, algs=("ES256",))

        async def stream(websocket: WebSocket) -> None:
            raise DPoPRefusal(refusal, algs=("ES256",))

        app = Starlette(routes=[HTTPRoute("/x", endpoint), WebSocketRoute("/ws", stream)])
        app.add_exception_handler(DPoPRefusal, refusal_handler)
        return app

    async def test_http(self) -> None:
        """Over HTTP: the 403, its challenge, no-store and the JSON body."""
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app()), base_url=ORIGIN
        ) as client:
            response = await client.get("/x")
        assert response.status_code == 403
        assert response.headers["www-authenticate"] == (
            'DPoP error="insufficient_scope", error_description="The access token does not '
            'cover the required scope.", scope="admin", algs="ES256"'
        )
        assert response.headers["cache-control"] == "no-store"
        assert response.json()["error"] == "insufficient_scope"

    @pytest.mark.parametrize("denial", [True, False])
    async def test_websocket(self, denial: bool) -> None:
        """On a handshake, never an accepted socket: the same response before accept where
        the server offers websocket.http.response, else a close (1008)."""
        sent: list[MutableMapping[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "websocket.connect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "scheme": "wss",
            "path": "/ws",
            "raw_path": b"/ws",
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"api.bank.test")],
            "server": ("api.bank.test", 443),
            "subprotocols": [],
            "extensions": {"websocket.http.response": {}} if denial else {},
        }
        await self.app()(scope, receive, send)
        if not sent:
            # Starlette before 1.0 (the floor, 0.40, in make test-lowest) does not hand a
            # websocket's HTTPException to the app's handlers: nothing is sent, so the
            # server refuses the handshake (403). Never an accepted socket either way.
            assert _starlette_version() < (1, 0)
            return
        if not denial:
            assert sent == [{"type": "websocket.close", "code": 1008}]
            return
        start, *bodies = sent
        assert start["type"] == "websocket.http.response.start" and start["status"] == 403
        headers = {k.decode(): v.decode() for k, v in start["headers"]}
        assert headers["cache-control"] == "no-store"
        body = b"".join(message.get("body", b"") for message in bodies)
        assert json.loads(body)["error"] == "insufficient_scope"


def _starlette_version() -> tuple[int, ...]:
    import starlette

    return tuple(int(part) for part in starlette.__version__.split(".")[:2])
