"""The lean asyncio HTTP client, against scripted raw servers (and TLS)."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dpop_guard.introspection.transport import (
    AsyncioHTTPClient,
    TransportConnectError,
    TransportError,
)
from tests._support.redis_server import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


class Server:
    def __init__(self, handler: Handler, ssl_context: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.ssl = ssl_context
        self.connections = 0
        self.requests: list[bytes] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl)
        port = self.server.sockets[0].getsockname()[1]
        return f"{'https' if self.ssl else 'http'}://127.0.0.1:{port}/api/1/auth/introspection"

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()


def replying(*answers: bytes, keep_open: bool = True) -> Callable[[Server], Handler]:
    def make(server: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for answer in answers:
                server.requests.append(await read_request(reader))
                writer.write(answer)
                await writer.drain()
            if keep_open:
                await reader.read()  # until the client closes

        return handler

    return make


def ok(body: bytes = b'{"action":"OK"}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


@pytest.fixture(name="client")
async def _client() -> AsyncIterator[AsyncioHTTPClient]:
    client = AsyncioHTTPClient()
    yield client
    await client.aclose()


async def serve(factory: Callable[[Server], Handler], **kwargs: object) -> Server:
    server = Server(lambda r, w: asyncio.sleep(0), **kwargs)  # type: ignore[arg-type]
    server.handler = factory(server)
    return server


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
        """A connection the server dropped while idle is replaced transparently."""
        server = await serve(replying(ok(), keep_open=False))
        async with server as url:
            await client.post(url, [], b"{}")
            await anyio.sleep(0.05)
            assert (await client.post(url, [], b"{}")).status == 200
        assert server.connections == 2

    async def test_read_to_eof(self, client: AsyncioHTTPClient) -> None:
        """An HTTP/1.0 answer without a length ends at EOF."""
        server = await serve(replying(b"HTTP/1.0 500 Oops\r\n\r\nbody", keep_open=False))
        async with server as url:
            response = await client.post(url, [], b"{}")
        assert (response.status, response.body) == (500, b"body")

    @pytest.mark.parametrize(
        "answer",
        [
            b"garbage\r\n\r\n",
            b"HTTP/1.1 2x0 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
            b"HTTP/1.1 200",
        ],
    )
    async def test_malformed(self, client: AsyncioHTTPClient, answer: bytes) -> None:
        """Garbled, truncated or oversized answers raise TransportError."""
        async with await serve(replying(answer, keep_open=False)) as url:
            with pytest.raises(TransportError):
                await client.post(url, [], b"{}")

    async def test_refused(self, client: AsyncioHTTPClient) -> None:
        """Nothing listening: TransportConnectError."""
        with pytest.raises(TransportConnectError):
            await client.post(f"http://127.0.0.1:{free_port()}/x", [], b"{}")

    async def test_not_http(self, client: AsyncioHTTPClient) -> None:
        """Only http and https URLs."""
        with pytest.raises(TransportConnectError):
            await client.post("ftp://example/x", [], b"{}")

    async def test_cancelled_exchange_closes_connection(self, client: AsyncioHTTPClient) -> None:
        """A timeout mid-exchange leaves no half-read connection in the pool."""

        async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(reader)
            await anyio.sleep(10)

        server = Server(hang)
        async with server as url:
            with pytest.raises(TimeoutError), anyio.fail_after(0.2):
                await client.post(url, [], b"{}")
        assert client._idle == {} or all(not v for v in client._idle.values())


def _self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cafile=str(cert_path))
    return server, client


class TestTLS:
    async def test_https(self, tmp_path: Path) -> None:
        """https works with a trusted certificate and is refused with an untrusted one."""
        server_ctx, client_ctx = _self_signed(tmp_path)
        trusting = AsyncioHTTPClient(ssl_context=client_ctx)
        default = AsyncioHTTPClient()
        async with await serve(replying(ok(), ok()), ssl_context=server_ctx) as url:
            assert url.startswith("https://")
            assert (await trusting.post(url, [], b"{}")).status == 200
            with pytest.raises(TransportConnectError):
                await default.post(url, [], b"{}")
        await trusting.aclose()
        await default.aclose()
