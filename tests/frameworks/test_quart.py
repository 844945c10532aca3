"""The shared cases in front of a Quart app (tests/frameworks/apps/quart_app.py), served by
uvicorn in a thread; the Authlete simulator mints and introspects the tokens."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dpop_guard.simulator import SimulatorState
from tests._support.servers import ServerThread

from ._cases import (
    CASES,
    Case,
    Enforcer,
    app_environ,
    case_ids,
    check_case,
    check_websocket_refused,
)

pytestmark = [pytest.mark.frameworks, pytest.mark.e2e]
ENFORCER: Enforcer = "middleware"


@pytest.fixture(name="server", scope="module")
def _server(simulator_server: tuple[ServerThread, SimulatorState]) -> Iterator[ServerThread]:
    from .apps.quart_app import create_app  # the framework's import cost stays in this module's run

    with ServerThread(create_app(app_environ(simulator_server[0].url))) as server:
        yield server


class TestQuart:
    @pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
    async def test_case(
        self, case: Case, server: ServerThread, simulator_url: str, reasons: list[str]
    ) -> None:
        """Each shared case earns its status, challenge error and reason."""
        await check_case(
            case,
            base_url=server.url,
            simulator_url=simulator_url,
            enforcer=ENFORCER,
            reasons=reasons,
        )

    async def test_websocket_refused_without_credentials(
        self, server: ServerThread, reasons: list[str]
    ) -> None:
        """A handshake without credentials is refused by the middleware, never accepted."""
        await check_websocket_refused(server.url, reasons=reasons)
