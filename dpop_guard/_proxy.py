"""The request's public scheme, host and path prefix, from headers set by trusted proxies.

Headers from a peer that is not a trusted proxy are ignored: anyone can send them. From a
trusted peer, only the headers named by ``GuardSettings.proxy_headers`` are read:

- ``forwarded``: RFC 7239 ``Forwarded``;
- ``x-forwarded-for``, ``x-forwarded-proto``, ``x-forwarded-host``, ``x-forwarded-prefix``:
  each of those headers;
- ``x-forwarded``: shorthand for all four ``X-Forwarded-*`` headers.

The others are ignored even from a trusted peer, because a proxy passes the headers it
does not set through from the client untouched: nginx configured for ``X-Forwarded-For``
and ``-Proto`` forwards a client's own ``Forwarded``, ``X-Forwarded-Host`` and
``X-Forwarded-Prefix``; Envoy sets ``X-Forwarded-For`` and ``-Proto`` only. So name exactly
what the proxies set (or overwrite, or strip); ``x-forwarded`` only for proxies that handle
all four. Naming ``forwarded`` with ``X-Forwarded-*`` headers is allowed (``Forwarded`` then
wins when present) only for proxies that set or strip both families.

Behind a chain of proxies, the hop that counts is the right-most one whose address is *not*
trusted (the client as the edge proxy saw it).

The parsers run in linear time and every size is capped *before* parsing: more than
:data:`MAX_PROXY_HEADER_BYTES` bytes in one header (all its lines together), more than
:data:`MAX_PROXY_ELEMENTS` hops, more than :data:`MAX_FORWARDED_PAIRS` parameters in one
``Forwarded`` element, or a ``Forwarded`` value that does not parse (an unterminated quoted
string, a repeated parameter, a stray character) refuse the request with ``400
invalid_request`` (fail closed: a header we cannot read completely must not be read in
part, since the part we would skip may be the hop that counts). A well-formed value that is
not a usable scheme, host or prefix is ignored, and the request's own value is used.

``Forwarded`` grammar (RFC 7239 section 4, with RFC 9110 quoted-string and quoted-pair):
``;`` and ``,`` inside a quoted string do not split, so ``host="a,b"`` is one value. As a
leniency, optional whitespace is accepted around ``;`` and ``,`` (not around ``=``), and an
unquoted value may also hold ``:``, ``/``, ``[`` and ``]`` (proxies commonly send
``for=192.0.2.1:4711`` unquoted); it may never hold a delimiter, a quote or a backslash.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from .errors import InvalidRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
ProxyHeaders = Literal[
    "forwarded",
    "x-forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-prefix",
]

X_FORWARDED: Final = (
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-prefix",
)
"""What ``x-forwarded`` stands for: all four ``X-Forwarded-*`` headers."""
PROXY_HEADER_CHOICES: Final = ("forwarded", "x-forwarded", *X_FORWARDED)
MAX_PROXY_HEADER_BYTES: Final = 4096
"""Bytes in one proxy header, all its lines joined: a 32-hop chain needs about 2 KB."""
MAX_PROXY_ELEMENTS: Final = 32
"""Hops in ``Forwarded`` or entries in one ``X-Forwarded-*`` list."""
MAX_FORWARDED_PAIRS: Final = 16
"""Parameters in one ``Forwarded`` element (RFC 7239 defines four)."""

# Every quantifier below is possessive (``*+``, ``++``, ``?+``): no backtracking, so each
# match costs at most the characters it looks at once, and the scan is linear overall.
_SEPARATORS = re.compile(r"[ \t,;]++")
_TCHAR = r"!#$%&'*+\-.^_`|~0-9A-Za-z"
_PAIR = re.compile(
    rf"([{_TCHAR}]++)="
    r"(?:([\x21\x23-\x2b\x2d-\x3a\x3c\x3e-\x5b\x5d-\x7e]++)"  # visible ASCII but " , ; = \
    r'|"((?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]++|\\[\t \x21-\x7e\x80-\xff])*+)")'
)
_HOST = re.compile(r"[A-Za-z0-9.\-]++(?::[0-9]{1,5}+)?+|\[[0-9A-Fa-f:.]++\](?::[0-9]{1,5}+)?+")
_PREFIX = re.compile(r"(?:/[A-Za-z0-9._~!$&'()*+,;=:@%\-]++)++")


def parse_networks(values: Sequence[str]) -> tuple[Network, ...]:
    """Addresses or CIDRs, e.g. ``10.0.0.0/8 127.0.0.1``.

    :raises ValueError: naming the entry that is not an address or a network.
    """
    try:
        return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())
    except ValueError as exc:
        raise ValueError(f"trusted_proxies: {exc}") from None


def parse_proxy_headers(values: Sequence[str], *, trusted_proxies: bool) -> tuple[str, ...]:
    """Validate ``proxy_headers``: names from :data:`PROXY_HEADER_CHOICES`, no repeats, and
    at least one whenever trusted proxies are set (which headers to believe is a fact about
    the deployment; guessing it is how a client's own ``Forwarded`` got believed).

    :raises ValueError: naming the field and the bad entry.
    """
    names = tuple(v.strip().lower() for v in values if v.strip())
    for name in names:
        if name not in PROXY_HEADER_CHOICES:
            raise ValueError(
                f"proxy_headers: {name!r} is not one of {', '.join(PROXY_HEADER_CHOICES)}"
            )
    if len(set(_x_forwarded(names))) != len(_x_forwarded(names)) or names.count("forwarded") > 1:
        raise ValueError("proxy_headers: an entry is repeated")
    if trusted_proxies and not names:
        raise ValueError(
            "proxy_headers must name the headers the trusted proxies set "
            f"({', '.join(PROXY_HEADER_CHOICES)}) when trusted_proxies is set"
        )
    return names


def _x_forwarded(names: Collection[str]) -> list[str]:
    """The ``X-Forwarded-*`` headers named, ``x-forwarded`` expanded to all four."""
    found: list[str] = []
    for name in names:
        if name == "x-forwarded":
            found.extend(X_FORWARDED)
        elif name != "forwarded":
            found.append(name)
    return found


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str | None
    host: str | None
    prefix: str


def _malformed(header: str) -> InvalidRequest:
    return InvalidRequest("proxy_header_malformed", f"The {header} header is malformed.")


def _too_large(header: str) -> InvalidRequest:
    return InvalidRequest("proxy_header_too_large", f"The {header} header is too large.")


def _joined(lines: Sequence[str], header: str) -> str:
    """All lines of one header as one list (RFC 9110 section 5.3), size-capped first."""
    total = len(lines) - 1
    for line in lines:
        total += len(line)
        if total > MAX_PROXY_HEADER_BYTES:
            raise _too_large(header)
    return ",".join(lines)


def _scan(text: str) -> Iterator[str | re.Match[str]]:
    """The tokens of a ``Forwarded`` value in order: ``","`` for a run of separators that
    holds a comma (an element ends), ``";"`` for one that holds only semicolons, or a
    pair's match.

    Each token consumes at least one character and every regex is possessive, so the scan
    makes at most ``len(text)`` turns (in practice at most two per pair, and the pair caps
    end it early) and looks at each character a bounded number of times.

    :raises InvalidRequest: ``proxy_header_malformed`` at the first character that does
        not fit the grammar.
    """
    after_pair = False
    pos, end = 0, len(text)
    for _ in range(end + 1):  # each turn consumes a character, so this always suffices
        separators = _SEPARATORS.match(text, pos)
        if separators is not None:
            pos = separators.end()
            run = separators[0]
            if "," in run or ";" in run:
                yield "," if "," in run else ";"
                after_pair = False
        if pos == end:
            return
        match = None if after_pair else _PAIR.match(text, pos)
        if match is None:
            raise _malformed("Forwarded")
        yield match
        pos = match.end()
        after_pair = True


def parse_forwarded(lines: Sequence[str]) -> list[dict[str, str]]:
    """The elements of a ``Forwarded`` header (all its lines), parameter names lower-cased,
    quoted values unescaped; empty elements are dropped (RFC 9110 section 5.6.1).

    :raises InvalidRequest: ``proxy_header_too_large`` over a cap (the byte cap is checked
        before any parsing), ``proxy_header_malformed`` for anything that does not parse.
    """
    elements: list[dict[str, str]] = []
    element: dict[str, str] = {}
    for item in _scan(_joined(lines, "Forwarded")):
        if isinstance(item, str):
            if item == "," and element:
                if len(elements) == MAX_PROXY_ELEMENTS:
                    raise _too_large("Forwarded")
                elements.append(element)
                element = {}
            continue
        name = item[1].lower()
        if name in element:
            raise _malformed("Forwarded")  # RFC 7239 section 4: at most once per element
        if len(element) == MAX_FORWARDED_PAIRS:
            raise _too_large("Forwarded")
        bare, quoted = item[2], item[3]
        element[name] = bare if bare is not None else _unquote(quoted)
    if element:
        if len(elements) == MAX_PROXY_ELEMENTS:
            raise _too_large("Forwarded")
        elements.append(element)
    return elements


def _unquote(quoted: str) -> str:
    """The text of a quoted string's body: each quoted pair is the character it quotes.

    Three linear replacements, left to right like the pairs themselves: ``\\\\`` first
    (to NUL, which the grammar keeps out of a quoted string), then every remaining
    backslash quotes the next character, then NUL back to a backslash.
    """
    if "\\" not in quoted:
        return quoted
    return quoted.replace("\\\\", "\x00").replace("\\", "").replace("\x00", "\\")


def _list(lines: Sequence[str], header: str) -> list[str]:
    """A comma-separated ``X-Forwarded-*`` list, size- and count-capped, blanks dropped."""
    values = [v.strip() for v in _joined(lines, header).split(",")]
    values = [v for v in values if v]
    if len(values) > MAX_PROXY_ELEMENTS:
        raise _too_large(header)
    return values


def is_trusted_proxy(address: str | None, networks: tuple[Network, ...]) -> bool:
    """Whether ``address`` (a peer's, or a hop's from a proxy header: ``1.2.3.4``,
    ``1.2.3.4:80``, ``[::1]:80``, quoted or not) is in one of the trusted ``networks``.

    The one home of this rule, for the proxy headers and for the mTLS certificate headers
    (:func:`peer_is_trusted`). An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``, what a
    dual-stack listener reports for an IPv4 peer) is matched as the IPv4 address it is (and
    as itself, for a network written in that form). Anything that is not an address
    (``unknown``, an obfuscated identifier, a Unix socket's empty name) is not trusted.
    """
    if not address or not networks:
        return False
    address = address.strip().strip('"')
    if address.startswith("[") and "]" in address:
        address = address[1 : address.index("]")]
    elif address.count(":") == 1:
        address = address.split(":", 1)[0]  # IPv4 with a port
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return any(ip in network or (mapped is not None and mapped in network) for network in networks)


def peer_is_trusted(scope: Mapping[str, Any], networks: tuple[Network, ...]) -> bool:
    """Whether the immediate peer of ``scope`` (ASGI ``client[0]``) is a trusted proxy
    (:func:`is_trusted_proxy`). A peer without an address (a Unix socket) is not."""
    client = scope.get("client")
    if not client:  # None, or an empty pair from a server that breaks the ASGI spec
        return False
    return is_trusted_proxy(str(client[0]), networks)


def _hop(addresses: list[str], networks: tuple[Network, ...]) -> int | None:
    """Index of the right-most untrusted address, or None if every hop is trusted."""
    for index in range(len(addresses) - 1, -1, -1):
        if not is_trusted_proxy(addresses[index], networks):
            return index
    return None


def _pick(values: list[str], count: int, index: int) -> str | None:
    if len(values) == count:
        return values[index]
    if len(values) == 1:
        return values[0]
    return None  # lists that do not line up with the chain: ignore them


def _valid_scheme(value: str | None) -> str | None:
    value = (value or "").strip().lower()
    return value if value in ("http", "https") else None


def _valid_host(value: str | None) -> str | None:
    value = (value or "").strip()
    return value if value and _HOST.fullmatch(value) else None


def _valid_prefix(value: str | None) -> str:
    prefix = (value or "").rstrip("/")
    if prefix and not _PREFIX.fullmatch(prefix):
        return ""  # "//", control characters: not a path prefix
    if any(segment in (".", "..") for segment in prefix.split("/")):
        return ""
    return prefix


def forwarded_origin(
    peer: str | None,
    headers: dict[bytes, list[str]],
    networks: tuple[Network, ...],
    *,
    proxy_headers: Collection[str],
) -> Origin | None:
    """The public origin the edge proxy saw, or ``None`` to use the request as is.

    :param peer: the address of the peer that sent the request (ASGI ``client[0]``).
    :param headers: the proxy headers of the request, lower-case names, values as sent.
    :param networks: the trusted proxies.
    :param proxy_headers: ``GuardSettings.proxy_headers``: which headers the trusted
        proxies set (see :data:`PROXY_HEADER_CHOICES`); the others are ignored.
    :raises InvalidRequest: a header to be read is over a size cap or malformed.
    """
    if not networks or not proxy_headers or not is_trusted_proxy(peer, networks):
        return None
    named = _x_forwarded(proxy_headers)
    if "forwarded" in proxy_headers:
        lines = headers.get(b"forwarded")
        elements = parse_forwarded(lines) if lines else []
        if elements or not named:
            if not elements:
                return Origin(None, None, "")
            index = _hop([e.get("for", "") for e in elements], networks)
            element = elements[index if index is not None else 0]
            return Origin(_valid_scheme(element.get("proto")), _valid_host(element.get("host")), "")
    lists = {
        name: _list(headers.get(name.encode(), []), name.title()) if name in named else []
        for name in X_FORWARDED
    }
    chain = lists["x-forwarded-for"]
    index = _hop(chain, networks) if chain else None
    position = index if index is not None else 0

    def value(name: str) -> str | None:
        raw = lists[name]
        return _pick(raw, max(len(chain), 1), position) if raw else None

    return Origin(
        _valid_scheme(value("x-forwarded-proto")),
        _valid_host(value("x-forwarded-host")),
        _valid_prefix(value("x-forwarded-prefix")),
    )
