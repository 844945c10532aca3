"""ASGI servers (uvicorn, hypercorn, granian) started as subprocesses on a free loopback
port, waited for with a bounded loop, and stopped."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from dpop_guard.devtools.demo import free_port

__all__ = ["SERVERS", "Served", "command", "free_port", "serve"]

SERVERS = ("uvicorn", "hypercorn", "granian")
ROOT = Path(__file__).resolve().parents[2]
READY_SECONDS = 30


def _tool(name: str) -> str:
    # The venv's own entry point, next to this interpreter.
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed (it is in the tests dependency group)")
    return found


def command(server: str, target: str, port: int) -> list[str]:
    """The command line that serves ``target`` (``module:attr``) with one worker."""
    if server == "uvicorn":
        return [
            _tool("uvicorn"), target, "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
    if server == "hypercorn":
        return [
            _tool("hypercorn"), target, "--bind", f"127.0.0.1:{port}", "--workers", "1",
            "--log-level", "warning",
        ]  # fmt: skip
    if server == "granian":
        return [
            _tool("granian"), "--interface", "asgi", "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1", "--log-level", "warning", target,
        ]  # fmt: skip
    raise ValueError(f"unknown server {server!r}")


@dataclass(frozen=True)
class Served:
    """A running server: its base URL and what it has logged so far."""

    server: str
    url: str
    _log: IO[bytes]

    def log(self) -> str:
        # pread: the server shares this file's offset, which a seek would move under it.
        fd = self._log.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")


@contextmanager
def serve(
    server: str,
    target: str,
    env: Mapping[str, str],
    *,
    ready_path: str = "/accounts",
    prefix: list[str] | None = None,
) -> Iterator[Served]:
    """Run ``target`` under ``server`` until the block ends; yields it. Ready once
    ``ready_path`` answers at all (a guarded path answers 401). ``prefix`` (``taskset``)
    goes in front of the command."""
    port = free_port()
    environ = dict(env)
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(  # noqa: S603 - our own venv's entry points
            [*(prefix or []), *command(server, target, port)],
            cwd=ROOT,
            env=environ,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + READY_SECONDS
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{server} exited: {Served(server, url, log).log()}")
                try:
                    httpx.get(url + ready_path, timeout=1.0)
                    break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{server} did not answer on {url} in {READY_SECONDS} s")
                time.sleep(0.05)  # a readiness poll, not a timed assertion
            yield Served(server, url, log)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
