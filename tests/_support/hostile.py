"""The hostile corpus's requests, built from tests/hostile/corpus.json: shared by the
in-process run (tests/hostile/test_hostile.py) and the runs through real proxies
(tests/forward_auth/test_hostile_e2e.py)."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import httpx

from dpop_guard._b64 import b64url_decode, b64url_encode
from dpop_guard.client import ProofSigner
from dpop_guard.devtools.simulator import SimulatorState
from dpop_guard.proof import compute_ath
from dpop_guard.testing import DELETE, make_proof
from tests._support.harness import ORIGIN

__all__ = ["CORPUS", "CorpusTarget", "Request"]

CORPUS: list[dict[str, Any]] = json.loads(
    (Path(__file__).resolve().parents[1] / "hostile" / "corpus.json").read_text()
)["cases"]


class CorpusTarget(Protocol):
    """Where a corpus case is sent: the simulator that issues its token, and a client."""

    simulator: SimulatorState
    client: httpx.AsyncClient


def _jwk(variant: str, signer: ProofSigner, keys: dict[str, ProofSigner]) -> dict[str, Any]:
    jwk = dict(signer.public_jwk)
    size = {"ES256": 32}.get(signer.alg, 32)

    def big(bits: int) -> str:
        return b64url_encode(((1 << (bits - 1)) | 1).to_bytes(bits // 8, "big"))

    variants: dict[str, Callable[[], dict[str, Any]]] = {
        "private": lambda: jwk | {"d": b64url_encode(b"\x01" * 32)},
        "rsa_private_members": lambda: jwk | {"p": "AQAB", "q": "AQAB"},
        "oct": lambda: {"kty": "oct", "k": b64url_encode(b"secret-secret-secret")},
        "kty_unknown": lambda: jwk | {"kty": "XYZ"},
        "kty_number": lambda: jwk | {"kty": 3},
        "kty_missing": lambda: {k: v for k, v in jwk.items() if k != "kty"},
        "rsa_under_es256": lambda: dict(keys["PS256"].public_jwk),
        "alg_member_es384": lambda: jwk | {"alg": "ES384"},
        "use_enc": lambda: jwk | {"use": "enc"},
        "key_ops_encrypt": lambda: jwk | {"key_ops": ["encrypt"]},
        "key_ops_string": lambda: jwk | {"key_ops": "verify"},
        "crv_secp256k1": lambda: jwk | {"crv": "secp256k1"},
        "x_short": lambda: jwk | {"x": b64url_encode(b"\x01" * (size - 1))},
        "x_padded": lambda: jwk | {"x": jwk["x"] + "="},
        "not_on_curve": lambda: jwk | {"y": b64url_encode(b"\x01" * size)},
        "x_number": lambda: jwk | {"x": 12},
        "y_missing": lambda: {k: v for k, v in jwk.items() if k != "y"},
        "rsa_1024": lambda: {"kty": "RSA", "e": "AQAB", "n": big(1024)},
        "rsa_8192": lambda: {"kty": "RSA", "e": "AQAB", "n": big(8192)},
        "rsa_leading_zero": lambda: jwk | {"n": b64url_encode(b"\x00" + b64url_decode(jwk["n"]))},
        "rsa_even_e": lambda: jwk | {"e": "Ag"},
        "okp_x25519": lambda: jwk | {"crv": "X25519"},
        "okp_ed448": lambda: {"kty": "OKP", "crv": "Ed448", "x": _ed448_x()},
        "alg_member_array": lambda: jwk | {"alg": [signer.alg]},
        "alg_member_object": lambda: jwk | {"alg": {"alg": signer.alg}},
        "key_ops_number": lambda: jwk | {"key_ops": ["verify", 1]},
        "crv_array": lambda: jwk | {"crv": [jwk.get("crv")]},
        "kid_surrogate": lambda: jwk | {"kid": "\ud800"},
        "rsa_e_2_32": lambda: jwk | {"e": b64url_encode((2**32).to_bytes(5, "big"))},
        "rsa_e_3071_bits": lambda: {
            "kty": "RSA",
            "n": big(3072),
            "e": b64url_encode(((1 << 3070) | 1).to_bytes(384, "big")),
        },
        "rsa_e_1": lambda: jwk | {"e": "AQ"},
        "rsa_e_leading_zero": lambda: jwk | {"e": "AAEAAQ"},
        "okp_short": lambda: jwk | {"x": "AAAA"},
        "other_key": lambda: dict(keys["other"].public_jwk),
    }
    return variants[variant]()


def _ed448_x() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed448

    public = ed448.Ed448PrivateKey.generate().public_key()
    return b64url_encode(
        public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def _signed(signer: ProofSigner, header_b64: str, payload: bytes) -> str:
    payload_b64 = b64url_encode(payload)
    signing_input = f"{header_b64}.{payload_b64}"
    return f"{signing_input}.{b64url_encode(signer._signature(signing_input.encode()))}"


def _transform(name: str, proof: str, signer: ProofSigner, other: str) -> str:
    header, payload, sig = proof.split(".")
    raw_sig = b64url_decode(sig)

    def enc(obj: Any) -> str:
        return b64url_encode(json.dumps(obj).encode())

    def header_raw(raw: bytes) -> str:
        return f"{b64url_encode(raw)}.{payload}.{sig}"

    transforms: dict[str, Callable[[], str]] = {
        "strip_signature": lambda: f"{header}.{payload}.",
        "two_segments": lambda: f"{header}.{payload}",
        "four_segments": lambda: f"{proof}.{sig}",
        "five_segments": lambda: f"{header}.{payload}.{sig}.{sig}.{sig}",
        "swap_header_payload": lambda: f"{payload}.{header}.{sig}",
        "sig_bad_char": lambda: f"{header}.{payload}.{sig[:-3]}!{sig[-2:]}",
        "sig_padded": lambda: f"{proof}==",
        "sig_plus_slash": lambda: f"{header}.{payload}.{sig[:10]}+/{sig[12:]}",
        "header_not_json": lambda: header_raw(b"not json"),
        "header_array": lambda: header_raw(b'["dpop+jwt"]'),
        "header_duplicate": lambda: header_raw(
            b'{"typ":"dpop+jwt","alg":"ES256","typ":"dpop+jwt","jwk":{}}'
        ),
        "header_deep": lambda: header_raw(b'{"x":' * 40 + b"1" + b"}" * 40),
        "header_nan": lambda: header_raw(b'{"typ":"dpop+jwt","alg":"ES256","x":NaN}'),
        "header_bad_utf8": lambda: header_raw(b'{"typ":"\xff"}'),
        "sig_flip": lambda: (
            f"{header}.{payload}.{b64url_encode(raw_sig[:5] + bytes([raw_sig[5] ^ 1]) + raw_sig[6:])}"
        ),
        "sig_der": lambda: f"{header}.{payload}.{b64url_encode(_der(signer, header, payload))}",
        "sig_truncate": lambda: f"{header}.{payload}.{b64url_encode(raw_sig[:-2])}",
        "payload_tamper": lambda: (
            f"{header}.{enc(json.loads(b64url_decode(payload)) | {'htm': 'GET', 'jti': 'x'})}.{sig}"
        ),
        "payload_array": lambda: _signed(signer, header, b"[1]"),
        "payload_duplicate": lambda: _signed(
            signer, header, b64url_decode(payload)[:-1] + b',"htm":"GET"}'
        ),
        "payload_not_json": lambda: _signed(signer, header, b"not json"),
        # Python's json.dumps cannot write a number that overflows a double: splice it in.
        "payload_iat_1e400": lambda: _signed(
            signer, header, re.sub(rb'"iat":\d+', b'"iat":1e400', b64url_decode(payload))
        ),
        "join_two": lambda: f"{proof}, {other}",
        "huge": lambda: f"{header}.{payload}.{'A' * 200_000}",
        "just_over_limit": lambda: (
            f"{header}.{payload}.{'A' * (8193 - len(header) - len(payload) - 2)}"
        ),
        "non_ascii": lambda: f"{header}.{payload}.{sig[:-1]}\u00e9",
        "inner_space": lambda: f"{header}.{payload} .{sig}",
    }
    return transforms[name]()


def _der(signer: ProofSigner, header: str, payload: str) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    assert isinstance(signer.key, ec.EllipticCurvePrivateKey)
    return signer.key.sign(f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))


def _fill(value: Any, context: dict[str, str]) -> Any:
    if isinstance(value, str):
        if value == "__delete__":
            return DELETE
        for name, replacement in context.items():
            value = value.replace("{" + name + "}", replacement)
    return value


class Request:
    def __init__(self, case: dict[str, Any], h: CorpusTarget, keys: dict[str, ProofSigner]) -> None:
        self.case, self.h, self.keys = case, h, keys
        alg = case.get("signer", "ES256")
        self.signer = keys["other" if alg == "other" else alg]
        self.owner = keys["ES256"] if alg == "other" else self.signer
        kind = case.get("token", "bound")
        if kind == "unknown":
            self.token = "unknown-token-0123456789"
        else:
            self.token = h.simulator.create_token(
                subject="alice",
                scopes=["read:accounts"],
                jkt=None if kind == "unbound" else self.owner.jkt,
                lifetime=-1 if kind == "expired" else 3600,
            )
        self.path = case.get("path", "/accounts")

    def proof(self, signer: ProofSigner | None = None, *, plain: bool = False) -> str:
        """The case's proof; with ``plain``, a valid one from ``signer`` (to warm up)."""
        case, signer = self.case, signer or self.signer
        if plain:
            return make_proof(signer, htu=ORIGIN + self.path, access_token=self.token)
        ath = compute_ath(self.token)
        context = {
            "origin": ORIGIN,
            "token": self.token,
            "ath": ath,
            "ath_std": base64.b64encode(b64url_decode(ath)).decode(),
        }
        header = {k: _fill(v, context) for k, v in case.get("header", {}).items()}
        if "jwk" in case:
            header["jwk"] = _jwk(case["jwk"], signer, self.keys)
        claims = {k: _fill(v, context) for k, v in case.get("claims", {}).items()}
        # Time claims relative to now, as numbers (the templates above fill strings only).
        now = int(time.time())
        claims |= {k: now + offset for k, offset in case.get("claim_offsets", {}).items()}
        proof = make_proof(
            signer,
            htm=case.get("method", "GET"),
            htu=ORIGIN + self.path,
            access_token=self.token,
            header=header,
            claims=claims,
            iat=time.time() + case.get("iat_offset", 0),
        )
        if "transform" in case:
            other = make_proof(signer, htu=ORIGIN + self.path, access_token=self.token)
            proof = _transform(case["transform"], proof, signer, other)
        return proof

    async def prepare(self) -> str:
        """The case's proof, after what its ``sequence`` sends first: the same proof once
        (``replay``), it refused then a valid one accepted (``replay_after_binding_failure``),
        or a valid proof that warms the cache (``warm_cache``)."""
        sequence = self.case.get("sequence")
        proof = self.proof()
        if sequence == "replay":
            assert (await self.send(proof)).status_code == 200
        elif sequence == "replay_after_binding_failure":
            assert (await self.send(proof)).status_code == 401
            assert (await self.send(self.proof(self.owner, plain=True))).status_code == 200
        elif sequence == "warm_cache":
            assert (await self.send(self.proof(self.owner, plain=True))).status_code == 200
        return proof

    async def send(self, proof: str) -> httpx.Response:
        case = self.case
        scheme = case.get("scheme", "DPoP")
        context = {"token": self.token, "proof": proof, "proof2": self.proof()}
        authorization = [
            _fill(v, context) for v in case.get("authorization", [f"{scheme} {{token}}"])
        ]
        dpop = [_fill(v, context) for v in case.get("dpop", ["{proof}"])]
        headers = [("Authorization", v) for v in authorization] + [("DPoP", v) for v in dpop]
        return await self.h.client.request(
            case.get("method", "GET"),
            self.path,
            headers=[(k, v.encode("utf-8")) for k, v in headers],
        )
