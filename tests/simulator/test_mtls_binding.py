"""The simulator's RFC 8705 decisions (dpop_guard.devtools.simulator._mtls), one test per rule."""

from __future__ import annotations

from typing import Any

import pytest

from dpop_guard.devtools.simulator._mtls import (
    MISMATCH,
    MISSING,
    UNREADABLE,
    check_certificate_binding,
    confirmation,
    token_create_thumbprint,
)

from .._support.pki import PKI


@pytest.fixture(scope="module", name="pki")
def _pki() -> PKI:
    return PKI.generate()


class TestTokenCreate:
    def test_reads_the_thumbprint(self, pki: PKI) -> None:
        """certificateThumbprint binds the new token."""
        body = {"certificateThumbprint": pki.alice.x5t_s256}
        assert token_create_thumbprint(body) == pki.alice.x5t_s256

    @pytest.mark.parametrize(
        "body", [{}, {"certificateThumbprint": None}, {"certificateThumbprint": ""}]
    )
    def test_absent_is_unbound(self, body: dict[str, Any]) -> None:
        """No thumbprint: a token not bound to a certificate."""
        assert token_create_thumbprint(body) is None

    @pytest.mark.parametrize("value", ["abc", 42, "=" * 43, "A" * 44])
    def test_not_a_thumbprint_is_refused(self, value: object) -> None:
        """Only a 43-character base64url SHA-256 is a thumbprint."""
        with pytest.raises(ValueError, match="certificateThumbprint"):
            token_create_thumbprint({"certificateThumbprint": value})


class TestIntrospectionBinding:
    def test_matching_certificate_passes(self, pki: PKI) -> None:
        """The bound certificate, with or without its path, passes."""
        body = {
            "clientCertificate": pki.bob.pem,
            "clientCertificatePath": [pki.intermediate.pem],
        }
        assert check_certificate_binding(pki.bob.x5t_s256, body) is None

    def test_unbound_token_ignores_the_certificate(self, pki: PKI) -> None:
        """A token not bound to a certificate passes whatever is sent."""
        assert check_certificate_binding(None, {"clientCertificate": "garbage"}) is None

    @pytest.mark.parametrize("body", [{}, {"clientCertificate": ""}, {"clientCertificate": 1}])
    def test_missing_certificate_is_refused(self, pki: PKI, body: dict[str, Any]) -> None:
        """A bound token introspected without a certificate is UNAUTHORIZED."""
        assert check_certificate_binding(pki.alice.x5t_s256, body) is MISSING

    def test_other_certificate_is_refused(self, pki: PKI) -> None:
        """Another client's certificate does not match."""
        body = {"clientCertificate": pki.mallory.pem}
        assert check_certificate_binding(pki.alice.x5t_s256, body) is MISMATCH

    @pytest.mark.parametrize(
        "body",
        [
            {"clientCertificate": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"},
            {"clientCertificate": "x"},
            {"clientCertificate": "PEM", "clientCertificatePath": "not a list"},
            {"clientCertificate": "PEM", "clientCertificatePath": [1]},
        ],
    )
    def test_unreadable_certificate_is_refused(self, pki: PKI, body: dict[str, Any]) -> None:
        """A certificate (or path) that cannot be parsed is UNAUTHORIZED."""
        if body["clientCertificate"] == "PEM":
            body = {**body, "clientCertificate": pki.alice.pem}
        assert check_certificate_binding(pki.alice.x5t_s256, body) is UNREADABLE


class TestConfirmation:
    @pytest.mark.parametrize(
        ("jkt", "x5t", "cnf"),
        [
            (None, None, None),
            ("k", None, {"jkt": "k"}),
            (None, "c", {"x5t#S256": "c"}),
            ("k", "c", {"jkt": "k", "x5t#S256": "c"}),
        ],
    )
    def test_cnf_members(
        self, jkt: str | None, x5t: str | None, cnf: dict[str, str] | None
    ) -> None:
        """cnf carries each binding the token has (RFC 7800, RFC 8705 3.1, RFC 9449 6)."""
        assert confirmation(jkt=jkt, x5t_s256=x5t) == cnf
