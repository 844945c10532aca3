"""Client certificates through real TLS-terminating proxies (Debian's nginx and HAProxy).

The chain under test: an httpx client presenting a certificate over TLS -> the proxy,
running the operator example configuration -> a tiny ASGI app under uvicorn on loopback,
which reports what its :class:`~dpop_guard.mtls.ClientCertificateSource` extracted. The
trusted proxy network is ``127.0.0.1/32``; a client that talks to the app directly binds
``127.0.0.2``, an untrusted loopback address.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from dpop_guard.errors import InvalidRequest
from dpop_guard.mtls import (
    ClientCertificateSource,
    NginxCertificateSource,
    Rfc9440CertificateSource,
    peer_is_trusted,
)

from ._support.pki import PKI, PKIFiles
from ._support.tls_proxies import (
    HAPROXY_TEMPLATE,
    NGINX_TEMPLATE,
    DirectPeerServer,
    ProxyProcess,
    Verify,
    haproxy,
    nginx,
)

pytestmark = pytest.mark.e2e

TRUSTED = (ipaddress.ip_network("127.0.0.1/32"),)
UNTRUSTED_CLIENT = "127.0.0.2"


@dataclass
class EchoApp:
    """Answers each request with what ``source`` made of it, and remembers the answers."""

    source: ClientCertificateSource
    seen: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        trusted = peer_is_trusted(scope, TRUSTED)
        try:
            cert = self.source.certificate(scope, trusted_peer=trusted)
        except InvalidRequest as exc:
            status, body = 400, {"reason": str(exc.reason), "trusted_peer": trusted}
        else:
            status = 200
            body = {
                "thumbprint": cert.thumbprint if cert else None,
                "chain": len(cert.chain) if cert else 0,
                "trusted_peer": trusted,
            }
        self.seen.append(body)
        payload = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": payload})


@dataclass
class Deployment:
    """A proxy in front of an :class:`EchoApp`, and how to forge that proxy's header."""

    name: str
    proxy: ProxyProcess
    app: EchoApp
    upstream: DirectPeerServer
    header: str
    forge: Any  # (DER) -> header value


@pytest.fixture(scope="module", name="pki")
def _pki() -> PKI:
    return PKI.generate()


@pytest.fixture(scope="module", name="files")
def _files(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> PKIFiles:
    return pki.write(tmp_path_factory.mktemp("pki"))


def _pem(der: bytes) -> str:
    return ssl.DER_cert_to_PEM_cert(der)


def _deploy(
    name: str, files: PKIFiles, tmp_path_factory: pytest.TempPathFactory, verify: Verify
) -> Iterator[Deployment]:
    directory = tmp_path_factory.mktemp(f"{name}-{verify}")
    if name == "nginx":
        app = EchoApp(NginxCertificateSource("X-Client-Cert"))
        header = "X-Client-Cert"

        def forge(der: bytes) -> str:
            return quote(_pem(der), safe="")

        start = nginx
    else:
        app = EchoApp(Rfc9440CertificateSource())
        header = "Client-Cert"

        def forge(der: bytes) -> str:
            return ":" + base64.b64encode(der).decode() + ":"

        start = haproxy
    with (
        DirectPeerServer(app) as upstream,
        start(directory, files, upstream.address, verify=verify) as proxy,
    ):
        yield Deployment(name, proxy, app, upstream, header, forge)


@pytest.fixture(scope="module", name="deployment", params=["nginx", "haproxy"])
def _deployment(
    request: pytest.FixtureRequest, files: PKIFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """The proxy as the operator example configures it: certificates required."""
    yield from _deploy(request.param, files, tmp_path_factory, "required")


@pytest.fixture(scope="module", name="optional", params=["nginx", "haproxy"])
def _optional(
    request: pytest.FixtureRequest, files: PKIFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """The proxy with certificates optional (routes that also accept DPoP)."""
    yield from _deploy(request.param, files, tmp_path_factory, "optional")


def tls_client(files: PKIFiles, identity: str | None) -> httpx.Client:
    """The client side, as in the README: an SSLContext that trusts the server's CA and
    presents the client's certificate (and chain) and key."""
    context = ssl.create_default_context(cafile=str(files.ca))
    if identity is not None:
        certfile, keyfile = files.clients[identity]
        context.load_cert_chain(certfile=str(certfile), keyfile=str(keyfile))
    return httpx.Client(verify=context, timeout=10)


def direct_client(local_address: str) -> httpx.Client:
    """Plain HTTP straight to the app, from ``local_address``."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=local_address), timeout=10)


class TestThroughTheProxy:
    @pytest.mark.parametrize("identity", ["alice", "bob"])
    def test_presented_certificate_reaches_the_app(
        self, deployment: Deployment, files: PKIFiles, pki: PKI, identity: str
    ) -> None:
        """The certificate of the TLS handshake arrives; its x5t#S256 is the leaf's."""
        with tls_client(files, identity) as client:
            response = client.get(deployment.proxy.url + "/resource")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["thumbprint"] == getattr(pki, identity).x5t_s256
        assert body["trusted_peer"] is True

    def test_two_clients_get_their_own_thumbprints(
        self, deployment: Deployment, files: PKIFiles, pki: PKI
    ) -> None:
        """Certificates are per connection: alice's never leaks into bob's requests."""
        with tls_client(files, "alice") as alice, tls_client(files, "bob") as bob:
            first = alice.get(deployment.proxy.url + "/").json()["thumbprint"]
            second = bob.get(deployment.proxy.url + "/").json()["thumbprint"]
            third = alice.get(deployment.proxy.url + "/").json()["thumbprint"]
        assert (first, second, third) == (pki.alice.x5t_s256, pki.bob.x5t_s256, pki.alice.x5t_s256)

    def test_no_certificate_is_refused_by_the_proxy(
        self, deployment: Deployment, files: PKIFiles
    ) -> None:
        """Without a client certificate the request never reaches the app."""
        before = len(deployment.app.seen)
        with tls_client(files, None) as client:
            try:
                response = client.get(deployment.proxy.url + "/")
            except httpx.TransportError:
                pass  # HAProxy ("verify required") fails the handshake
            else:
                # nginx ("ssl_verify_client on") answers 400 itself
                assert response.status_code == 400
                assert "No required SSL certificate was sent" in response.text
        assert len(deployment.app.seen) == before

    def test_certificate_from_another_ca_is_refused_by_the_proxy(
        self, deployment: Deployment, files: PKIFiles
    ) -> None:
        """A certificate the proxy cannot verify never reaches the app."""
        before = len(deployment.app.seen)
        with tls_client(files, "mallory") as client:
            try:
                response = client.get(deployment.proxy.url + "/")
            except httpx.TransportError:
                pass
            else:
                assert response.status_code == 400
        assert len(deployment.app.seen) == before

    def test_forged_header_never_wins(
        self, deployment: Deployment, files: PKIFiles, pki: PKI
    ) -> None:
        """A client that sends the certificate header itself gets its TLS certificate
        reported, never the forged one: the proxy strips and replaces the header."""
        forged = deployment.forge(pki.bob.der)
        headers = [
            (deployment.header, forged),
            (deployment.header.upper(), forged),
            ("Client-Cert-Chain", ":" + base64.b64encode(pki.ca.der).decode() + ":"),
        ]
        with tls_client(files, "alice") as client:
            response = client.get(deployment.proxy.url + "/", headers=headers)
        assert response.status_code == 200, response.text
        assert response.json() == {
            "thumbprint": pki.alice.x5t_s256,
            "chain": 0,
            "trusted_peer": True,
        }


class TestCertificateOptional:
    def test_no_certificate_reaches_the_app_as_none(
        self, optional: Deployment, files: PKIFiles
    ) -> None:
        """With certificates optional, a client without one arrives with no certificate."""
        with tls_client(files, None) as client:
            response = client.get(optional.proxy.url + "/")
        assert response.status_code == 200, response.text
        assert response.json() == {"thumbprint": None, "chain": 0, "trusted_peer": True}

    def test_presented_certificate_still_reaches_the_app(
        self, optional: Deployment, files: PKIFiles, pki: PKI
    ) -> None:
        """A client that does present one is seen with it."""
        with tls_client(files, "alice") as client:
            response = client.get(optional.proxy.url + "/")
        assert response.json()["thumbprint"] == pki.alice.x5t_s256

    def test_forged_header_without_a_certificate_never_wins(
        self, optional: Deployment, files: PKIFiles, pki: PKI
    ) -> None:
        """The dangerous case: no TLS certificate, a forged header. The proxy strips the
        header even when it has no certificate to put there."""
        with tls_client(files, None) as client:
            response = client.get(
                optional.proxy.url + "/", headers={optional.header: optional.forge(pki.bob.der)}
            )
        assert response.status_code == 200, response.text
        assert response.json() == {"thumbprint": None, "chain": 0, "trusted_peer": True}


class TestStraightToTheApp:
    def test_forged_header_from_an_untrusted_peer_is_ignored(
        self, deployment: Deployment, pki: PKI
    ) -> None:
        """A well-formed header from a peer that is not a trusted proxy counts for nothing."""
        with direct_client(UNTRUSTED_CLIENT) as client:
            response = client.get(
                deployment.upstream.url + "/",
                headers={deployment.header: deployment.forge(pki.alice.der)},
            )
        assert response.status_code == 200
        assert response.json() == {"thumbprint": None, "chain": 0, "trusted_peer": False}

    def test_malformed_header_from_a_trusted_peer_is_invalid_request(
        self, deployment: Deployment, pki: PKI
    ) -> None:
        """A trusted peer's broken header is a 400, never "no certificate"."""
        broken = deployment.forge(pki.alice.der)[:-5]
        with direct_client("127.0.0.1") as client:
            response = client.get(
                deployment.upstream.url + "/", headers={deployment.header: broken}
            )
        assert response.status_code == 400
        assert response.json() == {"reason": "client_cert_malformed", "trusted_peer": True}


def test_example_placeholders_are_documented() -> None:
    """Every placeholder of the operator examples is documented in their header comment."""
    for template in (NGINX_TEMPLATE, HAPROXY_TEMPLATE):
        text = template.read_text()
        names = {part.split("}}", 1)[0] for part in text.split("{{")[1:]}
        header = text.split("\n\n", 1)[0]
        for name in names:
            assert f"{{{{{name}}}}}" in header, (template.name, name)
