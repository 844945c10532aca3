"""The h11-framed asyncio HTTP client, against raw loopback servers that write hostile bytes
(and TLS with a real CA)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import httpx
import pytest
from cryptography import x509

from dpop_guard import AuthleteIntrospector, AuthleteSettings, IntrospectionUnavailable
from dpop_guard.devtools.demo import free_port
from dpop_guard.introspection import RequestFacts
from dpop_guard.introspection._http import (
    MAX_INFORMATIONAL,
    MAX_RESPONSE_BYTES,
    AsyncioHTTPClient,
    HttpxTransport,
    TransportConnectError,
    TransportError,
    TransportHeaderError,
)

from .._support.raw_http import CA, LOOPBACK, Handler, Server, ok, read_request, replying, serve


@pytest.fixture(name="client")
async def _client() -> AsyncIterator[AsyncioHTTPClient]:
    client = AsyncioHTTPClient()
    yield client
    await client.aclose()


def segments(*parts: bytes) -> Callable[[Server], Handler]:
    """Answer one request with ``parts`` written one at a time, handing the loop to the
    client between them (so a body arrives in several reads), then close."""

    def make(server: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            server.requests.append(await read_request(reader))
            for part in parts:
                writer.write(part)
                await writer.drain()
                for _ in range(8):  # a scheduler yield, not a timed wait
                    await asyncio.sleep(0)

        return handler

    return make


FACTS = RequestFacts("GET", "https://rs.test/a", None, None)


class TestAsyncioHTTPClient:
    async def test_request_and_keep_alive(self, client: AsyncioHTTPClient) -> None:
        """The request is well formed; two calls share one connection."""
        server = await serve(replying(ok(), ok(b'{"n":2}')))
        async with server as url:
            first = await client.post(url, [("Authorization", "Bearer x")], b'{"token":"t"}')
            second = await client.post(url, [], b"{}")
        assert (first.status, first.body, second.body) == (200, b'{"action":"OK"}', b'{"n":2}')
        assert server.connections == 1
        head = server.requests[0].decode()
        assert head.startswith("POST /api/1/auth/introspection HTTP/1.1\r\nHost: 127.0.0.1:")
        assert "Authorization: Bearer x\r\n" in head and "Content-Length: 13\r\n" in head
        assert head.endswith('\r\n\r\n{"token":"t"}')

    async def test_chunked(self, client: AsyncioHTTPClient) -> None:
        """A chunked body (with an extension and a trailer) is reassembled."""
        answer = (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'5;ext=1\r\n{"a":\r\n2\r\n1}\r\n0\r\nX-Trailer: 1\r\n\r\n'
        )
        async with await serve(replying(answer)) as url:
            assert (await client.post(url, [], b"{}")).body == b'{"a":1}'

    async def test_connection_close(self, client: AsyncioHTTPClient) -> None:
        """Connection: close is honoured: the next call opens a new connection."""
        server = await serve(replying(ok(extra=b"Connection: close\r\n"), keep_open=False))
        async with server as url:
            await client.post(url, [], b"{}")
            await client.post(url, [], b"{}")
        assert server.connections == 2

    async def test_stale_keep_alive_is_retried(self, client: AsyncioHTTPClient) -> None:
        """A pooled connection the server dropped is replaced transparently."""
        server = await serve(replying(ok(), keep_open=False))
        async with server as url:
            await client.post(url, [], b"{}")
            assert (await client.post(url, [], b"{}")).status == 200
        assert server.connections == 2

    async def test_read_to_eof(self, client: AsyncioHTTPClient) -> None:
        """An HTTP/1.0 answer without a length ends at EOF."""
        server = await serve(replying(b"HTTP/1.0 500 Oops\r\n\r\nbody", keep_open=False))
        async with server as url:
            response = await client.post(url, [], b"{}")
        assert (response.status, response.body) == (500, b"body")

    async def test_body_to_eof_in_segments(self, client: AsyncioHTTPClient) -> None:
        """A body with neither length nor chunking, arriving in several segments, is read
        to the end of the stream, not to the end of the first segment."""
        body = b'{"action":"OK","pad":"' + b"x" * 300_000 + b'"}'
        server = await serve(segments(b"HTTP/1.1 200 OK\r\n\r\n" + body[:10], body[10:]))
        async with server as url:
            response = await client.post(url, [], b"{}")
        assert (response.status, response.body) == (200, body)
        assert server.connections == 1

    async def test_eof_body_is_capped(self, client: AsyncioHTTPClient) -> None:
        """A body read to EOF is still bounded."""
        answer = b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * (MAX_RESPONSE_BYTES + 1)
        async with await serve(replying(answer, keep_open=False)) as url:
            with pytest.raises(TransportError, match="too large"):
                await client.post(url, [], b"{}")

    async def test_100_continue_is_skipped(self, client: AsyncioHTTPClient) -> None:
        """1xx answers are not the answer: the final one after them is."""
        answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n" + ok()
        async with await serve(replying(answer)) as url:
            response = await client.post(url, [], b"{}")
        assert (response.status, response.body) == (200, b'{"action":"OK"}')

    async def test_too_many_1xx(self, client: AsyncioHTTPClient) -> None:
        """An endless stream of 1xx answers is cut off."""
        answer = b"HTTP/1.1 100 Continue\r\n\r\n" * (MAX_INFORMATIONAL + 1) + ok()
        async with await serve(replying(answer)) as url:
            with pytest.raises(TransportError, match="1xx"):
                await client.post(url, [], b"{}")

    async def test_smuggled_answer_is_not_reused(self, client: AsyncioHTTPClient) -> None:
        """Bytes after the end of an answer mean the connection is out of step: it is
        closed, and the next call gets its own answer on a new connection."""
        server = await serve(replying(ok() + ok(b'{"smuggled":1}'), keep_open=False))
        async with server as url:
            await client.post(url, [], b"{}")
            second = await client.post(url, [], b"{}")
        assert second.body == b'{"action":"OK"}'
        assert server.connections == 2

    @pytest.mark.parametrize(
        "answer",
        [
            pytest.param(b"garbage\r\n\r\n", id="garbage"),
            pytest.param(b"HTTP/1.1 2x0 OK\r\n\r\n", id="status-not-digits"),
            pytest.param(b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", id="status-4-digits"),
            pytest.param(b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n", id="status-2-digits"),
            pytest.param(b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", id="http-2.0"),
            pytest.param(b"HTTP/1.1  200 OK\r\nContent-Length: 0\r\n\r\n", id="double-space"),
            pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", id="short"),
            pytest.param(
                b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n", id="length-too-large"
            ),
            pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", id="length-negative"),
            pytest.param(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                id="length-conflict",
            ),
            pytest.param(b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n", id="no-colon"),
            pytest.param(
                b"HTTP/1.1 200 OK\r\nX-A: a\r\n folded: yes\r\nContent-Length: 2\r\n\r\n{}",
                id="obs-fold",
            ),
            pytest.param(
                b"HTTP/1.1 200 OK\r\nX-A: a\r\n\tfolded: yes\r\nContent-Length: 2\r\n\r\n{}",
                id="obs-fold-tab",
            ),
            pytest.param(
                b"HTTP/1.1 100 Continue\r\nX-A: a\r\n folded: yes\r\n\r\n" + ok(),
                id="obs-fold-in-1xx",
            ),
            pytest.param(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
                id="te-gzip-chunked",
            ),
            pytest.param(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                id="te-twice",
            ),
            pytest.param(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n{}", id="te-identity"
            ),
            pytest.param(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
                id="chunk-size-0x",
            ),
            pytest.param(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
                id="chunk-terminator",
            ),
            pytest.param(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", id="chunk-cut"
            ),
            pytest.param(b"HTTP/1.1 200", id="head-cut"),
            pytest.param(b"HTTP/1.1 600 OK\r\nContent-Length: 0\r\n\r\n", id="status-600"),
            pytest.param(b"HTTP/1.1 099 OK\r\nContent-Length: 0\r\n\r\n", id="status-099"),
            pytest.param(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"2\r\n{}\r\n0\r\n\r\n",
                id="length-and-chunked",
            ),
            pytest.param(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n" + ok(),
                id="unsolicited-101",
            ),
            pytest.param(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                + (b"1;" + b"e" * 60_000 + b"\r\nx\r\n") * 60,
                id="chunk-extension-flood",
            ),
            pytest.param(
                b"HTTP/1.1 200 OK\r\nX: " + b"a" * (70 << 10) + b"\r\n\r\n", id="huge-head"
            ),
        ],
    )
    async def test_malformed(self, client: AsyncioHTTPClient, answer: bytes) -> None:
        """Garbled, truncated, lax or oversized answers raise TransportError."""
        async with await serve(replying(answer, keep_open=False)) as url:
            with pytest.raises(TransportError):
                await client.post(url, [], b"{}")

    @pytest.mark.parametrize(
        "answer",
        [
            b"HTTP/1.1 2000 OK\r\nContent-Length: 15\r\n\r\n" + b'{"action":"OK"}',
            b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 15\r\n\r\n" + b'{"action":"OK"}',
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            b'f\r\n{"action":"OK"}\r\n0\r\n\r\n',
            b"HTTP/1.1 100 Continue\r\n\r\n",
        ],
        ids=["status-2000", "obs-fold", "te-gzip-chunked", "only-100"],
    )
    async def test_hostile_answer_is_an_outage(self, answer: bytes) -> None:
        """Through the Authlete introspector a hostile answer is a 503, never a pass."""
        client = AsyncioHTTPClient()
        async with await serve(replying(answer, keep_open=False)) as url:
            introspector = AuthleteIntrospector(
                client,
                AuthleteSettings(base_url=url.partition("/api/")[0], api_key="1", access_token="t"),
                breaker=None,
            )
            with pytest.raises(IntrospectionUnavailable) as info:
                await introspector.introspect("tok", request=FACTS)
        await client.aclose()
        assert (info.value.status, info.value.reason) == (503, "authlete_transport_error")

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("Authorization", "Bearer x\nX-Injected: yes"),
            ("Authorization", "Bearer x\r\nX-Injected: yes"),
            ("Authorization", "Bearer x\rX-Injected: yes"),
            ("Authorization", "Bearer \x00x"),
            ("Authorization", "Bearer x "),
            ("Authorization", "Bearer \u00e9"),
            ("X-Bad Name", "v"),
            ("X-Bad:Name", "v"),
            ("", "v"),
        ],
    )
    async def test_header_injection_refused(
        self, client: AsyncioHTTPClient, name: str, value: str
    ) -> None:
        """A header that would change the message is refused before anything is sent (no
        connection is even made); the error names the header, never its value."""
        server = await serve(replying(ok()))
        async with server as url:
            with pytest.raises(TransportHeaderError) as info:
                await client.post(url, [(name, value)], b"{}")
        assert server.connections == 0
        message = str(info.value)
        assert "Injected" not in message and "Bearer" not in message
        assert name.split(" ")[0].split(":")[0] in message

    async def test_header_injection_through_httpx(self) -> None:
        """The httpx adapter applies the same refusal."""
        sent: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            sent.append(request)
            return httpx.Response(200)

        transport = HttpxTransport(
            httpx.AsyncClient(transport=httpx.MockTransport(handler)), timeout=1
        )
        with pytest.raises(TransportHeaderError, match="Authorization"):
            await transport.post("http://x.test/", [("Authorization", "a\nX-Injected: yes")], b"")
        assert sent == []
        await transport.client.aclose()

    async def test_injected_service_token_is_an_outage(self) -> None:
        """An AUTHLETE_SERVICE_ACCESSTOKEN holding a newline injects nothing: 503, and the
        server never sees a request."""
        client = AsyncioHTTPClient()
        server = await serve(replying(ok()))
        async with server as url:
            settings = AuthleteSettings(
                base_url=url.partition("/api/")[0], api_key="1", access_token="t"
            )
            with pytest.raises(ValueError, match="access_token") as refused:
                AuthleteSettings(
                    base_url=settings.base_url, api_key="1", access_token="t\nX-Injected: yes"
                )
            assert "Injected" not in str(refused.value)
            # The settings refuse it first; the transport must hold on its own too.
            object.__setattr__(settings, "access_token", "t\nX-Injected: yes")
            introspector = AuthleteIntrospector(client, settings, breaker=None)
            with pytest.raises(IntrospectionUnavailable) as info:
                await introspector.introspect("tok", request=FACTS)
        await client.aclose()
        assert (info.value.status, info.value.reason) == (503, "authlete_transport_error")
        assert server.connections == 0
        assert "Injected" not in repr(info.value) and "Injected" not in repr(info.value.__cause__)

    async def test_closed_without_answer(self, client: AsyncioHTTPClient) -> None:
        """A new connection closed after the request, with no answer: TransportError."""

        async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(reader)

        async with Server(close) as url:
            with pytest.raises(TransportError, match="closed before a response"):
                await client.post(url, [], b"{}")

    async def test_unsendable_target(self, client: AsyncioHTTPClient) -> None:
        """A URL whose path h11 will not put on the wire sends nothing."""
        server = await serve(replying(ok()))
        async with server as url:
            with pytest.raises(TransportError, match="encoder"):
                await client.post(url + "/a b", [], b"{}")
        assert server.requests == []

    async def test_refused(self, client: AsyncioHTTPClient) -> None:
        """Nothing listening: TransportConnectError."""
        with pytest.raises(TransportConnectError):
            await client.post(f"http://127.0.0.1:{free_port()}/x", [], b"{}")

    @pytest.mark.parametrize("url", ["ftp://example/x", "http:///x", "http://h:99999/x"])
    async def test_not_http(self, client: AsyncioHTTPClient, url: str) -> None:
        """Only http and https URLs with a host and a valid port."""
        with pytest.raises(TransportConnectError):
            await client.post(url, [], b"{}")

    async def test_cancelled_exchange_closes_connection(self, client: AsyncioHTTPClient) -> None:
        """A cancellation mid-exchange leaves no half-read connection in the pool."""
        received = anyio.Event()
        never = anyio.Event()

        async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(reader)
            received.set()
            await never.wait()

        server = Server(hang)
        async with server as url:
            async with anyio.create_task_group() as tg:

                async def call() -> None:
                    await client.post(url, [], b"{}")

                tg.start_soon(call)
                await received.wait()
                tg.cancel_scope.cancel()
            never.set()
        assert all(not v for v in client._idle.values())


class TestTLS:
    async def test_https(self, tmp_path: Path) -> None:
        """https works with a certificate from a trusted CA, over one kept-alive connection."""
        ca = CA(tmp_path)
        client = AsyncioHTTPClient(ssl_context=ca.client_context())
        server = await serve(replying(ok(), ok()), ssl_context=ca.server_context(LOOPBACK))
        async with server as url:
            assert url.startswith("https://")
            assert (await client.post(url, [], b"{}")).status == 200
            assert (await client.post(url, [], b"{}")).status == 200
        await client.aclose()
        assert server.connections == 1

    async def test_untrusted_issuer(self, tmp_path: Path) -> None:
        """The default context (system trust store) refuses a certificate from our CA."""
        ca = CA(tmp_path)
        client = AsyncioHTTPClient()
        async with await serve(replying(ok()), ssl_context=ca.server_context(LOOPBACK)) as url:
            with pytest.raises(TransportConnectError):
                await client.post(url, [], b"{}")
        await client.aclose()

    @pytest.mark.parametrize(
        "names",
        [
            [x509.DNSName("authlete.test")],
            [x509.IPAddress(ipaddress.ip_address("127.0.0.2"))],
            [x509.DNSName("127.0.0.1")],
        ],
        ids=["dns-name", "other-ip", "ip-as-dns-name"],
    )
    async def test_hostname_mismatch(self, tmp_path: Path, names: list[x509.GeneralName]) -> None:
        """A trusted certificate for another name is refused: TransportConnectError."""
        ca = CA(tmp_path)
        client = AsyncioHTTPClient(ssl_context=ca.client_context())
        async with await serve(replying(ok()), ssl_context=ca.server_context(names)) as url:
            with pytest.raises(TransportConnectError):
                await client.post(url, [], b"{}")
        await client.aclose()

    async def test_default_context_built_once(self, tmp_path: Path) -> None:
        """The default TLS context is made once per client, not once per connection."""
        ca = CA(tmp_path)
        client = AsyncioHTTPClient()
        first = client._ssl_context()
        async with await serve(replying(ok()), ssl_context=ca.server_context(LOOPBACK)) as url:
            for _ in range(2):
                with pytest.raises(TransportConnectError):
                    await client.post(url, [], b"{}")
        assert client._ssl_context() is first
        await client.aclose()
