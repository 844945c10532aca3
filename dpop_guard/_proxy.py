"""The request's public scheme, host and path prefix, from headers set by trusted proxies.

Headers from a peer that is not a trusted proxy are ignored: anyone can send them. Behind a
chain of proxies, the hop that counts is the right-most one whose address is *not* trusted
(the client as the edge proxy saw it); ``Forwarded`` (RFC 7239) wins over ``X-Forwarded-*``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_PAIR = re.compile(r'\s*([A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]+)\s*')
_HOST = re.compile(r"[A-Za-z0-9.\-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")
_PREFIX = re.compile(r"(/[A-Za-z0-9._~!$&'()*+,;=:@%\-]+)+")


def parse_networks(values: Sequence[str]) -> tuple[Network, ...]:
    """Addresses or CIDRs, e.g. ``10.0.0.0/8 127.0.0.1``.

    :raises ValueError: naming the entry that is not an address or a network.
    """
    try:
        return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())
    except ValueError as exc:
        raise ValueError(f"trusted_proxies: {exc}") from None


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str | None
    host: str | None
    prefix: str


def _trusted(address: str | None, networks: tuple[Network, ...]) -> bool:
    if not address:
        return False
    address = address.strip().strip('"')
    if address.startswith("[") and "]" in address:
        address = address[1 : address.index("]")]
    elif address.count(":") == 1:
        address = address.split(":", 1)[0]  # IPv4 with a port
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False  # "unknown", obfuscated identifiers: not trusted
    return any(ip in network for network in networks)


def _hop(addresses: list[str], networks: tuple[Network, ...]) -> int | None:
    """Index of the right-most untrusted address, or None if every hop is trusted."""
    for index in range(len(addresses) - 1, -1, -1):
        if not _trusted(addresses[index], networks):
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


def forwarded_origin(
    peer: str | None, headers: dict[bytes, list[str]], networks: tuple[Network, ...]
) -> Origin | None:
    """The public origin the edge proxy saw, or ``None`` to use the request as is."""
    if not networks or not _trusted(peer, networks):
        return None
    forwarded = headers.get(b"forwarded")
    if forwarded:
        elements = [
            dict((k.lower(), v.strip('"')) for k, v in _PAIR.findall(part))
            for part in ",".join(forwarded).split(",")
        ]
        index = _hop([e.get("for", "") for e in elements], networks)
        element = elements[index if index is not None else 0]
        return Origin(_valid_scheme(element.get("proto")), _valid_host(element.get("host")), "")
    chain = [
        v.strip() for v in ",".join(headers.get(b"x-forwarded-for", [])).split(",") if v.strip()
    ]
    index = _hop(chain, networks) if chain else None
    position = index if index is not None else 0

    def value(name: bytes) -> str | None:
        raw = [v.strip() for v in ",".join(headers.get(name, [])).split(",") if v.strip()]
        return _pick(raw, max(len(chain), 1), position) if raw else None

    prefix = (value(b"x-forwarded-prefix") or "").rstrip("/")
    if prefix and not _PREFIX.fullmatch(prefix):
        prefix = ""  # "..", "//", control characters: not a path prefix
    if prefix and any(seg in (".", "..") for seg in prefix.split("/")):
        prefix = ""
    return Origin(
        _valid_scheme(value(b"x-forwarded-proto")), _valid_host(value(b"x-forwarded-host")), prefix
    )
