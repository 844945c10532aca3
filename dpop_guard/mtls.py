"""Where the client's TLS certificate comes from, for certificate-bound tokens (RFC 8705).

A token bound by mutual TLS carries ``cnf.x5t#S256``: the base64url (unpadded) SHA-256 of
the DER of the certificate the client presented in the TLS handshake (RFC 8705 section
3.1). The TLS connection usually ends at a proxy, so the certificate reaches the app in a
header the proxy sets. A :class:`ClientCertificateSource` reads it from one place:

==============  ===================================  =========================================
``asgi-tls``    :class:`AsgiTlsCertificateSource`    ``scope["extensions"]["tls"]`` (no proxy)
``rfc9440``     :class:`Rfc9440CertificateSource`    ``Client-Cert`` / ``Client-Cert-Chain``
``nginx``       :class:`NginxCertificateSource`      ``$ssl_client_escaped_cert`` in a header
``envoy-xfcc``  :class:`EnvoyXfccCertificateSource`  ``x-forwarded-client-cert``
``aws-alb``     :class:`AwsAlbCertificateSource`     ``X-Amzn-Mtls-Clientcert-Leaf``
==============  ===================================  =========================================

What is trusted, and why:

- A header is believed only when the immediate peer (``scope["client"]``) is a trusted proxy;
  from anyone else it is ignored, as if absent, since anyone can send it. The caller decides
  that (:func:`peer_is_trusted`) and passes ``trusted_peer``. ``scope["client"]`` must be the
  TCP peer: run uvicorn with ``--no-proxy-headers`` (``proxy_headers=False``), or its
  ``--forwarded-allow-ips`` rewrites the client address from ``X-Forwarded-For``.
- Only the one header the deployment names is read. The proxy must strip inbound copies of
  it (the example configurations in ``examples/nginx`` and ``examples/haproxy`` do).
- A header that is present but malformed raises :class:`~dpop_guard.errors.InvalidRequest`
  (reason ``client_cert_malformed``), never "no certificate": only a broken or misconfigured
  proxy sends one, and a certificate-bound request must not degrade silently.
- Sizes are bounded before any decoding (header bytes, chain length), parsing is linear
  (no regular expression runs over a header), and every certificate is parsed by
  ``cryptography``, which refuses trailing bytes. PEM input must hold exactly the expected
  ``CERTIFICATE`` blocks and nothing else.

Deliberately not done here: chain validation against a trust store (the proxy did it, or, for
RFC 8705 section 3 self-signed certificates, nothing needs to), revocation checks, and any
decision about the token: this module only says which certificate the client presented.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, runtime_checkable
from urllib.parse import unquote

from cryptography import x509

from ._proxy import peer_is_trusted
from .errors import InvalidRequest

__all__ = [
    "DEFAULT_MAX_CHAIN",
    "DEFAULT_MAX_HEADER_BYTES",
    "MAX_CERTIFICATE_BYTES",
    "MAX_XFCC_ELEMENTS",
    "SOURCES",
    "AsgiTlsCertificateSource",
    "AwsAlbCertificateSource",
    "ClientCertificate",
    "ClientCertificateSource",
    "EnvoyXfccCertificateSource",
    "NginxCertificateSource",
    "Rfc9440CertificateSource",
    "certificate_source_from_env",
    "parse_sf_binary",
    "parse_sf_binary_list",
    "parse_xfcc",
    "peer_is_trusted",
]

#: Bytes of certificate header (all lines of it together) read at most. A P-256 certificate
#: is about 0.5 KB of DER, an RSA-4096 one about 1.5 KB; URL-encoded PEM adds about 60 %.
DEFAULT_MAX_HEADER_BYTES: Final = 32 * 1024
#: Certificates after the leaf accepted at most (RFC 8705 clients present short chains).
DEFAULT_MAX_CHAIN: Final = 4
#: DER bytes of one certificate accepted at most.
MAX_CERTIFICATE_BYTES: Final = 16 * 1024

MALFORMED: Final = "client_cert_malformed"
UNVERIFIED: Final = "client_cert_unverified"
_DESCRIPTION: Final = "The client certificate could not be read."

_PEM_BEGIN: Final = "-----BEGIN CERTIFICATE-----"
_PEM_END: Final = "-----END CERTIFICATE-----"
_B64: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
_PEM_SPACE: Final = frozenset(" \t\r\n")
_TCHAR: Final = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")
_HEX: Final = frozenset("0123456789abcdefABCDEF")


def _malformed(detail: str) -> InvalidRequest:
    # ``detail`` is for the log (via the exception's args); the client sees the description.
    error = InvalidRequest(MALFORMED, _DESCRIPTION)
    error.add_note(detail)
    return error


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """The certificate a client presented, and the issuers it sent after it.

    :param der: the leaf (end-entity) certificate, DER.
    :param chain: the certificates the client sent after the leaf, DER, in the order sent
        (each should sign the one before; nothing here checks that). Empty when the source
        carries no chain.

    ``thumbprint`` is RFC 8705's ``x5t#S256`` of the leaf, computed from ``der``: compare it
    with the token's ``cnf.x5t#S256`` or Authlete's ``certificateThumbprint``.
    """

    # Kept out of repr: a log line needs the thumbprint, not kilobytes of DER.
    der: bytes = field(repr=False)
    chain: tuple[bytes, ...] = field(default=(), repr=False)
    thumbprint: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "chain", tuple(self.chain))
        digest = hashlib.sha256(self.der).digest()
        object.__setattr__(
            self, "thumbprint", base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        )

    @classmethod
    def from_der(cls, der: bytes, chain: Sequence[bytes] = ()) -> ClientCertificate:
        """Parse ``der`` and every ``chain`` entry as X.509 certificates.

        :raises InvalidRequest: ``client_cert_malformed`` if one is not exactly one DER
            certificate, is too large, or the chain is longer than :data:`DEFAULT_MAX_CHAIN`.
        """
        if len(chain) > DEFAULT_MAX_CHAIN:
            raise _malformed("certificate chain too long")
        for item in (der, *chain):
            _check_der(item)
        return cls(der, tuple(chain))

    @classmethod
    def from_pem(cls, pem: str, chain: Sequence[str] = ()) -> ClientCertificate:
        """Parse ``pem`` (exactly one ``CERTIFICATE`` block) and each ``chain`` entry (one
        block each): what Authlete's ``clientCertificate`` / ``clientCertificatePath`` carry.

        :raises InvalidRequest: ``client_cert_malformed`` for anything else, text outside
            the block included, or a chain longer than :data:`DEFAULT_MAX_CHAIN`.
        """
        if len(chain) > DEFAULT_MAX_CHAIN:
            raise _malformed("certificate chain too long")
        ders = [_pem_certificates(text, limit=1)[0] for text in (pem, *chain)]
        return _leaf_and_chain(ders)

    def pem(self) -> str:
        """The leaf as PEM: Authlete's ``clientCertificate``."""
        return ssl.DER_cert_to_PEM_cert(self.der)

    def chain_pems(self) -> tuple[str, ...]:
        """The chain as PEM strings: Authlete's ``clientCertificatePath``."""
        return tuple(ssl.DER_cert_to_PEM_cert(item) for item in self.chain)


@runtime_checkable
class ClientCertificateSource(Protocol):
    """Finds the client certificate of a request.

    ``name`` is the configuration name (``"nginx"``, ...), for logs and ``check-config``.
    ``requires_trusted_proxy`` is true for every header source: a deployment that configures
    one without trusted proxies will never see a certificate, which is worth a warning.
    """

    @property
    def name(self) -> str:
        """The configuration name of this source."""
        ...

    @property
    def requires_trusted_proxy(self) -> bool:
        """Whether certificates come from a header that only a trusted proxy may set."""
        ...

    def certificate(
        self, scope: Mapping[str, Any], *, trusted_peer: bool
    ) -> ClientCertificate | None:
        """The certificate the client presented, or ``None`` if it presented none.

        :param scope: the ASGI connection scope (``http`` or ``websocket``).
        :param trusted_peer: whether the immediate peer is a trusted proxy
            (:func:`peer_is_trusted`). Header sources return ``None`` when it is false,
            whatever the request carries.
        :raises InvalidRequest: ``client_cert_malformed`` when the configured place holds
            something that is not a well-formed certificate (or chain) within the bounds.
        """
        ...


# -- shared parsing ------------------------------------------------------------------------


def _check_der(der: bytes) -> x509.Certificate:
    if not der or len(der) > MAX_CERTIFICATE_BYTES:
        raise _malformed("certificate empty or too large")
    try:
        # cryptography parses strict DER and refuses bytes after the certificate.
        return x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise _malformed("not a DER certificate") from exc


def _b64decode(text: str) -> bytes:
    """Standard base64, padding optional (RFC 8941 section 4.2.7 asks parsers to accept
    both), every other character refused."""
    if not text or not _B64.issuperset(text):
        raise _malformed("not base64")
    stripped = text.rstrip("=")
    if "=" in stripped or len(text) - len(stripped) > 2:
        raise _malformed("misplaced base64 padding")
    try:
        return base64.b64decode(stripped + "=" * (-len(stripped) % 4), validate=True)
    except binascii.Error as exc:
        raise _malformed("not base64") from exc


def _pem_certificates(text: str, *, limit: int) -> list[bytes]:
    """The DER of each ``CERTIFICATE`` block of ``text``, which holds nothing else but
    whitespace between blocks. At most ``limit`` blocks."""
    found: list[bytes] = []
    position = 0
    length = len(text)
    while True:
        begin = text.find("-----BEGIN ", position)
        if not _PEM_SPACE.issuperset(text[position : length if begin < 0 else begin]):
            raise _malformed("text outside PEM blocks")
        if begin < 0:
            break
        if not text.startswith(_PEM_BEGIN, begin):
            raise _malformed("PEM block that is not a certificate")
        end = text.find(_PEM_END, begin)
        if end < 0:
            raise _malformed("unterminated PEM block")
        if len(found) == limit:
            raise _malformed("too many certificates")
        body = text[begin + len(_PEM_BEGIN) : end]
        if "-" in body:
            raise _malformed("nested PEM markers")
        found.append(_b64decode("".join(body.split())))
        position = end + len(_PEM_END)
    if not found:
        raise _malformed("no PEM certificate")
    return found


def _url_pem(value: str, *, limit: int) -> list[bytes]:
    """URL-encoded PEM (nginx ``$ssl_client_escaped_cert``, Envoy, ALB): ``+`` stays ``+``."""
    try:
        text = unquote(value, encoding="ascii", errors="strict")
    except UnicodeDecodeError as exc:
        raise _malformed("URL-encoded bytes that are not ASCII") from exc
    return _pem_certificates(text, limit=limit)


def _header(scope: Mapping[str, Any], name: bytes, max_bytes: int, *, combine: bool) -> str | None:
    """The value of header ``name`` (lower case), bounded in size.

    Several lines of a list-valued header are joined with ``,`` (RFC 9110 section 5.3);
    several lines of a single-valued one are malformed: a proxy appended instead of replacing.
    """
    values: list[bytes] = []
    total = 0
    for key, value in scope.get("headers") or ():
        if key == name:
            total += len(value) + 1
            if total > max_bytes:
                raise _malformed("certificate header too large")
            values.append(value)
    if not values:
        return None
    if len(values) > 1 and not combine:
        raise _malformed("certificate header repeated")
    return ",".join(v.decode("latin-1") for v in values)


def _leaf_and_chain(ders: list[bytes]) -> ClientCertificate:
    """Leaf first; every caller has bounded the count already."""
    for der in ders:
        _check_der(der)
    return ClientCertificate(ders[0], tuple(ders[1:]))


def _header_name(value: str) -> bytes:
    name = value.strip().lower()
    if not name or len(name) > 64 or not _TCHAR.issuperset(name):
        raise ValueError(f"not an HTTP header name: {value!r}")
    return name.encode("ascii")


# -- the sources ---------------------------------------------------------------------------


class AsgiTlsCertificateSource:
    """The ASGI TLS extension: ``scope["extensions"]["tls"]["client_cert_chain"]``.

    PEM strings, leaf first, as the ASGI TLS extension specifies; an empty iterable means no
    certificate. A non-empty ``client_cert_error`` (the server let a connection through whose
    certificate failed verification) raises ``client_cert_unverified``. The server's own TLS
    stack is the source, so ``trusted_peer`` does not matter.
    """

    name = "asgi-tls"
    requires_trusted_proxy = False

    def __init__(self, *, max_chain: int = DEFAULT_MAX_CHAIN) -> None:
        self.max_chain = max_chain

    def certificate(
        self, scope: Mapping[str, Any], *, trusted_peer: bool
    ) -> ClientCertificate | None:
        tls = (scope.get("extensions") or {}).get("tls")
        if not isinstance(tls, Mapping):
            return None
        if tls.get("client_cert_error"):
            raise InvalidRequest(UNVERIFIED, "The client certificate was not verified.")
        chain = tls.get("client_cert_chain")
        if chain is None:
            return None
        if isinstance(chain, str | bytes) or not isinstance(chain, Iterable):
            raise _malformed("client_cert_chain is not an iterable of PEM strings")
        ders: list[bytes] = []
        for index, pem in enumerate(chain):
            if index > self.max_chain:
                raise _malformed("certificate chain too long")
            if not isinstance(pem, str) or len(pem) > 4 * MAX_CERTIFICATE_BYTES:
                raise _malformed("client_cert_chain entry is not a PEM string")
            ders.extend(_pem_certificates(pem, limit=1))
        return _leaf_and_chain(ders) if ders else None


class Rfc9440CertificateSource:
    """RFC 9440: ``Client-Cert: :<base64 DER>:`` and ``Client-Cert-Chain`` (a list of them).

    Both are RFC 8941 structured fields: an Item holding a Byte Sequence, and a List of
    them. Parameters on the items are refused (RFC 9440 defines none and no proxy sends
    them). ``Client-Cert-Chain`` without ``Client-Cert`` is malformed (RFC 9440 section 2.3).
    """

    name = "rfc9440"
    requires_trusted_proxy = True

    def __init__(
        self,
        *,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        max_chain: int = DEFAULT_MAX_CHAIN,
    ) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_chain = max_chain

    def certificate(
        self, scope: Mapping[str, Any], *, trusted_peer: bool
    ) -> ClientCertificate | None:
        if not trusted_peer:
            return None
        leaf = _header(scope, b"client-cert", self.max_header_bytes, combine=False)
        chain = _header(scope, b"client-cert-chain", self.max_header_bytes, combine=True)
        if leaf is None:
            if chain is not None:
                raise _malformed("Client-Cert-Chain without Client-Cert")
            return None
        ders = [parse_sf_binary(leaf)]
        if chain is not None:
            ders.extend(parse_sf_binary_list(chain, limit=self.max_chain))
        return _leaf_and_chain(ders)


def parse_sf_binary(value: str) -> bytes:
    """An RFC 8941 Item that is a Byte Sequence without parameters: ``:<base64>:``.

    :raises InvalidRequest: ``client_cert_malformed`` for anything else.
    """
    text = value.strip(" ")  # RFC 8941 section 4.2: leading and trailing SP are discarded
    if len(text) < 2 or text[0] != ":" or text[-1] != ":" or ":" in text[1:-1]:
        raise _malformed("not a structured-field byte sequence")
    return _b64decode(text[1:-1])


def parse_sf_binary_list(value: str, *, limit: int) -> list[bytes]:
    """An RFC 8941 List of Byte Sequences (``:a:, :b:``); empty is an empty list.

    :raises InvalidRequest: ``client_cert_malformed`` for anything else, or more than
        ``limit`` members.
    """
    if not value.strip(" \t"):
        return []
    members = value.split(",")
    if len(members) > limit:
        raise _malformed("certificate chain too long")
    # RFC 8941 section 4.2.1: OWS (SP and HTAB) around each member.
    return [parse_sf_binary(member.strip(" \t")) for member in members]


class _UrlPemHeaderSource:
    """A header holding one URL-encoded PEM certificate (nginx, AWS ALB)."""

    name = ""
    requires_trusted_proxy = True
    header: bytes

    def __init__(self, header: str, *, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES) -> None:
        self.header = _header_name(header)
        self.max_header_bytes = max_header_bytes

    def certificate(
        self, scope: Mapping[str, Any], *, trusted_peer: bool
    ) -> ClientCertificate | None:
        if not trusted_peer:
            return None
        value = _header(scope, self.header, self.max_header_bytes, combine=False)
        if value is None:
            return None
        # nginx sends no header when the client sent no certificate; some proxies send an
        # empty value (or "-") for the same thing.
        if value.strip() in ("", "-"):
            return None
        return _leaf_and_chain(_url_pem(value.strip(), limit=1))


class NginxCertificateSource(_UrlPemHeaderSource):
    """nginx ``proxy_set_header <header> $ssl_client_escaped_cert;`` (URL-encoded PEM).

    ``$ssl_client_escaped_cert`` is the leaf alone. ``$ssl_client_cert`` (deprecated, PEM with
    folded lines) is not accepted. The header name is whatever the nginx configuration uses.
    """

    name = "nginx"


class AwsAlbCertificateSource(_UrlPemHeaderSource):
    """AWS ALB mutual TLS in verify mode: ``X-Amzn-Mtls-Clientcert-Leaf`` (URL-encoded PEM,
    ``+``, ``=`` and ``/`` left as they are).

    Passthrough mode (``X-Amzn-Mtls-Clientcert``, the whole chain, unverified by ALB) is not
    offered: there ALB checks nothing, and this module does not validate chains.
    """

    name = "aws-alb"

    def __init__(self, *, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES) -> None:
        super().__init__("x-amzn-mtls-clientcert-leaf", max_header_bytes=max_header_bytes)


class EnvoyXfccCertificateSource:
    """Envoy's ``x-forwarded-client-cert`` (XFCC).

    Elements are separated by ``,``, their ``key=value`` pairs by ``;``, and a value may be
    double-quoted (``\\"`` inside). The **last** element is used: the one the Envoy that is
    our immediate (trusted) peer appended for the TLS connection it terminated; elements
    before it come from earlier hops, or from the client where an edge does not sanitize.
    Configure the edge Envoy with ``forward_client_cert_details: SANITIZE_SET`` (and any inner
    hop with ``FORWARD_ONLY``), with ``set_current_client_cert_details: {cert: true}`` and
    ``chain: true`` if wanted; then the header holds exactly one element.

    From that element: ``Cert`` (URL-encoded PEM, the leaf) is required; ``Chain``
    (URL-encoded PEM, the whole chain, leaf first), if present, must start with ``Cert``;
    ``Hash`` (hex SHA-256 of the leaf's DER), if present, must match. An element without
    ``Cert`` is malformed: the client presented a certificate we cannot see.
    """

    name = "envoy-xfcc"
    requires_trusted_proxy = True

    def __init__(
        self,
        *,
        max_header_bytes: int = 4 * DEFAULT_MAX_HEADER_BYTES,
        max_chain: int = DEFAULT_MAX_CHAIN,
    ) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_chain = max_chain

    def certificate(
        self, scope: Mapping[str, Any], *, trusted_peer: bool
    ) -> ClientCertificate | None:
        if not trusted_peer:
            return None
        value = _header(scope, b"x-forwarded-client-cert", self.max_header_bytes, combine=True)
        if value is None:
            return None
        element = parse_xfcc(value)[-1]
        cert = element.get("cert")
        if not cert:
            raise _malformed("XFCC element without Cert")
        leaf = _url_pem(cert, limit=1)[0]
        ders = [leaf]
        chain = element.get("chain")
        if chain:
            full = _url_pem(chain, limit=self.max_chain + 1)
            if full[0] != leaf:
                raise _malformed("XFCC Chain does not start with Cert")
            ders = full
        digest = element.get("hash")
        if digest is not None:
            if len(digest) != 64 or not _HEX.issuperset(digest):
                raise _malformed("XFCC Hash is not hex SHA-256")
            if bytes.fromhex(digest) != hashlib.sha256(leaf).digest():
                raise _malformed("XFCC Hash does not match Cert")
        return _leaf_and_chain(ders)


#: Elements of one XFCC header read at most (each proxy hop appends one).
MAX_XFCC_ELEMENTS: Final = 16


def parse_xfcc(value: str) -> list[dict[str, str]]:
    """The elements of an XFCC header, each a dict with lower-case keys, in order.

    One pass over the characters. Keys are tokens; values are bare (no ``,;="``) or quoted.
    A repeated key within an element, an empty element, or an unterminated quote is
    malformed; so are more than :data:`MAX_XFCC_ELEMENTS` elements.

    :raises InvalidRequest: ``client_cert_malformed``.
    """
    elements: list[dict[str, str]] = []
    current: dict[str, str] = {}
    index = 0
    length = len(value)

    def finish_pair(key: str, val: str) -> None:
        if not key or not _TCHAR.issuperset(key) or key in current:
            raise _malformed("bad XFCC key")
        current[key] = val

    while True:
        # key
        start = index
        while index < length and value[index] not in "=,;":
            index += 1
        key = value[start:index].strip(" \t").lower()
        if index >= length or value[index] != "=":
            raise _malformed("XFCC pair without '='")
        index += 1
        while index < length and value[index] in " \t":
            index += 1
        # value
        if index < length and value[index] == '"':
            index += 1
            chars: list[str] = []
            # Jump between backslashes and the closing quote with str.find (a Cert value is
            # kilobytes). ``quote`` is recomputed only once passed, so each part of the
            # value is searched once: linear even for a value full of escapes.
            quote = -1
            while True:
                if quote < index:
                    quote = value.find('"', index)
                    if quote < 0:
                        raise _malformed("unterminated XFCC quoted value")
                backslash = value.find("\\", index, quote)
                if backslash < 0:
                    chars.append(value[index:quote])
                    index = quote + 1
                    break
                # backslash < quote, so the escaped character exists (it may be the quote).
                chars.append(value[index:backslash])
                chars.append(value[backslash + 1])
                index = backslash + 2
            val = "".join(chars)
            while index < length and value[index] in " \t":
                index += 1
        else:
            start = index
            while index < length and value[index] not in ",;":
                if value[index] in '="':
                    raise _malformed("unquoted XFCC value with a special character")
                index += 1
            val = value[start:index].strip(" \t")
        finish_pair(key, val)
        if index >= length:
            elements.append(current)
            return elements
        separator = value[index]
        index += 1
        if separator == ",":
            elements.append(current)
            current = {}
            if len(elements) >= MAX_XFCC_ELEMENTS:
                raise _malformed("too many XFCC elements")
        elif separator != ";":
            raise _malformed("bad XFCC separator")


# -- configuration -------------------------------------------------------------------------

SOURCES: Final = ("asgi-tls", "rfc9440", "nginx", "envoy-xfcc", "aws-alb")
_PREFIX: Final = "DPOP_GUARD_"


def _env_value(environ: Mapping[str, str], name: str) -> str | None:
    from ._env import EnvReader  # the one reader: one control-character rule

    return EnvReader(environ, _PREFIX).text(name)


def certificate_source_from_env(environ: Mapping[str, str]) -> ClientCertificateSource | None:
    """The source ``DPOP_GUARD_CLIENT_CERT_SOURCE`` names, or ``None`` when it is unset.

    ``DPOP_GUARD_CLIENT_CERT_SOURCE`` is one of ``asgi-tls``, ``rfc9440``, ``nginx``,
    ``envoy-xfcc``, ``aws-alb``, exactly. ``DPOP_GUARD_CLIENT_CERT_HEADER`` names nginx's
    header (required for ``nginx``, refused for the others, whose header is fixed).

    >>> certificate_source_from_env({"DPOP_GUARD_CLIENT_CERT_SOURCE": "nginx",
    ...     "DPOP_GUARD_CLIENT_CERT_HEADER": "X-Client-Cert"}).name
    'nginx'

    :raises ValueError: naming the variable, for an unknown source, a missing or needless
        header name, or a header name that is not an HTTP token.
    """
    kind = _env_value(environ, "CLIENT_CERT_SOURCE")
    header = _env_value(environ, "CLIENT_CERT_HEADER")
    if kind is None:
        if header is not None:
            raise ValueError(
                f"{_PREFIX}CLIENT_CERT_HEADER is set but {_PREFIX}CLIENT_CERT_SOURCE is not"
            )
        return None
    if kind not in SOURCES:
        raise ValueError(
            f"{_PREFIX}CLIENT_CERT_SOURCE: {kind!r} is not one of {', '.join(SOURCES)}"
        )
    if kind == "nginx":
        if header is None:
            raise ValueError(f"{_PREFIX}CLIENT_CERT_HEADER is required with nginx")
        try:
            return NginxCertificateSource(header)
        except ValueError as exc:
            raise ValueError(f"{_PREFIX}CLIENT_CERT_HEADER: {exc}") from None
    if header is not None:
        raise ValueError(f"{_PREFIX}CLIENT_CERT_HEADER applies only to nginx, not to {kind}")
    if kind == "asgi-tls":
        return AsgiTlsCertificateSource()
    if kind == "rfc9440":
        return Rfc9440CertificateSource()
    if kind == "envoy-xfcc":
        return EnvoyXfccCertificateSource()
    return AwsAlbCertificateSource()
