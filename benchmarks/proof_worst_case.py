"""The most CPU one request can make each parser spend, beside one honest ES256 verify.

Run: ``.venv/bin/python -m benchmarks.proof_worst_case [rounds]``.

Every case is an input an attacker can send with no valid token, built to cost as much as
each parsing stage allows at the default limits (:class:`~dpop_guard.proof.ProofPolicy`:
``ES256 PS256 EdDSA``, 8 KiB proofs; :mod:`dpop_guard._json`'s JOSE limits; the
``Forwarded`` and certificate header caps). Stages:

- ``header``: the DPoP proof's JOSE header, parsed *before* any signature check (the
  signature is one junk octet). Shapes at and just over the JSON limits: nested arrays,
  empty objects, members, long numbers, floats, escapes, surrogate pairs, backslashes,
  brackets and commas inside strings, a duplicate at the end.
- ``payload``: the same shapes in the claims, under a valid ES256 signature (so the
  figure includes that signature's verification and the key's import).
- ``base64url``: whole-size segments that fail late or decode to junk.
- ``jwk``: key imports, RSA moduli and exponents at and over their bounds, EC points off
  the curve, a small-order Ed25519 key.
- ``forwarded``: :func:`dpop_guard._proxy.parse_forwarded` on a 4 KiB header.
- ``certificate``: :class:`dpop_guard.mtls.Rfc9440CertificateSource` on 32 KiB headers.

``verify_proof`` keeps no cache, so one input per case, verified again and again, costs
what a new one would. The figure is CPU time (``time.process_time``) per call: each round
times a batch per case, cases interleaved A B C ... C B A so machine noise hits all alike;
the median round is reported with the range over rounds, and the ratio to the reference,
**one raw ES256 verification** (``cryptography``, key imported, signature DER), measured in
the same process and the same rounds. The refused cases say why in ``outcome``.
"""

from __future__ import annotations

import base64
import datetime
import functools
import json
import os
import secrets
import statistics
import sys
import time
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dpop_guard._b64 import b64url_encode
from dpop_guard._json import MAX_CONTAINERS, MAX_NUMBER_LENGTH, MAX_VALUES
from dpop_guard._proxy import MAX_PROXY_HEADER_BYTES, parse_forwarded
from dpop_guard.client import ProofSigner
from dpop_guard.errors import DPoPGuardError
from dpop_guard.mtls import Rfc9440CertificateSource
from dpop_guard.proof import DEFAULT_MAX_PROOF_BYTES, compute_ath, verify_proof

NOW = 1_800_000_000
URL = "https://rs.example.com/accounts"
TOKEN = "worst-case-access-token"  # noqa: S105 - a test value
CLAIMS = {"jti": "j", "htm": "GET", "htu": URL, "iat": NOW, "ath": compute_ath(TOKEN)}
REFERENCE = "raw ES256 verify (the unit)"
# The costliest float to convert that we found within MAX_NUMBER_LENGTH: the smallest
# normal double, whose correct rounding needs big-number arithmetic (about 0.5 µs).
_SLOW_FLOAT = "2.2250738585072011e-308"


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _room(other: int) -> int:
    """JSON octets a segment may hold when the rest of the proof takes ``other`` octets
    (base64url grows 3 octets to 4)."""
    return (DEFAULT_MAX_PROOF_BYTES - other - 2) * 3 // 4


def _fill(unit: str, room: int, *, count: int | None = None, sep: str = ",") -> str:
    """``unit`` repeated to fill ``room`` octets (or ``count`` times), joined by ``sep``."""
    n = count if count is not None else max(1, (room + len(sep)) // (len(unit) + len(sep)))
    return sep.join([unit] * n)


# The extra member of a header or claim set, per shape: a function of the room left in
# the document, returning the member's JSON text (``"x":...``).
_SHAPES: dict[str, Callable[[int], str]] = {
    # Refused before parsing, by counting octets.
    "nested arrays at depth 8, 8 KiB (issue 19's input)": lambda room: (
        '"x":[' + _fill("[[[[[[[]]]]]]]", room - 8) + "]"
    ),
    "empty objects, 8 KiB (issue 19's second input)": lambda room: (
        '"x":[' + _fill("{}", room - 8) + "]"
    ),
    "one number of 4,300 digits": lambda room: '"x":' + "9" * 4300,
    "numbers one digit too long": lambda room: (
        '"x":[' + _fill("9" * (MAX_NUMBER_LENGTH + 1), room - 8) + "]"
    ),
    "commas one over the limit": lambda room: '"x":[' + _fill("0", 0, count=MAX_VALUES + 1) + "]",
    # Accepted by the counts, so parsed in full: each value as costly as it can be.
    "containers at the limit, 7 deep, slow floats": lambda room: (
        '"x":'
        + "[" * 7
        + _fill(_SLOW_FLOAT, 0, count=MAX_VALUES - 16)
        + "]" * 7
        + ',"y":['
        + _fill("[]", 0, count=MAX_CONTAINERS - 10)
        + "]"
    ),
    "values at the limit, numbers of 40 digits": lambda room: (
        '"x":[' + _fill("9" * MAX_NUMBER_LENGTH, 0, count=MAX_VALUES - 16) + "]"
    ),
    "members at the limit, slow floats": lambda room: ",".join(
        f'"m{i}":{_SLOW_FLOAT}' for i in range(MAX_VALUES - 16)
    ),
    "string of \\u escapes": lambda room: '"x":"' + "\\u00e9" * ((room - 8) // 6) + '"',
    "string of surrogate-pair escapes": lambda room: (
        '"x":"' + "\\ud83d\\ude00" * ((room - 8) // 12) + '"'
    ),
    "string of escapes, a lone surrogate last": lambda room: (
        '"x":"' + "\\ud83d\\ude00" * ((room - 20) // 12) + '\\ud800"'
    ),
    "string of escaped backslashes": lambda room: '"x":"' + "\\\\" * ((room - 8) // 2) + '"',
    "brackets and commas inside a string": lambda room: (
        '"x":"'
        + "[" * (MAX_CONTAINERS - 4)
        + "," * (MAX_VALUES - 20)
        + "a" * (room - MAX_CONTAINERS - MAX_VALUES - 8)
        + '"'
    ),
    "long string, duplicate member last": lambda room: (
        '"x":"' + "a" * (room - 30) + '","typ":"dpop+jwt"'
    ),
}


def _es256_jwk() -> dict[str, str]:
    return dict(ProofSigner.generate("ES256").public_jwk)


def _header_case(shape: Callable[[int], str]) -> Callable[[], str]:
    """An unsigned proof whose header carries the shape, filled to the size cap."""
    payload = b64url_encode(_json(CLAIMS).encode())
    base = '{"typ":"dpop+jwt","alg":"ES256","jwk":' + _json(_es256_jwk())
    room = _room(len(payload) + 4) - len(base) - 2
    header = b64url_encode(f"{base},{shape(room)}}}".encode())
    proof = f"{header}.{payload}.AA"
    return lambda: proof


def _payload_case(shape: Callable[[int], str]) -> Callable[[], str]:
    """A proof signed by a new ES256 key whose claims carry the shape, to the size cap."""
    signer = ProofSigner.generate("ES256")
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": dict(signer.public_jwk)}
    base = _json(CLAIMS)[:-1]
    room = _room(len(b64url_encode(_json(header).encode())) + 88) - len(base) - 2
    claims = f"{base},{shape(room)}}}"
    # Signed over the shaped claims text exactly as written (sign_raw would re-serialise).
    signing_input = f"{b64url_encode(_json(header).encode())}.{b64url_encode(claims.encode())}"
    signature = signer._signature(signing_input.encode())
    proof = f"{signing_input}.{b64url_encode(signature)}"
    return lambda: proof


def _odd(bits: int) -> int:
    """A random odd number of exactly ``bits`` bits."""
    return secrets.randbits(bits) | (1 << (bits - 1)) | 1


def _rsa_proof(n_bits: int, e: int, *, n_octets: int | None = None) -> Callable[[], str]:
    """A PS256 proof under an RSA key ``(n, e)`` chosen by the attacker, with a signature
    that is the right length and below ``n`` (so the RSA operation runs) but wrong."""
    size = n_bits // 8
    n = _odd(n_bits).to_bytes(n_octets or size, "big")
    jwk = {
        "kty": "RSA",
        "n": b64url_encode(n),
        "e": b64url_encode(e.to_bytes(-(-e.bit_length() // 8), "big")),
    }
    header = b64url_encode(_json({"typ": "dpop+jwt", "alg": "PS256", "jwk": jwk}).encode())
    signature = b64url_encode(b"\x01" * size)
    proof = f"{header}.{b64url_encode(_json(CLAIMS).encode())}.{signature}"
    return lambda: proof


def _jwk_proof(alg: str, jwk: dict[str, str]) -> Callable[[], str]:
    header = b64url_encode(_json({"typ": "dpop+jwt", "alg": alg, "jwk": jwk}).encode())
    proof = f"{header}.{b64url_encode(_json(CLAIMS).encode())}.{b64url_encode(bytes(64))}"
    return lambda: proof


def _off_curve() -> dict[str, str]:
    jwk = _es256_jwk()
    y = bytearray(base64.urlsafe_b64decode(jwk["y"] + "="))
    y[-1] ^= 1
    return jwk | {"y": b64url_encode(bytes(y))}


def _segments(header: str, payload: str, signature: str) -> Callable[[], str]:
    proof = f"{header}.{payload}.{signature}"[:DEFAULT_MAX_PROOF_BYTES]
    return lambda: proof


_FULL = DEFAULT_MAX_PROOF_BYTES - 12


# Proof cases: (stage, name) -> a maker of one proof.
PROOFS: dict[tuple[str, str], Callable[[], Callable[[], str]]] = {
    ("proof", "ES256, new key, valid signature (an honest proof)"): lambda: _fresh("ES256"),
    ("proof", "EdDSA, new key, valid signature"): lambda: _fresh("EdDSA"),
    ("proof", "PS256, new key, valid signature"): lambda: _fresh("PS256"),
    **{("header", name): functools.partial(_header_case, shape) for name, shape in _SHAPES.items()},
    **{
        ("payload", name): functools.partial(_payload_case, shape)
        for name, shape in _SHAPES.items()
    },
    ("base64url", "8 KiB header segment, last character not canonical"): lambda: _segments(
        "e" * (_FULL - 8) + "B", "e30", "AA"
    ),
    ("base64url", "8 KiB header segment, '=' before its end"): lambda: _segments(
        "eyJh" * ((_FULL - 8) // 4 - 1) + "e==A", "e30", "AA"
    ),
    ("base64url", "8 KiB header segment of random octets"): lambda: _segments(
        b64url_encode(secrets.token_bytes((_FULL - 8) * 3 // 4)), "e30", "AA"
    ),
    ("base64url", "8 KiB signature segment"): lambda: _segments(
        b64url_encode(_json({"typ": "dpop+jwt", "alg": "ES256", "jwk": _es256_jwk()}).encode()),
        b64url_encode(_json(CLAIMS).encode()),
        "A" * DEFAULT_MAX_PROOF_BYTES,
    ),
    ("jwk", "ES256, point off the curve"): lambda: _jwk_proof("ES256", _off_curve()),
    ("jwk", "EdDSA, small-order key"): lambda: _jwk_proof(
        "EdDSA", {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(b"\x01" + bytes(31))}
    ),
    ("jwk", "PS256, RSA-4096, e = 65537, bad signature"): lambda: _rsa_proof(4096, 65537),
    ("jwk", "PS256, RSA-4096, e = 2^32 - 1, bad signature"): lambda: _rsa_proof(4096, 2**32 - 1),
    ("jwk", "PS256, RSA-4096, modulus with a leading zero octet"): lambda: _rsa_proof(
        4096, 65537, n_octets=513
    ),
    ("jwk", "PS256, RSA-3072, 3071-bit e"): lambda: _rsa_proof(3072, _odd(3071)),
    ("jwk", "PS256, RSA-4104 (over the cap)"): lambda: _rsa_proof(4104, 65537),
}


def _fresh(alg: str) -> Callable[[], str]:
    proof = ProofSigner.generate(alg).sign_raw(None, CLAIMS)
    return lambda: proof


def _verify_call(proof: str) -> Callable[[], object]:
    def call() -> object:
        return verify_proof(proof, method="GET", url=URL, access_token=TOKEN, now=NOW)

    return call


def _forwarded_cases() -> dict[tuple[str, str], Callable[[], object]]:
    cap = MAX_PROXY_HEADER_BYTES
    quoted = 'for="' + '\\"' * ((cap - 8) // 2) + '"'
    pairs = ";".join(f"p{i}=v" for i in range(16))
    elements = ",".join([pairs] * 32)[:cap]
    commas = "," * (cap - 10) + "for=a"
    cases = {"one quoted string of quoted pairs": [quoted], "32 elements of 16 pairs": [elements]}
    cases["commas, then one pair"] = [commas]
    cases["100 header lines of 40 octets"] = ["for=192.0.2.1;proto=https;by=x"] * 100
    return {("forwarded", name): _catching(parse_forwarded, lines) for name, lines in cases.items()}


def _catching(function: Callable[..., object], *args: object) -> Callable[[], object]:
    def call() -> object:
        try:
            return function(*args)
        except DPoPGuardError as exc:
            return exc

    return call


def _certificate(size: int, key: ec.EllipticCurvePrivateKey) -> bytes:
    """A self-signed certificate of about ``size`` octets: many SAN names."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "worst")])
    names = [x509.DNSName(f"h{i:05d}.example.com") for i in range(max(1, (size - 400) // 21))]
    start = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


def _certificate_cases() -> dict[tuple[str, str], Callable[[], object]]:
    source = Rfc9440CertificateSource()
    key = ec.generate_private_key(ec.SECP256R1())
    cap = source.max_header_bytes
    leaf = _certificate(min(16 * 1024, cap * 3 // 4 - 64), key)
    link = _certificate((cap * 3 // 4) // source.max_chain - 64, key)

    def item(der: bytes) -> bytes:
        return b":" + base64.b64encode(der) + b":"

    headers = [(b"client-cert", item(leaf))]
    chain = [(b"client-cert-chain", b", ".join([item(link)] * source.max_chain))]
    cases = {
        f"RFC 9440 leaf of {len(leaf) // 1024} KiB": headers,
        f"RFC 9440 leaf and chain of {source.max_chain} x {len(link) // 1024} KiB": headers + chain,
    }
    return {
        ("certificate", name): _catching(
            lambda scope: source.certificate(scope, trusted_peer=True), {"headers": h}
        )
        for name, h in cases.items()
    }


def _reference() -> Callable[[], object]:
    key = ec.generate_private_key(ec.SECP256R1())
    message = secrets.token_bytes(300)
    signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
    public, algorithm = key.public_key(), ec.ECDSA(hashes.SHA256())
    return lambda: public.verify(signature, message, algorithm)


def _outcome(call: Callable[[], object]) -> str:
    try:
        result = call()
    except DPoPGuardError as exc:
        return exc.reason
    if isinstance(result, DPoPGuardError):
        return result.reason
    return "accepted"


def cases() -> dict[tuple[str, str], Callable[[], object]]:
    """Every case, the reference first: ``(stage, name) -> one call``."""
    calls: dict[tuple[str, str], Callable[[], object]] = {("unit", REFERENCE): _reference()}
    for key, make in PROOFS.items():
        proof = make()()
        assert len(proof) <= DEFAULT_MAX_PROOF_BYTES, (key, len(proof))
        calls[key] = _catching(_verify_call(proof))
    calls.update(_forwarded_cases())
    calls.update(_certificate_cases())
    return calls


def measure(
    rounds: int = 7, batch: int = 20
) -> list[tuple[str, str, str, float, float, float, float]]:
    """``(stage, case, outcome, median_us, min_us, max_us, ratio)`` per case, where
    ``ratio`` is the median over the reference's median."""
    calls = cases()
    outcomes = {key: _outcome(call) for key, call in calls.items()}
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in calls}
    order = list(calls)
    for index in range(rounds):
        for key in order if index % 2 == 0 else reversed(order):
            call = calls[key]
            started = time.process_time()
            for _ in range(batch):
                call()
            samples[key].append((time.process_time() - started) / batch * 1e6)
    unit = statistics.median(samples[("unit", REFERENCE)])
    rows = []
    for (stage, name), s in samples.items():
        median = statistics.median(s)
        rows.append((stage, name, outcomes[(stage, name)], median, min(s), max(s), median / unit))
    return rows


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    rows = measure(rounds)
    print(f"# CPU per call, {rounds} rounds, cpu count {os.cpu_count()}")
    print("| stage | case | outcome | median µs | range µs | x raw ES256 verify |")
    print("|---|---|---|---:|---:|---:|")
    for stage, name, outcome, med, low, high, ratio in rows:
        print(f"| {stage} | {name} | {outcome} | {med:.0f} | {low:.0f}-{high:.0f} | {ratio:.2f} |")
    worst = max((r for r in rows if r[0] not in ("unit", "proof")), key=lambda r: r[6])
    print(f"\nworst attacker input: {worst[0]}: {worst[1]} ({worst[2]}), {worst[6]:.2f}x")


if __name__ == "__main__":
    main()
