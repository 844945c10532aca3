"""Public JWK import and RFC 7638 thumbprints."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwk as jose_jwk

from dpop_guard._b64 import b64url_decode, b64url_encode
from dpop_guard.client import ProofSigner
from dpop_guard.jwk import JWKError, KeyLimits, import_public_jwk, jwk_thumbprint

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
        """An even RSA exponent is jwk_rsa_exponent, not a crash."""
        signer = ProofSigner.generate("PS256")
        with pytest.raises(JWKError) as info:
            import_public_jwk(dict(signer.public_jwk) | {"e": "Ag"}, alg="PS256")
        assert info.value.reason == "jwk_rsa_exponent"

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


def _rsa_jwk(e: int, *, n_bits: int = 2048, e_bytes: bytes | None = None) -> dict[str, str]:
    """An RSA public JWK with a random odd modulus of ``n_bits`` and exponent ``e``."""
    n = secrets.randbits(n_bits) | (1 << (n_bits - 1)) | 1
    raw_e = e_bytes if e_bytes is not None else e.to_bytes((e.bit_length() + 7) // 8, "big")
    return {
        "kty": "RSA",
        "n": b64url_encode(n.to_bytes(n_bits // 8, "big")),
        "e": b64url_encode(raw_e),
    }


def _refused(jwk: dict[str, Any], reason: str, alg: str = "PS256", **limits: Any) -> None:
    with pytest.raises(JWKError) as info:
        import_public_jwk(jwk, alg=alg, limits=KeyLimits(**limits))
    assert info.value.reason == reason


class TestRSABounds:
    """The modulus and the exponent are attacker-chosen CPU levers: bounded before use."""

    @pytest.mark.parametrize("e", [3, 17, 65537, 2**32 - 1])
    def test_exponents_accepted(self, e: int) -> None:
        """Any odd 3 <= e < 2**32 imports."""
        assert import_public_jwk(_rsa_jwk(e), alg="PS256").kty == "RSA"

    @pytest.mark.parametrize(
        "e", [1, 2, 65536, 2**32, 2**32 + 1, 2**64 + 1, (1 << 2046) | 1], ids=str
    )
    def test_exponents_refused(self, e: int) -> None:
        """e below 3, even, or of 2**32 and above (a 2047-bit e cost 1.6 ms per proof)."""
        _refused(_rsa_jwk(e), "jwk_rsa_exponent")

    def test_exponent_65537_only(self) -> None:
        """With rsa_exponent_65537_only, e = 3 is refused and 65537 accepted."""
        _refused(_rsa_jwk(3), "jwk_rsa_exponent", rsa_exponent_65537_only=True)
        limits = KeyLimits(rsa_exponent_65537_only=True)
        import_public_jwk(_rsa_jwk(65537), alg="PS256", limits=limits)

    @pytest.mark.parametrize("e_bytes", [b"\x00\x01\x00\x01", b"\x00\x03", b"\x00", b""])
    def test_exponent_not_minimal(self, e_bytes: bytes) -> None:
        """An exponent with a leading zero octet (a second spelling) is refused."""
        jwk = _rsa_jwk(65537, e_bytes=e_bytes) if e_bytes else _rsa_jwk(65537) | {"e": ""}
        _refused(jwk, "jwk_invalid")

    def test_modulus_not_minimal(self) -> None:
        """A modulus with a leading zero octet is refused, within the size bounds too."""
        jwk = _rsa_jwk(65537, n_bits=2048)
        jwk["n"] = b64url_encode(b"\x00" + b64url_decode(jwk["n"]))
        _refused(jwk, "jwk_invalid")

    def test_modulus_bits_exact(self) -> None:
        """The size bound counts bits, not octets: a 2047-bit modulus in 256 octets is
        refused."""
        n = (1 << 2046) | 1
        jwk = {"kty": "RSA", "e": "AQAB", "n": b64url_encode(n.to_bytes(256, "big"))}
        _refused(jwk, "jwk_rsa_size")

    def test_sizes_checked_before_exponent_work(self) -> None:
        """A huge exponent under a huge modulus is refused on the octet counts alone."""
        jwk = _rsa_jwk(65537, n_bits=8192) | {"e": b64url_encode(b"\x01" * 1024)}
        _refused(jwk, "jwk_rsa_size")
        _refused(_rsa_jwk(65537) | {"e": b64url_encode(b"\x01" * 384)}, "jwk_rsa_exponent")


class TestEd448:
    """FAPI 2.0 section 5.4 allows EdDSA with Ed25519 only."""

    @staticmethod
    def _ed448() -> dict[str, str]:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed448

        raw = (
            ed448.Ed448PrivateKey.generate()
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
        return {"kty": "OKP", "crv": "Ed448", "x": b64url_encode(raw)}

    def test_refused_by_default(self) -> None:
        """An Ed448 key under EdDSA is jwk_curve_not_allowed."""
        _refused(self._ed448(), "jwk_curve_not_allowed", alg="EdDSA")

    def test_allowed_by_setting(self) -> None:
        """allow_ed448 admits it under EdDSA, never under Ed25519."""
        key = import_public_jwk(self._ed448(), alg="EdDSA", limits=KeyLimits(allow_ed448=True))
        assert key.kty == "OKP"
        _refused(self._ed448(), "jwk_curve_mismatch", alg="Ed25519", allow_ed448=True)


class TestMemberTypes:
    """Every member is type-checked before use: no other exception escapes."""

    @pytest.mark.parametrize("value", [["ES256"], {"a": 1}, 1, None, True])
    def test_alg_member_not_a_string(self, value: Any) -> None:
        """A JWK alg that is not a string is jwk_alg_mismatch (it was a TypeError)."""
        _refused(RFC_KEY | {"alg": value}, "jwk_alg_mismatch", alg="ES256")

    @pytest.mark.parametrize("ops", [[1], [["verify"]], [{"verify": 1}], [None, "verify"]])
    def test_key_ops_not_strings(self, ops: list[Any]) -> None:
        """key_ops must be a list of strings."""
        _refused(RFC_KEY | {"key_ops": ops}, "jwk_key_ops", alg="ES256")

    @pytest.mark.parametrize("crv", [["P-256"], {"P-256": 1}, 1, None])
    def test_crv_not_a_string(self, crv: Any) -> None:
        """A crv that is not a string is jwk_curve_mismatch."""
        _refused(RFC_KEY | {"crv": crv}, "jwk_curve_mismatch", alg="ES256")

    @pytest.mark.parametrize("kty", [["EC"], {"EC": 1}])
    def test_thumbprint_kty_not_a_string(self, kty: Any) -> None:
        """jwk_thumbprint refuses a kty that is not a string (it was a TypeError)."""
        with pytest.raises(JWKError) as info:
            jwk_thumbprint(RFC_KEY | {"kty": kty})
        assert info.value.reason == "jwk_kty_unsupported"


class TestVerifiers:
    @pytest.mark.parametrize("alg", ["PS256", "RS256", "EdDSA", "ES256"])
    def test_wrong_signature_of_the_right_length(self, alg: str) -> None:
        """A signature of the right length that does not verify is False, not an error;
        the right one is True."""
        signer = ProofSigner.generate(alg)
        key = import_public_jwk(dict(signer.public_jwk) | {"key_ops": ["verify", "sign"]}, alg=alg)
        good = signer._signature(b"message")
        assert key.verify(good, b"message") is True
        assert key.verify(bytes(len(good)), b"message") is False


@pytest.mark.parametrize("size", [32, 48, 66])
def test_der_signature_is_encode_dss_signature(size: int) -> None:
    """The hand-built DER of an ES* signature is byte for byte the library's."""
    import random

    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    from dpop_guard.jwk import _der_signature

    draw = random.Random(size)
    edges = [bytes(size), b"\x00" * (size - 1) + b"\x01", b"\xff" * size, b"\x80" + bytes(size - 1)]
    edges += [b"\x00" + b"\x80" + bytes(size - 2), b"\x7f" + b"\xff" * (size - 1)]
    values = edges + [draw.randbytes(size) for _ in range(200)]
    for r in values:
        for s in (values[draw.randrange(len(values))], r):
            expected = encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))
            assert _der_signature(r, s) == expected


@pytest.mark.parametrize("size", [32, 48])
def test_der_table_is_encode_dss_signature(size: int) -> None:
    """The table the ES256/ES384 verifier builds its DER from gives the library's bytes
    whenever it is used (R and S each without a leading zero octet)."""
    import random

    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    from dpop_guard.jwk import _der_heads

    heads = _der_heads(size)
    draw = random.Random(size)
    firsts = [1, 0x7F, 0x80, 0xFF]
    values = [bytes([f]) + draw.randbytes(size - 1) for f in firsts for _ in range(8)]
    values += [bytes([draw.randrange(1, 256)]) + draw.randbytes(size - 1) for _ in range(200)]
    for r in values:
        for s in (values[draw.randrange(len(values))], r):
            head, middle = heads[r[0] >> 7][s[0] >> 7]
            expected = encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))
            assert b"".join((head, r, middle, s)) == expected


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512"])
def test_ec_verify_accepts_every_signature_shape(alg: str) -> None:
    """Real signatures, whatever their R and S start with (a zero octet, a set high bit),
    verify through the table or the general DER builder alike; a flipped bit does not."""
    signer = ProofSigner.generate(alg)
    key = import_public_jwk(dict(signer.public_jwk), alg=alg)
    size = len(signer._signature(b"m")) // 2
    shapes = set()
    for i in range(400):
        message = b"message-%d" % i
        signature = signer._signature(message)
        r0, s0 = signature[0], signature[size]
        shapes.add((r0 == 0, r0 >> 7, s0 == 0, s0 >> 7))
        assert key.verify(signature, message) is True
        assert key.verify(signature[:-1] + bytes([signature[-1] ^ 1]), message) is False
    if alg == "ES512":  # P-521's R and S start with a zero octet half the time
        assert (True, 0, True, 0) in shapes and (False, 0, False, 0) in shapes
    else:  # every table entry was used
        assert {(False, hr, False, hs) for hr in (0, 1) for hs in (0, 1)} <= shapes


SMALL_ORDER = json.loads(
    (Path(__file__).parent / "vectors" / "ed25519_small_order.json").read_text()
)
_P = 2**255 - 19
_D = -121665 * pow(121666, -1, _P) % _P


def _decode_point(encoded: bytes) -> tuple[int, int] | None:
    """RFC 8032 section 5.1.3's decoding, lenient (y reduced mod p, x = -0 allowed), as
    some verifiers are: the point an encoding names, or None when it names none."""
    y = int.from_bytes(encoded, "little") & ((1 << 255) - 1)
    sign = encoded[31] >> 7
    y %= _P
    x2 = (y * y - 1) * pow(_D * y * y + 1, -1, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * pow(2, (_P - 1) // 4, _P) % _P
    if (x * x - x2) % _P:
        return None
    if x & 1 != sign:
        x = -x % _P
    return x, y


def _add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    t = _D * a[0] * b[0] * a[1] * b[1] % _P
    x = (a[0] * b[1] + b[0] * a[1]) * pow(1 + t, -1, _P) % _P
    y = (a[1] * b[1] + a[0] * b[0]) * pow(1 - t, -1, _P) % _P
    return x, y


def _okp(x_hex: str) -> dict[str, str]:
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(bytes.fromhex(x_hex))}


class TestEd25519SmallOrder:
    """A small-order Ed25519 key verifies forged signatures (R = identity, S = 0 verifies
    every message under the identity key), so a token bound to it is bound to nothing:
    every spelling of the eight small-order points is refused at import."""

    @pytest.mark.parametrize(
        "case",
        SMALL_ORDER["canonical"] + SMALL_ORDER["non_canonical"],
        ids=lambda c: f"{c['name']}:{c['x'][:4]}{c['x'][-2:]}",
    )
    def test_refused(self, case: dict[str, str]) -> None:
        for alg in ("EdDSA", "Ed25519"):
            _refused(_okp(case["x"]), "jwk_small_order", alg=alg)

    @pytest.mark.parametrize("case", SMALL_ORDER["canonical"], ids=lambda c: c["name"])
    def test_vectors_are_small_order(self, case: dict[str, str]) -> None:
        """The data checked by arithmetic: 8 times each point is the identity."""
        point = _decode_point(bytes.fromhex(case["x"]))
        assert point is not None
        for _ in range(3):
            point = _add(point, point)
        assert point == (0, 1)

    def test_identity_key_verifies_a_forgery(self) -> None:
        """Why: cryptography (OpenSSL) accepts R = identity, S = 0 under the identity key."""
        from cryptography.hazmat.primitives.asymmetric import ed25519

        identity = bytes.fromhex(SMALL_ORDER["canonical"][0]["x"])
        key = ed25519.Ed25519PublicKey.from_public_bytes(identity)
        key.verify(identity + bytes(32), b"any message at all")

    def test_keys_of_large_order_pass(self) -> None:
        for _ in range(20):
            signer = ProofSigner.generate("EdDSA")
            assert import_public_jwk(dict(signer.public_jwk), alg="EdDSA").jkt == signer.jkt
