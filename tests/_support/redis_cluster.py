"""A real three-primary Redis Cluster on loopback, without persistence or replicas."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from dpop_guard.devtools.demo import free_port


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cluster_ports(count: int) -> list[int]:
    """``count`` distinct free ports whose cluster bus ports (port + 10000) are free too."""
    ports: list[int] = []
    for _ in range(1000):
        port = free_port()
        if port + 10000 <= 65535 and port not in ports and _bindable(port + 10000):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise RuntimeError("no free ports below 55536")  # pragma: no cover


class RedisCluster:
    """Start three ``redis-server --cluster-enabled yes`` and join them with
    ``redis-cli --cluster create`` (all 16384 slots spread over the three)."""

    def __init__(self) -> None:
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if server is None or cli is None:
            raise RuntimeError("redis-server and redis-cli are needed for the cluster tests")
        self.server, self.cli = server, cli
        self._choose_ports()
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self._dir = tempfile.TemporaryDirectory(prefix="redis-cluster-")

    def _choose_ports(self) -> None:
        self.ports = _cluster_ports(3)
        self.url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self) -> RedisCluster:
        """Start the cluster; a start that fails (a port taken between its choice and the
        server's bind, on a busy machine) is retried twice on new ports."""
        for attempt in range(3):
            try:
                return self._start()
            except Exception:
                self.stop()  # no server outlives a failed start
                if attempt == 2:
                    raise
                self.procs = {}
                self._dir = tempfile.TemporaryDirectory(prefix="redis-cluster-")
                self._choose_ports()
        raise AssertionError("unreachable")  # pragma: no cover

    def _start(self) -> RedisCluster:
        for port in self.ports:
            work = Path(self._dir.name) / str(port)
            work.mkdir()
            self.procs[port] = subprocess.Popen(  # noqa: S603 - fixed binary and arguments
                [
                    self.server,
                    "--port", str(port),
                    "--bind", "127.0.0.1",
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", str(work / "nodes.conf"),
                    "--cluster-node-timeout", "1000",
                    "--dir", str(work),
                    "--save", "",
                    "--appendonly", "no",
                    "--protected-mode", "no",
                    "--loglevel", "warning",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
        for port in self.ports:
            self._wait(lambda c: c.ping(), port)
        subprocess.run(  # noqa: S603 - fixed binary and arguments
            [
                self.cli,
                "--cluster", "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-replicas", "0",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )  # fmt: skip
        for port in self.ports:
            self._wait(lambda c: c.cluster("info")["cluster_state"] == "ok", port)
        return self

    def _wait(self, ready: object, port: int) -> None:
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 20
        try:
            while True:
                try:
                    if ready(client):  # type: ignore[operator]
                        return
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the cluster node on {port} did not become ready")
                time.sleep(0.02)
        finally:
            client.close()

    def port_of(self, key: str) -> int:
        """The port of the primary that holds ``key``'s slot."""
        client = redis.Redis(host="127.0.0.1", port=self.ports[0])
        try:
            slot = int(client.cluster("keyslot", key))
            for start, end, primary, *_ in client.cluster("slots"):
                if start <= slot <= end:
                    return int(primary[1])
        finally:
            client.close()
        raise LookupError(key)  # pragma: no cover - every slot is assigned

    def kill(self, port: int) -> None:
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait(timeout=10)

    def stop(self) -> None:
        for port in list(self.procs):
            self.kill(port)
        self._dir.cleanup()
