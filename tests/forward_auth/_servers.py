"""Real proxies for the forward-auth end-to-end tests: Debian's nginx and Caddy running the
shipped configurations (deploy/forward-auth), rendered with this run's ports, in front of a
non-Python API (nginx echoing what it received), with the forward-auth server under real
uvicorn. Each runs in the foreground as a child process, stopped by its process id. A
missing binary is a failure (``tools/ensure-command`` installs them), never a skip."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from dpop_guard.devtools.demo._nginx import ProxyProcess, find_command, free_port, render
from dpop_guard.forward_auth import create_app
from dpop_guard.replay import ReplayStore
from dpop_guard.settings import Route
from tests._support.servers import ServerThread

__all__ = [
    "DEPLOY",
    "ForwardAuthServer",
    "caddy",
    "echo_upstream",
    "free_port",
    "nginx",
    "parse_echo",
]

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "forward-auth"
UPSTREAM_TEMPLATE = Path(__file__).with_name("upstream-nginx.conf")


def _command(name: str) -> str:
    path = find_command(name)
    if path is None:
        raise RuntimeError(f"{name} is missing: run tools/ensure-command {name}")
    return path


def _nginx_argv(directory: Path, conf: Path) -> list[str]:
    return [
        _command("nginx"),
        *("-e", "stderr", "-p", str(directory), "-c", str(conf), "-g", "daemon off;"),
    ]


def echo_upstream(directory: Path) -> ProxyProcess:
    """The API: nginx answering every request with what it received (not started)."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = directory / "nginx.conf"
    conf.write_text(
        render(UPSTREAM_TEMPLATE, {"listen": f"127.0.0.1:{port}", "prefix": str(directory)})
    )
    return ProxyProcess(_nginx_argv(directory, conf), port, directory / "nginx.log")


def nginx(
    directory: Path,
    *,
    port: int,
    auth: str,
    upstream: str,
    template: str = "nginx.conf",
    extra: Mapping[str, str] | None = None,
) -> ProxyProcess:
    """nginx with the shipped ``template`` on ``127.0.0.1:port`` (not started)."""
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "nginx.conf"
    values = {
        "listen": f"127.0.0.1:{port}",
        "auth": auth,
        "upstream": upstream,
        "prefix": str(directory),
        **(extra or {}),
    }
    conf.write_text(render(DEPLOY / template, values))
    return ProxyProcess(_nginx_argv(directory, conf), port, directory / "nginx.log")


def caddy(directory: Path, *, port: int, auth: str, upstream: str) -> ProxyProcess:
    """Caddy with the shipped Caddyfile on ``127.0.0.1:port`` (not started)."""
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "Caddyfile"
    values = {"listen": f"http://127.0.0.1:{port}", "auth": auth, "upstream": upstream}
    conf.write_text(render(DEPLOY / "Caddyfile", values))
    argv = [_command("caddy"), "run", "--config", str(conf), "--adapter", "caddyfile"]
    return ProxyProcess(argv, port, directory / "caddy.log")


class ForwardAuthServer(ServerThread):
    """The forward-auth server from ``environ`` under real uvicorn, on a free loopback
    port, with uvicorn's proxy headers off (the peer it checks is the proxy's own)."""

    def __init__(
        self,
        environ: Mapping[str, str],
        routes: Sequence[Route],
        clock: Callable[[], float] | None = None,
        replay_store: ReplayStore | None = None,
    ) -> None:
        app = create_app(routes=routes, environ=environ, clock=clock, replay_store=replay_store)
        super().__init__(app, lifespan="on", proxy_headers=False)


def parse_echo(text: str) -> dict[str, str]:
    """The echo upstream's answer as a dict."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
