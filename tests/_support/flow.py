"""Support for the FAPI 2.0 flow tests: the simulator with its authorization-server routes
(wired as the simulator app will wire them), and a registered client."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from dpop_guard.client import PKCE, ProofSigner, client_assertion
from dpop_guard.devtools.demo.accounts import create_app as create_api
from dpop_guard.devtools.demo.authorization_server import create_app as create_as
from dpop_guard.devtools.simulator import (
    DEFAULT_API_SECRET,
    DEFAULT_SERVICE_ID,
    DEFAULT_SERVICE_TOKEN,
    SimulatorState,
    create_simulator_app,
)
from dpop_guard.devtools.simulator._authorization import (
    AuthorizationService,
    SimClient,
    SimService,
)
from dpop_guard.testing import submit_consent
from tests._support.servers import ServerThread

CLIENT_ID = 3_141_592_653
REDIRECT_URI = "https://app.example.org/cb"
__all__ = [
    "CLIENT_ID",
    "REDIRECT_URI",
    "V2_AUTH",
    "V3_AUTH",
    "AuthleteCalls",
    "LateApp",
    "Registered",
    "Stack",
    "authlete_env",
    "register",
    "simulator_with_authorization",
    "start_stack",
    "submit_consent",  # the shared copy in dpop_guard.testing, re-exported for the tests
]
V3_AUTH = {"Authorization": f"Bearer {DEFAULT_SERVICE_TOKEN}"}
V2_AUTH = {
    "Authorization": "Basic "
    + base64.b64encode(f"{DEFAULT_SERVICE_ID}:{DEFAULT_API_SECRET}".encode()).decode()
}


def simulator_with_authorization(state: SimulatorState, auth: AuthorizationService) -> Starlette:
    """The simulator app plus the authorization routes over the same state."""
    return create_simulator_app(state, auth)


@dataclass
class Registered:
    """A registered FAPI 2.0 client: its assertion key and its DPoP key."""

    client_id: int
    key: ProofSigner
    dpop: ProofSigner
    redirect_uri: str = REDIRECT_URI


def register(
    auth: AuthorizationService, key: ProofSigner, dpop: ProofSigner, **options: Any
) -> Registered:
    options.setdefault("client_id", CLIENT_ID)
    options.setdefault("redirect_uris", (REDIRECT_URI,))
    auth.register(SimClient(jwks=(dict(key.public_jwk),), **options))
    return Registered(options["client_id"], key, dpop, options["redirect_uris"][0])


class AuthleteCalls:
    """What an authorization server sends to Authlete's APIs (V3 unless told)."""

    def __init__(self, http: httpx.AsyncClient, auth: AuthorizationService) -> None:
        self.http, self.auth = http, auth

    async def call(self, api: str, body: Mapping[str, Any], *, version: str = "V3") -> Any:
        if version == "V3":
            url, headers = f"/api/{DEFAULT_SERVICE_ID}/{api}", V3_AUTH
        else:
            url, headers = f"/api/{api}", V2_AUTH
        response = await self.http.post(url, json=dict(body), headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    def assertion(self, reg: Registered, **claims: Any) -> str:
        """A valid assertion for the token endpoint, with ``claims`` overridden (``None``
        removes a claim)."""
        now = self.auth.clock()
        token = client_assertion(
            reg.key, client_id=str(reg.client_id), audience=self.auth.service.issuer, now=now
        )
        if not claims:
            return token
        body = json.loads(_b64decode(token.split(".")[1]))
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        return reg.key.sign_raw({"alg": reg.key.alg, "typ": "JWT"}, body)

    def par_parameters(self, reg: Registered, pkce: PKCE, **params: str | None) -> str:
        values: dict[str, str | None] = {
            "response_type": "code",
            "client_id": str(reg.client_id),
            "redirect_uri": reg.redirect_uri,
            "scope": "read:accounts",
            "state": "st-1",
            "code_challenge": pkce.challenge,
            "code_challenge_method": "S256",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": self.assertion(reg),
        }
        values.update(params)
        return urlencode({k: v for k, v in values.items() if v is not None})

    async def par(self, reg: Registered, pkce: PKCE, **params: str | None) -> Any:
        return await self.call(
            "pushed_auth_req", {"parameters": self.par_parameters(reg, pkce, **params)}
        )

    async def authorize(self, reg: Registered, request_uri: str) -> Any:
        query = urlencode({"client_id": str(reg.client_id), "request_uri": request_uri})
        return await self.call("auth/authorization", {"parameters": query})

    async def code(self, reg: Registered, pkce: PKCE) -> str:
        """PAR, authorization, issue: the code from the redirect."""
        pushed = await self.par(reg, pkce)
        assert pushed["action"] == "CREATED", pushed
        ticket = (await self.authorize(reg, pushed["requestUri"]))["ticket"]
        issued = await self.call("auth/authorization/issue", {"ticket": ticket, "subject": "alice"})
        assert issued["action"] == "LOCATION", issued
        return str(issued["authorizationCode"])

    async def token(
        self,
        reg: Registered,
        code: str,
        pkce: PKCE,
        *,
        dpop: str | None = "fresh",
        body: Mapping[str, Any] | None = None,
        **params: str | None,
    ) -> Any:
        htu = self.auth.service.token_endpoint
        values: dict[str, str | None] = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": reg.redirect_uri,
            "code_verifier": pkce.verifier,
            "client_id": str(reg.client_id),
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": self.assertion(reg),
        }
        values.update(params)
        request: dict[str, Any] = {
            "parameters": urlencode({k: v for k, v in values.items() if v is not None}),
            "htm": "POST",
            "htu": htu,
        }
        if dpop == "fresh":
            request["dpop"] = reg.dpop.sign(htm="POST", htu=htu, iat=self.auth.clock())
        elif dpop is not None:
            request["dpop"] = dpop
        request.update(body or {})
        return await self.call("auth/token", request)


class LateApp:
    """An ASGI app set after its server is bound, for apps that must know their own URL."""

    app: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


@dataclass
class Stack:
    simulator: ServerThread
    authorization_server: ServerThread
    api: ServerThread
    state: SimulatorState
    auth: AuthorizationService


def authlete_env(simulator_url: str) -> dict[str, str]:
    return {
        "AUTHLETE_BASE_URL": simulator_url,
        "AUTHLETE_API_VERSION": "V3",
        "AUTHLETE_SERVICE_APIKEY": DEFAULT_SERVICE_ID,
        "AUTHLETE_SERVICE_ACCESSTOKEN": DEFAULT_SERVICE_TOKEN,
    }


@contextmanager
def start_stack() -> Iterator[Stack]:
    """The simulator (with the authorization routes), the example authorization server
    in front of it, and the accounts API, each under uvicorn on loopback."""
    state, auth = SimulatorState(), AuthorizationService()
    late = LateApp()
    with ServerThread(simulator_with_authorization(state, auth)) as simulator:
        as_server = ServerThread(late)
        issuer = as_server.url
        # The AS's public URLs, as they are registered in the Authlete service.
        auth.service = SimService(
            issuer=issuer,
            token_endpoint=f"{issuer}/token",
            pushed_auth_req_endpoint=f"{issuer}/par",
        )
        late.app = create_as({**authlete_env(simulator.url), "AS_ISSUER": issuer})
        api_env = {**authlete_env(simulator.url), "DPOP_GUARD_PUBLIC_URL": "request"}
        with as_server, ServerThread(create_api(api_env)) as api:
            yield Stack(simulator, as_server, api, state, auth)
