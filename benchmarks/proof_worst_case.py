"""The most CPU one request can make the proof verifier spend, per crafted input.

Run: ``.venv/bin/python -m benchmarks.proof_worst_case [rounds]``.

Each case is a proof an attacker can send with no valid token and no valid signature: a new
key in every request (so no cache helps; ``verify_proof`` keeps none), sizes at the limits of
the default :class:`ProofPolicy` (``ES256 PS256 EdDSA``). The figure is CPU time
(``time.process_time``) per ``verify_proof`` call: each round times a batch of calls per case,
cases interleaved A B C ... C B A so machine noise hits all alike; the median round is
reported with the range over rounds.

RSA verification is ``s^e mod n``, so its cost grows with the bits of ``e``: the exponent
cases show what an unbounded ``e`` costs, and that a bounded one is refused before any RSA
work. The cases that are refused say so in the ``outcome`` column.
"""

from __future__ import annotations

import os
import secrets
import statistics
import sys
import time
from collections.abc import Callable

from dpop_guard._b64 import b64url_encode
from dpop_guard.client import ProofSigner
from dpop_guard.errors import DPoPGuardError
from dpop_guard.proof import compute_ath, verify_proof

NOW = 1_800_000_000
URL = "https://rs.example.com/accounts"
TOKEN = "worst-case-access-token"  # noqa: S105 - a test value
CLAIMS = {"jti": "j", "htm": "GET", "htu": URL, "iat": NOW, "ath": compute_ath(TOKEN)}


def _odd(bits: int) -> int:
    """A random odd number of exactly ``bits`` bits."""
    return secrets.randbits(bits) | (1 << (bits - 1)) | 1


def _rsa_proof(n_bits: int, e: int, *, pad_header: str = "") -> Callable[[], str]:
    """A PS256 proof under an RSA key ``(n, e)`` chosen by the attacker, with a signature
    that is the right length and below ``n`` (so the RSA operation runs) but wrong. With
    ``pad_header`` (a JSON string), the header also carries an extra member, a list of it,
    that fills the proof up to the 8 KiB cap (the header is parsed before the signature
    is checked)."""
    size = n_bits // 8
    signature = b64url_encode(b"\x01" * size)
    # base64url grows 3 bytes to 4: leave room for the rest of the proof.
    room = (8192 - len(signature) - 2 - 1400) * 3 // 4
    count = room // (len(pad_header) + 1) if pad_header else 0
    padding = ',"pad":[' + ",".join([pad_header] * count) + "]" if pad_header else ""

    def make() -> str:
        n = _odd(n_bits)
        e_bytes = e.to_bytes((e.bit_length() + 7) // 8, "big")
        jwk = {
            "kty": "RSA",
            "n": b64url_encode(n.to_bytes(size, "big")),
            "e": b64url_encode(e_bytes),
        }
        header = b64url_encode(
            f'{{"typ":"dpop+jwt","alg":"PS256","jwk":{_json(jwk)}{padding}}}'.encode()
        )
        payload = b64url_encode(_json(CLAIMS).encode())
        return f"{header}.{payload}.{signature}"

    return make


def _json(value: object) -> str:
    import json

    return json.dumps(value, separators=(",", ":"))


def _fresh(alg: str, claims: dict[str, object] | None = None) -> Callable[[], str]:
    def make() -> str:
        return ProofSigner.generate(alg).sign_raw(None, claims or CLAIMS)

    return make


CASES: dict[str, Callable[[], str]] = {
    "ES256, new key, valid signature": _fresh("ES256"),
    "EdDSA, new key, valid signature": _fresh("EdDSA"),
    "ES256, new key, payload near the 8 KiB cap": _fresh(
        "ES256", CLAIMS | {"pad": ["x" * 60] * 80}
    ),
    "PS256, RSA-4096, e = 65537, bad signature": _rsa_proof(4096, 65537),
    "PS256, RSA-4096, e = 2^32 - 1, bad signature": _rsa_proof(4096, 2**32 - 1),
    "PS256, RSA-4096, e = 2^32 - 1, header padded with escapes": _rsa_proof(
        4096, 2**32 - 1, pad_header=r'"\u00e9"'
    ),
    "PS256, RSA-4096, e = 2^32 - 1, header padded with surrogate pairs": _rsa_proof(
        4096, 2**32 - 1, pad_header=r'"\ud83d\ude00"'
    ),
    # OpenSSL itself refuses e above 64 bits once n exceeds 3072 bits, so the costliest
    # exponent is a near-3072-bit one under a 3072-bit modulus.
    "PS256, RSA-3072, 3071-bit e, bad signature": _rsa_proof(3072, _odd(3071)),
    "PS256, RSA-2048, 2047-bit e, bad signature": _rsa_proof(2048, _odd(2047)),
    "PS256, RSA-4096, 4095-bit e, bad signature": _rsa_proof(4096, _odd(4095)),
}


def measure(rounds: int = 7, batch: int = 40) -> list[tuple[str, str, float, float, float]]:
    """``(case, outcome, median_us, min_us, max_us)`` per case."""
    proofs = {name: [make() for _ in range(batch)] for name, make in CASES.items()}
    outcomes: dict[str, str] = {}
    for name, batch_proofs in proofs.items():
        assert len(batch_proofs[0]) <= 8192, (name, len(batch_proofs[0]))
        try:
            verify_proof(batch_proofs[0], method="GET", url=URL, access_token=TOKEN, now=NOW)
            outcomes[name] = "accepted"
        except DPoPGuardError as exc:
            outcomes[name] = exc.reason
    samples: dict[str, list[float]] = {name: [] for name in CASES}
    order = list(CASES)
    for index in range(rounds):
        for name in order if index % 2 == 0 else reversed(order):
            started = time.process_time()
            for proof in proofs[name]:
                try:
                    verify_proof(proof, method="GET", url=URL, access_token=TOKEN, now=NOW)
                except DPoPGuardError:
                    pass
            samples[name].append((time.process_time() - started) / batch * 1e6)
    return [
        (name, outcomes[name], statistics.median(s), min(s), max(s)) for name, s in samples.items()
    ]


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    print(f"# CPU per verify_proof call, {rounds} rounds, cpu count {os.cpu_count()}")
    print("| case | outcome | median µs | range µs |")
    print("|---|---|---:|---:|")
    for name, outcome, med, low, high in measure(rounds):
        print(f"| {name} | {outcome} | {med:.0f} | {low:.0f}-{high:.0f} |")


if __name__ == "__main__":
    main()
