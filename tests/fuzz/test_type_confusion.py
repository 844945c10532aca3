"""Type confusion in any JOSE member: every JSON type in every member, correctly signed.

A proof is built from a valid one by putting an arbitrary JSON value (null, booleans,
integers small and huge, floats in every spelling including overflowing exponents,
strings with lone surrogate escapes and control characters, arrays, objects, nested) in
one or more members of the header, of its ``jwk`` or of the claims, and signing the
result with the key the header names (so the checks after the signature are reached too).
The JSON text is written by hand, not by ``json.dumps`` of Python values, so spellings
Python would never produce (``1e400``, ``-0``, ``"\\udc00"``) reach the verifier.

The property: the verifier returns a :class:`VerifiedProof` or raises a
:class:`DPoPGuardError` with a 4xx status and a known reason, never anything else.

The plain test runs a CI-sized number of examples. The ``fuzz``-marked one runs
``DPOP_GUARD_FUZZ_EXAMPLES`` of them (``make fuzz``), and is skipped when that is unset.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpop_guard._b64 import b64url_encode
from dpop_guard._reasons import PROOF_REASONS
from dpop_guard.client import ProofSigner
from dpop_guard.errors import DPoPGuardError
from dpop_guard.nonce import HMACNonceSource
from dpop_guard.proof import ProofPolicy, ProofVerifier, VerifiedProof, compute_ath

CI_EXAMPLES = 400
FUZZ_EXAMPLES = int(os.environ.get("DPOP_GUARD_FUZZ_EXAMPLES", "0"))

NOW = 1_800_000_000
URL = "https://rs.example.com/accounts"
TOKEN = "type-confusion-token-0123456789"
SIGNERS = {alg: ProofSigner.generate(alg) for alg in ("ES256", "PS256", "EdDSA")}
NONCES = HMACNonceSource(b"type-confusion-nonce-secret-0123")
VERIFIER = ProofVerifier(ProofPolicy(), memo_budget=0)

# A member value is raw JSON text.
Raw = str


def _string(value: str) -> Raw:
    # ensure_ascii escapes every non-ASCII character, lone surrogates included, as \uXXXX.
    return json.dumps(value)


strings = st.one_of(
    st.text(max_size=12).map(_string),
    # lone surrogates, valid pairs, escaped control characters, raw non-ASCII UTF-8
    st.sampled_from(
        [
            r'"\ud800"',
            r'"\udfff"',
            r'"a\ud83d"',
            r'"\ude00b"',
            r'"\ud83d\ude00"',
            r'"\u0000"',
            r'"\u001f\u007f"',
            r'"\\ud800"',
            '"\u00e9\u2028"',
            r'"\t\n\r\b\f"',
            '""',
        ]
    ),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=3).map(
        _string
    ),
)
numbers = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.integers(0, 400).map(lambda d: "9" * max(d, 1)),  # huge integers
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(
        [
            "1e400",
            "-1e400",
            "1E308",
            "1e-400",
            "-0",
            "-0.0",
            "0e0",
            "1.0e+2",
            "1800000000.5",
            "18e8",
            "1800000000e0",
            "4.9e-324",
            "9007199254740993",
        ]
    ),
)
scalars = st.one_of(st.sampled_from(["null", "true", "false"]), numbers, strings)


def _array(items: list[Raw]) -> Raw:
    return "[" + ",".join(items) + "]"


def _object(members: list[tuple[Raw, Raw]]) -> Raw:
    return "{" + ",".join(f"{k}:{v}" for k, v in members) + "}"


json_values: st.SearchStrategy[Raw] = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(_array),
        st.lists(st.tuples(strings, inner), max_size=3).map(_object),
    ),
    max_leaves=6,
)

HEADER_MEMBERS = ["typ", "alg", "jwk", "crit", "kid", "x5c", "b64", "cty", "zip"]
JWK_MEMBERS = ["kty", "crv", "x", "y", "n", "e", "alg", "use", "key_ops", "kid", "d", "ext"]
CLAIM_MEMBERS = ["jti", "htm", "htu", "iat", "ath", "nonce", "nbf", "exp", "sub", "cnf"]
member_names = st.one_of(st.sampled_from(["jwk", "x"]), st.text(max_size=4).map(_string))


def _valid(alg: str, *, nonce: str | None) -> tuple[dict[str, Raw], dict[str, Raw], dict[str, Raw]]:
    signer = SIGNERS[alg]
    jwk = {k: _string(v) for k, v in signer.public_jwk.items()}
    header = {"typ": _string("dpop+jwt"), "alg": _string(alg)}
    claims = {
        "jti": _string("j-1"),
        "htm": _string("GET"),
        "htu": _string(URL),
        "iat": str(NOW),
        "ath": _string(compute_ath(TOKEN)),
    }
    if nonce is not None:
        claims["nonce"] = _string(nonce)
    return header, jwk, claims


# Scalars weigh as much as everything else, so one confused member in an otherwise valid
# proof (which reaches the deepest checks) is common.
member_values = st.one_of(scalars, json_values)


def _mutate(
    data: st.DataObject, members: dict[str, Raw], names: list[str], label: str, *, size: int
) -> dict[str, Raw]:
    result = dict(members)
    chosen = data.draw(st.lists(st.sampled_from(names), max_size=size, unique=True), label=label)
    for name in chosen:
        if data.draw(st.integers(0, 4), label=f"{label}:{name} deleted") == 0:
            result.pop(name, None)
        else:
            result[name] = data.draw(member_values, label=f"{label}:{name}=")
    return result


def _render(members: dict[str, Raw]) -> Raw:
    return _object([(_string(k), v) for k, v in members.items()])


def _signed(alg: str, header: Raw, claims: Raw) -> str:
    signing_input = f"{b64url_encode(header.encode())}.{b64url_encode(claims.encode())}"
    signature = SIGNERS[alg]._signature(signing_input.encode())
    return f"{signing_input}.{b64url_encode(signature)}"


def _check(data: st.DataObject) -> None:
    alg = data.draw(st.sampled_from(sorted(SIGNERS)), label="alg")
    with_nonce = data.draw(st.booleans(), label="nonce route")
    nonce = NONCES.issue(SIGNERS[alg].jkt, NOW) if with_nonce else None
    header, jwk, claims = _valid(alg, nonce=nonce)
    # Mostly one part at a time: a confused header stops the checks before the claims.
    part = data.draw(st.sampled_from(["jwk", "header", "claims", "all"]), label="part")
    if part in ("jwk", "all"):
        jwk = _mutate(data, jwk, JWK_MEMBERS, "jwk", size=2 if part == "jwk" else 1)
    header |= {"jwk": _render(jwk)}
    if part in ("header", "all"):
        header = _mutate(data, header, HEADER_MEMBERS, "header", size=2 if part == "header" else 1)
    if part in ("claims", "all"):
        claims = _mutate(data, claims, CLAIM_MEMBERS, "claims", size=3 if part == "claims" else 1)
    # Now and then a duplicate or an extra member under a generated name.
    if data.draw(st.booleans(), label="extra"):
        extra = (data.draw(member_names, label="extra name"), data.draw(json_values))
        target = data.draw(st.sampled_from(["header", "claims"]), label="extra in")
        rendered_header = _object(
            [(_string(k), v) for k, v in header.items()] + ([extra] if target == "header" else [])
        )
        rendered_claims = _object(
            [(_string(k), v) for k, v in claims.items()] + ([extra] if target == "claims" else [])
        )
    else:
        rendered_header, rendered_claims = _render(header), _render(claims)
    proof = _signed(alg, rendered_header, rendered_claims)
    token = TOKEN if data.draw(st.booleans(), label="with token") else None
    try:
        result = VERIFIER.verify(
            proof,
            method="GET",
            url=URL,
            access_token=token,
            now=NOW,
            nonces=NONCES if with_nonce else None,
        )
    except DPoPGuardError as exc:
        assert 400 <= exc.status < 500, (exc, rendered_header, rendered_claims)
        assert exc.reason in PROOF_REASONS, exc.reason
        # The wire text is one of our fixed descriptions: no member value leaks into it.
        assert exc.description.isascii() and len(exc.description) < 80
        return
    assert isinstance(result, VerifiedProof)
    assert result.jkt == SIGNERS[alg].jkt
    assert isinstance(result.jti, str) and result.jti.encode("utf-8")
    assert NOW - 120 <= result.iat <= NOW + 10


_SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}


def test_baseline_is_accepted() -> None:
    """The unmutated proofs the strategy starts from verify, with and without a nonce."""
    for alg in SIGNERS:
        for nonce in (None, NONCES.issue(SIGNERS[alg].jkt, NOW)):
            header, jwk, claims = _valid(alg, nonce=nonce)
            proof = _signed(alg, _render(header | {"jwk": _render(jwk)}), _render(claims))
            result = VERIFIER.verify(
                proof,
                method="GET",
                url=URL,
                access_token=TOKEN,
                now=NOW,
                nonces=NONCES if nonce else None,
            )
            assert result.jkt == SIGNERS[alg].jkt


@settings(max_examples=CI_EXAMPLES, **_SETTINGS)  # type: ignore[arg-type]
@given(st.data())
def test_every_json_type_in_every_member(data: st.DataObject) -> None:
    """Any JSON value in any header, jwk or claim member: a result or a 4xx, never
    another exception (CI-sized)."""
    _check(data)


@pytest.mark.fuzz
@pytest.mark.skipif(FUZZ_EXAMPLES == 0, reason="DPOP_GUARD_FUZZ_EXAMPLES is unset (make fuzz)")
@settings(max_examples=max(FUZZ_EXAMPLES, 1), **_SETTINGS)  # type: ignore[arg-type]
@given(st.data())
def test_every_json_type_in_every_member_fuzz(data: st.DataObject) -> None:
    """The same property at fuzzing size."""
    _check(data)
