"""``python -m benchmarks [--quick]``: the cost of a DPoP check, side by side in one run.

Two scenarios, each reported as a ratio to its floor (absolute times on a shared machine
are noise; ratios measured in one run are not):

- micro: per algorithm, the raw ``cryptography`` verify of one signature (the floor), our
  full verification (parse, every check, thumbprint, ``ath``, and the memory replay record),
  and a naive joserfc path that imports the key from the JWK on every request.
- asgi: one request through the middleware in-process, no sockets: a bare endpoint, a cache
  hit, and a cache miss (the simulator in-process, no latency), per request of CPU.

Results go to ``benchmarks/results/latest.json`` and are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwk as jose_jwk
from joserfc import jws

from dpop_guard import (
    AuthleteIntrospector,
    AuthleteSettings,
    CachingIntrospector,
    DPoPGuardMiddleware,
    GuardSettings,
    ProofPolicy,
    ProofSigner,
    ProofVerifier,
    Route,
)
from dpop_guard._b64 import b64url_decode
from dpop_guard.introspection.simulator import (
    DEFAULT_SERVICE_ID,
    DEFAULT_SERVICE_TOKEN,
    SimulatorState,
    create_simulator_app,
)
from dpop_guard.jwk import import_public_jwk
from dpop_guard.replay import MemoryReplayStore

RESULTS = Path(__file__).parent / "results"
URL = "https://rs.example.com/accounts"
TOKEN = "benchmark-access-token-0123456789abcdef"  # noqa: S105 - a fixture


def _median_per_op(fn: Callable[[int], None], n: int, rounds: int) -> tuple[float, float]:
    """Median and spread (max-min over median) of seconds per operation."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn(n)
        samples.append((time.perf_counter() - start) / n)
    med = statistics.median(samples)
    return med, (max(samples) - min(samples)) / med


def _micro_for(alg: str, n: int, rounds: int) -> list[dict[str, Any]]:
    signer = ProofSigner.generate(alg)
    now = int(time.time())
    proofs = iter(
        [
            signer.sign(htm="GET", htu=URL, access_token=TOKEN, iat=now)
            for _ in range(n * rounds * 3 + 10)
        ]
    )
    header, payload, sig = signer.sign(htm="GET", htu=URL, access_token=TOKEN).split(".")
    key = import_public_jwk(dict(signer.public_jwk), alg=alg)
    signing_input = f"{header}.{payload}".encode()
    signature = b64url_decode(sig)
    verifier = ProofVerifier(ProofPolicy())
    store = MemoryReplayStore()
    registry = jws.JWSRegistry(algorithms=[alg])
    registry.max_header_length = 8192

    def floor(k: int) -> None:
        for _ in range(k):
            key.verify(signature, signing_input)

    def ours(k: int) -> None:
        for _ in range(k):
            proof = verifier.verify(
                next(proofs), method="GET", url=URL, access_token=TOKEN, now=now
            )
            store.add_if_absent_sync(proof.replay_key, ttl=proof.replay_ttl)

    def naive_joserfc(k: int) -> None:
        for _ in range(k):
            token = next(proofs)
            compact = jws.extract_compact(token.encode(), registry=registry)
            public = jose_jwk.import_key(compact.protected["jwk"])
            obj = jws.deserialize_compact(token, public, registry=registry)
            claims = json.loads(obj.payload)
            assert claims["htm"] == "GET"
            public.thumbprint()

    variants = {"floor": floor, "dpop_guard": ours, "joserfc_naive": naive_joserfc}
    for fn in variants.values():
        fn(max(10, n // 10))  # warm up
    results = {name: _median_per_op(fn, n, rounds) for name, fn in variants.items()}
    base = results["floor"][0]
    return [
        {
            "scenario": f"verify {alg}",
            "variant": name,
            "median_us": med * 1e6,
            "spread": spread,
            "ratio": med / base,
            "ratio_to": "raw verify",
        }
        for name, (med, spread) in results.items()
    ]


def micro(n: int, rounds: int) -> list[dict[str, Any]]:
    return [row for alg in ("ES256", "EdDSA", "PS256") for row in _micro_for(alg, n, rounds)]


async def asgi(n: int, rounds: int) -> list[dict[str, Any]]:
    async def bare(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b"{}"})

    state = SimulatorState()
    sim = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_simulator_app(state)))
    authlete = AuthleteSettings(
        base_url="http://sim", api_key=DEFAULT_SERVICE_ID, access_token=DEFAULT_SERVICE_TOKEN
    )
    settings = GuardSettings(
        routes=(Route("/accounts", scopes=("read:accounts",)),), public_url="https://rs.example.com"
    )
    cached = DPoPGuardMiddleware(
        bare,
        settings=settings,
        introspector=CachingIntrospector(AuthleteIntrospector(sim, authlete), ttl=600),
    )
    uncached = DPoPGuardMiddleware(
        bare, settings=settings, introspector=AuthleteIntrospector(sim, authlete)
    )
    signer = ProofSigner.generate("ES256")
    token = state.create_token(subject="alice", scopes=["read:accounts"], jkt=signer.jkt)
    now = int(time.time())

    def scope_for(proof: str) -> dict[str, Any]:
        return {
            "type": "http",
            "method": "GET",
            "path": "/accounts",
            "raw_path": b"/accounts",
            "scheme": "https",
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"rs.example.com"),
                (b"authorization", f"DPoP {token}".encode()),
                (b"dpop", proof.encode()),
            ],
        }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def run(app: Any, k: int, fresh: bool) -> float:
        scopes = [
            scope_for(signer.sign(htm="GET", htu=URL, access_token=token, iat=now))
            for _ in range(k)
        ]
        start = time.process_time()
        for scope in scopes:
            await app(scope, receive, send)
        return (time.process_time() - start) / k

    variants = {"bare": (bare, n), "cache_hit": (cached, n), "cache_miss": (uncached, n // 4)}
    await run(cached, 5, True)
    samples: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for name, (app, k) in variants.items():
            samples[name].append(await run(app, max(k, 5), True))
    await sim.aclose()
    assert set(statuses) == {200}, statuses
    base = statistics.median(samples["bare"])
    hit = statistics.median(samples["cache_hit"])
    rows = []
    for name, values in samples.items():
        med = statistics.median(values)
        rows.append(
            {
                "scenario": "asgi GET /accounts (CPU per request)",
                "variant": name,
                "median_us": med * 1e6,
                "spread": (max(values) - min(values)) / med,
                "ratio": med / hit,
                "ratio_to": "cache hit",
            }
        )
    rows.append(
        {
            "scenario": "asgi GET /accounts",
            "variant": "guard overhead on a hit",
            "median_us": (hit - base) * 1e6,
            "spread": 0.0,
            "ratio": float("nan"),
            "ratio_to": "",
        }
    )
    return rows


class _FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def replay_scale(n: int) -> list[dict[str, Any]]:
    """The in-memory replay store when ``n`` live records expire at once: the worst single
    call (an event-loop stall) while the next ``n`` proofs arrive, against cachetools'
    TTLCache doing the same; and the memory one record costs."""
    import tracemalloc

    from cachetools import TTLCache

    keys = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(2 * n)]
    rows = []

    clock = _FakeClock()
    store = MemoryReplayStore(maxsize=4 * n, clock=clock)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(n):  # keys made inside the trace: a record keeps its key string alive
        store.add_if_absent_sync(hashlib.sha256(str(i).encode()).hexdigest(), ttl=70)
    per_entry = (tracemalloc.get_traced_memory()[0] - before) / n
    tracemalloc.stop()
    clock.now += 71
    worst = 0.0
    start_all = time.perf_counter()
    for key in keys[n:]:
        start = time.perf_counter()
        store.add_if_absent_sync(key, ttl=70)
        worst = max(worst, time.perf_counter() - start)
    mean = (time.perf_counter() - start_all) / n
    rows.append(
        {
            "scenario": f"replay store, {n} records expiring at once",
            "variant": "MemoryReplayStore",
            "median_us": mean * 1e6,
            "worst_call_ms": worst * 1e3,
            "bytes_per_record": per_entry,
            "spread": 0.0,
            "ratio": float("nan"),
            "ratio_to": "",
        }
    )

    clock = _FakeClock()
    cache: TTLCache[str, bool] = TTLCache(maxsize=4 * n, ttl=70, timer=clock)
    for key in keys[:n]:
        cache[key] = True
    clock.now += 71
    worst = 0.0
    start_all = time.perf_counter()
    for key in keys[n:]:
        start = time.perf_counter()
        if key not in cache:
            cache[key] = True
        worst = max(worst, time.perf_counter() - start)
    mean = (time.perf_counter() - start_all) / n
    rows.append(
        {
            "scenario": f"replay store, {n} records expiring at once",
            "variant": "cachetools TTLCache",
            "median_us": mean * 1e6,
            "worst_call_ms": worst * 1e3,
            "bytes_per_record": float("nan"),
            "spread": 0.0,
            "ratio": float("nan"),
            "ratio_to": "",
        }
    )
    return rows


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "cryptography": version("cryptography"),
        "joserfc": version("joserfc"),
        "starlette": version("starlette"),
        "httpx": version("httpx"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run in a few seconds")
    args = parser.parse_args()
    n, rounds = (200, 3) if args.quick else (2000, 7)
    print(
        f"running {'quick ' if args.quick else ''}benchmarks: {n} ops x {rounds} rounds ...",
        flush=True,
    )
    rows = micro(n, rounds) + asyncio.run(asgi(n, rounds))
    rows += replay_scale(20_000 if args.quick else 100_000)
    info = machine()
    RESULTS.mkdir(exist_ok=True)
    name = "quick.json" if args.quick else "latest.json"
    (RESULTS / name).write_text(json.dumps({"machine": info, "rows": rows}, indent=2) + "\n")
    print(
        f"\n{info['cpu']}, {info['cores']} cores, Python {info['python']}, cryptography "
        f"{info['cryptography']}, joserfc {info['joserfc']}\n"
    )
    print("| scenario | variant | median µs | spread | ratio |")
    print("|---|---|---:|---:|---:|")
    for row in rows:
        ratio = "" if row["ratio"] != row["ratio"] else f"{row['ratio']:.2f}x {row['ratio_to']}"
        if "worst_call_ms" in row:
            per = row["bytes_per_record"]
            ratio = f"worst call {row['worst_call_ms']:.2f} ms" + (
                "" if per != per else f", {per:.0f} B/record"
            )
        print(
            f"| {row['scenario']} | {row['variant']} | {row['median_us']:.1f} | "
            f"{row['spread']:.0%} | {ratio} |"
        )


if __name__ == "__main__":
    main()
