"""Debian's nginx and HAProxy as TLS-terminating proxies on loopback, for the mTLS tests.

The configurations are the operator examples themselves, rendered into a temporary
directory with this run's ports and certificate paths: ``examples/haproxy/mtls.cfg``, and
nginx's, which ships in the package (``dpop_guard/devtools/demo/nginx-mtls.conf``, linked from
``examples/nginx/mtls.conf``) and is run by :mod:`dpop_guard.devtools.demo._nginx`, the demo's too. Each proxy runs in the foreground as a child process and is stopped
by its process id. A missing binary is a failure (``tools/ensure-command`` installs them),
never a skip.
"""

from __future__ import annotations

from pathlib import Path

from starlette.types import ASGIApp

from dpop_guard.devtools.demo._nginx import (
    NGINX_TEMPLATE,
    ProxyProcess,
    Verify,
    find_command,
    free_port,
    nginx,
    render,
    switch,
)
from tests._support.servers import ServerThread

from .pki import PKIFiles

__all__ = [
    "HAPROXY_TEMPLATE",
    "NGINX_TEMPLATE",
    "DirectPeerServer",
    "ProxyProcess",
    "Verify",
    "free_port",
    "haproxy",
    "nginx",
    "render",
]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HAPROXY_TEMPLATE = EXAMPLES / "haproxy" / "mtls.cfg"
_START_SECONDS = 10.0


def _command(name: str) -> str:
    path = find_command(name)
    if path is None:
        raise RuntimeError(f"{name} is missing: run tools/ensure-command {name}")
    return path


def haproxy(
    directory: Path, pki: PKIFiles, upstream: str, *, verify: Verify = "required"
) -> ProxyProcess:
    """HAProxy with ``examples/haproxy/mtls.cfg``, forwarding to ``upstream`` (host:port);
    ``verify="optional"`` lets clients without a certificate through."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cfg = directory / "haproxy.cfg"
    text = render(
        HAPROXY_TEMPLATE,
        {
            "bind": f"127.0.0.1:{port}",
            "server_pem": str(pki.server_combined),
            "client_ca": str(pki.ca),
            "upstream": upstream,
        },
    )
    # The bind line's last word; the comment lines above it say "verify required" too.
    cfg.write_text(switch(text, " verify required\n", " verify optional\n", verify))
    # -db: stay in the foreground, no daemon; -W is not needed for a single process.
    argv = [_command("haproxy"), "-db", "-f", str(cfg)]
    return ProxyProcess(argv, port, directory / "haproxy.log")


class DirectPeerServer(ServerThread):
    """uvicorn on ``127.0.0.1:<free port>`` with ``proxy_headers=False``.

    With proxy headers on (uvicorn's default), uvicorn rewrites ``scope["client"]`` from
    ``X-Forwarded-For``, and the app could no longer tell whether its TCP peer is the
    trusted proxy: certificate headers depend on exactly that.
    """

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app, lifespan="off", proxy_headers=False)
