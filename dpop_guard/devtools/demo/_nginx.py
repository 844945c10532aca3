"""Debian's nginx as the TLS-terminating proxy of the demo's mTLS leg (and of the tests,
``tests/_support/tls_proxies.py``): the operator configuration that ships in the package
(``nginx-mtls.conf``, linked from ``examples/nginx/mtls.conf``), rendered into a temporary
directory with this run's ports and certificate paths, run in the foreground as a child
process and stopped by its process id."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Final, Literal

from . import free_port
from ._pki import PKIFiles

__all__ = [
    "NGINX_TEMPLATE",
    "ProxyProcess",
    "Verify",
    "find_command",
    "free_port",
    "nginx",
    "render",
    "switch",
]

NGINX_TEMPLATE: Final = Path(__file__).with_name("nginx-mtls.conf")
START_SECONDS: Final = 10.0

Verify = Literal["required", "optional"]


def render(template: Path, values: Mapping[str, str]) -> str:
    """``template`` with each ``{{name}}`` replaced.

    :raises ValueError: a placeholder is left (every one must be given).
    """
    text = template.read_text()
    for name, value in values.items():
        text = text.replace("{{" + name + "}}", value)
    if "{{" in text:
        start = text.index("{{")
        raise ValueError(f"{template.name}: placeholder left: {text[start : start + 30]!r}")
    return text


def switch(text: str, required: str, optional: str, verify: Verify) -> str:
    """The rendered configuration with client certificates optional, if asked: the operator
    example requires them, and its comments name the one line to change.

    :raises ValueError: ``required`` is not in ``text`` exactly once.
    """
    if verify == "required":
        return text
    if text.count(required) != 1:
        raise ValueError(f"expected exactly one {required!r} to switch")
    return text.replace(required, optional)


def find_command(name: str) -> str | None:
    """Where ``name`` is; Debian installs nginx and haproxy under /usr/sbin, which a
    non-root PATH may lack."""
    return shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin")


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
        """Start it and wait (at most :data:`START_SECONDS`) until it accepts connections.

        :raises RuntimeError: it exited or did not listen in time (its log in the message).
        """
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 - fixed argv, our own binaries
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_SECONDS
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
    """nginx with the packaged ``nginx-mtls.conf``, forwarding to ``upstream`` (host:port);
    ``verify="optional"`` lets clients without a certificate through (not started yet).

    :raises RuntimeError: nginx is not installed.
    """
    command = find_command("nginx")
    if command is None:
        raise RuntimeError("nginx is missing: run tools/ensure-command nginx")
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
    conf.write_text(switch(text, "ssl_verify_client on;", "ssl_verify_client optional;", verify))
    # -e: the error log before the configuration is read.
    argv = [command, "-e", "stderr", "-p", str(directory), "-c", str(conf), "-g", "daemon off;"]
    return ProxyProcess(argv, port, directory / "nginx.log")
