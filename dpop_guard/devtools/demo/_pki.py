"""A throw-away PKI for the demo's mTLS leg and the mTLS tests, generated with
``cryptography`` (``tests/_support/pki.py`` re-exports it: one copy).

One root CA signs a server certificate (for ``127.0.0.1`` and ``localhost``) and an
intermediate CA; the root signs client ``alice`` directly, the intermediate signs client
``bob`` (so ``bob`` has a chain to present). A second, unrelated root signs ``mallory``, whom
a proxy that trusts only the first root must refuse. EC P-256 keys keep generation fast.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["PKI", "Identity", "PKIFiles"]

_NOT_BEFORE = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
_NOT_AFTER = datetime.datetime(2099, 1, 1, tzinfo=datetime.UTC)


@dataclass(frozen=True)
class Identity:
    """A certificate, its private key and the issuers a client presents after it."""

    name: str
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def chain_der(self) -> tuple[bytes, ...]:
        return tuple(c.public_bytes(serialization.Encoding.DER) for c in self.chain)

    @property
    def key_pem(self) -> str:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    @property
    def x5t_s256(self) -> str:
        """RFC 8705 ``x5t#S256``, computed here independently of the code under test."""
        digest = hashlib.sha256(self.der).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


LOOPBACK_NAMES: Final[tuple[x509.GeneralName, ...]] = (
    x509.DNSName("localhost"),
    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    subject: str,
    issuer: Identity | None,
    *,
    ca: bool,
    server: bool = False,
    chain: tuple[x509.Certificate, ...] = (),
    names: Sequence[x509.GeneralName] = LOOPBACK_NAMES,
) -> Identity:
    key = ec.generate_private_key(ec.SECP256R1())
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.cert.subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(signer_key, hashes.SHA256())
    return Identity(subject, cert, key, chain)


@dataclass(frozen=True)
class PKIFiles:
    """Where :meth:`PKI.write` put each file (PEM)."""

    ca: Path
    server_cert: Path
    server_key: Path
    server_combined: Path  # certificate + key in one file, as haproxy's ``crt`` wants
    clients: dict[str, tuple[Path, Path]] = field(default_factory=dict)  # name: (cert, key)


@dataclass(frozen=True)
class PKI:
    """The CA, the server and the clients (see the module docstring)."""

    ca: Identity
    intermediate: Identity
    server: Identity
    alice: Identity
    bob: Identity
    rogue_ca: Identity
    mallory: Identity

    @classmethod
    def generate(cls) -> PKI:
        ca = _issue("dpop_guard test root", None, ca=True)
        intermediate = _issue("dpop_guard test intermediate", ca, ca=True)
        rogue_ca = _issue("someone else's root", None, ca=True)
        return cls(
            ca=ca,
            intermediate=intermediate,
            server=_issue("localhost", ca, ca=False, server=True),
            alice=_issue("alice", ca, ca=False),
            bob=_issue("bob", intermediate, ca=False, chain=(intermediate.cert,)),
            rogue_ca=rogue_ca,
            mallory=_issue("mallory", rogue_ca, ca=False),
        )

    def server_for(self, names: Sequence[x509.GeneralName]) -> Identity:
        """A further server certificate from the root, for ``names`` (subject alternative
        names), e.g. to test a client's host name check."""
        return _issue("server", self.ca, ca=False, server=True, names=names)

    def write(self, directory: Path) -> PKIFiles:
        """Write the PEM files the proxies and the test clients load."""
        directory.mkdir(parents=True, exist_ok=True)

        def put(name: str, text: str) -> Path:
            path = directory / name
            path.write_text(text)
            return path

        files = PKIFiles(
            ca=put("ca.pem", self.ca.pem),
            server_cert=put("server.pem", self.server.pem),
            server_key=put("server.key", self.server.key_pem),
            server_combined=put("server-combined.pem", self.server.pem + self.server.key_pem),
        )
        for client in (self.alice, self.bob, self.mallory):
            chain = "".join(
                c.public_bytes(serialization.Encoding.PEM).decode() for c in client.chain
            )
            files.clients[client.name] = (
                put(f"{client.name}.pem", client.pem + chain),
                put(f"{client.name}.key", client.key_pem),
            )
        return files
