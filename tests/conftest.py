from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from hypothesis import settings

from dpop_guard.client import ProofSigner
from dpop_guard.devtools.simulator import SimulatorState, create_simulator_app
from tests._support.harness import Harness
from tests._support.redis_server import RedisServer
from tests._support.servers import ServerThread

# Property tests check behaviour, never speed: no per-example deadline (on a loaded
# machine a slow example is not a failure; cost is measured by the benchmarks).
settings.register_profile("dpop_guard", deadline=None)
settings.load_profile("dpop_guard")


@pytest.fixture(scope="session", name="anyio_backend")
def _anyio_backend() -> str:
    """Async tests run on asyncio (the lean HTTP client is asyncio-only), whichever
    backends the installed anyio would pick by default."""
    return "asyncio"


@pytest.fixture(scope="session", name="signers")
def _signers() -> dict[str, ProofSigner]:
    """One key per algorithm, generated once (RSA generation is slow)."""
    return {alg: ProofSigner.generate(alg) for alg in ("ES256", "PS256", "EdDSA")}


@pytest.fixture(name="signer")
def _signer() -> ProofSigner:
    return ProofSigner.generate("ES256")


@pytest.fixture(scope="session", name="simulator_server")
def _simulator_server() -> Iterator[tuple[ServerThread, SimulatorState]]:
    state = SimulatorState()
    with ServerThread(create_simulator_app(state)) as server:
        yield server, state


@pytest.fixture(name="simulator")
def _simulator(simulator_server: tuple[ServerThread, SimulatorState]) -> Iterator[SimulatorState]:
    """The shared simulator, with faults, latency and counters reset around each test."""
    _, state = simulator_server
    state.set_fault(None, latency=0.0)
    state.accept_unbound_with_proof = True
    state.reset_counters()
    yield state
    state.set_fault(None, latency=0.0)


@pytest.fixture(name="simulator_url")
def _simulator_url(simulator_server: tuple[ServerThread, SimulatorState]) -> str:
    return simulator_server[0].url


@pytest.fixture(name="make_harness")
async def _make_harness(
    simulator: SimulatorState, simulator_url: str
) -> AsyncIterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(**options: Any) -> Harness:
        harness = Harness(simulator, simulator_url, **options)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        await harness.aclose()


@pytest.fixture(name="h")
def _h(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness()


@pytest.fixture(name="reasons")
def _reasons(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """The internal rejection reasons logged by the middleware, in order."""
    caplog.set_level(logging.INFO, logger="dpop_guard")
    found: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            reason = getattr(record, "dpop_guard_reason", None)
            if reason is not None and record.name == "dpop_guard":  # accepted: reason None
                found.append(reason)

    handler = _Collect()
    logging.getLogger("dpop_guard").addHandler(handler)
    yield found
    logging.getLogger("dpop_guard").removeHandler(handler)


@pytest.fixture(scope="session", name="redis_server")
def _redis_server() -> Iterator[RedisServer]:
    """A real redis-server for the session. Missing redis-server is a failure, not a skip."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(name="redis_url")
def _redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied before each test."""
    redis_server.flush()
    return redis_server.url


# The marker scheme behind `make test-unit`: a test is slow when it needs a real server.
# Marking by fixture keeps the rule in one place, so a new test that asks for Redis or the
# simulator over HTTP is classed correctly without anyone remembering to mark it.
_FIXTURE_MARKS = {
    "redis_server": "redis",
    "redis_url": "redis",
    "simulator_server": "e2e",
    "simulator": "e2e",
    "simulator_url": "e2e",
}
# Modules that start processes (uvicorn workers, node, the CLI) without those fixtures.
_SLOW_MODULES = frozenset({"test_cli.py", "test_demo.py", "test_benchmarks_smoke.py"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", ())
        for mark in {m for f, m in _FIXTURE_MARKS.items() if f in names}:
            item.add_marker(getattr(pytest.mark, mark))
        if item.path.name in _SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
