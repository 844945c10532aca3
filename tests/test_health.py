"""Start-up tells the truth, and readiness shows every dependency (issue 21 sections 1-2):
the start-up probe refuses to start on a refused credential, an unresolvable name or an
unreachable endpoint (unless DPOP_GUARD_START_DEGRADED=1), with one line naming the
variable and the cause; the readiness app answers 503 naming the failing dependency and
200 after recovery; both probes are public through install() alone."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route as HTTPRoute

from dpop_guard import from_env
from dpop_guard._health import _safe_target, classify
from dpop_guard.devtools.demo import free_port
from dpop_guard.devtools.simulator import DEFAULT_SERVICE_ID, DEFAULT_SERVICE_TOKEN, SimulatorState
from dpop_guard.errors import IntrospectionUnavailable
from dpop_guard.introspection._http import TransportConnectError, TransportTimeout

PUBLIC = {"DPOP_GUARD_PUBLIC_URL": "https://rs.test"}


def authlete(url: str, **extra: str) -> dict[str, str]:
    return {
        **PUBLIC,
        "AUTHLETE_BASE_URL": url,
        "AUTHLETE_SERVICE_APIKEY": DEFAULT_SERVICE_ID,
        "AUTHLETE_SERVICE_ACCESSTOKEN": DEFAULT_SERVICE_TOKEN,
        **extra,
    }


async def hello(request: Request) -> JSONResponse:
    return JSONResponse({"hello": "world"})


def app_for(env: Mapping[str, str]) -> Starlette:
    guard = from_env(environ=env)
    app = Starlette(routes=[HTTPRoute("/accounts", hello)])
    guard.install(app)
    app.state.guard = guard
    return app


async def lifespan_start(app: Starlette) -> tuple[dict[str, Any], asyncio.Queue[Any]]:
    """Run ``app``'s lifespan up to the start-up answer; the first message it sent, and
    the queue that ends it."""
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    sent: asyncio.Queue[Any] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.ensure_future(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, sent.put)
    )
    first = await sent.get()
    if first["type"] == "lifespan.startup.failed":
        await task
    else:
        await inbox.put({"type": "lifespan.shutdown"})
        assert (await sent.get())["type"] == "lifespan.shutdown.complete"
        await task
    return first, sent


@contextlib.asynccontextmanager
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://rs.test") as http:
        yield http


class TestClassify:
    """The cause is read from the exception chain, root first, then the HTTP status."""

    @pytest.mark.parametrize(
        ("root", "cause"),
        [
            (socket.gaierror(-2, "Name or service not known"), "dns"),
            (ConnectionRefusedError(111, "refused"), "connect"),
            (ConnectionResetError(104, "reset"), "connect"),
            (ssl.SSLCertVerificationError("certificate verify failed"), "tls"),
            (ssl.SSLError("wrong version number"), "tls"),
            (TimeoutError(), "timeout"),
        ],
    )
    def test_transport_roots(self, root: BaseException, cause: str) -> None:
        link = TransportConnectError(type(root).__name__)
        link.__cause__ = root
        outage = IntrospectionUnavailable("authlete_unreachable")
        outage.__cause__ = link
        assert classify(outage) == cause

    @pytest.mark.parametrize(
        ("status", "cause"), [(401, "credentials"), (403, "credentials"), (500, "server_error")]
    )
    def test_upstream_status(self, status: int, cause: str) -> None:
        outage = IntrospectionUnavailable("authlete_http_error")
        outage.upstream_status = status
        assert classify(outage) == cause

    @pytest.mark.parametrize(
        ("reason", "cause"),
        [
            ("authlete_timeout", "timeout"),
            ("introspection_circuit_open", "circuit_open"),
            ("authlete_bad_response", "bad_response"),
        ],
    )
    def test_reasons(self, reason: Any, cause: str) -> None:
        assert classify(IntrospectionUnavailable(reason)) == cause

    def test_timeout_without_os_error(self) -> None:
        outage = IntrospectionUnavailable("authlete_timeout")
        outage.__cause__ = TransportTimeout("ReadTimeout")
        assert classify(outage) == "timeout"


class TestSafeTarget:
    """What a probe's message names: where the dependency is, never its credentials, and
    never an error for a URL of any shape."""

    @pytest.mark.parametrize(
        ("url", "shown"),
        [
            ("redis://:S3cret@redis:6379/0", "redis://redis:6379/0"),
            ("redis+cluster://u:p@h1:7000,h2:7001", "redis+cluster://h1:7000,h2:7001"),
            ("https://authlete.test/api/auth?x=1#f", "https://authlete.test/api/auth"),
            ("https://authlete.test", "https://authlete.test"),
            ("not a url", "(not a URL)"),
        ],
    )
    def test_credentials_dropped(self, url: str, shown: str) -> None:
        assert _safe_target(url) == shown


class TestStartup:
    async def test_wrong_credentials_refuse_to_start(
        self, simulator: SimulatorState, simulator_url: str
    ) -> None:
        """Authlete's 401 for our credentials ends start-up with one line naming the
        credential variables, the endpoint and the cause."""
        app = app_for(authlete(simulator_url, AUTHLETE_SERVICE_ACCESSTOKEN="wrong"))
        first, _ = await lifespan_start(app)
        assert first["type"] == "lifespan.startup.failed"
        assert first["message"] == (
            f"AUTHLETE_SERVICE_APIKEY/AUTHLETE_SERVICE_ACCESSTOKEN ({simulator_url}): "
            "introspection unusable, it refused our credentials [credentials]; "
            "set DPOP_GUARD_START_DEGRADED=1 to start anyway"
        )

    async def test_unresolvable_name_refuses_to_start(self) -> None:
        """A name that does not resolve will not resolve by waiting: start-up stops."""
        url = "https://authlete.invalid"
        first, _ = await lifespan_start(app_for(authlete(url)))
        assert first["type"] == "lifespan.startup.failed"
        assert first["message"] == (
            f"AUTHLETE_BASE_URL ({url}): introspection unusable, its host name does not "
            "resolve (DNS) [dns]; set DPOP_GUARD_START_DEGRADED=1 to start anyway"
        )

    async def test_refused_connection_starts_degraded(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A refused connection may be a dependency briefly down at deploy: the app
        starts, says so in one warning, and readiness answers 503 naming it."""
        url = f"http://127.0.0.1:{free_port()}"
        app = app_for(authlete(url))
        first, _ = await lifespan_start(app)
        assert first["type"] == "lifespan.startup.complete"
        assert f"starting degraded: AUTHLETE_BASE_URL ({url})" in caplog.text
        assert "[connect]" in caplog.text
        async with client(app) as http:
            ready = await http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["failing"] == ["introspection"]

    async def test_start_degraded_overrides_a_fatal_cause(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """With DPOP_GUARD_START_DEGRADED=1 even an unresolvable name only warns."""
        app = app_for(authlete("https://authlete.invalid", DPOP_GUARD_START_DEGRADED="1"))
        first, _ = await lifespan_start(app)
        assert first["type"] == "lifespan.startup.complete"
        assert "starting degraded: AUTHLETE_BASE_URL (https://authlete.invalid)" in caplog.text

    async def test_healthy_start(self, simulator: SimulatorState, simulator_url: str) -> None:
        first, _ = await lifespan_start(app_for(authlete(simulator_url)))
        assert first["type"] == "lifespan.startup.complete"

    def test_configuration_error_is_one_line_without_a_traceback(self) -> None:
        """A server that builds the guard at import and lets the error through exits 1
        with the one line: no traceback through the server's import machinery."""
        code = (
            "from dpop_guard import from_env\n"
            "from_env(environ={'DPOP_GUARD_CACHE_TLL': '30', 'DPOP_GUARD_PUBLIC_URL': 'x'})\n"
        )
        result = subprocess.run(  # noqa: S603 - our own interpreter
            [sys.executable, "-c", code], capture_output=True, text=True, check=False
        )
        assert result.returncode == 1
        assert result.stderr == (
            "DPOP_GUARD_CACHE_TLL is not a dpop_guard setting; did you mean DPOP_GUARD_CACHE_TTL?\n"
        )


class TestReadiness:
    async def test_ready_and_alive_without_credentials(
        self, simulator: SimulatorState, simulator_url: str
    ) -> None:
        """Both probes answer before authentication (no token), once declared."""
        app = app_for(authlete(simulator_url))
        async with client(app) as http:
            ready = await http.get("/readyz")
            alive = await http.get("/livez")
            protected = await http.get("/accounts")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {
            "status": "ready",
            "failing": [],
            "checks": {"introspection": {"ok": True}},
            "breaker": "closed",
        }
        assert ready.headers["cache-control"] == "no-store"
        assert alive.status_code == 200 and alive.json() == {"status": "alive"}
        assert protected.status_code == 401
        await app.state.guard.aclose()

    async def test_introspection_down_then_back(
        self, simulator: SimulatorState, simulator_url: str
    ) -> None:
        """503 naming introspection and its cause while the simulator answers 500, 200
        once it answers again."""
        app = app_for(authlete(simulator_url))
        async with client(app) as http:
            simulator.set_fault("http_500")
            down = await http.get("/readyz")
            simulator.set_fault(None)
            up = await http.get("/readyz")
        assert down.status_code == 503
        body = down.json()
        assert body["status"] == "unavailable" and body["failing"] == ["introspection"]
        assert body["checks"]["introspection"]["reason"] == "server_error"
        assert up.status_code == 200
        await app.state.guard.aclose()

    async def test_open_breaker_is_not_ready(
        self, simulator: SimulatorState, simulator_url: str
    ) -> None:
        """An open circuit breaker is reported as such, without a call upstream."""
        app = app_for(authlete(simulator_url))
        guard = app.state.guard
        for _ in range(guard.breaker.threshold):
            guard.breaker.failure()
        async with client(app) as http:
            response = await http.get("/readyz")
        assert response.status_code == 503
        assert response.json()["breaker"] == "open"
        assert response.json()["checks"]["introspection"]["reason"] == "circuit_open"
        assert sum(simulator.calls.values()) == 0
        await guard.aclose()

    async def test_answers_within_the_timeout_when_upstream_hangs(self) -> None:
        """An endpoint that accepts and never answers: readiness gives up at its own
        timeout and names the cause ``timeout``."""

        release = asyncio.Event()

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                await reader.read(65536)
                await release.wait()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        env = authlete(
            f"http://127.0.0.1:{port}",
            DPOP_GUARD_READINESS_TIMEOUT="0.2",
            DPOP_GUARD_AUTHLETE_TIMEOUT="20",
        )
        app = app_for(env)
        try:
            async with client(app) as http:
                response = await http.get("/readyz")
        finally:
            release.set()
            server.close()
            await app.state.guard.aclose()
            await server.wait_closed()
        assert response.status_code == 503
        assert response.json()["checks"]["introspection"]["reason"] == "timeout"

    async def test_redis_down(self, simulator: SimulatorState, simulator_url: str) -> None:
        """A replay store that does not answer is named, with the cause."""
        redis = f"redis://127.0.0.1:{free_port()}/0"
        app = app_for(authlete(simulator_url, DPOP_GUARD_REPLAY_STORE=redis))
        async with client(app) as http:
            response = await http.get("/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["failing"] == ["replay_store"]
        assert body["checks"]["replay_store"]["reason"] == "connect"
        await app.state.guard.aclose()

    async def test_paths_configurable_and_off(
        self, simulator: SimulatorState, simulator_url: str
    ) -> None:
        """DPOP_GUARD_READINESS_PATH moves the probe; ``off`` removes it (then the path is
        an ordinary protected one)."""
        env = authlete(
            simulator_url,
            DPOP_GUARD_READINESS_PATH="/ops/ready",
            DPOP_GUARD_LIVENESS_PATH="off",
        )
        app = app_for(env)
        async with client(app) as http:
            assert (await http.get("/ops/ready")).status_code == 200
            assert (await http.get("/livez")).status_code == 401
            assert (await http.get("/readyz")).status_code == 401
        await app.state.guard.aclose()


async def jwks(request: Request) -> JSONResponse:
    return JSONResponse({"keys": []})


async def test_jwks_down_then_back() -> None:
    """In jwt mode readiness fetches the key set itself (not the validator's cached copy):
    503 naming ``jwks`` while nothing serves it, 200 while it is served."""
    from tests._support.servers import ServerThread

    issuer = ServerThread(Starlette(routes=[HTTPRoute("/jwks", jwks)])).start()
    env = {
        **PUBLIC,
        "DPOP_GUARD_INTROSPECTION": "jwt",
        "DPOP_GUARD_JWT_ISSUER": issuer.url,
    }
    app = app_for(env)
    try:
        async with client(app) as http:
            up = await http.get("/readyz")
            issuer.stop()
            down = await http.get("/readyz")
    finally:
        issuer.stop()
        await app.state.guard.aclose()
    assert up.status_code == 200, up.text
    assert up.json()["checks"] == {"jwks": {"ok": True}}
    assert down.status_code == 503
    assert down.json()["failing"] == ["jwks"]
    assert down.json()["checks"]["jwks"]["reason"] == "connect"
