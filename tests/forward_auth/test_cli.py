"""``dpop-guard forward-auth``: the subcommand serving the forward-auth server."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import pytest

from dpop_guard.cli import main
from dpop_guard.devtools.demo import free_port, process

from ._support import environment

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tests.forward_auth.routes_for_cli", "is not module:NAME"),
        ("tests.forward_auth.nowhere:ROUTES", "cannot be loaded"),
        ("tests.forward_auth.routes_for_cli:MISSING", "cannot be loaded"),
        ("tests.forward_auth.routes_for_cli:NOT_ROUTES", "is not a sequence of"),
    ],
)
def test_bad_routes_stop_start_up(
    spec: str, message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DPOP_GUARD_FORWARD_AUTH_PROXY", "nginx")
    assert main(["forward-auth", "--routes", spec]) == 2
    assert message in capsys.readouterr().err


def test_configuration_error_stops_start_up(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DPOP_GUARD_FORWARD_AUTH_PROXY", raising=False)
    assert main(["forward-auth"]) == 2
    assert "DPOP_GUARD_FORWARD_AUTH_PROXY" in capsys.readouterr().err


@pytest.mark.e2e
def test_serves_check_requests(simulator_url: str) -> None:
    """The command under a real process: a public path allowed, a protected one refused."""
    port = free_port()
    env = os.environ | dict(environment(simulator_url, "traefik", "https://api.bank.test"))
    argv = [sys.executable, "-m", "dpop_guard.cli", "forward-auth", "--port", str(port)]
    argv += ["--routes", "tests.forward_auth.routes_for_cli:ROUTES"]
    url = f"http://127.0.0.1:{port}/"
    public = {"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/health"}
    with process(argv, env, url, public, cwd=str(ROOT)):
        assert httpx.get(url, headers=public).status_code == 200
        protected = httpx.get(url, headers=public | {"X-Forwarded-Uri": "/accounts"})
        assert protected.status_code == 401
