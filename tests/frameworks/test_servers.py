"""The server-facing cases (good, replayed, another key, websocket refused) for each
framework's app under uvicorn, hypercorn and granian, each a subprocess on loopback.

The server runs in another process, so the middleware's logged reason is not visible here;
each refusal is pinned by its status, challenge ``error`` and ``error_description``. Also
checked: a ``Date`` header on every answer, which FAPI 2.0 asks of a resource server.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dpop_guard.devtools.simulator import SimulatorState
from tests._support.servers import ServerThread

from ._cases import (
    SERVER_CASES,
    app_environ,
    check_case,
    check_websocket_refused,
)
from ._servers import SERVERS, Served, serve
from .apps._names import FRAMEWORKS

pytestmark = [pytest.mark.frameworks, pytest.mark.e2e]
TARGET = "tests.frameworks.apps.served:app"
# hypercorn and granian run even a single worker in a child process, which the
# middleware's several-workers heuristic (multiprocessing.parent_process()) counts as a
# fleet; uvicorn --workers 1 serves in its own process.


@pytest.fixture(
    name="served",
    scope="module",
    params=[(s, f) for s in SERVERS for f in FRAMEWORKS],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def _served(
    request: pytest.FixtureRequest, simulator_server: tuple[ServerThread, SimulatorState]
) -> Iterator[tuple[Served, str]]:
    server, framework = request.param
    env = app_environ(simulator_server[0].url)
    env["DPOP_GUARD_MATRIX_APP"] = framework
    with serve(server, TARGET, env) as served:
        yield served, framework


class TestServers:
    async def test_cases(self, served: tuple[Served, str], simulator_url: str) -> None:
        """Good, replayed and another key earn their answers, each with a Date header."""
        server, framework = served
        for case in SERVER_CASES:
            response = await check_case(case, base_url=server.url, simulator_url=simulator_url)
            assert "date" in response.headers, (server.server, framework, case.name)

    async def test_websocket_refused(self, served: tuple[Served, str]) -> None:
        """A handshake without credentials is answered 401 by the middleware, never
        accepted."""
        await check_websocket_refused(served[0].url)

    def test_one_worker_is_not_taken_for_a_fleet(self, served: tuple[Served, str]) -> None:
        """With one worker and the in-memory replay store, no "one of several workers"
        warning: it would teach operators to ignore the one that matters."""
        server = served[0]
        assert "one of several workers" not in server.log()
