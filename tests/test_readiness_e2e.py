"""Readiness with real processes (issue 21 section 2): the example app under uvicorn, the
Authlete simulator as its own process over real HTTP, and a real redis-server as the replay
store. Each dependency is stopped and started again: readiness answers 503 naming it, within
the configured readiness timeout (the client gives up a little after it), then 200 again;
liveness stays 200 throughout. A wrong credential stops start-up with one line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping

import httpx
import pytest

from dpop_guard.devtools.demo import free_port
from dpop_guard.devtools.simulator import DEFAULT_SERVICE_ID, DEFAULT_SERVICE_TOKEN
from tests._support.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

READINESS_TIMEOUT = 1.0
# The answer must come within the readiness timeout; the client allows a margin for a
# loaded machine, and a slower answer fails the test by timing out.
CLIENT_TIMEOUT = READINESS_TIMEOUT + 2.0


class Process:
    """A child process on a loopback port, started and stopped by the test."""

    def __init__(self, argv: list[str], port: int, env: Mapping[str, str] | None = None) -> None:
        self.argv, self.port, self.env = argv, port, dict(env or os.environ)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_path: str = "/") -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
            self.argv, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        until(lambda: self._answers(ready_path), what=f"{self.argv[2]} to start", proc=self.proc)

    def _answers(self, path: str) -> bool:
        try:
            httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=1.0)
        except httpx.HTTPError:
            return False
        return True

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            if self.proc.stderr is not None:
                self.proc.stderr.close()
            self.proc = None


def until(check: object, *, what: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``check`` (a callable returning truth) for up to 30 s: process start-up and
    recovery are waited for, never timed."""
    deadline = time.monotonic() + 30
    while not check():  # type: ignore[operator]
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise AssertionError(f"waiting for {what}: the process exited: {err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"waiting for {what}: gave up after 30 s")
        time.sleep(0.1)


def simulator(port: int) -> Process:
    return Process(
        [sys.executable, "-m", "dpop_guard.devtools.simulator", "--port", str(port)], port
    )


def app_env(simulator_port: int, redis: RedisServer, app_port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DPOP_GUARD_", "AUTHLETE_"))}
    env.update(
        AUTHLETE_BASE_URL=f"http://127.0.0.1:{simulator_port}",
        AUTHLETE_SERVICE_APIKEY=DEFAULT_SERVICE_ID,
        AUTHLETE_SERVICE_ACCESSTOKEN=DEFAULT_SERVICE_TOKEN,
        DPOP_GUARD_PUBLIC_URL=f"http://127.0.0.1:{app_port}",
        DPOP_GUARD_REPLAY_STORE=redis.url,
        DPOP_GUARD_READINESS_TIMEOUT=str(READINESS_TIMEOUT),
    )
    env.update(extra)
    return env


def uvicorn(port: int, env: Mapping[str, str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "dpop_guard.devtools.demo.accounts:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]


@pytest.fixture(name="stack")
def _stack() -> Iterator[tuple[Process, RedisServer, Process]]:
    sim = simulator(free_port())
    redis = RedisServer().start()
    sim.start("/sim/stats")
    port = free_port()
    api = Process(uvicorn(port, {}), port, app_env(sim.port, redis, port))
    try:
        api.start("/livez")
        yield sim, redis, api
    finally:
        api.stop()
        sim.stop()
        redis.stop()


def readiness(api: Process) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{api.port}/readyz", timeout=CLIENT_TIMEOUT)


def test_readiness_follows_each_dependency(stack: tuple[Process, RedisServer, Process]) -> None:
    sim, redis, api = stack
    until(lambda: readiness(api).status_code == 200, what="readiness")

    # The simulator goes away: introspection is named, the cause is a refused connection.
    sim.stop()
    down = readiness(api)
    assert down.status_code == 503, down.text
    assert down.json()["failing"] == ["introspection"]
    assert down.json()["checks"]["introspection"]["reason"] in ("connect", "circuit_open")
    alive = httpx.get(f"http://127.0.0.1:{api.port}/livez", timeout=CLIENT_TIMEOUT)
    assert alive.status_code == 200
    sim.start("/sim/stats")
    until(lambda: readiness(api).status_code == 200, what="readiness after the simulator")

    # Redis goes away: the replay store is named.
    redis.stop()
    down = readiness(api)
    assert down.status_code == 503, down.text
    assert down.json()["failing"] == ["replay_store"]
    assert down.json()["checks"]["replay_store"]["reason"] == "connect"
    redis.start()
    until(lambda: readiness(api).status_code == 200, what="readiness after Redis")


def test_wrong_credentials_stop_start_up() -> None:
    """uvicorn exits at start-up with the one line (no traceback) naming the credential
    variables and the cause."""
    sim = simulator(free_port())
    redis = RedisServer().start()
    sim.start("/sim/stats")
    port = free_port()
    env = app_env(sim.port, redis, port, AUTHLETE_SERVICE_ACCESSTOKEN="wrong")
    try:
        result = subprocess.run(  # noqa: S603 - our own interpreter and modules
            uvicorn(port, env), env=env, capture_output=True, text=True, timeout=60, check=False
        )
    finally:
        sim.stop()
        redis.stop()
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert (
        "AUTHLETE_SERVICE_APIKEY/AUTHLETE_SERVICE_ACCESSTOKEN (http://127.0.0.1:" in result.stderr
    )
    assert "it refused our credentials [credentials]" in result.stderr
