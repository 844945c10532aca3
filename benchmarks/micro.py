"""In-process benchmarks: the verifier against its floor and its alternatives, one
request through the middleware without sockets, and the replay store under mass expiry.

Every figure is reported as a ratio to a floor measured in the same run (absolute times on
a shared machine are noise; ratios measured side by side are not).

- verify: per algorithm, the raw ``cryptography`` verify of one signature (the floor); our
  full verification (parse, every check, thumbprint, ``ath``, and the memory replay record);
  a naive joserfc path that imports the key from the JWK on every request; the same with
  PyJWT; and pydpop (ES256 only, its own replay store) when installed.
- asgi: CPU per request through the middleware in process: a bare ASGI endpoint, a cache
  hit, and a cache miss (the simulator in process, no latency; its own CPU is excluded by
  subtracting a run of the simulator alone).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
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
    InvalidDPoPProof,
    ProofPolicy,
    ProofSigner,
    ProofVerifier,
    Route,
)
from dpop_guard._b64 import b64url_decode
from dpop_guard.devtools.simulator import (
    DEFAULT_SERVICE_ID,
    DEFAULT_SERVICE_TOKEN,
    SimulatorState,
    create_simulator_app,
)
from dpop_guard.jwk import import_public_jwk
from dpop_guard.proof import compute_ath
from dpop_guard.replay import MemoryReplayStore
from dpop_guard.replay._guard import ReplayGuard

PUBLISHED = Path(__file__).parent / "results"
"""The tracked results (the figures the README and the docs quote): written only when
``BENCH_PUBLISH=1`` is set, so an ordinary run never rewrites them."""
RESULTS = PUBLISHED if os.environ.get("BENCH_PUBLISH") == "1" else PUBLISHED / "local"
URL = "https://rs.example.com/accounts"
TOKEN = "benchmark-access-token-0123456789abcdef"  # noqa: S105 - a fixture


def _interleaved(
    variants: dict[str, Callable[[int], None]], n: int, rounds: int
) -> dict[str, tuple[float, float]]:
    """Median and spread (max-min over median) of seconds per operation. The variants
    take turns within each round, so drift on a shared machine hits them alike."""
    for fn in variants.values():
        fn(max(10, n // 10))  # warm up
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn(n)
            samples[name].append((time.perf_counter() - start) / n)
    result = {}
    for name, values in samples.items():
        med = statistics.median(values)
        result[name] = (med, (max(values) - min(values)) / med)
    return result


def _verify_variants(alg: str, n: int, rounds: int) -> dict[str, Callable[[int], None]]:
    signer = ProofSigner.generate(alg)
    now = int(time.time())

    def fresh(count: int) -> list[str]:
        return [signer.sign(htm="GET", htu=URL, access_token=TOKEN, iat=now) for _ in range(count)]

    # dpop_guard records every proof, so it gets distinct ones throughout; the others keep
    # no state and cycle through one set. The floor verifies those same signatures.
    proofs = iter(fresh(n * (rounds + 1)))
    shared = fresh(n)
    key = import_public_jwk(dict(signer.public_jwk), alg=alg)
    pairs = []
    for proof in shared:
        header, payload, sig = proof.split(".")
        pairs.append((b64url_decode(sig), f"{header}.{payload}".encode()))
    verifier = ProofVerifier(ProofPolicy(algorithms=(alg,)))
    guard = ReplayGuard(MemoryReplayStore(epoch=now))  # the middleware's own record
    registry = jws.JWSRegistry(algorithms=[alg])
    registry.max_header_length = 8192

    def cycle(k: int) -> Iterator[str]:
        for i in range(k):
            yield shared[i % n]

    def floor(k: int) -> None:
        verify = key.verify
        for i in range(k):
            signature, signing_input = pairs[i % n]
            verify(signature, signing_input)

    def ours(k: int) -> None:
        for _ in range(k):
            proof = verifier.verify(
                next(proofs), method="GET", url=URL, access_token=TOKEN, now=now
            )
            guard.record_sync(proof, now)

    def naive_joserfc(k: int) -> None:
        for token in cycle(k):
            compact = jws.extract_compact(token.encode(), registry=registry)
            public = jose_jwk.import_key(compact.protected["jwk"])
            obj = jws.deserialize_compact(token, public, registry=registry)
            claims = json.loads(obj.payload)
            assert claims["htm"] == "GET"
            public.thumbprint()

    variants: dict[str, Callable[[int], None]] = {
        "raw verify (floor)": floor,
        "dpop_guard": ours,
        "joserfc, key imported per request": naive_joserfc,
    }
    if importlib.util.find_spec("jwt") is not None:  # the bench group: PyJWT, pydpop
        import jwt

        def naive_pyjwt(k: int) -> None:
            for token in cycle(k):
                jwk = jwt.get_unverified_header(token)["jwk"]
                public = jwt.PyJWK(jwk, algorithm=alg).key
                claims = jwt.decode(
                    token, public, algorithms=[alg], options={"require": ["iat", "jti"]}
                )
                assert claims["htm"] == "GET"

        variants["PyJWT, key imported per request"] = naive_pyjwt
    if importlib.util.find_spec("pydpop") is not None and alg == "ES256":
        import pydpop

        def peer_pydpop(k: int) -> None:
            for token in cycle(k):
                # No jti store: pydpop's MemoryJtiStore sweeps every entry on each call.
                result = pydpop.verify_proof(
                    proof=token, htm="GET", htu=URL, access_token=TOKEN, now=now
                )
                assert result["jwk_thumbprint"]

        variants["pydpop 0.2 (no replay store)"] = peer_pydpop
    return variants


def micro(
    n: int, rounds: int, algs: tuple[str, ...] = ("ES256", "EdDSA", "PS256")
) -> list[dict[str, Any]]:
    rows = []
    for alg in algs:
        results = _interleaved(_verify_variants(alg, n, rounds), n, rounds)
        base = results["raw verify (floor)"][0]
        rows += [
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
    return rows


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
        base_url="http://sim.invalid",
        api_key=DEFAULT_SERVICE_ID,
        access_token=DEFAULT_SERVICE_TOKEN,
    )
    settings = GuardSettings(
        routes=(Route("/accounts", scopes=("read:accounts",)),), public_url="https://rs.example.com"
    )
    cached = DPoPGuardMiddleware(
        bare,
        settings=settings,
        introspector=CachingIntrospector(AuthleteIntrospector(sim, authlete), ttl=600),
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

    # The cache miss is measured over HTTP by the load benchmark, where the simulator's own
    # CPU is in another process; in process it would be counted as ours.
    variants = {"bare ASGI endpoint": (bare, n), "cache hit": (cached, n)}
    if importlib.util.find_spec("prometheus_client") is not None:
        from prometheus_client import CollectorRegistry

        from dpop_guard.prometheus import PrometheusMetrics

        metered = DPoPGuardMiddleware(
            bare,
            settings=settings,
            metrics=PrometheusMetrics(CollectorRegistry()),
            introspector=CachingIntrospector(AuthleteIntrospector(sim, authlete), ttl=600),
        )
        variants["cache hit, Prometheus metrics"] = (metered, n)
    if importlib.util.find_spec("opentelemetry.sdk") is not None:
        from opentelemetry.sdk.trace import TracerProvider

        from dpop_guard.otel import OpenTelemetrySpans

        traced = DPoPGuardMiddleware(
            bare,
            settings=settings,
            metrics=OpenTelemetrySpans(TracerProvider().get_tracer("bench")),
            introspector=CachingIntrospector(AuthleteIntrospector(sim, authlete), ttl=600),
        )
        variants["cache hit, OpenTelemetry spans (SDK, no exporter)"] = (traced, n)
    await run(cached, 5, True)
    samples: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for name, (app, k) in variants.items():
            samples[name].append(await run(app, max(k, 5), True))
    await sim.aclose()
    assert set(statuses) == {200}, statuses
    base = statistics.median(samples["bare ASGI endpoint"])
    hit = statistics.median(samples["cache hit"])
    rows = []
    for name, values in samples.items():
        med = statistics.median(values)
        rows.append(
            {
                "scenario": "middleware in process, CPU per request",
                "variant": name,
                "median_us": med * 1e6,
                "spread": (max(values) - min(values)) / med,
                "ratio": med / hit,
                "ratio_to": "cache hit",
            }
        )
    rows.append(
        {
            "scenario": "middleware in process, CPU per request",
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
        store.try_add(hashlib.sha256(str(i).encode()).hexdigest(), ttl=70, now=0)
    per_entry = (tracemalloc.get_traced_memory()[0] - before) / n
    tracemalloc.stop()
    clock.now += 71
    worst = 0.0
    start_all = time.perf_counter()
    for key in keys[n:]:
        start = time.perf_counter()
        store.try_add(key, ttl=70, now=0)
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


def worst_case(n: int) -> list[dict[str, Any]]:
    """The most CPU one request can make the verifier spend: for each crafted input, a fresh
    key per request (so the header cache never helps), at the size limits."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    now = int(time.time())
    policy = ProofPolicy(algorithms=("ES256", "PS256", "EdDSA", "PS512", "RS256"))
    rsa4096 = ProofSigner(
        rsa.generate_private_key(public_exponent=65537, key_size=4096), alg="PS512"
    )
    es = ProofSigner.generate("ES256")

    def unique_es(i: int) -> str:  # a new key each time: header parse + key import + verify
        signer = ProofSigner.generate("ES256")
        return signer.sign(htm="GET", htu=URL, access_token=TOKEN, iat=now)

    big_claims = {
        "jti": "j",
        "htm": "GET",
        "htu": URL,
        "iat": now,
        "pad": ["x" * 60] * 90,
    }  # a payload near the 8 KiB cap
    cases: dict[str, Callable[[int], str]] = {
        "ES256, new key per request": unique_es,
        "PS512 on RSA-4096": lambda i: rsa4096.sign(
            htm="GET", htu=URL, access_token=TOKEN, iat=now
        ),
        "8 KiB payload, valid signature": lambda i: es.sign_raw(
            None, big_claims | {"jti": f"j{i}", "ath": compute_ath(TOKEN)}
        ),
        "RSA-4096 key, bad signature": lambda i: ".".join(
            [*rsa4096.sign(htm="GET", htu=URL, iat=now).split(".")[:2], "A" * 683]
        ),
    }
    rows = []
    for name, make in cases.items():
        verifier = ProofVerifier(policy, memo_budget=0)
        proofs = [make(i) for i in range(n)]

        def run(k: int, proofs: list[str] = proofs, verifier: ProofVerifier = verifier) -> None:
            for proof in proofs[:k]:
                try:
                    verifier.verify(proof, method="GET", url=URL, access_token=TOKEN, now=now)
                except InvalidDPoPProof:
                    pass

        med, spread = _interleaved({name: run}, n, 3)[name]
        rows.append(
            {
                "scenario": "worst case per request (verifier)",
                "variant": name,
                "median_us": med * 1e6,
                "spread": spread,
                "ratio": float("nan"),
                "ratio_to": "",
            }
        )
    return rows
