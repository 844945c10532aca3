"""A small HTTP/1.1 client for JSON POSTs to one API, and an adapter for httpx.

Why not httpx on this path: one httpx call costs about 0.7 ms of CPU on our machines
(measured: its request/response models, auth and redirect layers, and httpcore's pool),
and a miss makes two. This client does only what introspection needs: POST a JSON body
over a keep-alive pool of asyncio streams, with TLS, ``Content-Length`` or chunked
responses, and a bounded response size. It runs on asyncio only; under trio, pass an
``httpx.AsyncClient`` (it is wrapped by :class:`HttpxTransport`).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol
from urllib.parse import urlsplit

import httpx

__all__ = [
    "AsyncioHTTPClient",
    "HttpxTransport",
    "PostTransport",
    "TransportConnectError",
    "TransportError",
    "TransportTimeout",
    "as_transport",
]

MAX_RESPONSE_BYTES: Final = 1 << 20
MAX_HEADER_BYTES: Final = 64 << 10
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,8}")


class TransportError(Exception):
    """The exchange failed after the connection was made (reset, garbled, too large)."""


class TransportConnectError(TransportError):
    """No connection could be made; nothing was sent."""


class TransportTimeout(TransportError):
    """The transport's own timeout fired."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes


class PostTransport(Protocol):
    """POSTs a body and returns the status and the body; raises :class:`TransportError`."""

    async def post(self, url: str, headers: Sequence[tuple[str, str]], body: bytes) -> Response: ...


class HttpxTransport:
    """Adapts an ``httpx.AsyncClient`` (tests pass one with ``httpx.MockTransport``)."""

    def __init__(self, client: httpx.AsyncClient, timeout: float) -> None:
        self.client = client
        self.timeout = timeout

    async def post(self, url: str, headers: Sequence[tuple[str, str]], body: bytes) -> Response:
        try:
            response = await self.client.post(
                url, content=body, headers=list(headers), timeout=self.timeout
            )
        except httpx.TimeoutException as exc:
            raise TransportTimeout(type(exc).__name__) from exc
        except httpx.ConnectError as exc:
            raise TransportConnectError(type(exc).__name__) from exc
        except httpx.HTTPError as exc:
            raise TransportError(type(exc).__name__) from exc
        return Response(response.status_code, response.content)


def as_transport(client: httpx.AsyncClient | PostTransport, timeout: float) -> PostTransport:
    """``client`` itself, or an ``httpx.AsyncClient`` wrapped in :class:`HttpxTransport`."""
    return HttpxTransport(client, timeout) if isinstance(client, httpx.AsyncClient) else client


@dataclass(slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def close(self) -> None:
        self.writer.close()


@dataclass(frozen=True, slots=True)
class _Target:
    host: str
    port: int
    tls: bool
    head: bytes  # "POST /path HTTP/1.1\r\nHost: ...\r\n"


class AsyncioHTTPClient:
    """HTTP/1.1 JSON POSTs over a keep-alive pool, asyncio only.

    :param max_idle: idle connections kept per origin.
    :param ssl_context: for ``https`` URLs; defaults to the system trust store with
        certificate and host name verification.

    Timeouts are the caller's (the introspector bounds each call with ``anyio.fail_after``);
    a cancelled exchange closes its connection. A connection the server closed while idle
    is detected and the request is sent once more on a new one.
    """

    def __init__(self, *, max_idle: int = 32, ssl_context: ssl.SSLContext | None = None) -> None:
        self.max_idle = max_idle
        self._ssl = ssl_context
        self._idle: dict[tuple[str, int, bool], list[_Connection]] = {}
        self._targets: dict[str, _Target] = {}

    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise TransportConnectError("not an http(s) URL")
            tls = parts.scheme == "https"
            port = parts.port or (443 if tls else 80)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            host = parts.netloc.rpartition("@")[2]
            head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\n".encode("ascii")
            target = self._targets[url] = _Target(parts.hostname, port, tls, head)
        return target

    async def _connect(self, target: _Target) -> _Connection:
        context = None
        if target.tls:
            context = self._ssl or ssl.create_default_context()
        try:
            reader, writer = await asyncio.open_connection(
                target.host,
                target.port,
                ssl=context,
                server_hostname=target.host if target.tls else None,
                limit=MAX_HEADER_BYTES,
            )
        except (OSError, ssl.SSLError) as exc:
            raise TransportConnectError(type(exc).__name__) from exc
        return _Connection(reader, writer)

    async def post(self, url: str, headers: Sequence[tuple[str, str]], body: bytes) -> Response:
        """POST ``body``; the status and the body of the answer."""
        target = self._target(url)
        key = (target.host, target.port, target.tls)
        request = b"".join(
            (
                target.head,
                "".join(f"{name}: {value}\r\n" for name, value in headers).encode("latin-1"),
                b"Content-Length: ",
                str(len(body)).encode(),
                b"\r\n\r\n",
                body,
            )
        )
        idle = self._idle.setdefault(key, [])
        while idle:
            connection = idle.pop()
            if connection.reader.at_eof() or connection.writer.is_closing():
                connection.close()
                continue
            try:
                return await self._exchange(connection, request, idle)
            except _Stale:
                continue  # the server closed it while idle: try a fresh connection
        connection = await self._connect(target)
        try:
            return await self._exchange(connection, request, idle)
        except _Stale as exc:
            raise TransportError("connection closed before a response") from exc

    async def _exchange(
        self, connection: _Connection, request: bytes, idle: list[_Connection]
    ) -> Response:
        reusable = False
        try:
            try:
                connection.writer.write(request)
                await connection.writer.drain()
            except ConnectionError as exc:
                raise _Stale from exc
            try:
                head = await connection.reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if not exc.partial:
                    raise _Stale from exc
                raise TransportError("truncated response head") from exc
            status, length, chunked, close = _parse_head(head)
            if chunked:
                body = await _read_chunked(connection.reader)
            elif length is not None:
                if length > MAX_RESPONSE_BYTES:
                    raise TransportError("response too large")
                body = await connection.reader.readexactly(length)
            else:
                body = await connection.reader.read(MAX_RESPONSE_BYTES + 1)
                if len(body) > MAX_RESPONSE_BYTES:
                    raise TransportError("response too large")
                close = True
            reusable = not close
            return Response(status, body)
        except (
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ssl.SSLError,
            ValueError,
        ) as exc:
            raise TransportError(type(exc).__name__) from exc
        finally:
            if reusable and len(idle) < self.max_idle:
                idle.append(connection)
            else:
                connection.close()

    async def aclose(self) -> None:
        """Close every idle connection."""
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()


class _Stale(Exception):
    """A reused connection was closed by the server before it answered."""


def _parse_head(head: bytes) -> tuple[int, int | None, bool, bool]:
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise TransportError("not an HTTP/1.x response")
    length: int | None = None
    chunked = False
    close = version == "HTTP/1.0"
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise TransportError("malformed header line")
        name = name.strip().lower()
        value = value.strip()
        if name == "content-length":
            if not value.isdigit() or (length is not None and int(value) != length):
                raise TransportError("bad Content-Length")
            length = int(value)
        elif name == "transfer-encoding":
            chunked = value.lower().endswith("chunked")
        elif name == "connection":
            tokens = {t.strip().lower() for t in value.split(",")}
            close = "close" in tokens or (close and "keep-alive" not in tokens)
    if chunked:
        length = None  # RFC 9112 section 6.3: Transfer-Encoding wins
    return int(code), length, chunked, close


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line.split(b";", 1)[0].strip()
        if not _CHUNK_SIZE.fullmatch(size_text):
            raise TransportError("bad chunk size")
        size = int(size_text, 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        total += size
        if total > MAX_RESPONSE_BYTES:
            raise TransportError("response too large")
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise TransportError("bad chunk terminator")
