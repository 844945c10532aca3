"""A small HTTP/1.1 client for JSON POSTs to one API, and an adapter for httpx.

Why not httpx on this path: one httpx call costs several times the CPU of this client
(``benchmarks/transport_cpu.py`` measures both), and an introspection miss makes two calls.
This client does only what introspection needs: POST a body over a keep-alive pool of
asyncio streams, with TLS and a bounded response size.

The framing is h11's, not ours: h11 (sans-IO, already installed with httpx) parses the
status line strictly, refuses conflicting or unsupported ``Content-Length`` /
``Transfer-Encoding``, reads bodies to their real end (``Content-Length``, chunked, or
end of stream) and says when a connection may be reused. On top of it this module:

- refuses a request header whose name is not a token or whose value holds a control
  character (CR, LF, NUL, ...) before anything is sent, naming the header, never the value;
- skips ``1xx`` answers (``100 Continue``), at most :data:`MAX_INFORMATIONAL` of them;
- refuses obsolete line folding, which h11 would silently unfold;
- accepts only ``HTTP/1.0`` and ``HTTP/1.1`` answers;
- caps the head (:data:`MAX_HEADER_BYTES`), the body (:data:`MAX_RESPONSE_BYTES`) and the
  raw bytes read per answer;
- builds its TLS context once per client, not once per connection (creating a default
  context loads the trust store: tens of milliseconds on the event loop).

Every failure is a :class:`TransportError`, which the introspectors turn into
``IntrospectionUnavailable`` (503): a garbled answer is never a pass.

It runs on asyncio only; under trio, pass an ``httpx.AsyncClient`` (it is wrapped by
:class:`HttpxTransport`).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol
from urllib.parse import urlsplit

import h11
import httpx

__all__ = [
    "AsyncioHTTPClient",
    "HttpxTransport",
    "PostTransport",
    "Response",
    "TransportConnectError",
    "TransportError",
    "TransportHeaderError",
    "TransportTimeout",
    "as_transport",
]

MAX_RESPONSE_BYTES: Final = 1 << 20
MAX_HEADER_BYTES: Final = 64 << 10
MAX_INFORMATIONAL: Final = 8
"""``1xx`` answers skipped before one answer; more is a :class:`TransportError`."""
_MAX_RAW_BYTES: Final = 2 * MAX_RESPONSE_BYTES + (MAX_INFORMATIONAL + 1) * MAX_HEADER_BYTES
"""Raw bytes read for one answer: bounds chunk-framing overhead (tiny chunks with long
extensions) as well as the body."""
_READ_SIZE: Final = 64 << 10

# RFC 9110 section 5.1 token; section 5.5 field value restricted to visible ASCII, SP and
# HTAB (h11 encodes header values as ASCII), with no leading or trailing whitespace.
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]++")
_FIELD_VALUE = re.compile(r"(?:[\x21-\x7e](?:[\t ]*+[\x21-\x7e])*+)?+")
# An obs-fold line (RFC 9112 section 5.2) starts with SP or HTAB.
_OBS_FOLD = re.compile(rb"\n[ \t]")
_HTTP_VERSIONS: Final = frozenset({b"1.0", b"1.1"})


class TransportError(Exception):
    """The exchange failed (refused request, reset, garbled or oversized answer)."""


class TransportConnectError(TransportError):
    """No connection could be made; nothing was sent."""


class TransportTimeout(TransportError):
    """The transport's own timeout fired."""


class TransportHeaderError(TransportError):
    """A request header is not sendable (a bad name, or CR/LF/control characters in the
    value); nothing was sent. The message names the header, never its value.

    :ivar header: the header's name (as given, truncated to 64 characters).
    """

    def __init__(self, header: str) -> None:
        self.header = header[:64]
        super().__init__(f"request header {self.header!r} has an illegal name or value")


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes


class PostTransport(Protocol):
    """POSTs a body and returns the status and the body; raises :class:`TransportError`."""

    async def post(self, url: str, headers: Sequence[tuple[str, str]], body: bytes) -> Response: ...


def check_headers(headers: Sequence[tuple[str, str]]) -> None:
    """Refuse headers that would change the message's framing.

    :raises TransportHeaderError: naming the first bad header (never its value).
    """
    for name, value in headers:
        if not _FIELD_NAME.fullmatch(name) or not _FIELD_VALUE.fullmatch(value):
            raise TransportHeaderError(name if _FIELD_NAME.fullmatch(name) else repr(name))


class HttpxTransport:
    """Adapts an ``httpx.AsyncClient`` (tests pass one with ``httpx.MockTransport``)."""

    def __init__(self, client: httpx.AsyncClient, timeout: float) -> None:
        self.client = client
        self.timeout = timeout

    async def post(self, url: str, headers: Sequence[tuple[str, str]], body: bytes) -> Response:
        """POST ``body`` through httpx.

        :raises TransportError: or a subclass; see :class:`AsyncioHTTPClient.post`.
        """
        check_headers(headers)
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
    h11: h11.Connection

    def close(self) -> None:
        self.writer.close()


@dataclass(frozen=True, slots=True)
class _Target:
    host: str
    port: int
    tls: bool
    path: str
    host_header: str


class AsyncioHTTPClient:
    """HTTP/1.1 POSTs over a keep-alive pool, asyncio only, framed by h11.

    :param max_idle: idle connections kept per origin.
    :param ssl_context: for ``https`` URLs; defaults to the system trust store with
        certificate and host name verification, built once on first use.

    Timeouts are the caller's (the introspector bounds each call with ``anyio.fail_after``);
    a cancelled exchange closes its connection. A pooled connection that the server closed
    while idle (nothing at all came back) is replaced and the request sent once more on a
    new connection; any other failure is not retried here.

    For example::

        client = AsyncioHTTPClient()
        response = await client.post(url, [("Content-Type", "application/json")], b"{}")
        await client.aclose()
    """

    def __init__(self, *, max_idle: int = 32, ssl_context: ssl.SSLContext | None = None) -> None:
        self.max_idle = max_idle
        self._ssl = ssl_context
        self._idle: dict[tuple[str, int, bool], list[_Connection]] = {}
        self._targets: dict[str, _Target] = {}

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise TransportConnectError("not an http(s) URL")
            tls = parts.scheme == "https"
            try:
                port = parts.port or (443 if tls else 80)
            except ValueError as exc:
                raise TransportConnectError("bad port in URL") from exc
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            host = parts.netloc.rpartition("@")[2]
            check_headers((("Host", host),))
            target = self._targets[url] = _Target(parts.hostname, port, tls, path, host)
        return target

    async def _connect(self, target: _Target) -> _Connection:
        context = self._ssl_context() if target.tls else None
        try:
            reader, writer = await asyncio.open_connection(
                target.host,
                target.port,
                ssl=context,
                server_hostname=target.host if target.tls else None,
                limit=_READ_SIZE,
            )
        except (OSError, ssl.SSLError, ssl.CertificateError) as exc:
            raise TransportConnectError(type(exc).__name__) from exc
        connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_BYTES)
        return _Connection(reader, writer, connection)

    async def post(self, url: str, headers: Sequence[tuple[str, str]], body: bytes) -> Response:
        """POST ``body``; the status and the body of the answer.

        :raises TransportHeaderError: a header cannot be sent; nothing was sent.
        :raises TransportConnectError: no connection could be made.
        :raises TransportError: the exchange failed or the answer is malformed or too large.
        """
        target = self._target(url)
        check_headers(headers)
        try:
            request = h11.Request(
                method="POST",
                target=target.path,
                headers=[
                    ("Host", target.host_header),
                    *headers,
                    ("Content-Length", str(len(body))),
                ],
            )
        except h11.LocalProtocolError:
            # A path h11 will not send (check_headers has passed the headers); its message
            # may quote the offending text, so it is not chained.
            raise TransportError("request refused by the HTTP encoder") from None
        key = (target.host, target.port, target.tls)
        idle = self._idle.setdefault(key, [])
        while idle:  # bounded: each turn pops one connection
            connection = idle.pop()
            if connection.reader.at_eof() or connection.writer.is_closing():
                connection.close()
                continue
            try:
                return await self._exchange(connection, request, body, idle)
            except _Stale:
                continue  # the server closed it while idle: try the next, then a new one
        connection = await self._connect(target)
        try:
            return await self._exchange(connection, request, body, idle)
        except _Stale as exc:
            raise TransportError("connection closed before a response") from exc

    async def _exchange(
        self, connection: _Connection, request: h11.Request, body: bytes, idle: list[_Connection]
    ) -> Response:
        conn = connection.h11
        reusable = False
        try:
            data = b"".join(
                conn.send(event) or b""
                for event in (request, h11.Data(data=body), h11.EndOfMessage())
            )
            try:
                connection.writer.write(data)
                await connection.writer.drain()
            except ConnectionError as exc:
                raise _Stale from exc
            response = await _read_response(connection)
            reusable = (
                conn.our_state is h11.DONE
                and conn.their_state is h11.DONE
                and not conn.trailing_data[0]
            )
            if reusable:
                conn.start_next_cycle()
            return response
        except h11.RemoteProtocolError as exc:
            raise TransportError(f"malformed response: {exc}") from exc
        except (ConnectionError, ssl.SSLError) as exc:
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
    """A reused connection was closed by the server before any byte of an answer."""


async def _read_response(connection: _Connection) -> Response:
    """Read one final answer, skipping ``1xx`` ones; the loop ends on the answer's end,
    EOF, or a cap (every turn consumes received bytes or an event)."""
    conn = connection.h11
    status: int | None = None
    parts: list[bytes] = []
    size = 0
    raw = 0
    informational = 0
    head = bytearray()  # bytes received since the last head, to look for obs-fold
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await connection.reader.read(_READ_SIZE)
            except ConnectionError as exc:
                if raw == 0:
                    raise _Stale from exc
                raise
            if not data and raw == 0:
                raise _Stale
            raw += len(data)
            if raw > _MAX_RAW_BYTES:
                raise TransportError("response too large")
            if status is None:
                head += data
            conn.receive_data(data)
            continue
        if isinstance(event, h11.InformationalResponse | h11.Response):
            _check_head(event, head, conn)
            if isinstance(event, h11.InformationalResponse):
                informational += 1
                if informational > MAX_INFORMATIONAL:
                    raise TransportError("too many 1xx responses")
                continue
            status = event.status_code
            if status > 599:
                raise TransportError("not an HTTP status code")  # RFC 9110 section 15
            length = _framing(event)
            if length is not None and length > MAX_RESPONSE_BYTES:
                raise TransportError("response too large")
        elif isinstance(event, h11.Data):
            size += len(event.data)
            if size > MAX_RESPONSE_BYTES:
                raise TransportError("response too large")
            parts.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            assert status is not None  # h11 sends a Response before the body ends
            return Response(status, b"".join(parts))
        else:  # ConnectionClosed (or PAUSED) before the end of the answer
            raise TransportError("connection closed mid-response")


def _check_head(
    event: h11.InformationalResponse | h11.Response, head: bytearray, conn: h11.Connection
) -> None:
    """Refuse what h11 tolerates: another HTTP version, an oversized head that arrived in
    one piece, and obs-fold, which h11 unfolds."""
    if event.http_version not in _HTTP_VERSIONS:
        raise TransportError("not an HTTP/1.0 or HTTP/1.1 response")
    end = len(head) - len(conn.trailing_data[0])
    # h11 bounds only a head that is still incomplete; one that arrived whole is bounded here.
    if end > MAX_HEADER_BYTES:
        raise TransportError("response head too large")
    if _OBS_FOLD.search(head, 0, end):
        raise TransportError("obsolete line folding in the response head")
    del head[:end]  # what follows belongs to the next head or the body


def _framing(event: h11.Response) -> int | None:
    """The ``Content-Length``, or ``None``; refuses a response that also has
    ``Transfer-Encoding`` (RFC 9112 section 6.3: "ought to be handled as an error", a sign of
    response splitting), which h11 would frame by the ``Transfer-Encoding``."""
    length: int | None = None
    chunked = False
    for name, value in event.headers:
        if name == b"content-length":
            length = int(value)  # h11 validated it as digits, and any repeats as equal
        elif name == b"transfer-encoding":
            chunked = True
    if chunked and length is not None:
        raise TransportError("both Content-Length and Transfer-Encoding")
    return length
