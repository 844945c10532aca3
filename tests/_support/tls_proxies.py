"""Debian's nginx and HAProxy as TLS-terminating proxies on loopback, for the mTLS tests.

The configurations are the operator examples themselves (``examples/nginx/mtls.conf``,
``examples/haproxy/mtls.cfg``), rendered into a temporary directory with this run's ports
and certificate paths. Each proxy runs in the foreground as a child process and is stopped
by its process id. A missing binary is a failure (``tools/ensure-command`` installs them),
never a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Literal

import uvicorn
from starlette.types import ASGIApp

from .pki import PKIFiles

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NGINX_TEMPLATE = EXAMPLES / "nginx" / "mtls.conf"
HAPROXY_TEMPLATE = EXAMPLES / "haproxy" / "mtls.cfg"
_START_SECONDS = 10.0


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (the proxies bind it themselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def render(template: Path, values: Mapping[str, str]) -> str:
    """``template`` with each ``{{name}}`` replaced; every placeholder must be given."""
    text = template.read_text()
    for name, value in values.items():
        text = text.replace("{{" + name + "}}", value)
    if "{{" in text:
        start = text.index("{{")
        raise ValueError(f"{template.name}: placeholder left: {text[start : start + 30]!r}")
    return text


Verify = Literal["required", "optional"]


def _switch(text: str, required: str, optional: str, verify: Verify) -> str:
    """The rendered configuration with client certificates optional, if asked: the operator
    example requires them, and its comments name the one line to change."""
    if verify == "required":
        return text
    if text.count(required) != 1:
        raise ValueError(f"expected exactly one {required!r} to switch")
    return text.replace(required, optional)


def _command(name: str) -> str:
    # Debian installs both under /usr/sbin, which a non-root PATH may lack.
    path = shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin")
    if path is None:
        raise RuntimeError(f"{name} is missing: run tools/ensure-command {name}")
    return path


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class ProxyProcess:
    """A proxy in the foreground, listening on ``127.0.0.1:port`` until :meth:`stop`."""

    def __init__(self, argv: list[str], port: int, log: Path) -> None:
        self.argv = argv
        self.port = port
        self.url = f"https://127.0.0.1:{port}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ProxyProcess:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 - fixed argv, our own binaries
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + _START_SECONDS
        while not _accepts(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.argv[0]} did not start:\n{self.log.read_text()}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def __enter__(self) -> ProxyProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def nginx(
    directory: Path, pki: PKIFiles, upstream: str, *, verify: Verify = "required"
) -> ProxyProcess:
    """nginx with ``examples/nginx/mtls.conf``, forwarding to ``upstream`` (host:port);
    ``verify="optional"`` lets clients without a certificate through."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = directory / "nginx.conf"
    text = render(
        NGINX_TEMPLATE,
        {
            "listen": f"127.0.0.1:{port}",
            "server_cert": str(pki.server_cert),
            "server_key": str(pki.server_key),
            "client_ca": str(pki.ca),
            "upstream": upstream,
            "prefix": str(directory),
        },
    )
    conf.write_text(_switch(text, "ssl_verify_client on;", "ssl_verify_client optional;", verify))
    argv = [
        _command("nginx"),
        "-e",  # the error log before the configuration is read
        "stderr",
        "-p",
        str(directory),
        "-c",
        str(conf),
        "-g",
        "daemon off;",
    ]
    return ProxyProcess(argv, port, directory / "nginx.log")


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
    cfg.write_text(_switch(text, " verify required\n", " verify optional\n", verify))
    # -db: stay in the foreground, no daemon; -W is not needed for a single process.
    argv = [_command("haproxy"), "-db", "-f", str(cfg)]
    return ProxyProcess(argv, port, directory / "haproxy.log")


class DirectPeerServer:
    """uvicorn on ``127.0.0.1:<free port>`` with ``proxy_headers=False``.

    With proxy headers on (uvicorn's default), uvicorn rewrites ``scope["client"]`` from
    ``X-Forwarded-For``, and the app could no longer tell whether its TCP peer is the
    trusted proxy: certificate headers depend on exactly that.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        config = uvicorn.Config(
            app, log_level="warning", lifespan="off", access_log=False, proxy_headers=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def start(self) -> DirectPeerServer:
        self.thread.start()
        deadline = time.monotonic() + _START_SECONDS
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> DirectPeerServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
