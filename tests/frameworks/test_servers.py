"""The server-facing cases (good, replayed, another key, websocket refused) for each
framework's app under uvicorn, hypercorn and granian, each a subprocess on loopback.

The server runs in another process, so the middleware's logged reason is not visible here;
each refusal is pinned by its status, challenge ``error`` and ``error_description``. Also
checked: a ``Date`` header on every answer, which FAPI 2.0 asks of a resource server.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dpop_guard.simulator import SimulatorState
from tests._support.servers import ServerThread

from ._cases import (
    SERVER_CASES,
    app_environ,
    check_case,
    check_websocket_refused,
    websocket_case,
)
from ._servers import SERVERS, serve
from .apps._names import FRAMEWORKS

pytestmark = [pytest.mark.frameworks, pytest.mark.e2e]
TARGET = "tests.frameworks.apps.served:app"


@pytest.fixture(
    name="served",
    scope="module",
    params=[(s, f) for s in SERVERS for f in FRAMEWORKS],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def _served(
    request: pytest.FixtureRequest, simulator_server: tuple[ServerThread, SimulatorState]
) -> Iterator[tuple[str, str, str]]:
    server, framework = request.param
    env = app_environ(simulator_server[0].url)
    env["DPOP_GUARD_MATRIX_APP"] = framework
    with serve(server, TARGET, env) as url:
        yield server, framework, url


class TestServers:
    async def test_cases(self, served: tuple[str, str, str], simulator_url: str) -> None:
        """Good, replayed and another key earn their answers, each with a Date header."""
        server, framework, url = served
        for case in SERVER_CASES:
            response = await check_case(case, base_url=url, simulator_url=simulator_url)
            assert "date" in response.headers, (server, framework, case.name)

    @websocket_case
    async def test_websocket_refused(self, served: tuple[str, str, str]) -> None:
        """A handshake without credentials is answered 401 by the middleware, never
        accepted."""
        await check_websocket_refused(served[2])
