"""Fuzzing the verifier and the header parsers with hypothesis.

The fast suite runs a few thousand examples; ``make fuzz`` runs 100,000 and more
(``DPOP_GUARD_FUZZ_EXAMPLES`` sets the number per test).

Two properties:
- a valid proof changed in any byte, without re-signing, is never accepted;
- a proof whose header and claims are mutated and then *re-signed* is accepted only if an
  independent statement of the rules says it is valid; anything else is refused with
  InvalidDPoPProof, never another exception.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpop_guard._authorization import parse_authorization
from dpop_guard._b64 import b64url_decode, b64url_encode
from dpop_guard.client import ProofSigner
from dpop_guard.errors import DPoPGuardError, InvalidDPoPProof
from dpop_guard.proof import ProofPolicy, ProofVerifier, compute_ath

EXAMPLES = int(os.environ.get("DPOP_GUARD_FUZZ_EXAMPLES", "1000"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

NOW = 1_800_000_000
URL = "https://rs.example.com/accounts"
TOKEN = "fuzz-access-token-0123456789"
SIGNER = ProofSigner.generate("ES256")
VERIFIER = ProofVerifier(ProofPolicy())
VALID_CLAIMS = {"jti": "j-1", "htm": "GET", "htu": URL, "iat": NOW, "ath": compute_ath(TOKEN)}
VALID_HEADER = {"typ": "dpop+jwt", "alg": "ES256", "jwk": dict(SIGNER.public_jwk)}
VALID = SIGNER.sign_raw(VALID_HEADER, VALID_CLAIMS)

pytestmark = pytest.mark.fuzz


def verify(proof: str) -> Any:
    return VERIFIER.verify(proof, method="GET", url=URL, access_token=TOKEN, now=NOW)


def test_baseline_is_valid() -> None:
    """The proof the fuzzers start from is accepted."""
    assert verify(VALID).jkt == SIGNER.jkt


@FUZZ
@given(st.data())
def test_byte_mutations_never_accepted(data: st.DataObject) -> None:
    """Flip bits, insert, delete or replace bytes in any decoded segment (and re-encode):
    without a new signature, never accepted."""
    segments = VALID.split(".")
    index = data.draw(st.integers(0, 2), label="segment")
    raw = bytearray(b64url_decode(segments[index]))
    op = data.draw(st.sampled_from(["flip", "insert", "delete", "replace"]), label="op")
    pos = data.draw(st.integers(0, len(raw) - 1), label="pos")
    if op == "flip":
        raw[pos] ^= 1 << data.draw(st.integers(0, 7))
    elif op == "insert":
        raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
    elif op == "delete":
        del raw[pos : pos + data.draw(st.integers(1, 8))]
    else:
        raw[pos] = data.draw(st.integers(0, 255).filter(lambda b: b != raw[pos]))
    if not raw:
        return
    segments[index] = b64url_encode(bytes(raw))
    with pytest.raises(InvalidDPoPProof):
        verify(".".join(segments))


@FUZZ
@given(st.text(max_size=3).map(lambda s: s), st.integers(0, len(VALID)), st.integers(0, 4))
def test_text_splices_never_accepted(insert: str, pos: int, cut: int) -> None:
    """Splicing arbitrary text (Unicode included) into the compact form never yields an
    accepted proof."""
    mutated = VALID[:pos] + insert + VALID[pos + cut :]
    if mutated == VALID:
        return
    with pytest.raises(InvalidDPoPProof):
        verify(mutated)


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63),
    st.floats(allow_nan=False),
    st.text(max_size=12),
)
json_values = st.recursive(
    json_scalars,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=6,
)
claim_values = {
    "jti": st.one_of(st.text(max_size=300), json_values),
    "htm": st.one_of(st.sampled_from(["GET", "get", "POST", " GET", ""]), json_values),
    "htu": st.one_of(
        st.sampled_from(
            [
                URL,
                URL + "/",
                URL + "?q=1",
                "HTTPS://RS.EXAMPLE.COM/accounts",
                "https://rs.example.com:443/accounts",
                "http://rs.example.com/accounts",
                "https://evil/accounts",
                ":::*;",
                "",
            ]
        ),
        json_values,
    ),
    "iat": st.one_of(
        st.integers(NOW - 200, NOW + 200),
        st.floats(NOW - 100, NOW + 100),
        st.sampled_from([NOW - 60, NOW - 61, NOW + 10, NOW + 10.999, NOW + 11]),
        json_values,
    ),
    "ath": st.one_of(
        st.sampled_from([compute_ath(TOKEN), compute_ath(TOKEN) + "=", compute_ath("x")]),
        json_values,
    ),
    "nonce": json_values,
}
header_values = {
    "typ": st.one_of(
        st.sampled_from(["dpop+jwt", "DPoP+JWT", "application/dpop+jwt", "JWT"]), json_values
    ),
    "alg": st.one_of(st.sampled_from(["ES256", "none", "HS256", "ES384", "PS256"]), json_values),
    "crit": json_values,
    "jwk": st.one_of(
        st.just(dict(SIGNER.public_jwk)),
        json_values,
        st.just(dict(SIGNER.public_jwk) | {"d": "AAAA"}),
        st.just(dict(SIGNER.public_jwk) | {"use": "enc"}),
    ),
}


def oracle(header: dict[str, Any], claims: dict[str, Any]) -> bool:
    """An independent statement of when a (correctly signed) proof must be accepted."""
    if header.get("typ") not in ("dpop+jwt", "DPoP+JWT", "application/dpop+jwt"):
        return False
    if header.get("alg") != "ES256" or "crit" in header:
        return False
    if header.get("jwk") != dict(SIGNER.public_jwk):
        return False
    jti, iat = claims.get("jti"), claims.get("iat")
    if not isinstance(jti, str) or not 0 < len(jti) <= 256:
        return False
    if not isinstance(iat, (int, float)) or isinstance(iat, bool):
        return False
    if not NOW - 60 <= iat < NOW + 11:  # max_age 60, future skew 10 (+ the rest of the second)
        return False
    if claims.get("htm") != "GET":
        return False
    if claims.get("htu") not in (
        URL,
        URL + "?q=1",
        "HTTPS://RS.EXAMPLE.COM/accounts",
        "https://rs.example.com:443/accounts",
    ):
        return False
    if claims.get("ath") != compute_ath(TOKEN):
        return False
    return "nonce" not in claims or isinstance(claims["nonce"], str)


def _mutated(data: st.DataObject, base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for name in data.draw(st.lists(st.sampled_from(sorted(values)), max_size=3, unique=True)):
        if data.draw(st.booleans()):
            result.pop(name, None)
        else:
            result[name] = data.draw(values[name])
    return result


@FUZZ
@given(st.data())
def test_resigned_mutations_match_the_rules(data: st.DataObject) -> None:
    """Header and claim mutations, re-signed: accepted exactly when the rules say so."""
    header = _mutated(data, VALID_HEADER, header_values)
    claims = _mutated(data, VALID_CLAIMS, claim_values)
    try:
        proof = SIGNER.sign_raw(header, claims)
    except (TypeError, ValueError):  # not JSON-serialisable: nothing to send
        return
    try:
        result = verify(proof)
    except InvalidDPoPProof:
        assert not oracle(header, claims), (header, claims)
        return
    assert oracle(header, claims), (header, claims)
    assert result.jkt == SIGNER.jkt


@FUZZ
@given(
    st.lists(
        st.one_of(
            st.text(max_size=60),
            st.builds(
                lambda s, t: f"{s} {t}",
                st.sampled_from(["DPoP", "dpop", "Bearer", "Basic", ""]),
                st.text(max_size=40),
            ),
        ),
        max_size=3,
    )
)
def test_authorization_parser(values: list[str]) -> None:
    """The Authorization parser returns a token68 or raises a DPoPGuardError."""
    try:
        header = parse_authorization(values, max_token_bytes=64)
    except DPoPGuardError:
        return
    assert header.scheme in ("DPoP", "Bearer") and " " not in header.token
    assert json.dumps(header.token).isascii()
