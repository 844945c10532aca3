"""A small HTTP/1.1 client for JSON POSTs to one API, and an adapter for httpx.

Why not httpx on this path: one httpx call costs several times the CPU of this client
(``benchmarks/transport_cpu.py`` measures both), and an introspection miss makes one or two
calls.
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
  context loads the trust store: tens of milliseconds on the event loop);
- goes through the outbound proxy the environment names (``HTTPS_PROXY``, ``HTTP_PROXY``,
  ``ALL_PROXY``, ``NO_PROXY``, read as the standard library reads them): a ``CONNECT``
  tunnel for an ``https`` URL, the absolute form for an ``http`` one;
- validates a request's head (its headers, by this module and by h11) once per URL,
  headers and body length, not once per call: introspection repeats the same head.

Every failure is a :class:`TransportError` carrying an :class:`UpstreamCause` (the one
classification of what went wrong: DNS, connect, TLS, proxy, timeout, protocol, and for an
answer its status class), which the introspectors turn into ``IntrospectionUnavailable``
(503) with the reason ``<upstream>_<cause>``: a garbled answer is never a pass.

It runs on asyncio only; under trio, pass an ``httpx.AsyncClient`` (it is wrapped by
:class:`HttpxTransport`).
"""

from __future__ import annotations

import asyncio
import base64
import enum
import ipaddress
import re
import socket
import ssl
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol
from urllib.parse import unquote, urlsplit

import h11
import httpx

__all__ = [
    "AsyncioHTTPClient",
    "HttpxTransport",
    "PostTransport",
    "Proxy",
    "Response",
    "TransportConnectError",
    "TransportError",
    "TransportHeaderError",
    "TransportTimeout",
    "UpstreamCause",
    "as_transport",
    "bypasses",
    "cause_of",
    "status_cause",
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


class UpstreamCause(enum.Enum):
    """What went wrong on the way to an upstream service: the one classification, for the
    reason (``<upstream>_<value>``, :data:`dpop_guard._reasons.Outage`), the log line and
    the start-up check. Each value is an :data:`~dpop_guard._reasons.Outage` word."""

    DNS = "dns"
    """The host name did not resolve."""
    CONNECT = "unreachable"
    """The connection was refused, reset or the host unreachable; nothing was sent."""
    TLS = "tls"
    """The TLS handshake failed (an untrusted certificate, a wrong host name, ...)."""
    PROXY = "proxy"
    """The outbound proxy could not be reached, refused the tunnel or asked for
    credentials (407), or its setting is not usable."""
    TIMEOUT = "timeout"
    """No answer in time."""
    PROTOCOL = "transport_error"
    """The exchange broke off or the answer is not HTTP/1.x as this client accepts it."""
    CREDENTIALS = "credentials_refused"
    """401 or 403: the service's credentials (API key, token, client secret) refused."""
    SERVER_ERROR = "server_error"
    """A 5xx answer."""
    HTTP_STATUS = "http_error"
    """Any other answer but 200."""
    BAD_RESPONSE = "bad_response"
    """A 200 whose body is not the JSON object expected."""


def status_cause(status: int) -> UpstreamCause | None:
    """The cause for an answer's status: ``None`` for 200."""
    if status == 200:
        return None
    if status in (401, 403):
        return UpstreamCause.CREDENTIALS
    if status == 407:
        return UpstreamCause.PROXY
    return UpstreamCause.SERVER_ERROR if status >= 500 else UpstreamCause.HTTP_STATUS


def cause_of(exc: BaseException, default: UpstreamCause) -> UpstreamCause:
    """The cause of a connection failure, found in ``exc`` or what it was raised from (an
    httpx error wraps the ``OSError``): a TLS error, a resolver error, else ``default``."""
    seen: BaseException | None = exc
    for _ in range(8):  # bounded: a chain is short, and may be a cycle
        if seen is None:
            break
        if isinstance(seen, ssl.SSLError | ssl.CertificateError):
            return UpstreamCause.TLS
        if isinstance(seen, socket.gaierror):
            return UpstreamCause.DNS
        seen = seen.__cause__ or seen.__context__
    return default


class TransportError(Exception):
    """The exchange failed (refused request, reset, garbled or oversized answer).

    :ivar cause: what went wrong, for the reason and the log line. The message never holds
        what the peer sent.
    """

    default_cause: UpstreamCause = UpstreamCause.PROTOCOL

    def __init__(self, message: str, cause: UpstreamCause | None = None) -> None:
        super().__init__(message)
        self.cause = self.default_cause if cause is None else cause


class TransportConnectError(TransportError):
    """No connection could be made; nothing was sent (to the service)."""

    default_cause = UpstreamCause.CONNECT


class TransportTimeout(TransportError):
    """The transport's own timeout fired."""

    default_cause = UpstreamCause.TIMEOUT


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
        except httpx.ProxyError as exc:
            raise TransportConnectError(type(exc).__name__, UpstreamCause.PROXY) from exc
        except httpx.ConnectError as exc:
            cause = cause_of(exc, UpstreamCause.CONNECT)
            raise TransportConnectError(type(exc).__name__, cause) from exc
        except httpx.HTTPError as exc:
            raise TransportError(type(exc).__name__, cause_of(exc, UpstreamCause.PROTOCOL)) from exc
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


def bypasses(no_proxy: str, host: str, port: int) -> bool:
    """Whether ``NO_PROXY``'s value sends ``host`` (a URL's hostname) direct.

    The value is a comma-separated list, as curl, requests and httpx read it: ``*`` (every
    host); a name, which matches itself and its subdomains (``example.com`` and
    ``.example.com`` both match ``api.example.com``, case-insensitively); an IP address or
    a CIDR block (``10.0.0.0/8``, ``::1``), which matches an IP literal host; any of them
    with ``:port``, which then matches that port only.
    """
    name = host.lower().rstrip(".")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
        address = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        address = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if entry == "*":
            return True
        if entry.startswith("[") and "]" in entry:  # [v6]:port
            entry, _, rest = entry[1:].partition("]")
            entry_port = rest[1:] if rest.startswith(":") else ""
        elif entry.count(":") == 1:
            entry, _, entry_port = entry.partition(":")
        else:
            entry_port = ""
        if not entry or (entry_port and entry_port != str(port)):
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        entry = entry.lstrip(".").rstrip(".")
        if entry and (name == entry or name.endswith("." + entry)):
            return True
    return False


@dataclass(frozen=True, slots=True)
class Proxy:
    """An outbound HTTP proxy (``http://[user:password@]host[:port]``).

    :ivar label: ``host:port``, for messages: the proxy's credentials are never shown.
    """

    host: str
    port: int
    authorization: str | None = field(repr=False)  # a credential: never in a repr

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, value: str) -> Proxy:
        """Read a proxy variable's value; a bare ``host:port`` is an ``http`` proxy.

        :raises ValueError: another scheme (``https``, ``socks5``, ...), no host, a bad
            port. The message never echoes the value (it may hold a password).
        """
        parts = urlsplit(value if "://" in value else f"http://{value}")
        if parts.scheme.lower() != "http":
            raise ValueError(
                f"a proxy URL must start with http:// (a {parts.scheme or '?'}:// proxy is "
                "not supported by the default client; pass an httpx.AsyncClient)"
            )
        try:
            port = parts.port or 80
        except ValueError:
            raise ValueError("the proxy URL has an invalid port") from None
        if not parts.hostname:
            raise ValueError("the proxy URL names no host")
        authorization = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            authorization = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        return cls(parts.hostname, port, authorization)


@dataclass(frozen=True, slots=True)
class _Target:
    host: str
    port: int
    tls: bool
    path: str
    host_header: str
    proxy: Proxy | None
    """The proxy for this URL; ``None``: a direct connection."""
    request_target: str
    """The path (direct, or tunnelled through a proxy), or the absolute URL (``http``
    through a proxy)."""

    @property
    def pool_key(self) -> tuple[str, int, bool, Proxy | None]:
        return (self.host, self.port, self.tls, self.proxy)


_PROXY_SETTINGS: Final = {"http": "HTTP_PROXY", "https": "HTTPS_PROXY", "all": "ALL_PROXY"}
_HEAD_CACHE_SIZE: Final = 256


class AsyncioHTTPClient:
    """HTTP/1.1 POSTs over a keep-alive pool, asyncio only, framed by h11.

    :param max_idle: idle connections kept per origin.
    :param ssl_context: for ``https`` URLs; defaults to the system trust store with
        certificate and host name verification, built once on first use.
    :param proxies: outbound proxies by scheme (``http``, ``https``, ``all``) and the
        bypass list (``no``), as :func:`urllib.request.getproxies` gives them; by default
        read from the environment once, here: ``https_proxy`` / ``HTTPS_PROXY`` for
        ``https`` URLs, ``http_proxy`` / ``HTTP_PROXY`` for ``http`` ones,
        ``all_proxy`` / ``ALL_PROXY`` for either when the scheme's own is not set,
        ``no_proxy`` / ``NO_PROXY`` to go direct (see :func:`bypasses`); the
        lower-case name wins, and ``HTTP_PROXY`` is ignored when ``REQUEST_METHOD`` is set
        (CGI, "httpoxy"). Pass ``{}`` to go direct whatever the environment says. Only
        ``http://`` proxies are supported; another scheme fails each call with the cause
        ``proxy`` (and the message says to pass an ``httpx.AsyncClient``).

    Timeouts are the caller's (the introspector bounds each call with ``anyio.fail_after``);
    a cancelled exchange closes its connection. A pooled connection that the server closed
    while idle (nothing at all came back) is replaced and the request sent once more on a
    new connection; any other failure is not retried here.

    For example::

        client = AsyncioHTTPClient()
        response = await client.post(url, [("Content-Type", "application/json")], b"{}")
        await client.aclose()
    """

    def __init__(
        self,
        *,
        max_idle: int = 32,
        ssl_context: ssl.SSLContext | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> None:
        self.max_idle = max_idle
        self._ssl = ssl_context
        self.proxies = dict(urllib.request.getproxies() if proxies is None else proxies)
        self._idle: dict[tuple[str, int, bool, Proxy | None], list[_Connection]] = {}
        self._targets: dict[str, _Target] = {}
        # (url, headers, body length) -> the h11 request head: checked once, then reused
        # (h11 events are immutable).
        self._heads: dict[tuple[str, tuple[tuple[str, str], ...], int], h11.Request] = {}

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def proxy_for(self, url: str) -> Proxy | None:
        """The proxy a call to ``url`` goes through, or ``None`` (direct).

        :raises TransportError: cause ``proxy``: the proxy setting is not usable.
        """
        return self._target(url).proxy

    def _proxy(self, scheme: str, host: str, port: int) -> Proxy | None:
        proxies = self.proxies
        name = scheme if proxies.get(scheme) else "all"
        value = proxies.get(name)
        if not value or bypasses(proxies.get("no", ""), host, port):
            return None
        try:
            return Proxy.parse(value)
        except ValueError as exc:
            message = f"{_PROXY_SETTINGS[name]}: {exc}"
            raise TransportConnectError(message, UpstreamCause.PROXY) from None

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
            proxy = self._proxy(parts.scheme, parts.hostname, port)
            absolute = proxy is not None and not tls
            request_target = f"http://{host}{path}" if absolute else path
            target = _Target(parts.hostname, port, tls, path, host, proxy, request_target)
            self._targets[url] = target
        return target

    def _head(
        self, url: str, target: _Target, headers: Sequence[tuple[str, str]], length: int
    ) -> h11.Request:
        """The request head, checked by :func:`check_headers` and by h11 once per
        ``(url, headers, length)`` (introspection repeats them: fixed headers, bodies of a
        few lengths) and kept, up to :data:`_HEAD_CACHE_SIZE` heads."""
        fixed = tuple(headers)
        key = (url, fixed, length)
        request = self._heads.get(key)
        if request is not None:
            return request
        check_headers(fixed)
        proxy = target.proxy
        extra = (
            (("Proxy-Authorization", proxy.authorization),)
            if proxy is not None and proxy.authorization and not target.tls
            else ()
        )
        try:
            request = h11.Request(
                method="POST",
                target=target.request_target,
                headers=[
                    ("Host", target.host_header),
                    *fixed,
                    *extra,
                    ("Content-Length", str(length)),
                ],
            )
        except h11.LocalProtocolError:
            # A path h11 will not send (check_headers has passed the headers); its message
            # may quote the offending text, so it is not chained.
            raise TransportError("request refused by the HTTP encoder") from None
        if len(self._heads) >= _HEAD_CACHE_SIZE:
            self._heads.clear()  # bounded: many distinct heads are not introspection's shape
        self._heads[key] = request
        return request

    async def _connect(self, target: _Target) -> _Connection:
        context = self._ssl_context() if target.tls else None
        proxy = target.proxy
        if proxy is not None:
            return await self._connect_through(proxy, target, context)
        try:
            reader, writer = await asyncio.open_connection(
                target.host,
                target.port,
                ssl=context,
                server_hostname=target.host if target.tls else None,
                limit=_READ_SIZE,
            )
        except (OSError, ssl.SSLError, ssl.CertificateError) as exc:
            cause = cause_of(exc, UpstreamCause.CONNECT)
            raise TransportConnectError(type(exc).__name__, cause) from exc
        connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_BYTES)
        return _Connection(reader, writer, connection)

    async def _connect_through(
        self, proxy: Proxy, target: _Target, context: ssl.SSLContext | None
    ) -> _Connection:
        """A connection to ``proxy``; for an ``https`` target, a ``CONNECT`` tunnel to it
        with TLS to the target inside. Every failure before the tunnel is up has the cause
        ``proxy``; a TLS failure inside it, ``tls``."""
        try:
            reader, writer = await asyncio.open_connection(proxy.host, proxy.port, limit=_READ_SIZE)
        except OSError as exc:
            message = f"proxy {proxy.label}: {type(exc).__name__}"
            raise TransportConnectError(message, UpstreamCause.PROXY) from exc
        connection = _Connection(reader, writer, h11.Connection(h11.CLIENT))
        try:
            if context is not None:
                await _tunnel(connection, proxy, target)
                await writer.start_tls(context, server_hostname=target.host)
        except TransportError:
            connection.close()
            raise
        except (ssl.SSLError, ssl.CertificateError) as exc:
            connection.close()
            raise TransportConnectError(type(exc).__name__, UpstreamCause.TLS) from exc
        except (OSError, h11.ProtocolError) as exc:
            connection.close()
            message = f"proxy {proxy.label}: {type(exc).__name__}"
            raise TransportConnectError(message, UpstreamCause.PROXY) from exc
        except BaseException:  # cancelled (the caller's timeout): no half-open tunnel left
            connection.close()
            raise
        connection.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_BYTES)
        return connection

    async def post(self, url: str, headers: Sequence[tuple[str, str]], body: bytes) -> Response:
        """POST ``body``; the status and the body of the answer.

        :raises TransportHeaderError: a header cannot be sent; nothing was sent.
        :raises TransportConnectError: no connection could be made.
        :raises TransportError: the exchange failed or the answer is malformed or too large.
        """
        target = self._target(url)
        request = self._head(url, target, headers, len(body))
        idle = self._idle.get(target.pool_key)
        if idle is None:
            idle = self._idle[target.pool_key] = []
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
            data = conn.send(request) or b""
            data += conn.send(h11.Data(data=body)) or b""
            data += conn.send(_END) or b""
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
        except ssl.SSLError as exc:
            raise TransportError(type(exc).__name__, UpstreamCause.TLS) from exc
        except ConnectionError as exc:
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


_END: Final = h11.EndOfMessage()


async def _tunnel(connection: _Connection, proxy: Proxy, target: _Target) -> None:
    """Ask ``proxy`` for a ``CONNECT`` tunnel to the target (RFC 9110 section 9.3.6).

    :raises TransportConnectError: cause ``proxy``: the proxy refused (any status but 2xx,
        407 included) or closed the connection; the message names the status only.
    """
    authority = target.host_header
    if ":" not in authority.rpartition("]")[2]:  # no port in the URL: say it
        authority = f"{authority}:{target.port}"
    headers = [("Host", authority)]
    if proxy.authorization:
        headers.append(("Proxy-Authorization", proxy.authorization))
    conn = connection.h11
    connection.writer.write(
        (conn.send(h11.Request(method="CONNECT", target=authority, headers=headers)) or b"")
        + (conn.send(_END) or b"")
    )
    await connection.writer.drain()
    raw = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await connection.reader.read(_READ_SIZE)
            raw += len(data)
            if raw > MAX_HEADER_BYTES:
                message = f"proxy {proxy.label}: answer too large"
                raise TransportConnectError(message, UpstreamCause.PROXY)
            conn.receive_data(data)
            continue
        if isinstance(event, h11.InformationalResponse):
            continue
        if isinstance(event, h11.Response) and 200 <= event.status_code < 300:
            if conn.trailing_data[0]:
                raise TransportConnectError(
                    f"proxy {proxy.label}: bytes after the tunnel's answer", UpstreamCause.PROXY
                )
            return
        status = f"HTTP {event.status_code}" if isinstance(event, h11.Response) else "closed"
        raise TransportConnectError(
            f"proxy {proxy.label} refused the tunnel: {status}", UpstreamCause.PROXY
        )


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
