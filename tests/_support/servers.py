"""Real uvicorn servers on free loopback ports, run in background threads."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Literal, Self

import uvicorn
from starlette.types import ASGIApp


class ServerThread:
    """Serve ``app`` with uvicorn on ``127.0.0.1:<free port>`` until :meth:`stop`.

    :param lifespan: uvicorn's ``lifespan`` setting.
    :param proxy_headers: uvicorn's ``proxy_headers`` (its default, on, rewrites
        ``scope["client"]`` from ``X-Forwarded-For``).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        lifespan: Literal["auto", "on", "off"] = "on",
        proxy_headers: bool = True,
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan=lifespan,
            access_log=False,
            proxy_headers=proxy_headers,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def start(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=2)
        if self.thread.is_alive():
            # A request the simulator left hanging would hold a graceful shutdown open.
            self.server.force_exit = True
            self.thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
