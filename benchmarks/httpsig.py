"""``python -m benchmarks.httpsig [--rounds 15] [--batch 200] [--instructions]``: what RFC 9421
message signing costs on top of DPoP, per request, and what ``Content-Digest`` costs per
byte.

Scenarios (one ES256 DPoP key, one ES256 client signing key, one ES256 server key; every
request prepared beforehand: proofs and request signatures made by the parent with
:class:`dpop_guard.client.DPoPAuth`, a fixed clock, unique ``jti`` and signature bases):

1. ``dpop``: :class:`DPoPGuardMiddleware` in front of a bare app answering ``{}``; the
   introspector is an in-process one behind :class:`CachingIntrospector`, so every measured
   request is a cache hit (no I/O; the DPoP-only figure the issue compares with).
2. ``dpop+sig``: the same guard in front of :class:`HTTPSignatureMiddleware` in front of the
   bare app, as ``from_env`` installs them: the request's signature verified (its replay
   recorded in the memory store) and the response signed (``Content-Digest`` of ``{}``).
3. ``dpop+sig 1k``, ``dpop+sig 256k``: a signed ``POST`` whose 1 KiB / 256 KiB body is
   streamed in 16 KiB messages to an app that reads it, the digest checked as it streams.
   The difference between the two, divided by the bytes, is the cost per byte of checking
   ``Content-Digest`` through the middleware; ``sha-256`` alone (``hashlib``) is shown too.

Wall clock: rounds of ``batch`` requests per scenario, the scenarios' order shuffled in
each round (interleaved, so the machine's drift lands on all of them alike); the figure is
the median over rounds of the per-request time, with the range (min-max). The overhead is
the median of the per-round differences, with their range.

``--instructions``: the same scenarios counted by callgrind (``valgrind``), one fresh
interpreter per scenario and count, ``(I(large) - I(small)) / (large - small)`` as in
:mod:`benchmarks.instructions` (start-up, imports and the warm-up cancel out).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HOST = "rs.example.com"
NOW = 1_790_000_000
SCENARIOS = ("dpop", "dpop+sig", "dpop+sig 1k", "dpop+sig 256k")
BODIES = {"dpop": None, "dpop+sig": None, "dpop+sig 1k": 1024, "dpop+sig 256k": 262144}
CHUNK = 16384
SMALL, LARGE = 40, 240

App = Callable[..., Awaitable[None]]


def _keys() -> dict[str, Any]:
    """Fixed keys for the parent and the children (PEM is enough to rebuild them)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    return {
        "dpop": ec.derive_private_key(0x1D0B, ec.SECP256R1()),
        "client": ec.derive_private_key(0xC11E, ec.SECP256R1()),
        "server": ec.derive_private_key(0x5E4E, ec.SECP256R1()),
    }


def _prepare(scenario: str, count: int) -> list[dict[str, Any]]:
    """``count`` requests for ``scenario``: method, path, header pairs, body."""
    import httpx

    from dpop_guard.client import DPoPAuth, ProofSigner
    from dpop_guard.httpsig import SigningKey

    keys = _keys()
    signer = ProofSigner(keys["dpop"])
    signing = None if scenario == "dpop" else SigningKey(keys["client"], "client-1")
    auth = DPoPAuth(signer, "bench-token", signing_key=signing, clock=lambda: NOW)
    size = BODIES[scenario]
    # One body per scenario (each request is still unique: its proof and signature are).
    body = None if size is None else _body(size)
    requests = []
    for _ in range(count):
        method = "GET" if body is None else "POST"
        request = httpx.Request(method, f"https://{HOST}/accounts", content=body)
        signed = next(auth.sync_auth_flow(request))
        headers = [(k.decode().lower(), v.decode()) for k, v in signed.headers.raw]
        requests.append({"method": method, "headers": headers, "size": size or 0})
    return requests


def _body(size: int) -> bytes:
    return bytes(range(256)) * (size // 256)


def _bare_app() -> App:
    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"application/json")],
    }
    done = {"type": "http.response.body", "body": b"{}"}

    async def bare(scope: Any, receive: Any, send: Any) -> None:
        if scope["method"] == "POST":
            while (await receive()).get("more_body", False):
                pass
        await send(start)
        await send(done)

    return bare


def _app(scenario: str) -> App:
    from dpop_guard import DPoPGuardMiddleware, GuardSettings, Route
    from dpop_guard.client import ProofSigner
    from dpop_guard.httpsig import HTTPSignatureMiddleware, SigningKey, StaticJWKS
    from dpop_guard.introspection import TokenInfo
    from dpop_guard.introspection.cached import CachingIntrospector
    from dpop_guard.replay import MemoryReplayStore

    fixed: Callable[[], float] = itertools.repeat(float(NOW)).__next__
    keys = _keys()
    info = TokenInfo(
        subject="alice",
        client_id="client",
        scopes=frozenset({"read:accounts"}),
        expires_at=NOW + 3600,
        jkt=ProofSigner(keys["dpop"]).jkt,
    )

    class Static:
        async def introspect(self, token: str, *, request: Any) -> TokenInfo:
            return info

    inner: App = _bare_app()
    replay = MemoryReplayStore(clock=fixed)
    if scenario != "dpop":
        client = SigningKey(keys["client"], "client-1")
        inner = HTTPSignatureMiddleware(
            inner,
            key_source=StaticJWKS({"keys": [client.public_jwk()]}),
            signing_key=SigningKey(keys["server"], "rs-1"),
            public_url=f"https://{HOST}",
            replay_store=replay,
            clock=fixed,
        )
    return DPoPGuardMiddleware(
        inner,
        settings=GuardSettings(
            routes=(Route("/accounts", scopes=("read:accounts",)),),
            public_url=f"https://{HOST}",
        ),
        introspector=CachingIntrospector(Static(), ttl=600, clock=fixed),
        replay_store=replay,
        clock=fixed,
    )


def _scope(request: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request["method"],
        "path": "/accounts",
        "raw_path": b"/accounts",
        "scheme": "https",
        "query_string": b"",
        "root_path": "",
        "server": (HOST, 443),
        "client": ("127.0.0.1", 50000),
        "state": {},
        "headers": [(k.encode(), v.encode()) for k, v in request["headers"]],
    }


def _messages(body: bytes) -> list[dict[str, Any]]:
    chunks = [body[i : i + CHUNK] for i in range(0, len(body), CHUNK)] or [b""]
    return [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]


Prepared = list[tuple[dict[str, Any], list[dict[str, Any]]]]


def _prepared(requests: list[dict[str, Any]]) -> Prepared:
    """Each request's ASGI scope and the messages its body arrives in."""
    bodies = {size: _body(size) for size in {r["size"] for r in requests}}
    return [(_scope(r), _messages(bodies[r["size"]])) for r in requests]


async def _serve(app: App, prepared: Prepared) -> float:
    """Serve ``prepared`` one after another; seconds taken. Every answer must be 200."""
    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    started = time.perf_counter()
    for scope, inbox in prepared:
        queue = iter(inbox)

        async def receive(queue: Any = queue) -> dict[str, Any]:
            return next(queue, {"type": "http.disconnect"})

        await app(scope, receive, send)
    elapsed = time.perf_counter() - started
    if statuses != [200] * len(prepared):
        raise SystemExit(f"not every request answered 200: {set(statuses)}")
    return elapsed


def wall_clock(rounds: int, batch: int) -> dict[str, Any]:
    plan = {s: _prepare(s, rounds * batch + 20) for s in SCENARIOS}
    apps = {s: _app(s) for s in SCENARIOS}
    for s in SCENARIOS:  # warm-up: imports, the cache fill, the key imports
        asyncio.run(_serve(apps[s], _prepared(plan[s][:20])))
    per: dict[str, list[float]] = {s: [] for s in SCENARIOS}
    order = list(SCENARIOS)
    rng = random.Random(0)
    for r in range(rounds):
        rng.shuffle(order)
        for s in order:
            chunk = _prepared(plan[s][20 + r * batch : 20 + (r + 1) * batch])
            per[s].append(asyncio.run(_serve(apps[s], chunk)) / batch * 1e6)
    return per


def _sha256_ns_per_byte() -> float:
    data = bytes(1 << 20)
    times = []
    for _ in range(15):
        started = time.perf_counter()
        hashlib.sha256(data).digest()
        times.append(time.perf_counter() - started)
    return statistics.median(times) / len(data) * 1e9


def _crypto_us() -> tuple[float, float]:
    """One raw ES256 verify and one raw ES256 sign (``cryptography``), µs: the part of
    the overhead that is the signatures themselves."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = _keys()["client"]
    public, data, algorithm = key.public_key(), bytes(300), ec.ECDSA(hashes.SHA256())
    signature = key.sign(data, algorithm)
    verify, sign = [], []
    for _ in range(15):
        started = time.perf_counter()
        for _ in range(100):
            public.verify(signature, data, algorithm)
        verify.append((time.perf_counter() - started) * 1e4)
        started = time.perf_counter()
        for _ in range(100):
            key.sign(data, algorithm)
        sign.append((time.perf_counter() - started) * 1e4)
    return statistics.median(verify), statistics.median(sign)


def _range(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def report(per: dict[str, list[float]]) -> None:
    print("µs per request, median over rounds (min-max):")
    for s in SCENARIOS:
        print(f"  {s:<14} {_range(per[s])}")
    base = per["dpop"]
    for s in SCENARIOS[1:]:
        diffs = [a - b for a, b in zip(per[s], base, strict=True)]
        ratio = statistics.median(per[s]) / statistics.median(base)
        print(f"  overhead {s:<14} +{_range(diffs)} µs, x{ratio:.2f} of dpop")
    size = BODIES["dpop+sig 256k"] - BODIES["dpop+sig 1k"]  # type: ignore[operator]
    slope = [
        (a - b) * 1000 / size for a, b in zip(per["dpop+sig 256k"], per["dpop+sig 1k"], strict=True)
    ]
    print(f"  Content-Digest through the middleware: {_range(slope)} ns per byte")
    print(f"  sha-256 alone (hashlib, 1 MiB): {_sha256_ns_per_byte():.2f} ns per byte")
    verify, sign = _crypto_us()
    print(f"  raw ES256 (cryptography): verify {verify:.1f} µs, sign {sign:.1f} µs")


# --- instructions (callgrind) -------------------------------------------------------------


async def _child(scenario: str, count: int, data_file: Path) -> None:
    # Every request of the file is prepared whatever ``count`` is, so that preparing
    # (a cost per request and per byte) cancels out of the difference.
    prepared = _prepared(json.loads(data_file.read_text()))
    app = _app(scenario)
    await _serve(app, prepared[:count])


def _count(scenario: str, count: int, data_file: Path, workdir: Path) -> int:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is required (Debian: apt-get install valgrind)")
    out = workdir / f"callgrind.{count}"
    subprocess.run(  # noqa: S603 - our own interpreter under a fixed valgrind command
        [
            valgrind,
            "--tool=callgrind",
            "--trace-children=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "benchmarks.httpsig",
            "--child",
            scenario,
            str(count),
            str(data_file),
        ],
        check=True,
        capture_output=True,
        env={"PYTHONHASHSEED": "0", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path.cwd())},
    )
    from benchmarks.instructions import _instructions

    return _instructions(out)


def instructions() -> dict[str, float]:
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for s in SCENARIOS:
            data = workdir / "requests.json"
            data.write_text(json.dumps(_prepare(s, LARGE)))
            small, large = _count(s, SMALL, data, workdir), _count(s, LARGE, data, workdir)
            figures[s] = (large - small) / (LARGE - SMALL)
            print(f"  {s:<14} {figures[s]:,.0f} instructions per request", flush=True)
    base = figures["dpop"]
    for s in SCENARIOS[1:]:
        print(f"  overhead {s:<14} +{figures[s] - base:,.0f} ({figures[s] / base:.2f}x)")
    size = BODIES["dpop+sig 256k"] - BODIES["dpop+sig 1k"]  # type: ignore[operator]
    per_byte = (figures["dpop+sig 256k"] - figures["dpop+sig 1k"]) / size
    print(f"  Content-Digest through the middleware: {per_byte:.1f} instructions per byte")
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.httpsig")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("SCENARIO", "COUNT", "FILE"))
    args = parser.parse_args(argv)
    if args.child:
        scenario, count, data = args.child
        asyncio.run(_child(scenario, int(count), Path(data)))
        return
    report(wall_clock(args.rounds, args.batch))
    if args.instructions:
        print("Instructions per request (callgrind):")
        instructions()


if __name__ == "__main__":
    main()
