"""Hypothesis for the certificate header parsers: arbitrary input raises nothing but
InvalidRequest, and every well-formed header a proxy could send round-trips."""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from dpop_guard.errors import InvalidRequest
from dpop_guard.mtls import (
    AsgiTlsCertificateSource,
    AwsAlbCertificateSource,
    ClientCertificate,
    ClientCertificateSource,
    EnvoyXfccCertificateSource,
    NginxCertificateSource,
    Rfc9440CertificateSource,
    parse_xfcc,
)

from ._support.pki import PKI

# Generated once at import: hypothesis must not depend on function-scoped fixtures.
_PKI = PKI.generate()
CERTS = [_PKI.alice, _PKI.bob, _PKI.mallory, _PKI.ca, _PKI.intermediate]
DERS = [c.der for c in CERTS]

NGINX = NginxCertificateSource("x-client-cert")
SOURCES: list[tuple[ClientCertificateSource, tuple[bytes, ...]]] = [
    (Rfc9440CertificateSource(), (b"client-cert", b"client-cert-chain")),
    (NGINX, (b"x-client-cert",)),
    (EnvoyXfccCertificateSource(), (b"x-forwarded-client-cert",)),
    (AwsAlbCertificateSource(), (b"x-amzn-mtls-clientcert-leaf",)),
]

# Fragments that push random input into the parsers' deeper states.
FRAGMENTS = st.sampled_from(
    [
        ":",
        ",",
        ";",
        "=",
        '"',
        "\\",
        " ",
        "%",
        "%0A",
        "%2D",
        "Cert=",
        "Hash=",
        "Chain=",
        "-----BEGIN CERTIFICATE-----",
        "-----END CERTIFICATE-----",
        "-----BEGIN PRIVATE KEY-----",
        "MIIB",
        "QUJD",
        base64.b64encode(DERS[0]).decode(),
        quote(CERTS[0].pem, safe=""),
    ]
)
HOSTILE = st.one_of(
    st.text(alphabet=st.characters(max_codepoint=255), max_size=300),
    st.lists(st.one_of(FRAGMENTS, st.text(max_size=5)), max_size=12).map("".join),
)


def scope(headers: list[tuple[bytes, str]]) -> dict[str, Any]:
    return {
        "type": "http",
        "headers": [(k, v.encode("latin-1", "replace")) for k, v in headers],
    }


def expect(
    source: ClientCertificateSource,
    headers: list[tuple[bytes, str]],
    leaf: bytes,
    chain: tuple[bytes, ...] = (),
) -> None:
    cert = source.certificate(scope(headers), trusted_peer=True)
    assert cert == ClientCertificate(leaf, chain)


def pem_text(der: bytes, newline: str) -> str:
    body = base64.b64encode(der).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return newline.join(["-----BEGIN CERTIFICATE-----", *lines, "-----END CERTIFICATE-----", ""])


class TestHostileInput:
    @given(st.sampled_from(range(len(SOURCES))), st.lists(HOSTILE, min_size=1, max_size=3))
    def test_header_sources_raise_only_invalid_request(self, which: int, values: list[str]) -> None:
        """Whatever a trusted peer sends, the result is a certificate, None or a 400."""
        source, names = SOURCES[which]
        headers = [(names[i % len(names)], v) for i, v in enumerate(values)]
        try:
            source.certificate(scope(headers), trusted_peer=True)
        except InvalidRequest as exc:
            assert exc.reason == "client_cert_malformed"

    @given(st.lists(HOSTILE, max_size=3))
    def test_asgi_tls_raises_only_invalid_request(self, chain: list[str]) -> None:
        """Whatever a server puts in client_cert_chain, the result is a certificate, None or
        a 400."""
        request = {"extensions": {"tls": {"client_cert_chain": chain}}}
        try:
            AsgiTlsCertificateSource().certificate(request, trusted_peer=False)
        except InvalidRequest as exc:
            assert exc.reason == "client_cert_malformed"

    @given(st.sampled_from(range(len(SOURCES))), st.lists(HOSTILE, min_size=1, max_size=3))
    def test_untrusted_peer_never_yields_anything(self, which: int, values: list[str]) -> None:
        """From an untrusted peer nothing is parsed and nothing is raised."""
        source, names = SOURCES[which]
        headers = [(names[0], v) for v in values]
        assert source.certificate(scope(headers), trusted_peer=False) is None


class TestRoundTrip:
    @given(
        st.sampled_from(DERS),
        st.lists(st.sampled_from(DERS), max_size=4),
        st.booleans(),
        st.sampled_from([",", ", ", " ,\t", "\t,  "]),
        st.integers(min_value=0, max_value=4),
    )
    def test_rfc9440(
        self, leaf: bytes, chain: list[bytes], padded: bool, comma: str, split: int
    ) -> None:
        """Client-Cert / Client-Cert-Chain, padded or not, with OWS, over several lines."""

        def item(der: bytes) -> str:
            text = base64.b64encode(der).decode()
            return f":{text if padded else text.rstrip('=')}:"

        headers = [(b"client-cert", " " + item(leaf) + " ")]
        members = [item(d) for d in chain]
        if members:
            cut = min(split, len(members) - 1) + 1
            for part in (members[:cut], members[cut:]):
                if part:
                    headers.append((b"client-cert-chain", comma.join(part)))
        expect(Rfc9440CertificateSource(), headers, leaf, tuple(chain))

    @given(
        st.sampled_from(DERS),
        st.sampled_from(["", "+=/", "/", "-"]),
        st.sampled_from(["\n", "\r\n"]),
    )
    def test_url_encoded_pem(self, leaf: bytes, safe: str, newline: str) -> None:
        """nginx and ALB: URL-encoded PEM, whatever characters the proxy left unescaped."""
        value = quote(pem_text(leaf, newline), safe=safe)
        expect(NGINX, [(b"x-client-cert", value)], leaf)
        expect(AwsAlbCertificateSource(), [(b"x-amzn-mtls-clientcert-leaf", value)], leaf)

    @given(
        st.lists(st.sampled_from(DERS), max_size=2),
        st.sampled_from(DERS),
        st.lists(st.sampled_from(DERS), max_size=3),
        st.sampled_from([None, "lower", "upper"]),
        st.booleans(),
        st.dictionaries(
            st.sampled_from(["By", "Subject", "URI", "DNS"]),
            st.text(alphabet=',;="\\ abcXYZ:/=', max_size=20),
            max_size=4,
        ),
        st.randoms(use_true_random=False),
    )
    def test_envoy_xfcc(
        self,
        earlier: list[bytes],
        leaf: bytes,
        chain: list[bytes],
        hash_case: str | None,
        send_chain: bool,
        extra: dict[str, str],
        random: Any,
    ) -> None:
        """XFCC: the last element's Cert (and Chain, and Hash) win, in any pair order."""

        def quoted(text: str) -> str:
            return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

        def element(der: bytes, issuers: list[bytes]) -> str:
            pairs = [f"{k}={quoted(v)}" for k, v in extra.items()]
            pairs.append(f"Cert={quoted(quote(pem_text(der, chr(10)), safe=''))}")
            if hash_case is not None:
                digest = hashlib.sha256(der).hexdigest()
                pairs.append(f"Hash={digest.upper() if hash_case == 'upper' else digest}")
            if send_chain:
                full = "".join(pem_text(d, "\n") for d in [der, *issuers])
                pairs.append(f"Chain={quoted(quote(full, safe=''))}")
            random.shuffle(pairs)
            return ";".join(pairs)

        value = ",".join([*(element(d, []) for d in earlier), element(leaf, chain)])
        expected_chain = tuple(chain) if send_chain else ()
        expect(
            EnvoyXfccCertificateSource(),
            [(b"x-forwarded-client-cert", value)],
            leaf,
            expected_chain,
        )

    @given(st.sampled_from(DERS), st.lists(st.sampled_from(DERS), max_size=4))
    def test_asgi_tls(self, leaf: bytes, chain: list[bytes]) -> None:
        """client_cert_chain: PEM strings, leaf first."""
        request = {
            "extensions": {
                "tls": {"client_cert_chain": [pem_text(d, "\n") for d in [leaf, *chain]]}
            }
        }
        cert = AsgiTlsCertificateSource().certificate(request, trusted_peer=False)
        assert cert == ClientCertificate(leaf, tuple(chain))

    @given(
        st.lists(
            st.dictionaries(
                st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=8),
                st.text(alphabet=st.characters(max_codepoint=127), max_size=20),
                min_size=1,
                max_size=4,
            ),
            min_size=1,
            max_size=5,
        )
    )
    def test_parse_xfcc(self, elements: list[dict[str, str]]) -> None:
        """Any elements serialized with quoted values parse back to themselves."""

        def quoted(text: str) -> str:
            return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

        value = ",".join(";".join(f"{k}={quoted(v)}" for k, v in e.items()) for e in elements)
        assert parse_xfcc(value) == elements
