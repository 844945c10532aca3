"""The pure verifier: one test per rejection rule, RFC vectors, and properties."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpop_guard._b64 import b64url_encode
from dpop_guard.client import ProofSigner
from dpop_guard.errors import DPoPGuardError, InvalidDPoPProof, InvalidRequest, UseDPoPNonce
from dpop_guard.nonce import HMACNonceSource
from dpop_guard.proof import (
    CLAIM_RULES,
    ProofPolicy,
    ProofTimeRefused,
    ProofVerifier,
    compute_ath,
    select_proof,
    verify_proof,
)
from dpop_guard.testing import DELETE, make_proof

NOW = 1_800_000_000
URL = "https://rs.example.com/accounts"
TOKEN = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
POLICY = ProofPolicy()
VECTORS = json.loads((Path(__file__).parent / "vectors" / "rfc9449.json").read_text())


def verify(
    proof: str,
    *,
    method: str = "GET",
    url: str = URL,
    token: str | None = TOKEN,
    now: int = NOW,
    policy: ProofPolicy = POLICY,
) -> Any:
    return verify_proof(proof, method=method, url=url, access_token=token, now=now, policy=policy)


def proof_for(signer: ProofSigner, **kwargs: Any) -> str:
    kwargs.setdefault("htu", URL)
    kwargs.setdefault("access_token", TOKEN)
    kwargs.setdefault("iat", NOW)
    return make_proof(signer, **kwargs)


def reject(proof: str, reason: str, **kwargs: Any) -> None:
    with pytest.raises(InvalidDPoPProof) as info:
        verify(proof, **kwargs)
    assert info.value.reason == reason
    assert info.value.error == "invalid_dpop_proof"
    assert info.value.status == 401


class TestVectors:
    @pytest.mark.parametrize("case", VECTORS["ath"], ids=lambda c: c["ath"][:8])
    def test_ath(self, case: dict[str, str]) -> None:
        """compute_ath reproduces RFC 9449's example."""
        assert compute_ath(case["access_token"]) == case["ath"]

    @pytest.mark.parametrize("case", VECTORS["headers"], ids=lambda c: c["name"])
    def test_rfc_header_segment(self, case: dict[str, str]) -> None:
        """The RFC's own proof header passes every header check and yields its jkt."""
        key = ProofVerifier(POLICY)._parse_header(case["segment"])
        assert key.jkt == case["jkt"]
        assert key.alg == "ES256"


class TestAccepts:
    @pytest.mark.parametrize("alg", ["ES256", "PS256", "EdDSA"])
    def test_each_default_algorithm(self, signers: dict[str, ProofSigner], alg: str) -> None:
        """A fresh proof verifies and reports the signer's thumbprint."""
        signer = signers[alg]
        result = verify(proof_for(signer))
        assert result.jkt == signer.jkt
        assert result.htm == "GET" and result.htu == URL and result.iat == NOW
        # The shared stores' key: the same in every version of a fleet, so never changed.
        assert (
            result.replay_key == hashlib.sha256(f"{signer.jkt}:{result.jti}".encode()).hexdigest()
        )
        assert result.replay_ttl == POLICY.max_age + POLICY.max_future_skew + 1

    def test_fully_specified_ed25519(self) -> None:
        """RFC 9864's Ed25519 is accepted wherever EdDSA is."""
        signer = ProofSigner.generate("Ed25519")
        assert verify(proof_for(signer)).jkt == signer.jkt

    @pytest.mark.parametrize("alg", ["ES384", "ES512", "RS256"])
    def test_opt_in_algorithms(self, alg: str) -> None:
        """Algorithms outside the FAPI default verify once listed."""
        signer = ProofSigner.generate(alg)
        policy = ProofPolicy(algorithms=(alg,))
        assert verify(proof_for(signer), policy=policy).jkt == signer.jkt
        reject(proof_for(signer), "alg_not_allowed")

    @pytest.mark.parametrize("typ", ["dpop+jwt", "DPoP+JWT", "application/dpop+jwt"])
    def test_typ_media_type_rules(self, signer: ProofSigner, typ: str) -> None:
        """typ compares as a media type: case-insensitive, 'application/' optional."""
        verify(proof_for(signer, header={"typ": typ}))

    @pytest.mark.parametrize(
        "htu",
        [
            URL + "?page=2",
            URL + "#frag",
            "HTTPS://RS.EXAMPLE.COM/accounts",
            "https://rs.example.com:443/accounts",
        ],
    )
    def test_htu_normalisation(self, signer: ProofSigner, htu: str) -> None:
        """Query and fragment are ignored; scheme, host and default port normalise."""
        verify(proof_for(signer, htu=htu))

    def test_request_url_with_query(self, signer: ProofSigner) -> None:
        """The request side is normalised too."""
        verify(proof_for(signer), url=URL + "?x=1")

    def test_iat_window_edges(self, signer: ProofSigner) -> None:
        """iat exactly max_age old, or max_future_skew ahead, is accepted."""
        verify(proof_for(signer, iat=NOW - POLICY.max_age))
        verify(proof_for(signer, iat=NOW + POLICY.max_future_skew))

    def test_no_token_no_ath_needed(self, signer: ProofSigner) -> None:
        """Without an access token, ath is not required."""
        verify(proof_for(signer, access_token=None), token=None)

    def test_key_cache_reuses_header(self, signer: ProofSigner) -> None:
        """A verifier parses each header once; a bad signature is never cached."""
        verifier = ProofVerifier(POLICY)
        other = ProofSigner.generate("ES256")
        forged = proof_for(other).split(".")
        bad = ".".join([proof_for(signer).split(".")[0], forged[1], forged[2]])
        with pytest.raises(InvalidDPoPProof):
            verifier.verify(bad, method="GET", url=URL, access_token=TOKEN, now=NOW)
        assert len(verifier._keys) == 0
        for _ in range(3):
            verifier.verify(proof_for(signer), method="GET", url=URL, access_token=TOKEN, now=NOW)
        assert len(verifier._keys) == 1

    def test_memos_are_bounded_in_bytes(self) -> None:
        """A flood of distinct signed headers and of distinct maximal tokens leaves the
        header and ath memos within their byte budget (tracemalloc): a header or token
        over MAX_REMEMBERED octets is never kept, and a memo past its budget starts
        over."""
        import tracemalloc

        from dpop_guard._bounded import MAX_REMEMBERED, MEMO_BUDGET

        verifier = ProofVerifier(POLICY)
        signers = [ProofSigner.generate("ES256") for _ in range(40)]
        tokens = [f"{i:06d}".ljust(length, "t") for i in range(300) for length in (
            MAX_REMEMBERED, 8000)]  # fmt: skip
        proofs = [
            (proof_for(signers[i % len(signers)], access_token=token), token)
            for i, token in enumerate(tokens)
        ]
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for proof, token in proofs:
                verifier.verify(proof, method="GET", url=URL, access_token=token, now=NOW)
            retained = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert verifier._keys.held <= MEMO_BUDGET and verifier._ath.held <= MEMO_BUDGET
        assert all(len(token) <= MAX_REMEMBERED for token in verifier._ath._data)
        assert retained < 2 * MEMO_BUDGET + 256 * 1024, f"{retained:,} bytes retained"

    def test_a_zero_budget_remembers_nothing(self, signer: ProofSigner) -> None:
        """memo_budget=0: every header is parsed and every ath computed per proof."""
        verifier = ProofVerifier(POLICY, memo_budget=0)
        for _ in range(3):
            verifier.verify(proof_for(signer), method="GET", url=URL, access_token=TOKEN, now=NOW)
        assert len(verifier._keys) == 0 and len(verifier._ath) == 0


class TestSelectProof:
    def test_missing(self) -> None:
        """No DPoP header: invalid_dpop_proof."""
        with pytest.raises(InvalidDPoPProof) as info:
            select_proof([])
        assert info.value.reason == "dpop_header_missing"

    def test_multiple(self) -> None:
        """Two DPoP headers: 400 invalid_request."""
        with pytest.raises(InvalidRequest) as info:
            select_proof(["a.b.c", "a.b.c"])
        assert info.value.reason == "dpop_header_multiple"
        assert info.value.status == 400


class TestStructure:
    def test_too_large(self, signer: ProofSigner) -> None:
        """The size cap applies before any parsing."""
        reject("a" * (POLICY.max_proof_bytes + 1), "proof_too_large")

    @pytest.mark.parametrize(
        "proof",
        [
            "",
            "abc",
            "a.b",
            "a.b.c.d",
            "a.b.c.d.e",
            "é.b.c",
            "a.b.c d",
            "a.b.c=",
        ],
    )
    def test_malformed(self, proof: str) -> None:
        """Not three base64url segments of ASCII."""
        with pytest.raises(InvalidDPoPProof) as info:
            verify(proof)
        assert info.value.reason in ("proof_malformed", "header_invalid")

    @pytest.mark.parametrize("where", ["header", "payload", "signature", "dot"])
    @pytest.mark.parametrize("cached", [False, True])
    def test_non_ascii_octets_are_malformed(
        self, signer: ProofSigner, where: str, cached: bool
    ) -> None:
        """A non-ASCII octet anywhere in the header's octets is proof_malformed, whichever
        check meets it first: a header not yet cached, a payload whose signature is valid
        (signed over the octets as sent) or not, a signature, next to a dot."""
        verifier = ProofVerifier(ProofPolicy())
        good = proof_for(signer).encode()
        if cached:  # the header's key is known: the header is not parsed again
            verifier.verify(good, method="GET", url=URL, access_token=None, now=NOW)
        header, payload, signature = proof_for(signer).encode().split(b".")
        if where == "header":
            proof = header + b"\xc3\xa9." + payload + b"." + signature
        elif where == "signature":
            proof = header + b"." + payload + b"." + signature[:-2] + b"\xff"
        elif where == "dot":
            proof = header + b".\x80" + payload + b"." + signature
        else:
            signing_input = header + b"." + payload[:-4] + b"\xe9"
            signed = b64url_encode(signer._signature(signing_input)).encode()
            proof = signing_input + b"." + signed
        for variant in (proof, proof[:-3] + b"AAA"):  # valid signature, then not
            with pytest.raises(InvalidDPoPProof) as refused:
                verifier.verify(variant, method="GET", url=URL, access_token=None, now=NOW)
            assert refused.value.reason == "proof_malformed"

    def test_two_proofs_joined_by_comma(self, signer: ProofSigner) -> None:
        """Two proofs folded into one header value are refused."""
        with pytest.raises(InvalidDPoPProof) as info:
            verify(proof_for(signer) + ", " + proof_for(signer))
        assert info.value.reason in ("proof_malformed", "signature_invalid")

    @pytest.mark.parametrize(
        "raw",
        [
            b"not json",
            b"[1,2]",
            b'"str"',
            b'{"typ":"dpop+jwt","typ":"dpop+jwt"}',
            b'{"a":' * 20 + b"1" + b"}" * 20,
            b"\xff\xfe",
            b'{"n": NaN}',
        ],
    )
    def test_header_not_acceptable_json(self, signer: ProofSigner, raw: bytes) -> None:
        """The header must be a shallow JSON object with unique members."""
        rest = proof_for(signer).split(".", 1)[1]
        reject(b64url_encode(raw) + "." + rest, "header_invalid")

    def test_json_depth_is_configurable(self, signer: ProofSigner) -> None:
        """A lower max_json_depth refuses a nested claim the default accepts."""
        proof = proof_for(signer, claims={"x": {"y": {"z": 1}}})
        verify(proof)
        with pytest.raises(InvalidDPoPProof) as info:
            verify(proof, policy=ProofPolicy(max_json_depth=2))
        assert info.value.reason == "payload_invalid"

    def test_non_canonical_base64(self, signer: ProofSigner) -> None:
        """A second spelling of the same signature bytes is refused."""
        header, payload, sig = proof_for(signer).split(".")
        # ES256 signatures are 64 bytes: 86 characters, the last carrying 4 spare bits.
        last = sig[-1]
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        twin = alphabet[alphabet.index(last) ^ 1]
        reject(f"{header}.{payload}.{sig[:-1]}{twin}", "proof_malformed")


class TestHeader:
    @pytest.mark.parametrize(
        "typ", [DELETE, "JWT", "at+jwt", "secevent+jwt", 1, None, ["dpop+jwt"]]
    )
    def test_typ(self, signer: ProofSigner, typ: Any) -> None:
        """typ must be dpop+jwt."""
        reject(proof_for(signer, header={"typ": typ}), "typ_invalid")

    @pytest.mark.parametrize(
        "alg", [DELETE, "none", "HS256", "RS256", "unsupported", 1, True, None]
    )
    def test_alg(self, signer: ProofSigner, alg: Any) -> None:
        """alg must be on the allow-list: never none or HMAC."""
        reject(proof_for(signer, header={"alg": alg}), "alg_not_allowed")

    def test_unsigned_none(self, signer: ProofSigner) -> None:
        """An unsigned proof (alg none, empty signature) is refused."""
        header = b64url_encode(
            json.dumps({"typ": "dpop+jwt", "alg": "none", "jwk": dict(signer.public_jwk)}).encode()
        )
        payload = proof_for(signer).split(".")[1]
        with pytest.raises(InvalidDPoPProof):
            verify(f"{header}.{payload}.")

    @pytest.mark.parametrize("crit", [["exp"], ["b64"], [], "b64"])
    def test_crit(self, signer: ProofSigner, crit: Any) -> None:
        """Any crit is refused: we understand no extensions."""
        reject(proof_for(signer, header={"crit": crit}), "crit_unsupported")

    def test_jwk_missing(self, signer: ProofSigner) -> None:
        """The header must carry the public key."""
        reject(proof_for(signer, header={"jwk": DELETE}), "jwk_missing")

    @pytest.mark.parametrize("jwk", ["", 1, True, None, "foo", [], ["a"]])
    def test_jwk_not_object(self, signer: ProofSigner, jwk: Any) -> None:
        """jwk must be a JSON object."""
        reject(proof_for(signer, header={"jwk": jwk}), "jwk_not_object")

    def test_jwk_private(self, signer: ProofSigner) -> None:
        """A private key in the header is refused."""
        private = dict(signer.public_jwk) | {"d": "AAAA"}
        reject(proof_for(signer, header={"jwk": private}), "jwk_private")

    def test_jwk_symmetric(self, signer: ProofSigner) -> None:
        """An oct key is refused."""
        reject(proof_for(signer, header={"jwk": {"kty": "oct", "k": "c2VjcmV0"}}), "jwk_symmetric")

    @pytest.mark.parametrize("kty", ["XYZ", 1, DELETE])
    def test_jwk_kty(self, signer: ProofSigner, kty: Any) -> None:
        """kty must be EC, RSA or OKP."""
        jwk = dict(signer.public_jwk)
        if kty is DELETE:
            del jwk["kty"]
        else:
            jwk["kty"] = kty
        reject(proof_for(signer, header={"jwk": jwk}), "jwk_kty_unsupported")

    def test_jwk_kty_does_not_fit_alg(self, signer: ProofSigner) -> None:
        """An EC key under PS256 is refused."""
        reject(proof_for(signer, header={"alg": "PS256"}), "jwk_alg_mismatch")

    def test_jwk_alg_member_mismatch(self, signer: ProofSigner) -> None:
        """The JWK's own alg, if present, must equal the header alg."""
        jwk = dict(signer.public_jwk) | {"alg": "ES384"}
        reject(proof_for(signer, header={"jwk": jwk}), "jwk_alg_mismatch")

    def test_jwk_curve_tied_to_alg(self) -> None:
        """A P-384 key cannot sign ES256."""
        signer = ProofSigner.generate("ES384")
        reject(proof_for(signer, header={"alg": "ES256"}), "jwk_curve_mismatch")

    def test_jwk_use_enc(self, signer: ProofSigner) -> None:
        """use, if present, must be sig."""
        jwk = dict(signer.public_jwk) | {"use": "enc"}
        reject(proof_for(signer, header={"jwk": jwk}), "jwk_use_not_sig")

    def test_jwk_key_ops(self, signer: ProofSigner) -> None:
        """key_ops, if present, must allow verify."""
        jwk = dict(signer.public_jwk) | {"key_ops": ["encrypt"]}
        reject(proof_for(signer, header={"jwk": jwk}), "jwk_key_ops")

    @pytest.mark.parametrize(
        "change",
        [
            {"x": "AAAA"},  # wrong length
            {"y": b64url_encode(b"\x01" * 32)},  # not on the curve
            {"x": 5},  # wrong JSON type
            {"x": "AA=A"},  # not base64url
        ],
    )
    def test_jwk_invalid_ec(self, signer: ProofSigner, change: dict[str, Any]) -> None:
        """EC coordinates must be exact-length base64url and on the curve."""
        jwk = dict(signer.public_jwk) | change
        reject(proof_for(signer, header={"jwk": jwk}), "jwk_invalid")

    def test_rsa_modulus_bounds(self, signers: dict[str, ProofSigner]) -> None:
        """RSA moduli outside 2048..4096 bits are refused before any RSA work."""
        signer = signers["PS256"]
        huge = (1 << 8191) | 1
        jwk = {"kty": "RSA", "e": "AQAB", "n": b64url_encode(huge.to_bytes(1024, "big"))}
        reject(proof_for(signer, header={"jwk": jwk}), "jwk_rsa_size")
        small = (1 << 1023) | 1
        jwk["n"] = b64url_encode(small.to_bytes(128, "big"))
        reject(proof_for(signer, header={"jwk": jwk}), "jwk_rsa_size")

    def test_rsa_leading_zero(self, signers: dict[str, ProofSigner]) -> None:
        """A non-minimal modulus encoding (a second thumbprint) is refused."""
        signer = signers["PS256"]
        jwk = dict(signer.public_jwk)
        from dpop_guard._b64 import b64url_decode

        jwk["n"] = b64url_encode(b"\x00" + b64url_decode(jwk["n"]))
        reject(proof_for(signer, header={"jwk": jwk}), "jwk_invalid")

    def test_okp_wrong_curve(self, signers: dict[str, ProofSigner]) -> None:
        """An X25519 key cannot sign."""
        signer = signers["EdDSA"]
        jwk = dict(signer.public_jwk) | {"crv": "X25519"}
        reject(proof_for(signer, header={"jwk": jwk}), "jwk_curve_mismatch")


class TestSignature:
    def test_other_key(self, signer: ProofSigner) -> None:
        """A header naming one key with a signature from another is refused."""
        other = ProofSigner.generate("ES256")
        reject(proof_for(other, header={"jwk": dict(signer.public_jwk)}), "signature_invalid")

    def test_tampered_payload(self, signer: ProofSigner) -> None:
        """Changing a claim after signing breaks the signature."""
        header, _, sig = proof_for(signer).split(".")
        payload = b64url_encode(
            json.dumps({"jti": "x", "htm": "GET", "htu": URL, "iat": NOW}).encode()
        )
        reject(f"{header}.{payload}.{sig}", "signature_invalid")

    def test_der_encoded_ecdsa(self, signer: ProofSigner) -> None:
        """ECDSA signatures must be raw R||S, not DER."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        header, payload, _ = proof_for(signer).split(".")
        assert isinstance(signer.key, ec.EllipticCurvePrivateKey)
        der = signer.key.sign(f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
        reject(f"{header}.{payload}.{b64url_encode(der)}", "signature_invalid")

    def test_corrupted(self, signer: ProofSigner) -> None:
        """A signature with one byte changed is refused."""
        header, payload, sig = proof_for(signer).split(".")
        from dpop_guard._b64 import b64url_decode

        raw = bytearray(b64url_decode(sig))
        raw[5] ^= 0x01
        reject(f"{header}.{payload}.{b64url_encode(bytes(raw))}", "signature_invalid")


class TestClaims:
    def test_payload_not_json(self, signer: ProofSigner) -> None:
        """The payload must be a JSON object."""
        proof = signer.sign_raw(None, {"x": 1}).split(".")
        bad = b64url_encode(b"[1]")
        signing_input = f"{proof[0]}.{bad}"
        sig = b64url_encode(signer._signature(signing_input.encode()))
        reject(f"{signing_input}.{sig}", "payload_invalid")

    @pytest.mark.parametrize("jti", [DELETE, "", 1, None, ["a"]])
    def test_jti(self, signer: ProofSigner, jti: Any) -> None:
        """jti must be a non-empty string."""
        reject(proof_for(signer, claims={"jti": jti}), "jti_missing")

    def test_jti_too_long(self, signer: ProofSigner) -> None:
        """jti is bounded."""
        reject(proof_for(signer, claims={"jti": "j" * 257}), "jti_too_long")

    @pytest.mark.parametrize("iat", [DELETE, "1800000000", True, None, [NOW]])
    def test_iat_type(self, signer: ProofSigner, iat: Any) -> None:
        """iat must be a number."""
        reject(proof_for(signer, claims={"iat": iat}), "iat_missing")

    @pytest.mark.parametrize("htm", [DELETE, 1, None])
    def test_htm_missing(self, signer: ProofSigner, htm: Any) -> None:
        """htm must be a string."""
        reject(proof_for(signer, claims={"htm": htm}), "htm_missing")

    @pytest.mark.parametrize("htm", ["POST", "get", "GET "])
    def test_htm_mismatch(self, signer: ProofSigner, htm: str) -> None:
        """htm must equal the method exactly."""
        reject(proof_for(signer, htm=htm), "htm_mismatch")

    @pytest.mark.parametrize("htu", [DELETE, 1, None, [URL]])
    def test_htu_missing(self, signer: ProofSigner, htu: Any) -> None:
        """htu must be a string."""
        reject(proof_for(signer, claims={"htu": htu}), "htu_missing")

    @pytest.mark.parametrize(
        "htu",
        [
            "https://other.example.com/accounts",
            URL + "/",
            URL + "x",
            "https://rs.example.com/",
            "http://rs.example.com/accounts",
            "https://rs.example.com:8443/accounts",
            "https://rs.example.com/Accounts",
            ":::*;",
            "/accounts",
            "",
            "https://user@rs.example.com/accounts",
            "https://rs.example.com/accounts\\",
        ],
    )
    def test_htu_mismatch(self, signer: ProofSigner, htu: str) -> None:
        """htu must name this resource: origin, path and trailing slash all count."""
        reject(proof_for(signer, htu=htu), "htu_mismatch")

    def test_iat_too_old(self, signer: ProofSigner) -> None:
        """One second past max_age is too old."""
        reject(proof_for(signer, iat=NOW - POLICY.max_age - 1), "iat_too_old")

    def test_iat_in_future(self, signer: ProofSigner) -> None:
        """One second past the future skew is in the future."""
        reject(proof_for(signer, iat=NOW + POLICY.max_future_skew + 1), "iat_in_future")

    def test_ath_missing(self, signer: ProofSigner) -> None:
        """With a token, ath is required."""
        reject(proof_for(signer, access_token=None), "ath_missing")

    def test_ath_of_other_token(self, signer: ProofSigner) -> None:
        """ath must hash this very token."""
        reject(proof_for(signer, access_token="another-token"), "ath_mismatch")

    def test_ath_padded(self, signer: ProofSigner) -> None:
        """A padded ath is not the same string."""
        reject(proof_for(signer, claims={"ath": compute_ath(TOKEN) + "="}), "ath_mismatch")

    def test_ath_wrong_type(self, signer: ProofSigner) -> None:
        """ath must be a string."""
        reject(proof_for(signer, claims={"ath": 5}), "ath_missing")

    @pytest.mark.parametrize("nonce", [5, None, ["n"], True])
    def test_nonce_wrong_type(self, signer: ProofSigner, nonce: Any) -> None:
        """nonce, if present, must be a string (null included: found by the fuzzer)."""
        reject(proof_for(signer, claims={"nonce": nonce}), "nonce_invalid")


_VALID_SIGNER = ProofSigner.generate("ES256")
_VALID_PROOF = proof_for(_VALID_SIGNER)
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


class TestProperties:
    @settings(max_examples=300, deadline=None)
    @given(st.text(max_size=600))
    def test_any_text_is_refused_cleanly(self, text: str) -> None:
        """No input raises anything but InvalidDPoPProof."""
        with pytest.raises(InvalidDPoPProof):
            verify(text)

    @settings(max_examples=300, deadline=None)
    @given(
        st.integers(min_value=0, max_value=len(_VALID_PROOF) - 1), st.sampled_from(_ALPHABET + ".")
    )
    def test_one_character_changed_is_never_accepted(self, pos: int, char: str) -> None:
        """Every single-character mutation of a valid proof is refused."""
        if _VALID_PROOF[pos] == char:
            return
        mutated = _VALID_PROOF[:pos] + char + _VALID_PROOF[pos + 1 :]
        with pytest.raises(InvalidDPoPProof):
            verify(mutated)

    @settings(max_examples=100, deadline=None)
    @given(st.permutations([0, 1, 2]))
    def test_segment_swaps_are_refused(self, order: list[int]) -> None:
        """Reordered segments never verify."""
        if order == [0, 1, 2]:
            return
        parts = _VALID_PROOF.split(".")
        with pytest.raises(InvalidDPoPProof):
            verify(".".join(parts[i] for i in order))

    @settings(max_examples=200, deadline=None)
    @given(
        st.dictionaries(
            st.sampled_from(["jti", "htm", "htu", "iat", "ath", "nonce", "x"]),
            st.one_of(
                st.none(),
                st.booleans(),
                st.integers(),
                st.floats(),
                st.text(max_size=20),
                st.lists(st.integers(), max_size=2),
            ),
        )
    )
    def test_claim_mutations(self, claims: dict[str, Any]) -> None:
        """Arbitrary claim values either verify (only if every check passes) or raise
        InvalidDPoPProof; never anything else."""
        proof = proof_for(_VALID_SIGNER, claims=claims)
        try:
            result = verify(proof)
        except InvalidDPoPProof:
            return
        assert result.htm == "GET"
        assert isinstance(result.jti, str) and result.jti


def reject_time(
    proof: str, reason: str, description: str, claim: str, skew: float, **kwargs: Any
) -> None:
    """Refused for its time: the wire text names what failed and carries no time at all;
    the measured skew rides on the exception, for logs."""
    with pytest.raises(ProofTimeRefused) as info:
        verify(proof, **kwargs)
    error = info.value
    assert isinstance(error, InvalidDPoPProof)
    assert (error.reason, error.error, error.status) == (reason, "invalid_dpop_proof", 401)
    assert error.description == description
    assert not any(c.isdigit() for c in error.description)
    assert error.claim == claim and error.skew == pytest.approx(skew)


TOO_OLD = "The DPoP proof is too old."
IN_FUTURE = "The DPoP proof is issued in the future."


class TestClock:
    """FAPI 2.0 Security Profile section 5.3.2.1: iat and nbf may be up to 10 s in the
    future; a proof is accepted up to 60 s after its iat; exp, when present, is honoured."""

    def test_defaults(self) -> None:
        """A future skew of 10 s and a past window of 60 s, named apart."""
        assert (POLICY.max_future_skew, POLICY.max_age) == (10, 60)

    @pytest.mark.parametrize("offset", [8, -10, 10, -60, 10.999, -60.0, 0.5])
    def test_accepted(self, signer: ProofSigner, offset: float) -> None:
        """+8 s (DpopIat10SecondsAfterSucceeds), -10 s, and both edges are accepted;
        a fractional iat up to the end of the tenth second ahead too."""
        proof = make_proof(signer, htu=URL, access_token=TOKEN, claims={"iat": NOW + offset})
        assert verify(proof).iat == int(NOW + offset)

    @pytest.mark.parametrize("offset", [-61, -60.001, -3600])
    def test_too_old(self, signer: ProofSigner, offset: float) -> None:
        """Older than max_age: iat_too_old, "too old", the skew measured."""
        proof = proof_for(signer, claims={"iat": NOW + offset})
        reject_time(proof, "iat_too_old", TOO_OLD, "iat", offset)

    @pytest.mark.parametrize("offset", [11, 11.5, 86400])
    def test_in_future(self, signer: ProofSigner, offset: float) -> None:
        """A whole second beyond the future skew: iat_in_future, the skew measured."""
        proof = proof_for(signer, claims={"iat": NOW + offset})
        reject_time(proof, "iat_in_future", IN_FUTURE, "iat", offset)

    def test_configurable(self, signer: ProofSigner) -> None:
        """Both tolerances follow the policy: no future skew, a 5 s window."""
        policy = ProofPolicy(max_future_skew=0, max_age=5)
        verify(proof_for(signer, iat=NOW - 5), policy=policy)
        verify(proof_for(signer, claims={"iat": NOW + 0.9}), policy=policy)
        reject_time(
            proof_for(signer, iat=NOW + 1), "iat_in_future", IN_FUTURE, "iat", 1, policy=policy
        )
        reject_time(
            proof_for(signer, iat=NOW - 6), "iat_too_old", TOO_OLD, "iat", -6, policy=policy
        )

    def test_nbf_and_exp_accepted(self, signer: ProofSigner) -> None:
        """A proof carrying nbf and exp (CheckDpopProofNbfExp) is accepted."""
        verify(proof_for(signer, claims={"nbf": NOW, "exp": NOW + 60}))
        verify(proof_for(signer, claims={"nbf": NOW + 10.5, "exp": NOW + 1}))

    @pytest.mark.parametrize("offset", [11, 11.25, 3600])
    def test_nbf_in_future(self, signer: ProofSigner, offset: float) -> None:
        """nbf beyond the future skew: nbf_in_future, "not yet valid"."""
        proof = proof_for(signer, claims={"nbf": NOW + offset})
        reject_time(proof, "nbf_in_future", "The DPoP proof is not yet valid.", "nbf", offset)

    @pytest.mark.parametrize("offset", [0, 0.5, -1, -3600])
    def test_expired(self, signer: ProofSigner, offset: float) -> None:
        """From the second of its exp on (part of it may be past exp): proof_expired."""
        proof = proof_for(signer, claims={"exp": NOW + offset})
        reject_time(proof, "proof_expired", "The DPoP proof has expired.", "exp", offset)

    @pytest.mark.parametrize("name", ["nbf", "exp"])
    @pytest.mark.parametrize(
        "value", ["1800000000", None, True, False, [NOW], {"t": NOW}, -1, 2**53 + 1, 10**30]
    )
    def test_not_a_numeric_date(self, signer: ProofSigner, name: str, value: Any) -> None:
        """nbf and exp, when present, must be finite numbers in 0..2**53."""
        reject(proof_for(signer, claims={name: value}), f"{name}_invalid")

    def test_infinite_iat_is_not_json(self, signer: ProofSigner) -> None:
        """An iat that overflows a double (1e400) is refused at the parse."""
        header = proof_for(signer).split(".")[0]
        payload = b64url_encode(
            f'{{"jti":"j","htm":"GET","htu":"{URL}","iat":1e400,"ath":"{compute_ath(TOKEN)}"}}'.encode()
        )
        signature = b64url_encode(signer._signature(f"{header}.{payload}".encode()))
        reject(f"{header}.{payload}.{signature}", "payload_invalid")


def _last_accepted(verifier: ProofVerifier, proof: str, first: int, nonces: Any = None) -> int:
    """The last whole second at which ``proof``, first used at ``first``, is accepted;
    and the next second refuses it."""
    for now in range(first, first + 10_000):
        try:
            verifier.verify(
                proof, method="GET", url=URL, access_token=TOKEN, now=now, nonces=nonces
            )
        except (InvalidDPoPProof, UseDPoPNonce):
            assert now > first
            return now - 1
    raise AssertionError("accepted for 10,000 s")


class TestReplayTTL:
    """VerifiedProof.replay_ttl covers every second at which the proof can be accepted
    again: the past window, the future skew, the whole-second rounding and the nonce
    window, for every iat (fractions included)."""

    @pytest.mark.parametrize(
        "policy",
        [ProofPolicy(), ProofPolicy(max_age=5, max_future_skew=2), ProofPolicy(max_future_skew=0)],
        ids=["default", "short", "no-skew"],
    )
    def test_every_iat_in_the_window(self, signer: ProofSigner, policy: ProofPolicy) -> None:
        """Record at first use for ttl seconds: it outlives the last accepted second, and
        for the iat at the future edge it is exactly long enough."""
        verifier = ProofVerifier(policy)
        window = [
            NOW + quarter / 4
            for quarter in range(-4 * policy.max_age, 4 * (policy.max_future_skew + 1))
        ] + [NOW + policy.max_future_skew + 0.999]
        tightest = 0
        for iat in window:
            proof = proof_for(signer, claims={"iat": iat})
            ttl = verifier.verify(
                proof, method="GET", url=URL, access_token=TOKEN, now=NOW
            ).replay_ttl
            last = _last_accepted(verifier, proof, NOW)
            # The record, written during second NOW, must still exist during second
            # `last`, which ends at last + 1.
            assert ttl >= last - NOW + 1, (iat, ttl, last)
            tightest = max(tightest, last - NOW + 1)
        assert tightest == policy.replay_ttl() == policy.max_age + policy.max_future_skew + 1

    def test_future_edge_regression(self, signer: ProofSigner) -> None:
        """A proof at the future edge, accepted again 70.5 s after its first use before
        this fix, is remembered for as long as it is accepted."""
        proof = proof_for(signer, iat=NOW + POLICY.max_future_skew)
        ttl = verify(proof).replay_ttl
        last = _last_accepted(ProofVerifier(POLICY), proof, NOW)
        assert last == NOW + 70 and ttl == 71 >= last - NOW + 1

    def test_with_nonce(self, signer: ProofSigner) -> None:
        """With a valid server nonce the iat window widens to the nonce lifetime, and the
        record lives that long too."""
        nonces = HMACNonceSource(b"replay-ttl-nonce-secret-01234567")
        verifier = ProofVerifier(POLICY)
        for first in (NOW, NOW + 59):  # early and late in a nonce step
            nonce = nonces.issue(signer.jkt, first)
            for offset in (-120, -60, 0, 10, 10.5):
                proof = proof_for(signer, claims={"iat": first + offset, "nonce": nonce})
                ttl = verifier.verify(
                    proof, method="GET", url=URL, access_token=TOKEN, now=first, nonces=nonces
                ).replay_ttl
                assert ttl == POLICY.replay_ttl(nonces.lifetime) == 120 + 10 + 1
                last = _last_accepted(verifier, proof, first, nonces)
                assert ttl >= last - first + 1, (first, offset, ttl, last)


class TestPolicy:
    """ProofPolicy lives with the verifier; settings re-exports it."""

    def test_reexported_from_settings(self) -> None:
        """Existing imports from dpop_guard.settings keep working."""
        from dpop_guard import settings

        assert settings.ProofPolicy is ProofPolicy

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"max_age": 0}, "max_age"),
            ({"max_age": 3601}, "max_age"),
            ({"max_age": 1.5}, "max_age"),
            ({"max_future_skew": -1}, "max_future_skew"),
            ({"max_future_skew": 3601}, "max_future_skew"),
            ({"algorithms": "ES256"}, "algorithms"),
        ],
    )
    def test_invalid(self, kwargs: dict[str, Any], field: str) -> None:
        """Out-of-range tolerances raise ValueError naming the field."""
        with pytest.raises(ValueError, match=field):
            ProofPolicy(**kwargs)

    def test_ed448_only_by_setting(self) -> None:
        """Through the verifier: an Ed448 key under EdDSA needs allow_ed448."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed448

        key = ed448.Ed448PrivateKey.generate()
        x = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        jwk = {"kty": "OKP", "crv": "Ed448", "x": b64url_encode(x)}
        header = {"typ": "dpop+jwt", "alg": "EdDSA", "jwk": jwk}
        claims = {"jti": "j", "htm": "GET", "htu": URL, "iat": NOW, "ath": compute_ath(TOKEN)}
        signing_input = ".".join(
            b64url_encode(json.dumps(part).encode()) for part in (header, claims)
        )
        proof = f"{signing_input}.{b64url_encode(key.sign(signing_input.encode()))}"
        reject(proof, "jwk_curve_not_allowed")
        assert verify(proof, policy=ProofPolicy(allow_ed448=True)).jti == "j"


class TestImportPurity:
    def test_core_imports_nothing_async(self) -> None:
        """proof, jwk and nonce import none of httpx, starlette, anyio or redis. (The
        package __init__ is bypassed: this checks the modules' own imports.)"""
        code = "\n".join(
            [
                "import importlib.util, pathlib, sys, types",
                "spec = importlib.util.find_spec('dpop_guard')",
                "package = types.ModuleType('dpop_guard')",
                "package.__path__ = list(spec.submodule_search_locations)",
                "sys.modules['dpop_guard'] = package",
                "import dpop_guard.proof, dpop_guard.jwk, dpop_guard.nonce",
                "heavy = ('httpx', 'starlette', 'anyio', 'redis', 'asyncio')",
                "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))",
            ]
        )
        result = subprocess.run(  # noqa: S603 - our own interpreter, a fixed program
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
        )
        assert result.stdout.strip() == "[]", result.stdout


_RULE_SIGNER = ProofSigner.generate("ES256")
_RULE_NONCES = HMACNonceSource(b"rule-table-nonce-secret-0123456789")
_ABSENT: Any = object()

# Per claim check, in the order CLAIM_RULES makes them: ways to break that check alone,
# each as (member, value or _ABSENT, the reason refused). A nonce source is passed when a
# breaker names the member "nonce-source".
_RULES_CHECKS = {
    "_rule_types": ("jti", "iat"),
    "_rule_request": ("htm", "htu"),
    "_rule_nonce": ("nonce",),
    "_rule_time": ("time",),
    "_rule_ath": ("ath",),
}
_BREAKERS: dict[str, list[tuple[str, Any, str]]] = {
    "jti": [
        ("jti", _ABSENT, "jti_missing"),
        ("jti", "", "jti_missing"),
        ("jti", 7, "jti_missing"),
        ("jti", "j" * 257, "jti_too_long"),
    ],
    "iat": [
        ("iat", _ABSENT, "iat_missing"),
        ("iat", "1", "iat_missing"),
        ("iat", True, "iat_missing"),
    ],
    "htm": [
        ("htm", _ABSENT, "htm_missing"),
        ("htm", 1, "htm_missing"),
        ("htm", "POST", "htm_mismatch"),
    ],
    "htu": [("htu", None, "htu_missing"), ("htu", URL + "/x", "htu_mismatch")],
    "nonce": [("nonce", 5, "nonce_invalid"), ("nonce-source", _ABSENT, "nonce_missing")],
    "time": [
        ("iat", NOW - 61, "iat_too_old"),
        ("iat", NOW + 11, "iat_in_future"),
        ("nbf", NOW + 11, "nbf_in_future"),
        ("nbf", "x", "nbf_invalid"),
        ("exp", NOW, "proof_expired"),
        ("exp", -1, "exp_invalid"),
    ],
    "ath": [
        ("ath", _ABSENT, "ath_missing"),
        ("ath", 5, "ath_missing"),
        ("ath", compute_ath("other"), "ath_mismatch"),
    ],
}


def _verify_broken(breaks: list[tuple[str, Any, str]]) -> Any:
    """Sign the common proof's claims with ``breaks`` applied, last first (so where two
    break one member, the earlier rule's value stays), and verify it."""
    claims: dict[str, Any] = {"jti": "j-1", "iat": NOW, "htm": "GET", "htu": URL}
    claims["ath"] = compute_ath(TOKEN)
    nonces = None
    for member, value, _ in reversed(breaks):
        if member == "nonce-source":
            nonces = _RULE_NONCES
        elif value is _ABSENT:
            claims.pop(member, None)
        else:
            claims[member] = value
    proof = _RULE_SIGNER.sign_raw(
        {"typ": "dpop+jwt", "alg": "ES256", "jwk": dict(_RULE_SIGNER.public_jwk)}, claims
    )
    return ProofVerifier(POLICY).verify(
        proof, method="GET", url=URL, access_token=TOKEN, now=NOW, nonces=nonces
    )


class TestClaimRules:
    """The claim rules live once, in proof.CLAIM_RULES, and every proof runs them all in
    RFC 9449 order: each refuses what it should, and the first broken rule names the
    reason whatever else is broken."""

    def test_the_table_is_every_rule_in_order(self) -> None:
        assert [rule.__name__ for rule in CLAIM_RULES] == list(_RULES_CHECKS)
        checks = [check for checks in _RULES_CHECKS.values() for check in checks]
        assert checks == list(_BREAKERS)

    def test_the_common_proof_passes_every_rule(self) -> None:
        assert _verify_broken([]).jti == "j-1"

    @pytest.mark.parametrize(
        "rule_break",
        [b for breaks in _BREAKERS.values() for b in breaks],
        ids=lambda b: f"{b[0]}={b[1]!r:.20}",
    )
    def test_each_rule_refuses(self, rule_break: tuple[str, Any, str]) -> None:
        with pytest.raises(DPoPGuardError) as info:
            _verify_broken([rule_break])
        assert info.value.reason == rule_break[2]
        assert info.value.error == (
            "use_dpop_nonce" if rule_break[0] == "nonce-source" else "invalid_dpop_proof"
        )

    @settings(max_examples=200, deadline=None)
    @given(st.data())
    def test_first_broken_rule_names_the_reason(self, data: st.DataObject) -> None:
        rules = data.draw(st.lists(st.sampled_from(list(_BREAKERS)), min_size=1, unique=True))
        rules.sort(key=list(_BREAKERS).index)  # the checks broken, in their order
        breaks = [data.draw(st.sampled_from(_BREAKERS[rule])) for rule in rules]
        with pytest.raises(DPoPGuardError) as info:
            _verify_broken(breaks)
        assert info.value.reason == breaks[0][2]

    @settings(max_examples=100, deadline=None)
    @given(
        st.sampled_from(["GET", "POST"]),
        st.sampled_from([URL, "https://RS.example.com:443/accounts", URL + "/x"]),
        st.sampled_from([NOW, NOW - 60, NOW + 10, NOW + 10.5, NOW - 61]),
    )
    def test_an_accepted_proof_reports_its_claims(self, htm: str, htu: str, iat: float) -> None:
        """What passes every rule comes out as the proof's own claims (iat whole)."""
        claims = {"jti": "j", "iat": iat, "htm": htm, "htu": htu, "ath": compute_ath(TOKEN)}
        proof = _RULE_SIGNER.sign_raw(
            {"typ": "dpop+jwt", "alg": "ES256", "jwk": dict(_RULE_SIGNER.public_jwk)}, claims
        )
        try:
            got = ProofVerifier(POLICY).verify(
                proof, method="GET", url=URL, access_token=TOKEN, now=NOW
            )
        except InvalidDPoPProof as exc:
            assert (htm, htu, iat) != ("GET", URL, NOW)
            assert exc.reason in {"htm_mismatch", "htu_mismatch", "iat_too_old"}
            return
        assert (got.jti, got.iat, got.htm, got.htu) == ("j", int(iat), htm, htu)
        assert got.jkt == _RULE_SIGNER.jkt


def test_forged_proof_under_a_small_order_key_is_refused() -> None:
    """R = identity, S = 0 verifies any message under the identity key: such a proof is
    refused at its key, invalid_dpop_proof with reason jwk_small_order."""
    identity = bytes.fromhex("01" + "00" * 31)
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(identity)}
    header = b64url_encode(json.dumps({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": jwk}).encode())
    claims = {"jti": "j", "htm": "GET", "htu": URL, "iat": NOW, "ath": compute_ath(TOKEN)}
    payload = b64url_encode(json.dumps(claims).encode())
    reject(f"{header}.{payload}.{b64url_encode(identity + bytes(32))}", "jwk_small_order")
