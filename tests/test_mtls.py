"""Client-certificate sources (RFC 8705 behind proxies): one test per rule."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from dpop_guard.errors import InvalidRequest
from dpop_guard.mtls import (
    DEFAULT_MAX_CHAIN,
    DEFAULT_MAX_HEADER_BYTES,
    AsgiTlsCertificateSource,
    AwsAlbCertificateSource,
    ClientCertificate,
    ClientCertificateSource,
    EnvoyXfccCertificateSource,
    NginxCertificateSource,
    Rfc9440CertificateSource,
    certificate_source_from_env,
    parse_xfcc,
    peer_is_trusted,
)

from ._support.pki import PKI, Identity

HEADER = "x-client-cert"


@pytest.fixture(scope="module", name="pki")
def _pki() -> PKI:
    return PKI.generate()


def scope(*headers: tuple[str, str], client: str = "127.0.0.1") -> dict[str, Any]:
    return {
        "type": "http",
        "client": (client, 50000),
        "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in headers],
    }


def sf(der: bytes) -> str:
    return ":" + base64.b64encode(der).decode() + ":"


def url_pem(*ders: bytes) -> str:
    return quote("".join(pem(d) for d in ders), safe="")


def pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM).decode()


def reject(
    source: ClientCertificateSource,
    request: Mapping[str, Any],
    reason: str = "client_cert_malformed",
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        source.certificate(request, trusted_peer=True)
    assert caught.value.reason == reason
    assert caught.value.status == 400
    assert caught.value.error == "invalid_request"


class TestClientCertificate:
    def test_thumbprint_is_x5t_s256_of_the_leaf_der(self, pki: PKI) -> None:
        """thumbprint = base64url(SHA-256(DER)) without padding, as RFC 8705 3.1 says."""
        cert = ClientCertificate(pki.bob.der, pki.bob.chain_der)
        assert cert.thumbprint == pki.bob.x5t_s256
        assert "=" not in cert.thumbprint and len(cert.thumbprint) == 43

    def test_pem_round_trips_for_authlete(self, pki: PKI) -> None:
        """pem() and chain_pems() are what Authlete's clientCertificate(Path) take."""
        cert = ClientCertificate(pki.bob.der, pki.bob.chain_der)
        assert cert.pem() == pki.bob.pem
        assert cert.chain_pems() == (pki.intermediate.pem,)

    def test_is_frozen(self, pki: PKI) -> None:
        """The thumbprint cannot drift from the DER."""
        cert = ClientCertificate(pki.alice.der)
        with pytest.raises(AttributeError):
            cert.thumbprint = "x"  # type: ignore[misc]

    def test_from_der_refuses_trailing_bytes(self, pki: PKI) -> None:
        """A certificate followed by anything is not a certificate."""
        with pytest.raises(InvalidRequest) as caught:
            ClientCertificate.from_der(pki.alice.der + b"\x00")
        assert caught.value.reason == "client_cert_malformed"

    def test_from_der_refuses_a_long_chain(self, pki: PKI) -> None:
        """The chain is bounded before any parsing."""
        with pytest.raises(InvalidRequest):
            ClientCertificate.from_der(pki.alice.der, [pki.ca.der] * (DEFAULT_MAX_CHAIN + 1))


class TestPeerIsTrusted:
    networks = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))

    @pytest.mark.parametrize(
        ("client", "trusted"),
        [
            ("10.1.2.3", True),
            ("::ffff:10.1.2.3", True),  # a dual-stack listener's view of an IPv4 peer
            ("::1", True),
            ("11.0.0.1", False),
            ("::ffff:11.0.0.1", False),
            ("unknown", False),
        ],
    )
    def test_matches_the_immediate_peer(self, client: str, trusted: bool) -> None:
        """scope["client"] is matched against the trusted networks."""
        assert peer_is_trusted(scope(client=client), self.networks) is trusted

    def test_no_networks_trusts_nobody(self) -> None:
        """Without trusted proxies no header source ever yields a certificate."""
        assert peer_is_trusted(scope(client="127.0.0.1"), ()) is False

    def test_unix_socket_peer_is_not_trusted(self) -> None:
        """A peer without an address is not a trusted proxy."""
        assert peer_is_trusted({"type": "http", "client": None}, self.networks) is False

    def test_an_empty_client_is_not_trusted(self) -> None:
        """An empty ``client`` (a server that breaks the ASGI spec) is no trusted proxy,
        and no error."""
        assert peer_is_trusted({"type": "http", "client": ()}, self.networks) is False


class TestAsgiTls:
    source = AsgiTlsCertificateSource()

    def tls(self, chain: Any, error: str | None = None) -> dict[str, Any]:
        return {"extensions": {"tls": {"client_cert_chain": chain, "client_cert_error": error}}}

    def test_reads_leaf_and_chain(self, pki: PKI) -> None:
        """client_cert_chain is leaf first; the rest becomes the chain."""
        cert = self.source.certificate(
            self.tls([pki.bob.pem, pki.intermediate.pem]), trusted_peer=False
        )
        assert cert is not None
        assert cert.thumbprint == pki.bob.x5t_s256
        assert cert.chain == pki.bob.chain_der

    @pytest.mark.parametrize("request_scope", [{}, {"extensions": {}}, {"extensions": None}])
    def test_no_extension_is_no_certificate(self, request_scope: dict[str, Any]) -> None:
        """A server without the TLS extension gives no certificate."""
        assert self.source.certificate(request_scope, trusted_peer=True) is None

    def test_empty_chain_is_no_certificate(self) -> None:
        """The spec's empty iterable: the client sent none."""
        assert self.source.certificate(self.tls([]), trusted_peer=True) is None

    def test_verification_error_is_refused(self, pki: PKI) -> None:
        """A certificate the server could not verify is not silently used."""
        reject(self.source, self.tls([pki.alice.pem], "unknown ca"), "client_cert_unverified")

    def test_two_certificates_in_one_entry_are_refused(self, pki: PKI) -> None:
        """Each entry is one PEM certificate."""
        reject(self.source, self.tls([pki.alice.pem + pki.ca.pem]))

    def test_a_string_instead_of_a_list_is_refused(self, pki: PKI) -> None:
        """A bare string is not iterated character by character."""
        reject(self.source, self.tls(pki.alice.pem))

    def test_a_long_chain_is_refused(self, pki: PKI) -> None:
        """The chain length is bounded."""
        reject(self.source, self.tls([pki.alice.pem] * (DEFAULT_MAX_CHAIN + 2)))


class TestRfc9440:
    source = Rfc9440CertificateSource()

    def test_reads_client_cert_and_chain(self, pki: PKI) -> None:
        """Client-Cert is the leaf's DER, Client-Cert-Chain the list of issuers."""
        request = scope(
            ("Client-Cert", sf(pki.bob.der)), ("Client-Cert-Chain", sf(pki.intermediate.der))
        )
        cert = self.source.certificate(request, trusted_peer=True)
        assert cert is not None
        assert cert.thumbprint == pki.bob.x5t_s256
        assert cert.chain == (pki.intermediate.der,)

    def test_chain_over_several_lines(self, pki: PKI) -> None:
        """A List split over header lines is one list (RFC 9110 5.3)."""
        request = scope(
            ("Client-Cert", sf(pki.bob.der)),
            ("Client-Cert-Chain", sf(pki.intermediate.der)),
            ("Client-Cert-Chain", sf(pki.ca.der)),
        )
        cert = self.source.certificate(request, trusted_peer=True)
        assert cert is not None and cert.chain == (pki.intermediate.der, pki.ca.der)

    def test_untrusted_peer_is_ignored(self, pki: PKI) -> None:
        """Anyone can send the header: from an untrusted peer it does not count."""
        request = scope(("Client-Cert", sf(pki.alice.der)))
        assert self.source.certificate(request, trusted_peer=False) is None

    def test_untrusted_peer_is_ignored_even_if_malformed(self) -> None:
        """Garbage from an untrusted peer is not even parsed."""
        assert self.source.certificate(scope(("Client-Cert", "%%")), trusted_peer=False) is None

    def test_absent_is_no_certificate(self) -> None:
        """No header: no certificate."""
        assert self.source.certificate(scope(), trusted_peer=True) is None

    def test_unpadded_base64_is_accepted(self, pki: PKI) -> None:
        """RFC 8941 4.2.7: parsers should not fail on missing padding."""
        value = sf(pki.alice.der).rstrip(":").rstrip("=") + ":"
        cert = self.source.certificate(scope(("Client-Cert", value)), trusted_peer=True)
        assert cert is not None and cert.thumbprint == pki.alice.x5t_s256

    @pytest.mark.parametrize(
        "value",
        [
            "",
            "::",
            "MIIB",  # no colons
            ":MIIB",
            ":not base64!:",
            ":QUJD:;param=1",  # parameters
            ":QUJD:",  # base64 of "ABC": not a certificate
            ":QUJD:, :QUJD:",  # a list where an item is expected
        ],
    )
    def test_malformed_client_cert_is_refused(self, value: str) -> None:
        """A present but malformed Client-Cert is a 400, never "no certificate"."""
        reject(self.source, scope(("Client-Cert", value)))

    def test_text_decoded_byte_sequence_is_refused(self, pki: PKI) -> None:
        """The byte sequence is DER, not base64 of PEM text (a peer's bug)."""
        value = ":" + base64.b64encode(pki.alice.pem.encode()).decode() + ":"
        reject(self.source, scope(("Client-Cert", value)))

    def test_repeated_client_cert_is_refused(self, pki: PKI) -> None:
        """Two Client-Cert lines: a proxy appended instead of replacing."""
        reject(
            self.source,
            scope(("Client-Cert", sf(pki.alice.der)), ("Client-Cert", sf(pki.bob.der))),
        )

    def test_chain_without_leaf_is_refused(self, pki: PKI) -> None:
        """RFC 9440 2.3: Client-Cert-Chain only with Client-Cert."""
        reject(self.source, scope(("Client-Cert-Chain", sf(pki.ca.der))))

    def test_long_chain_is_refused(self, pki: PKI) -> None:
        """The chain length is bounded before decoding."""
        chain = ", ".join([sf(pki.ca.der)] * (DEFAULT_MAX_CHAIN + 1))
        reject(self.source, scope(("Client-Cert", sf(pki.alice.der)), ("Client-Cert-Chain", chain)))

    def test_oversized_header_is_refused(self) -> None:
        """The size is bounded before decoding."""
        value = ":" + "A" * DEFAULT_MAX_HEADER_BYTES + ":"
        reject(self.source, scope(("Client-Cert", value)))


class TestNginx:
    source = NginxCertificateSource("X-Client-Cert")

    def test_reads_the_escaped_pem(self, pki: PKI) -> None:
        """$ssl_client_escaped_cert is URL-encoded PEM of the leaf."""
        cert = self.source.certificate(scope((HEADER, url_pem(pki.alice.der))), trusted_peer=True)
        assert cert is not None and cert.thumbprint == pki.alice.x5t_s256
        assert cert.chain == ()

    def test_only_the_named_header_counts(self, pki: PKI) -> None:
        """Another certificate header is not read."""
        request = scope(("Client-Cert", sf(pki.alice.der)), ("X-SSL-Cert", url_pem(pki.alice.der)))
        assert self.source.certificate(request, trusted_peer=True) is None

    def test_untrusted_peer_is_ignored(self, pki: PKI) -> None:
        """From an untrusted peer the header does not count."""
        request = scope((HEADER, url_pem(pki.alice.der)))
        assert self.source.certificate(request, trusted_peer=False) is None

    @pytest.mark.parametrize("value", ["", "-"])
    def test_empty_is_no_certificate(self, value: str) -> None:
        """An empty value (some proxies send one) means no certificate."""
        assert self.source.certificate(scope((HEADER, value)), trusted_peer=True) is None

    def test_two_pem_blocks_are_refused(self, pki: PKI) -> None:
        """One certificate is expected."""
        reject(self.source, scope((HEADER, url_pem(pki.alice.der, pki.ca.der))))

    def test_private_key_block_is_refused(self, pki: PKI) -> None:
        """A PEM block that is not a CERTIFICATE is refused."""
        reject(self.source, scope((HEADER, quote(pki.alice.key_pem, safe=""))))

    def test_trailing_text_is_refused(self, pki: PKI) -> None:
        """Nothing but whitespace may follow the block."""
        reject(self.source, scope((HEADER, url_pem(pki.alice.der) + "x")))

    def test_leading_text_is_refused(self, pki: PKI) -> None:
        """Nothing but whitespace may precede the block."""
        reject(self.source, scope((HEADER, "x" + url_pem(pki.alice.der))))

    def test_unterminated_block_is_refused(self, pki: PKI) -> None:
        """A block without its END line is refused."""
        text = pki.alice.pem.replace("-----END CERTIFICATE-----", "")
        reject(self.source, scope((HEADER, quote(text, safe=""))))

    def test_non_ascii_escapes_are_refused(self) -> None:
        """%FF does not decode to PEM text."""
        reject(self.source, scope((HEADER, "%FF")))

    def test_header_name_must_be_a_token(self) -> None:
        """A header name with a space or a colon is a configuration error."""
        with pytest.raises(ValueError, match="header name"):
            NginxCertificateSource("X Client:Cert")


class TestEnvoyXfcc:
    source = EnvoyXfccCertificateSource()

    def element(self, identity: Identity, *, chain: bool = False, hash_: str | None = None) -> str:
        digest = hash_ if hash_ is not None else hashlib.sha256(identity.der).hexdigest()
        parts = [
            "By=spiffe://cluster.local/ns/default/sa/api",
            f"Hash={digest}",
            f'Cert="{url_pem(identity.der)}"',
            f'Subject="CN={identity.name},O=Example"',
            "URI=spiffe://cluster.local/ns/default/sa/client",
        ]
        if chain:
            parts.append(f'Chain="{url_pem(identity.der, *identity.chain_der)}"')
        return ";".join(parts)

    def get(self, value: str) -> ClientCertificate | None:
        return self.source.certificate(scope(("x-forwarded-client-cert", value)), trusted_peer=True)

    def test_reads_cert_and_chain(self, pki: PKI) -> None:
        """Cert is the leaf; Chain (leaf first) gives the issuers."""
        cert = self.get(self.element(pki.bob, chain=True))
        assert cert is not None
        assert cert.thumbprint == pki.bob.x5t_s256
        assert cert.chain == pki.bob.chain_der

    def test_last_element_wins(self, pki: PKI) -> None:
        """The element our immediate peer appended is the last one."""
        cert = self.get(self.element(pki.mallory) + "," + self.element(pki.alice))
        assert cert is not None and cert.thumbprint == pki.alice.x5t_s256

    def test_elements_over_several_lines(self, pki: PKI) -> None:
        """Header lines join into one list; the last line's element is last."""
        request = scope(
            ("x-forwarded-client-cert", self.element(pki.mallory)),
            ("x-forwarded-client-cert", self.element(pki.alice)),
        )
        cert = self.source.certificate(request, trusted_peer=True)
        assert cert is not None and cert.thumbprint == pki.alice.x5t_s256

    def test_untrusted_peer_is_ignored(self, pki: PKI) -> None:
        """From an untrusted peer the header does not count."""
        request = scope(("x-forwarded-client-cert", self.element(pki.alice)))
        assert self.source.certificate(request, trusted_peer=False) is None

    def test_hash_mismatch_is_refused(self, pki: PKI) -> None:
        """Hash, when present, must be the SHA-256 of Cert's DER."""
        reject(
            self.source,
            scope(("x-forwarded-client-cert", self.element(pki.alice, hash_="00" * 32))),
        )

    def test_hash_upper_case_hex_is_accepted(self, pki: PKI) -> None:
        """Hex is compared by value, whatever its case."""
        digest = hashlib.sha256(pki.alice.der).hexdigest().upper()
        cert = self.get(self.element(pki.alice, hash_=digest))
        assert cert is not None and cert.thumbprint == pki.alice.x5t_s256

    def test_element_without_cert_is_refused(self) -> None:
        """The client presented a certificate we cannot see: 400."""
        reject(self.source, scope(("x-forwarded-client-cert", "By=spiffe://x;Hash=" + "0" * 64)))

    def test_chain_not_starting_with_cert_is_refused(self, pki: PKI) -> None:
        """Chain is leaf first; another leaf there is a proxy bug."""
        value = f'Cert="{url_pem(pki.alice.der)}";Chain="{url_pem(pki.bob.der)}"'
        reject(self.source, scope(("x-forwarded-client-cert", value)))

    @pytest.mark.parametrize(
        "value",
        ["", "Cert", 'Cert="abc', "Cert=a=b", "a=1;a=2", "a=1,", ",a=1", "=1", 'a="x"y'],
    )
    def test_malformed_header_is_refused(self, value: str) -> None:
        """Broken XFCC syntax is a 400."""
        reject(self.source, scope(("x-forwarded-client-cert", value)))

    def test_quoted_values_unescape(self) -> None:
        """Quoted values keep , ; = and unescape \\"."""
        assert parse_xfcc('Subject="CN=a,O=\\"b\\";c";By=x, Hash=1') == [
            {"subject": 'CN=a,O="b";c', "by": "x"},
            {"hash": "1"},
        ]

    def test_too_many_elements_are_refused(self) -> None:
        """Elements are bounded."""
        reject(self.source, scope(("x-forwarded-client-cert", ",".join(["By=x"] * 40))))


class TestAwsAlb:
    source = AwsAlbCertificateSource()

    def test_reads_the_leaf_header(self, pki: PKI) -> None:
        """X-Amzn-Mtls-Clientcert-Leaf is URL-encoded PEM with + = / left as they are."""
        value = quote(pki.alice.pem, safe="+=/")
        request = scope(("X-Amzn-Mtls-Clientcert-Leaf", value))
        cert = self.source.certificate(request, trusted_peer=True)
        assert cert is not None and cert.thumbprint == pki.alice.x5t_s256

    def test_untrusted_peer_is_ignored(self, pki: PKI) -> None:
        """From an untrusted peer the header does not count."""
        request = scope(("X-Amzn-Mtls-Clientcert-Leaf", url_pem(pki.alice.der)))
        assert self.source.certificate(request, trusted_peer=False) is None

    def test_passthrough_chain_header_is_not_read(self, pki: PKI) -> None:
        """Passthrough mode's unverified chain header is not a source."""
        request = scope(("X-Amzn-Mtls-Clientcert", url_pem(pki.alice.der)))
        assert self.source.certificate(request, trusted_peer=True) is None

    def test_malformed_is_refused(self) -> None:
        """A present but malformed leaf header is a 400."""
        reject(self.source, scope(("X-Amzn-Mtls-Clientcert-Leaf", "-----BEGIN CERTIFICATE-----")))


class TestFromEnv:
    @pytest.mark.parametrize(
        ("environ", "kind"),
        [
            ({"DPOP_GUARD_CLIENT_CERT_SOURCE": "asgi-tls"}, AsgiTlsCertificateSource),
            ({"DPOP_GUARD_CLIENT_CERT_SOURCE": "rfc9440"}, Rfc9440CertificateSource),
            ({"DPOP_GUARD_CLIENT_CERT_SOURCE": " envoy-xfcc "}, EnvoyXfccCertificateSource),
            ({"DPOP_GUARD_CLIENT_CERT_SOURCE": "aws-alb"}, AwsAlbCertificateSource),
            (
                {
                    "DPOP_GUARD_CLIENT_CERT_SOURCE": "nginx",
                    "DPOP_GUARD_CLIENT_CERT_HEADER": "X-Client-Cert",
                },
                NginxCertificateSource,
            ),
        ],
    )
    def test_builds_the_named_source(self, environ: dict[str, str], kind: type[object]) -> None:
        """Each name builds its source, trusting a proxy unless it reads the ASGI TLS
        extension."""
        source = certificate_source_from_env(environ)
        assert source is not None and isinstance(source, kind)
        assert source.requires_trusted_proxy is (kind is not AsgiTlsCertificateSource)

    def test_nginx_header_name_is_used(self, pki: PKI) -> None:
        """The configured header is the one read, matched case-insensitively."""
        source = certificate_source_from_env(
            {"DPOP_GUARD_CLIENT_CERT_SOURCE": "nginx", "DPOP_GUARD_CLIENT_CERT_HEADER": "X-SSL-C"}
        )
        assert source is not None
        cert = source.certificate(scope(("x-ssl-c", url_pem(pki.alice.der))), trusted_peer=True)
        assert cert is not None and cert.thumbprint == pki.alice.x5t_s256

    @pytest.mark.parametrize("environ", [{}, {"DPOP_GUARD_CLIENT_CERT_SOURCE": "  "}])
    def test_unset_is_no_source(self, environ: dict[str, str]) -> None:
        """No source configured: mTLS is off."""
        assert certificate_source_from_env(environ) is None

    @pytest.mark.parametrize(
        ("environ", "message"),
        [
            ({"DPOP_GUARD_CLIENT_CERT_SOURCE": "NGINX"}, "CLIENT_CERT_SOURCE"),
            ({"DPOP_GUARD_CLIENT_CERT_SOURCE": "haproxy"}, "CLIENT_CERT_SOURCE"),
            ({"DPOP_GUARD_CLIENT_CERT_SOURCE": "nginx"}, "CLIENT_CERT_HEADER is required"),
            (
                {"DPOP_GUARD_CLIENT_CERT_SOURCE": "nginx", "DPOP_GUARD_CLIENT_CERT_HEADER": "a b"},
                "CLIENT_CERT_HEADER",
            ),
            (
                {
                    "DPOP_GUARD_CLIENT_CERT_SOURCE": "rfc9440",
                    "DPOP_GUARD_CLIENT_CERT_HEADER": "x",
                },
                "applies only to nginx",
            ),
            ({"DPOP_GUARD_CLIENT_CERT_HEADER": "x"}, "CLIENT_CERT_SOURCE is not"),
            ({"DPOP_GUARD_CLIENT_CERT_SOURCE": "nginx\x00"}, "control characters"),
        ],
    )
    def test_bad_configuration_names_the_variable(
        self, environ: dict[str, str], message: str
    ) -> None:
        """Strict values; the error names the variable."""
        with pytest.raises(ValueError, match=message) as caught:
            certificate_source_from_env(environ)
        assert "DPOP_GUARD_CLIENT_CERT_" in str(caught.value)


class TestEdges:
    """The corners of each parser, one rule each."""

    def test_from_der_accepts_a_certificate_and_its_chain(self, pki: PKI) -> None:
        """from_der parses and keeps both."""
        cert = ClientCertificate.from_der(pki.bob.der, pki.bob.chain_der)
        assert cert == ClientCertificate(pki.bob.der, pki.bob.chain_der)

    def test_from_der_refuses_empty(self) -> None:
        """Empty bytes are not a certificate."""
        with pytest.raises(InvalidRequest):
            ClientCertificate.from_der(b"")

    @pytest.mark.parametrize("value", [":QU=JD:", ":A:", ":QUJD===:"])
    def test_bad_base64_is_refused(self, value: str) -> None:
        """Padding in the middle, an impossible length, too much padding."""
        reject(Rfc9440CertificateSource(), scope(("Client-Cert", value)))

    def test_empty_chain_header_is_an_empty_chain(self, pki: PKI) -> None:
        """An empty List is no chain (RFC 8941 4.2)."""
        request = scope(("Client-Cert", sf(pki.alice.der)), ("Client-Cert-Chain", " "))
        cert = Rfc9440CertificateSource().certificate(request, trusted_peer=True)
        assert cert is not None and cert.chain == ()

    def test_nested_pem_markers_are_refused(self, pki: PKI) -> None:
        """A BEGIN line inside a block is refused."""
        text = "-----BEGIN CERTIFICATE-----\n" + pki.alice.pem
        reject(NginxCertificateSource(HEADER), scope((HEADER, quote(text, safe=""))))

    def test_asgi_tls_without_chain_key_is_no_certificate(self) -> None:
        """A tls extension without client_cert_chain: no certificate."""
        request = {"extensions": {"tls": {"server_cert": None}}}
        assert AsgiTlsCertificateSource().certificate(request, trusted_peer=False) is None

    def test_asgi_tls_non_string_entry_is_refused(self) -> None:
        """Entries are PEM strings."""
        request = {"extensions": {"tls": {"client_cert_chain": [b"bytes"]}}}
        reject(AsgiTlsCertificateSource(), request)

    def test_envoy_absent_is_no_certificate(self) -> None:
        """No XFCC header: no certificate."""
        assert EnvoyXfccCertificateSource().certificate(scope(), trusted_peer=True) is None

    def test_envoy_hash_not_hex_is_refused(self, pki: PKI) -> None:
        """Hash is 64 hex digits."""
        value = f'Cert="{url_pem(pki.alice.der)}";Hash={"z" * 64}'
        reject(EnvoyXfccCertificateSource(), scope(("x-forwarded-client-cert", value)))

    def test_xfcc_whitespace_around_values(self) -> None:
        """Optional whitespace around values and separators is skipped."""
        assert parse_xfcc('a= "x" ;b=1 , c =2') == [{"a": "x", "b": "1"}, {"c": "2"}]

    def test_xfcc_trailing_backslash_is_refused(self) -> None:
        """An escape at the end of the header is unterminated."""
        with pytest.raises(InvalidRequest):
            parse_xfcc('a="\\')

    def test_repr_shows_the_thumbprint_not_the_der(self, pki: PKI) -> None:
        """A logged certificate is one short line."""
        cert = ClientCertificate(pki.alice.der)
        assert repr(cert) == f"ClientCertificate(thumbprint={pki.alice.x5t_s256!r})"

    def test_from_pem_round_trips(self, pki: PKI) -> None:
        """from_pem reads what pem() and chain_pems() write."""
        cert = ClientCertificate(pki.bob.der, pki.bob.chain_der)
        assert ClientCertificate.from_pem(cert.pem(), cert.chain_pems()) == cert

    @pytest.mark.parametrize("extra", ["x", "-----BEGIN CERTIFICATE-----"])
    def test_from_pem_refuses_anything_more(self, pki: PKI, extra: str) -> None:
        """One block and nothing else."""
        with pytest.raises(InvalidRequest):
            ClientCertificate.from_pem(pki.alice.pem + extra)

    def test_from_pem_refuses_a_long_chain(self, pki: PKI) -> None:
        """The chain is bounded before parsing."""
        with pytest.raises(InvalidRequest):
            ClientCertificate.from_pem(pki.alice.pem, [pki.ca.pem] * (DEFAULT_MAX_CHAIN + 1))
