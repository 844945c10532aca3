"""Raw loopback HTTP/1.1 servers (asyncio streams, optionally TLS) that write whatever
bytes a test gives them, and a test certificate authority for loopback server certificates:
for the tests of the introspection HTTP client (tests/introspection/test_transport.py,
test_http_causes.py, test_http_proxy.py)."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

from cryptography import x509

from dpop_guard.devtools.demo._pki import PKI

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
        self.writers: list[asyncio.StreamWriter] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
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
        # Since Python 3.12, wait_closed() waits for every connection's handler; a handler
        # holding a keep-alive connection open ends once its transport is closed here.
        for writer in self.writers:
            writer.close()
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


async def serve(factory: Callable[[Server], Handler], **kwargs: object) -> Server:
    server = Server(lambda r, w: asyncio.sleep(0), **kwargs)  # type: ignore[arg-type]
    server.handler = factory(server)
    return server


class CA:
    """The test PKI's root (:mod:`dpop_guard.devtools.demo._pki`, one copy) issuing server
    certificates for the names a test asks for."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.pki = PKI.generate()
        self.path = tmp_path / "ca.pem"
        self.path.write_text(self.pki.ca.pem)

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.path))

    def server_context(self, names: list[x509.GeneralName]) -> ssl.SSLContext:
        server = self.pki.server_for(names)
        cert_path = self.tmp_path / f"server-{server.cert.serial_number}.pem"
        key_path = self.tmp_path / f"server-{server.cert.serial_number}.key"
        cert_path.write_text(server.pem)
        key_path.write_text(server.key_pem)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_path, key_path)
        return context


LOOPBACK: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
