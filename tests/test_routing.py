"""The guard's authorization is never looser than the router it fronts.

A table of hostile request targets and methods (``tests/vectors/routing.json``) is sent,
as uvicorn would hand it over (``raw_path`` as on the wire, ``path`` percent-decoded,
``root_path`` from ``--root-path`` or a ``Mount``), to the real routers of Starlette and
FastAPI, alone and behind the guard. Whatever the router alone would dispatch to a
protected endpoint, the guard refuses to a token without that endpoint's scope, whether
scopes are declared as path rules or on the endpoint (``requires_dpop``,
``DPoPSecurity``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from fastapi import FastAPI, Security
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.routing import Route as HTTPRoute
from starlette.types import ASGIApp

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
from dpop_guard.errors import DPoPGuardError
from dpop_guard.fastapi import DPoPSecurity
from dpop_guard.introspection import TokenInfo
from dpop_guard.starlette import check_scopes, requires_dpop
from dpop_guard.testing import make_proof

ORIGIN = "https://api.bank.test"
VECTORS = json.loads((Path(__file__).parent / "vectors" / "routing.json").read_text())
PROTECTED = {"accounts": "read:accounts", "transactions": "read:transactions"}
PUBLIC_RULES = (Route("/health", public=True), Route("/public/*", public=True))
SCOPE_RULES = (
    *PUBLIC_RULES,
    # Listing only GET, as users write them: HEAD must still be covered.
    Route("/accounts", scopes=("read:accounts",), methods=("GET",)),
    Route("/accounts/{account_id}/transactions", scopes=("read:transactions",), methods=("GET",)),
)


def served(name: str) -> Response:
    return Response("", headers={"x-served": name})


async def health(request: Request) -> Response:
    return served("health")


async def public(request: Request) -> Response:
    return served("public")


async def accounts(request: Request) -> Response:
    return served("accounts")


async def transactions(request: Request) -> Response:
    return served("transactions")


def starlette_routes(endpoint_scopes: bool) -> list[HTTPRoute]:
    def wrap(endpoint: Any, scope: str) -> Any:
        return requires_dpop(scope)(endpoint) if endpoint_scopes else endpoint

    return [
        HTTPRoute("/health", health),
        HTTPRoute("/public/{rest:path}", public),
        HTTPRoute("/accounts", wrap(accounts, "read:accounts")),
        HTTPRoute("/accounts/{account_id}/transactions", wrap(transactions, "read:transactions")),
    ]


def fastapi_app(endpoint_scopes: bool) -> FastAPI:
    app = FastAPI()
    dpop = DPoPSecurity()

    def security(scope: str) -> Any:
        return Security(dpop, scopes=[scope]) if endpoint_scopes else None

    @app.get("/health")
    async def f_health() -> Response:
        return served("health")

    @app.get("/public/{rest:path}")
    async def f_public(rest: str) -> Response:
        return served("public")

    @app.get("/accounts")
    async def f_accounts(
        auth: DPoPCredentials | None = security("read:accounts"),  # noqa: B008 - FastAPI idiom
    ) -> Response:
        return served("accounts")

    @app.get("/accounts/{account_id}/transactions")
    async def f_transactions(
        account_id: str,
        auth: DPoPCredentials | None = security("read:transactions"),  # noqa: B008 - FastAPI idiom
    ) -> Response:
        return served("transactions")

    return app


class Variant:
    """One router, with scopes on the endpoints or in path rules, optionally mounted."""

    def __init__(
        self, router: ASGIApp, plain: ASGIApp, rules: tuple[Route, ...], mount: bool
    ) -> None:
        self.router, self.plain, self.rules, self.mount = router, plain, rules, mount

    def guarded(self, introspector: Any, public_url: str) -> ASGIApp:
        settings = GuardSettings(routes=self.rules, public_url=public_url)
        guard = DPoPGuardMiddleware(self.router, settings=settings, introspector=introspector)
        if not self.mount:
            return guard
        # The guard inside a Mount: it sees root_path "/bank", as the router does.
        return Starlette(routes=[Mount("/bank", app=guard)])

    def bare(self) -> ASGIApp:
        """The same framework's router with no guard and no endpoint checks: what it
        would dispatch where."""
        return Starlette(routes=[Mount("/bank", app=self.plain)]) if self.mount else self.plain


def _starlette(endpoint_scopes: bool) -> Starlette:
    return Starlette(routes=starlette_routes(endpoint_scopes))


VARIANTS: dict[str, Callable[[], Variant]] = {
    "starlette-rules": lambda: Variant(_starlette(False), _starlette(False), SCOPE_RULES, False),
    "starlette-endpoint": lambda: Variant(_starlette(True), _starlette(False), PUBLIC_RULES, False),
    "starlette-mount-endpoint": lambda: Variant(
        _starlette(True), _starlette(False), PUBLIC_RULES, True
    ),
    "starlette-mount-rules": lambda: Variant(
        _starlette(False), _starlette(False), SCOPE_RULES, True
    ),
    "fastapi-rules": lambda: Variant(fastapi_app(False), fastapi_app(False), SCOPE_RULES, False),
    "fastapi-security": lambda: Variant(fastapi_app(True), fastapi_app(False), PUBLIC_RULES, False),
}


async def asgi_call(
    app: ASGIApp, method: str, target: str, root_path: str, headers: list[tuple[str, str]]
) -> tuple[int, str | None]:
    """Send one request as uvicorn would: root_path prefixed to path and raw_path, the
    path percent-decoded, the target otherwise untouched. Returns the status and the
    endpoint that served it."""
    messages: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": root_path + unquote(target),
        "raw_path": (root_path + target).encode("latin-1"),
        "root_path": root_path,
        "query_string": b"",
        "headers": [
            (b"host", b"api.bank.test"),
            *((k.lower().encode(), v.encode()) for k, v in headers),
        ],
        "server": ("api.bank.test", 443),
        "client": ("127.0.0.1", 50000),
    }
    await app(scope, receive, send)
    start = next(m for m in messages if m["type"] == "http.response.start")
    found = dict(start.get("headers", []))
    name = found.get(b"x-served")
    return start["status"], name.decode() if name else None


def cases(mount: bool) -> list[tuple[str, str, str]]:
    roots = [""] if mount else VECTORS["root_paths"]
    prefix = "/bank" if mount else ""
    return [
        (method, prefix + target, root)
        for root in roots
        for method in VECTORS["methods"]
        for target in VECTORS["targets"]
    ]


@pytest.fixture(name="introspector")
async def _introspector(simulator_url: str) -> AsyncIterator[CachingIntrospector]:
    settings = AuthleteSettings(
        base_url=simulator_url, api_key=DEFAULT_SERVICE_ID, access_token=DEFAULT_SERVICE_TOKEN
    )
    async with httpx.AsyncClient() as http:
        yield CachingIntrospector(AuthleteIntrospector(http, settings))


@pytest.mark.parametrize("variant_name", sorted(VARIANTS))
class TestNeverLooserThanTheRouter:
    async def test_hostile_table(
        self,
        variant_name: str,
        introspector: CachingIntrospector,
        simulator: SimulatorState,
        signer: ProofSigner,
    ) -> None:
        """No hostile target or method gets a protected endpoint served to a token
        without its scope, whatever the router alone dispatches it to."""
        variant = VARIANTS[variant_name]()
        unscoped = simulator.create_token(subject="alice", scopes=[], jkt=signer.jkt)
        violations: list[tuple[str, str, str, int, str | None]] = []
        dispatched = 0
        for method, target, root in cases(variant.mount):
            public_url = ORIGIN + (root or ("/bank" if variant.mount else ""))
            _, bare_served = await asgi_call(variant.bare(), method, target, root, [])
            if bare_served in PROTECTED:
                dispatched += 1
            # What the client addressed: the proxy's prefix (root_path), then the target.
            htu = (ORIGIN + root + target).partition("#")[0]
            try:
                proof = make_proof(signer, htm=method, htu=htu, access_token=unscoped)
            except ValueError:
                continue  # not even a URL a client could sign
            headers = [("Authorization", f"DPoP {unscoped}"), ("DPoP", proof)]
            guard = variant.guarded(introspector, public_url)
            status, name = await asgi_call(guard, method, target, root, headers)
            if name in PROTECTED or (bare_served in PROTECTED and status < 400):
                violations.append((method, target, root, status, name))
        assert violations == []
        # The table bites: the router alone serves protected endpoints for some of it.
        assert dispatched > 0

    async def test_scoped_token_served(
        self,
        variant_name: str,
        introspector: CachingIntrospector,
        simulator: SimulatorState,
        signer: ProofSigner,
    ) -> None:
        """The same guard serves the plain request to a token that has the scope (so the
        table's refusals are about scopes, not a broken proof)."""
        variant = VARIANTS[variant_name]()
        token = simulator.create_token(
            subject="alice", scopes=sorted(PROTECTED.values()), jkt=signer.jkt
        )
        target = "/bank/accounts" if variant.mount else "/accounts"
        proof = make_proof(signer, htu=ORIGIN + target, access_token=token)
        headers = [("Authorization", f"DPoP {token}"), ("DPoP", proof)]
        public_url = ORIGIN + ("/bank" if variant.mount else "")
        guard = variant.guarded(introspector, public_url)
        assert await asgi_call(guard, "GET", target, "", headers) == (200, "accounts")


class TestRuleMatching:
    @pytest.mark.parametrize(
        ("method", "path", "expected"),
        [
            ("GET", "/accounts", True),
            ("HEAD", "/accounts", True),
            ("head", "/accounts", True),
            ("get", "/accounts", True),
            ("POST", "/accounts", False),
            ("OPTIONS", "/accounts", False),
        ],
    )
    def test_methods_fold(self, method: str, path: str, expected: bool) -> None:
        """Rule methods compare case-insensitively, and HEAD matches a rule listing GET."""
        assert Route("/accounts", methods=("get",)).matches(path, method) is expected


def guarded_starlette(routes: list[HTTPRoute], introspector: Any) -> ASGIApp:
    settings = GuardSettings(routes=PUBLIC_RULES, public_url=ORIGIN)
    return DPoPGuardMiddleware(
        Starlette(routes=routes), settings=settings, introspector=introspector
    )


class TestRequiresDPoP:
    async def test_scope_missing(
        self, introspector: CachingIntrospector, simulator: SimulatorState, signer: ProofSigner
    ) -> None:
        """A token without the endpoint's scope gets 403 insufficient_scope naming it."""
        app = guarded_starlette(starlette_routes(True), introspector)
        token = simulator.create_token(subject="alice", scopes=["read:accounts"], jkt=signer.jkt)
        target = "/accounts/acc-1/transactions"
        proof = make_proof(signer, htu=ORIGIN + target, access_token=token)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=ORIGIN
        ) as client:
            response = await client.get(
                target, headers={"Authorization": f"DPoP {token}", "DPoP": proof}
            )
        assert response.status_code == 403 and response.headers["cache-control"] == "no-store"
        scheme, params = parse_challenge(response.headers["www-authenticate"])
        assert scheme == "DPoP" and params["error"] == "insufficient_scope"
        assert params["scope"] == "read:transactions" and params["algs"] == "ES256 PS256 EdDSA"
        assert response.json()["error"] == "insufficient_scope"

    async def test_not_authenticated(self) -> None:
        """Reached without the middleware's credentials (a public rule, or no middleware):
        401 with a bare DPoP challenge, never served."""
        app = Starlette(routes=starlette_routes(True))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=ORIGIN
        ) as client:
            response = await client.get("/accounts")
        assert response.status_code == 401 and "x-served" not in response.headers
        scheme, params = parse_challenge(response.headers["www-authenticate"])
        assert scheme == "DPoP" and "error" not in params

    @pytest.mark.parametrize(
        ("auth", "reason"),
        [
            (None, "not_authenticated"),
            ("a string", "not_authenticated"),
            (
                DPoPCredentials(TokenInfo(None, None, frozenset({"a"}), None, "j"), "DPoP", None),
                "scope_missing",
            ),
        ],
    )
    def test_reasons(self, auth: object, reason: str) -> None:
        """check_scopes names its reason: not_authenticated or scope_missing."""
        request = Request({"type": "http", "auth": auth, "headers": []})
        with pytest.raises(DPoPGuardError) as excinfo:
            check_scopes(request, ("a", "b"))
        assert excinfo.value.reason == reason

    async def test_sync_endpoint(self) -> None:
        """A sync endpoint runs (in the thread pool) once the scopes are covered."""

        @requires_dpop("a")
        def endpoint(request: Request) -> Response:
            return served("sync")

        request = Request(
            {
                "type": "http",
                "headers": [],
                "auth": DPoPCredentials(
                    TokenInfo(None, None, frozenset({"a"}), None, "j"), "DPoP", None
                ),
            }
        )
        response = await endpoint(request)
        assert response.headers["x-served"] == "sync"

    def test_needs_a_request_parameter(self) -> None:
        """An endpoint with neither a request nor a websocket parameter is a TypeError,
        and a bad scope name a ValueError, at decoration time."""
        with pytest.raises(TypeError):
            requires_dpop("a")(lambda x: x)
        with pytest.raises(ValueError):
            requires_dpop("a b")


class TestRoutePolicy:
    """The per-route policy fields are validated when the rule is made."""

    def test_defaults(self) -> None:
        route = Route("/a")
        assert (route.acr_values, route.max_age, route.sender_constraint) == ((), None, "dpop")

    @pytest.mark.parametrize(
        "acr_values",
        [("",), ("a b",), ('a"b',), ("a\\b",), ("é",), ("a" * 256,), ("x", "x")],
    )
    def test_acr_values_must_be_distinct_tokens(self, acr_values: tuple[str, ...]) -> None:
        with pytest.raises(ValueError):
            Route("/a", acr_values=acr_values)

    def test_acr_values_not_one_string(self) -> None:
        with pytest.raises(ValueError):
            Route("/a", acr_values="urn:gold")  # type: ignore[arg-type]

    @pytest.mark.parametrize("max_age", [-1, 10 * 365 * 24 * 3600 + 1, 1.5, True, "60"])
    def test_max_age_bounded_int(self, max_age: object) -> None:
        with pytest.raises(ValueError):
            Route("/a", max_age=max_age)  # type: ignore[arg-type]

    def test_max_age_zero_allowed(self) -> None:
        assert Route("/a", max_age=0).max_age == 0

    def test_sender_constraint_closed_set(self) -> None:
        with pytest.raises(ValueError):
            Route("/a", sender_constraint="bearer")  # type: ignore[arg-type]

    def test_public_route_cannot_require_step_up(self) -> None:
        with pytest.raises(ValueError):
            Route("/a", public=True, max_age=60)

    def test_endpoint_declarations_validated(self) -> None:
        with pytest.raises(ValueError):
            requires_dpop("a", acr_values=("a b",))
        with pytest.raises(ValueError):
            requires_dpop("a", max_age=-1)
