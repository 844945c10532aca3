"""Websockets under a real uvicorn, driven by a real websocket client: a handshake is
authenticated like the HTTP GET it is (htm GET, htu the http form of the ws URL), and a
refused one is answered with the HTTP error (the ``websocket.http.response`` extension)
or closed before accept."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, MutableMapping
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from dpop_guard import (
    AuthleteIntrospector,
    AuthleteSettings,
    CachingIntrospector,
    DPoPCredentials,
    DPoPGuardMiddleware,
    GuardSettings,
    ProofSigner,
    Route,
    TokenInfo,
)
from dpop_guard.challenges import parse_challenge
from dpop_guard.devtools.simulator import (
    DEFAULT_SERVICE_ID,
    DEFAULT_SERVICE_TOKEN,
    SimulatorState,
)
from dpop_guard.introspection import RequestFacts
from dpop_guard.starlette import requires_dpop
from dpop_guard.testing import make_proof
from tests._support.servers import ServerThread

pytestmark = pytest.mark.e2e


async def stream(websocket: WebSocket) -> None:
    auth: DPoPCredentials = websocket.auth
    await websocket.accept()
    await websocket.send_text(f"hello {auth.subject}")
    await websocket.close()


@requires_dpop("read:stream")
async def scoped(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("scoped")
    await websocket.close()


@pytest.fixture(name="server", scope="module")
def _server(simulator_server: tuple[ServerThread, SimulatorState]) -> Iterator[ServerThread]:
    authlete = AuthleteSettings(
        base_url=simulator_server[0].url,
        api_key=DEFAULT_SERVICE_ID,
        access_token=DEFAULT_SERVICE_TOKEN,
    )
    http = httpx.AsyncClient()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await http.aclose()  # in the server's event loop, where the client was used

    inner = Starlette(
        lifespan=lifespan,
        routes=[
            WebSocketRoute("/ws", stream),
            WebSocketRoute("/ws/ruled", stream),
            WebSocketRoute("/ws/scoped", scoped),
        ],
    )
    settings = GuardSettings(routes=(Route("/ws/ruled", scopes=("read:ruled",)),))
    app = DPoPGuardMiddleware(
        inner,
        settings=settings,
        introspector=CachingIntrospector(AuthleteIntrospector(http, authlete)),
    )
    with ServerThread(app) as server:
        yield server


def ws_url(server: ServerThread, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


async def handshake(
    server: ServerThread,
    path: str,
    *,
    token: str | None = None,
    signer: ProofSigner | None = None,
    htu: str | None = None,
    htm: str = "GET",
) -> str:
    """Connect; return the first message, or raise InvalidStatus on a refusal."""
    headers: list[tuple[str, str]] = []
    if token is not None:
        headers.append(("Authorization", f"DPoP {token}"))
    if signer is not None:
        proof = make_proof(signer, htm=htm, htu=htu or server.url + path, access_token=token)
        headers.append(("DPoP", proof))
    async with connect(ws_url(server, path), additional_headers=headers, proxy=None) as ws:
        message = await ws.recv()
        assert isinstance(message, str)
        assert ws.response is not None and ws.response.headers["x-fapi-interaction-id"]
        return message


def refused(excinfo: pytest.ExceptionInfo[InvalidStatus], status: int) -> dict[str, str]:
    response = excinfo.value.response
    assert response.status_code == status
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["x-fapi-interaction-id"]
    scheme, params = parse_challenge(response.headers["WWW-Authenticate"])
    assert scheme == "DPoP"
    return params


class TestHandshake:
    async def test_accepted(
        self, server: ServerThread, simulator: SimulatorState, signer: ProofSigner
    ) -> None:
        """A bound token with a proof for GET and the http form of the ws URL opens the
        socket, and the endpoint sees the credentials."""
        token = simulator.create_token(subject="alice", scopes=[], jkt=signer.jkt)
        assert await handshake(server, "/ws", token=token, signer=signer) == "hello alice"

    async def test_no_credentials(self, server: ServerThread, reasons: list[str]) -> None:
        """No Authorization: the handshake gets the 401 challenge, never the app."""
        with pytest.raises(InvalidStatus) as excinfo:
            await handshake(server, "/ws")
        assert "error" not in refused(excinfo, 401)
        assert reasons[-1] == "authorization_missing"

    @pytest.mark.parametrize("scheme", ["ws", "wss"])
    async def test_ws_scheme_in_htu_refused(
        self,
        server: ServerThread,
        simulator: SimulatorState,
        signer: ProofSigner,
        reasons: list[str],
        scheme: str,
    ) -> None:
        """htu is the http(s) URL: a proof naming the ws URL does not match."""
        token = simulator.create_token(subject="alice", scopes=[], jkt=signer.jkt)
        htu = server.url.replace("http", scheme, 1) + "/ws"
        with pytest.raises(InvalidStatus) as excinfo:
            await handshake(server, "/ws", token=token, signer=signer, htu=htu)
        assert refused(excinfo, 401)["error"] == "invalid_dpop_proof"
        assert reasons[-1] == "htu_mismatch"

    async def test_htm_must_be_get(
        self,
        server: ServerThread,
        simulator: SimulatorState,
        signer: ProofSigner,
        reasons: list[str],
    ) -> None:
        """The handshake is a GET: a proof for another method does not match."""
        token = simulator.create_token(subject="alice", scopes=[], jkt=signer.jkt)
        with pytest.raises(InvalidStatus) as excinfo:
            await handshake(server, "/ws", token=token, signer=signer, htm="POST")
        assert refused(excinfo, 401)["error"] == "invalid_dpop_proof"
        assert reasons[-1] == "htm_mismatch"

    async def test_rule_scope_missing(
        self,
        server: ServerThread,
        simulator: SimulatorState,
        signer: ProofSigner,
        reasons: list[str],
    ) -> None:
        """A path rule's scope applies to the handshake: 403 insufficient_scope."""
        token = simulator.create_token(subject="alice", scopes=[], jkt=signer.jkt)
        with pytest.raises(InvalidStatus) as excinfo:
            await handshake(server, "/ws/ruled", token=token, signer=signer)
        params = refused(excinfo, 403)
        assert params["error"] == "insufficient_scope" and params["scope"] == "read:ruled"
        assert reasons[-1] == "scope_missing"

    async def test_endpoint_scope_missing(
        self, server: ServerThread, simulator: SimulatorState, signer: ProofSigner
    ) -> None:
        """requires_dpop on a websocket endpoint refuses the handshake with 403, and
        admits a token that has the scope."""
        token = simulator.create_token(subject="alice", scopes=[], jkt=signer.jkt)
        with pytest.raises(InvalidStatus) as excinfo:
            await handshake(server, "/ws/scoped", token=token, signer=signer)
        params = refused(excinfo, 403)
        assert params["error"] == "insufficient_scope" and params["scope"] == "read:stream"
        token = simulator.create_token(subject="alice", scopes=["read:stream"], jkt=signer.jkt)
        assert await handshake(server, "/ws/scoped", token=token, signer=signer) == "scoped"


class TestWithoutExtension:
    @pytest.mark.parametrize(
        ("first", "answer"),
        [
            ("websocket.connect", [{"type": "websocket.close", "code": 1008}]),
            ("websocket.disconnect", []),  # the client went away: nothing to answer
        ],
    )
    async def test_closed_before_accept(
        self, reasons: list[str], first: str, answer: list[dict[str, Any]]
    ) -> None:
        """A server without websocket.http.response: the guard takes websocket.connect and
        answers websocket.close (the server then sends 403); the app never runs."""

        class Never:
            async def introspect(self, token: str, *, request: RequestFacts) -> TokenInfo:
                raise AssertionError("not called")

        async def app(scope: Any, receive: Any, send: Any) -> None:
            raise AssertionError("reached the app")

        guard = DPoPGuardMiddleware(app, introspector=Never())
        inbox = [{"type": first}]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return inbox.pop(0)

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(dict(message))

        scope = {
            "type": "websocket",
            "path": "/ws",
            "raw_path": b"/ws",
            "root_path": "",
            "scheme": "ws",
            "query_string": b"",
            "headers": [(b"host", b"api.bank.test")],
            "server": ("api.bank.test", 80),
        }
        await guard(scope, receive, send)
        assert sent == answer and not inbox
        assert reasons[-1] == "authorization_missing"


class TestOverHTTP:
    async def test_one_date_and_interaction_id(self, server: ServerThread) -> None:
        """Under uvicorn (which sends its own Date), a refusal carries exactly one Date and
        the interaction id the client sent."""
        sent = "0b8e6a9c-3f51-4d0e-9c1a-7e2f4b6d8a10"
        async with httpx.AsyncClient(base_url=server.url) as client:
            response = await client.get("/ws", headers={"x-fapi-interaction-id": sent})
        assert response.status_code == 401
        assert len(response.headers.get_list("date")) == 1
        assert response.headers["x-fapi-interaction-id"] == sent
