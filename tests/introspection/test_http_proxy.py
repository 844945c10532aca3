"""The default client through a real outbound proxy on loopback: Debian's tinyproxy, started
per module with a config written here. http targets go in absolute form, https targets
through a CONNECT tunnel (TLS to the target inside it, with a test CA); NO_PROXY goes
direct; a dead proxy is a 503 whose reason says ``proxy``."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dpop_guard import AuthleteIntrospector, IntrospectionUnavailable
from dpop_guard.client import ProofSigner
from dpop_guard.devtools.demo import free_port
from dpop_guard.devtools.simulator import SimulatorState
from dpop_guard.introspection import RequestFacts
from dpop_guard.introspection._http import AsyncioHTTPClient

from .._support.harness import Harness, assert_rejected, authlete_settings
from .._support.raw_http import CA, LOOPBACK, ok, replying, serve

pytestmark = pytest.mark.slow  # starts tinyproxy

ROOT = Path(__file__).resolve().parents[2]
FACTS = RequestFacts("GET", "https://rs.test/a", None, None)
DEADLINE = 10.0
"""Seconds for an introspection here: these tests assert what failed, not how fast, and a
loaded machine must not turn a TLS or proxy failure into a timeout (a 2 s deadline did, once:
the tunnel, the trust store and the handshake on a busy core)."""


@dataclass
class Tinyproxy:
    url: str
    log: Path

    def requests(self) -> list[str]:
        """The request lines tinyproxy logged ("GET http://...", "CONNECT host:port")."""
        marker = "Request (file descriptor "
        lines = self.log.read_text(errors="replace").splitlines()
        return [line.split("): ", 1)[1] for line in lines if marker in line]


@pytest.fixture(scope="module", name="tinyproxy")
def _tinyproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tinyproxy]:
    """tinyproxy on a free loopback port, in the foreground, logging every request line.
    A missing tinyproxy is installed (as root) or the test fails: never a skip."""
    ensure = [str(ROOT / "tools" / "ensure-command"), "tinyproxy", "tinyproxy"]
    subprocess.run(ensure, check=True)  # noqa: S603 - our own script, fixed arguments
    binary = shutil.which("tinyproxy")
    assert binary is not None
    directory = tmp_path_factory.mktemp("tinyproxy")
    port = free_port()
    config = directory / "tinyproxy.conf"
    # No ConnectPort line: CONNECT to any port (the test servers' ports are random).
    config.write_text(
        f"Port {port}\nListen 127.0.0.1\nTimeout 10\nLogLevel Info\nMaxClients 20\n"
        "Allow 127.0.0.1\n"
    )
    log = directory / "tinyproxy.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 - a fixed binary, our config
            [binary, "-d", "-c", str(config)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        for _ in range(200):  # up to ~10 s for the port to accept
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.05).close()
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"tinyproxy exited: {log.read_text()}") from None
                time.sleep(0.05)  # start-up wait, not a timed assertion
        else:
            raise RuntimeError("tinyproxy did not start listening")
        yield Tinyproxy(f"http://127.0.0.1:{port}", log)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _via(request: bytes) -> bool:
    return any(line.lower().startswith(b"via:") for line in request.split(b"\r\n"))


class TestThroughTinyproxy:
    async def test_http_target_in_absolute_form(self, tinyproxy: Tinyproxy) -> None:
        """An http URL goes to the proxy in absolute form (tinyproxy adds its Via)."""
        client = AsyncioHTTPClient(proxies={"http": tinyproxy.url})
        server = await serve(replying(ok(), ok()))
        async with server as url:
            for _ in range(2):
                response = await client.post(url, [("Content-Type", "application/json")], b"{}")
                assert (response.status, response.body) == (200, b'{"action":"OK"}')
        await client.aclose()
        assert server.requests and all(_via(r) for r in server.requests)  # tinyproxy's Via
        assert f"POST {url} HTTP/1.1" in tinyproxy.requests()

    async def test_https_target_through_connect(self, tinyproxy: Tinyproxy, tmp_path: Path) -> None:
        """An https URL goes through a CONNECT tunnel; TLS is end to end: the server's
        certificate is checked against the test CA, and the proxy sees no request."""
        ca = CA(tmp_path)
        client = AsyncioHTTPClient(
            ssl_context=ca.client_context(), proxies={"https": tinyproxy.url}
        )
        server = await serve(replying(ok(), ok()), ssl_context=ca.server_context(LOOPBACK))
        async with server as url:
            for _ in range(2):
                assert (await client.post(url, [], b"{}")).status == 200
        await client.aclose()
        authority = url.split("/")[2]
        assert tinyproxy.requests().count(f"CONNECT {authority} HTTP/1.1") == 1  # kept alive
        assert server.requests and not any(_via(r) for r in server.requests)

    async def test_https_target_untrusted_through_connect(
        self, tinyproxy: Tinyproxy, tmp_path: Path
    ) -> None:
        """Inside the tunnel the certificate is still checked: an untrusted one is ``tls``."""
        ca = CA(tmp_path)
        client = AsyncioHTTPClient(proxies={"https": tinyproxy.url})  # system trust store
        async with await serve(replying(ok()), ssl_context=ca.server_context(LOOPBACK)) as url:
            introspector = AuthleteIntrospector(client, authlete_settings(_base(url), DEADLINE))
            with pytest.raises(IntrospectionUnavailable) as info:
                await introspector.introspect("tok", request=FACTS)
        await client.aclose()
        assert info.value.reason == "authlete_tls"

    async def test_connect_refused_by_the_proxy(self, tinyproxy: Tinyproxy) -> None:
        """The proxy cannot open the tunnel (nothing listens there): ``proxy``."""
        client = AsyncioHTTPClient(proxies={"https": tinyproxy.url})
        settings = authlete_settings(f"https://127.0.0.1:{free_port()}", DEADLINE)
        with pytest.raises(IntrospectionUnavailable) as info:
            await AuthleteIntrospector(client, settings).introspect("tok", request=FACTS)
        await client.aclose()
        assert info.value.reason == "authlete_proxy"

    async def test_no_proxy_goes_direct(
        self, tinyproxy: Tinyproxy, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With the environment's proxy set and the host in NO_PROXY, the call is direct."""
        monkeypatch.setenv("HTTP_PROXY", tinyproxy.url)
        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        client = AsyncioHTTPClient()
        server = await serve(replying(ok()))
        async with server as url:
            assert (await client.post(url, [], b"{}")).status == 200
        await client.aclose()
        assert not _via(server.requests[0])
        assert not any(url in line for line in tinyproxy.requests())

    async def test_environment_proxy_is_used(
        self, tinyproxy: Tinyproxy, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The same call with NO_PROXY naming another host goes through the proxy."""
        monkeypatch.setenv("HTTP_PROXY", tinyproxy.url)
        monkeypatch.setenv("NO_PROXY", "authlete.test")
        client = AsyncioHTTPClient()
        server = await serve(replying(ok()))
        async with server as url:
            assert (await client.post(url, [], b"{}")).status == 200
        await client.aclose()
        assert _via(server.requests[0])


class TestGuardThroughTinyproxy:
    async def test_simulator_through_the_proxy(
        self,
        tinyproxy: Tinyproxy,
        make_harness: Callable[..., Harness],
        simulator: SimulatorState,
        simulator_url: str,
    ) -> None:
        """A guarded request whose Authlete calls (check and probe) go through the proxy."""
        client = AsyncioHTTPClient(proxies={"http": tinyproxy.url})
        introspector = AuthleteIntrospector(client, authlete_settings(simulator_url, DEADLINE))
        h = make_harness(introspector=introspector)
        signer = ProofSigner.generate("ES256")
        before = len(tinyproxy.requests())
        assert (await h.call(h.token(signer), signer)).status_code == 200
        await client.aclose()
        posts = [line for line in tinyproxy.requests()[before:] if line.startswith("POST ")]
        assert len(posts) == 2 and all(simulator_url in line for line in posts)

    async def test_dead_proxy_is_503_proxy(
        self,
        make_harness: Callable[..., Harness],
        simulator: SimulatorState,
        simulator_url: str,
        reasons: list[str],
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Nothing listens at the environment's proxy: 503, reason ``authlete_proxy``; the
        outage line names the URL called and the cause, not the proxy's credentials."""
        monkeypatch.setenv("HTTP_PROXY", f"http://user:pr0xy-secret@127.0.0.1:{free_port()}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        client = AsyncioHTTPClient()
        introspector = AuthleteIntrospector(client, authlete_settings(simulator_url, DEADLINE))
        h = make_harness(introspector=introspector)
        signer = ProofSigner.generate("ES256")
        response = await h.call(h.token(signer), signer)
        await client.aclose()
        assert_rejected(response, 503, None, "authlete_proxy", reasons)
        outage = [r.getMessage() for r in caplog.records if r.name == "dpop_guard.introspection"]
        assert any("authlete_proxy" in line and simulator_url in line for line in outage)
        assert "pr0xy-secret" not in caplog.text
        assert simulator.calls.get("auth/introspection", 0) == 0


def _base(url: str) -> str:
    return url.partition("/api/")[0]
