"""``python -m benchmarks.replay_memory [--records 100000]``: bytes one replay record holds
in the in-memory store, as the middleware records it.

``--records`` proofs (a real RFC 7638 thumbprint per 100 proofs, a fresh UUID ``jti`` each,
as a client sends) are recorded through :class:`~dpop_guard.replay._guard.ReplayGuard`
into one :class:`~dpop_guard.replay.MemoryReplayStore`, in one process, under tracemalloc;
the figure is the memory still held afterwards divided by the records (the proofs
themselves are dropped, so what stays is what the store keeps). Deterministic: a fixed
seed, an injected clock.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import random
import tracemalloc
import uuid

from dpop_guard.proof import VerifiedProof
from dpop_guard.replay import MemoryReplayStore
from dpop_guard.replay._guard import ReplayGuard

NOW = 1_700_000_000


def bytes_per_record(records: int, *, seed: int = 1) -> float:
    """Memory held by ``records`` replay records, per record."""
    rng = random.Random(seed)
    clock = [0.0]
    store = MemoryReplayStore(maxsize=records + 1, clock=lambda: clock[0], epoch=NOW - 3600)
    guard = ReplayGuard(store)
    jkts = [
        base64.urlsafe_b64encode(hashlib.sha256(str(i).encode()).digest()).decode().rstrip("=")
        for i in range(records // 100 + 1)
    ]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(records):
        jti = str(uuid.UUID(int=rng.getrandbits(128), version=4))  # made inside the trace
        proof = VerifiedProof(jkts[i // 100], jti, NOW, "GET", "https://a/x", None, 71)
        guard.record_sync(proof, NOW)
        clock[0] += 60 / records  # all live at the end
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(store) == records
    return held / records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    records = max(1, min(args.records, 2_000_000))
    print(f"{bytes_per_record(records):.1f} bytes per replay record ({records} records)")


if __name__ == "__main__":
    main()
