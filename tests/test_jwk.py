"""Public JWK import and RFC 7638 thumbprints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwk as jose_jwk

from dpop_guard.client import ProofSigner
from dpop_guard.jwk import JWKError, import_public_jwk, jwk_thumbprint

VECTORS = json.loads((Path(__file__).parent / "vectors" / "rfc9449.json").read_text())
RFC_KEY = json.loads((Path(__file__).parent / "keys" / "RFC9449-EC-public.json").read_text())


class TestThumbprint:
    @pytest.mark.parametrize("case", VECTORS["thumbprints"], ids=lambda c: c["name"])
    def test_vectors(self, case: dict[str, Any]) -> None:
        """RFC 9449's example key has the RFC's jkt."""
        assert jwk_thumbprint(case["jwk"]) == case["jkt"]

    def test_optional_members_do_not_count(self) -> None:
        """kid, use and alg are not part of the thumbprint (RFC 7638 section 3.2)."""
        extended = RFC_KEY | {"kid": "k1", "use": "sig", "alg": "ES256"}
        assert jwk_thumbprint(extended) == jwk_thumbprint(RFC_KEY)

    @pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512", "PS256", "EdDSA"])
    def test_matches_joserfc(self, alg: str) -> None:
        """Our thumbprint agrees with joserfc's independent implementation."""
        signer = ProofSigner.generate(alg)
        theirs = jose_jwk.import_key(dict(signer.public_jwk)).thumbprint()
        assert jwk_thumbprint(signer.public_jwk) == theirs == signer.jkt

    @pytest.mark.parametrize(
        "jwk",
        [
            {"kty": "oct", "k": "x"},
            {"kty": "EC", "crv": "P-256"},
            {"kty": "EC", "crv": "P-256", "x": 1, "y": "a"},
            {},
        ],
    )
    def test_unusable(self, jwk: dict[str, Any]) -> None:
        """Unknown kty or missing members raise JWKError."""
        with pytest.raises(JWKError):
            jwk_thumbprint(jwk)


class TestImport:
    def test_rfc_key(self) -> None:
        """The RFC example key imports for ES256."""
        key = import_public_jwk(RFC_KEY, alg="ES256")
        assert key.jkt == VECTORS["thumbprints"][0]["jkt"]
        assert key.verify(b"\x00" * 64, b"message") is False

    def test_unknown_alg_is_refused(self) -> None:
        """An alg we do not implement never imports, even if an allow-list named it."""
        with pytest.raises(JWKError) as info:
            import_public_jwk(RFC_KEY, alg="HS256")
        assert info.value.reason == "jwk_alg_mismatch"

    def test_rsa_signature_length(self) -> None:
        """An RSA signature of the wrong length is refused without raising."""
        signer = ProofSigner.generate("PS256")
        key = import_public_jwk(dict(signer.public_jwk), alg="PS256")
        assert key.verify(b"short", b"message") is False

    def test_eddsa_jwk_alg_alias(self) -> None:
        """A JWK marked EdDSA may sign under Ed25519, and the reverse."""
        signer = ProofSigner.generate("EdDSA")
        import_public_jwk(dict(signer.public_jwk) | {"alg": "EdDSA"}, alg="Ed25519")
        import_public_jwk(dict(signer.public_jwk) | {"alg": "Ed25519"}, alg="EdDSA")

    def test_rsa_even_exponent(self) -> None:
        """A malformed RSA key is jwk_invalid, not a crash."""
        signer = ProofSigner.generate("PS256")
        with pytest.raises(JWKError) as info:
            import_public_jwk(dict(signer.public_jwk) | {"e": "Ag"}, alg="PS256")
        assert info.value.reason == "jwk_invalid"

    def test_okp_wrong_length(self) -> None:
        """An Ed25519 key must be 32 bytes."""
        with pytest.raises(JWKError) as info:
            import_public_jwk({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}, alg="EdDSA")
        assert info.value.reason == "jwk_invalid"

    def test_okp_under_ec_alg(self) -> None:
        """An OKP key under ES256 is refused."""
        signer = ProofSigner.generate("EdDSA")
        with pytest.raises(JWKError) as info:
            import_public_jwk(dict(signer.public_jwk), alg="ES256")
        assert info.value.reason == "jwk_alg_mismatch"
