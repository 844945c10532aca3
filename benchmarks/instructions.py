"""``python -m benchmarks.instructions [--runs 2]``: instructions per request, counted by
callgrind, so the figure repeats whatever else the machine is doing.

What is counted. Every scenario prepares its app and all ``large`` requests first (proofs
read from a file, scopes built), serves requests ``1..small`` (the warm-up: imports done on
first use, the key cache, the cache fill, the HTTP connection), and then requests
``small+1..large``, calling the ASGI app directly, one request after another, with a
minimal ``receive``/``send`` (no httpx, no sockets in the measured loop, except the guard's
own client to the simulator in ``miss``). The figure is the instructions of that second
stretch divided by ``large - small``, i.e. ``(I(large) - I(small)) / (large - small)``:
start-up, imports and everything done once cancel out, and what remains is the
steady-state cost of one request in that one process (Python, OpenSSL, libc; not the
kernel, not the simulator). ``valgrind --tool=callgrind --trace-children=no`` counts it
(``Ir``, instructions executed), in one of two ways:

- ``client-requests`` (the default when a C compiler is present): one interpreter per run
  serves every scenario in turn; a two-line C library issues callgrind's
  ``CALLGRIND_DUMP_STATS_AT`` before and after each measured stretch (each dump zeroes the
  counters), so only the measured stretch lands in its dump;
- ``process``: one fresh interpreter per scenario and count (``small``, then ``large``),
  and the difference of the two totals. Same figures (measured: within 0.1%), about four
  times slower, since every interpreter pays the imports under valgrind.

The proofs are signed beforehand by the parent process (fixed keys, fixed ``iat``, numbered
``jti``), the guard's clock and its stores' clocks are fixed (a C call, like the
production clocks: ``itertools.repeat(t).__next__``), and ``PYTHONHASHSEED=0``;
each run signs its own proofs, so the spread between runs includes the signatures' own
variation.

Scenarios (one ES256 key, ``GET /accounts``):

1. ``bare``: a bare ASGI app answering ``{}``.
2. ``bare+verify``: the bare app plus one raw ES256 verify per request (``cryptography``
   directly, the signature already DER-encoded and the key already imported): the ceiling.
3. ``hit``: :class:`DPoPGuardMiddleware` in front of the bare app, a cache hit
   (:class:`CachingIntrospector`, the memory replay store); the one miss that fills the
   cache is in the warm-up.
4. ``miss``: the same without a cache: every request is introspected by the simulator over
   real HTTP on loopback, one call each (the check; the binding probe ran once, in the
   warm-up, and its answer is remembered). The simulator is another process, not traced,
   so only the guard's own process (its HTTP client included) is counted.

And ``verify ES256``/``PS256``/``EdDSA``: a loop of raw ``cryptography`` verifies of proof
signatures (the key imported once), the unit the middleware's own instructions are
expressed in. Derived: the middleware's own instructions on a hit as ``(hit - bare+verify)``
and as ``(hit - bare - verify ES256)``, on a miss as ``(miss - bare - verify ES256)``, each
divided by one raw ES256 verify; and PS256 and EdDSA verifies per ES256 verify.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HOST = "rs.example.com"
URL = f"https://{HOST}/accounts"
ALGS = ("ES256", "PS256", "EdDSA")
SCENARIOS = ("bare", "bare+verify", "hit", "miss")
# The hit path with a proof key of each other algorithm (a token bound to that key): the
# middleware's own instructions relative to that algorithm's own verify.
ALG_HITS = tuple(f"hit {alg}" for alg in ALGS if alg != "ES256")
IAT = 1_790_000_000  # the fixed clock of the guard and of every proof (Sep 2026)
SMALL, LARGE = 50, 300


# --- the measured child (runs under valgrind) -----------------------------------------------


def _public_key(jwk: dict[str, Any]) -> Any:
    """The JWK as a ``cryptography`` public key, imported once (not counted per request)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    from dpop_guard._b64 import b64url_decode

    def num(name: str) -> int:
        return int.from_bytes(b64url_decode(jwk[name]), "big")

    if jwk["kty"] == "EC":
        return ec.EllipticCurvePublicNumbers(num("x"), num("y"), ec.SECP256R1()).public_key()
    if jwk["kty"] == "RSA":
        return rsa.RSAPublicNumbers(num("e"), num("n")).public_key()
    return ed25519.Ed25519PublicKey.from_public_bytes(b64url_decode(jwk["x"]))


def _raw_verifier(alg: str, jwk: dict[str, Any]) -> Callable[[str], Callable[[], None]]:
    """For a compact proof, a no-argument call doing exactly one raw verify of its
    signature; the decoding and DER encoding happen when the call is made, not when run."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    from dpop_guard._b64 import b64url_decode

    key = _public_key(jwk)

    def prepare(proof: str) -> Callable[[], None]:
        header, payload, sig_b64 = proof.split(".")
        data, sig = f"{header}.{payload}".encode(), b64url_decode(sig_b64)
        if alg == "ES256":
            der = encode_dss_signature(
                int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
            )
            algorithm = ec.ECDSA(hashes.SHA256())
            return lambda: key.verify(der, data, algorithm)
        if alg == "PS256":
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            sha = hashes.SHA256()
            return lambda: key.verify(sig, data, pss, sha)
        return lambda: key.verify(sig, data)

    return prepare


def _bare_app() -> Callable[..., Awaitable[None]]:
    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"application/json")],
    }
    body = {"type": "http.response.body", "body": b"{}"}

    async def bare(scope: Any, receive: Any, send: Any) -> None:
        await send(start)
        await send(body)

    return bare


def _scope(token: str, proof: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "path": "/accounts",
        "raw_path": b"/accounts",
        "scheme": "https",
        "query_string": b"",
        "root_path": "",
        "server": (HOST, 443),
        "client": ("127.0.0.1", 50000),
        "state": {},  # as uvicorn sends it (its lifespan state, copied per request)
        "headers": [
            (b"host", HOST.encode()),
            (b"authorization", f"DPoP {token}".encode()),
            (b"dpop", proof.encode()),
        ],
    }


Dump = Callable[[str], None]


async def _child(
    scenario: str, count: int, data: dict[str, Any], mark: tuple[int, Dump] | None = None
) -> int:
    """Serve ``count`` requests of ``scenario`` (or verify ``count`` signatures). With
    ``mark = (small, dump)``, callgrind's counters are dumped after the first ``small``
    requests and after the last, so the second dump holds requests ``small+1..count``."""
    proofs: list[str] = data["proofs"]
    small, dump = mark if mark is not None else (count, lambda _: None)
    if scenario.startswith("verify "):
        prepare = _raw_verifier(scenario[7:], data["jwk"])  # the key imported once
        calls = [prepare(p) for p in proofs]
        for call in calls[:small]:
            call()
        dump(f"{scenario}:warm")
        for call in calls[small:count]:
            call()
        dump(f"{scenario}:measured")
        return count

    import httpx

    from dpop_guard import (
        AuthleteIntrospector,
        AuthleteSettings,
        CachingIntrospector,
        DPoPGuardMiddleware,
        GuardSettings,
        Route,
    )
    from dpop_guard.replay import MemoryReplayStore

    # A fixed clock that is a C call, as time.time and time.monotonic are in production:
    # a Python function here would bill its frame to the guard on every clock read.
    fixed: Callable[[], float] = itertools.repeat(float(IAT)).__next__

    bare = _bare_app()
    token: str = data["token"]
    scopes = [_scope(token, p) for p in proofs]
    app: Callable[..., Awaitable[None]] = bare
    client: httpx.AsyncClient | None = None
    if scenario == "bare+verify":
        prepare = _raw_verifier("ES256", data["jwk"])
        for scope in scopes:
            scope["bench.verify"] = prepare(scope["headers"][2][1].decode())

        async def ceiling(scope: Any, receive: Any, send: Any) -> None:
            scope["bench.verify"]()
            await bare(scope, receive, send)

        app = ceiling
    elif scenario in ("hit", "miss") or scenario.startswith("hit "):
        client = httpx.AsyncClient()
        authlete = AuthleteSettings(
            base_url=data["simulator"],
            api_key=data["service_id"],
            access_token=data["service"],
            timeout=60.0,  # valgrind runs the guard ~50x slower than native
        )
        introspector: Any = AuthleteIntrospector(client, authlete)
        if scenario.startswith("hit"):
            introspector = CachingIntrospector(introspector, ttl=600, clock=fixed)
        app = DPoPGuardMiddleware(
            bare,
            settings=GuardSettings(
                routes=(Route("/accounts", scopes=("read:accounts",)),),
                public_url=f"https://{HOST}",
            ),
            introspector=introspector,
            replay_store=MemoryReplayStore(clock=fixed),
            clock=fixed,
        )
    request = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> dict[str, Any]:
        return request

    statuses: list[int] = []
    refusals: list[Any] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])
            if message["status"] != 200 and len(refusals) < 3:
                refusals.append(message["headers"])

    # Each scope is dropped once served, as a server drops it: kept in a list, what the
    # guard leaves in it (scope["auth"], scope["user"]) would pile up in the collector's
    # youngest generation and bill its collections to the guard.
    warm, measured = scopes[:small][::-1], scopes[small:count][::-1]
    del scopes
    while warm:
        await app(warm.pop(), receive, send)
    dump(f"{scenario}:warm")
    while measured:
        await app(measured.pop(), receive, send)
    dump(f"{scenario}:measured")
    if client is not None:
        await client.aclose()
    if statuses != [200] * count:
        raise SystemExit(f"{scenario}: not every request answered 200: {set(statuses)} {refusals}")
    return count


async def _child_all(plan: dict[str, Any]) -> None:
    """Every scenario in one interpreter, callgrind's counters dumped around each measured
    stretch by a client request (so the interpreter starts once per run, not twice per
    scenario)."""
    import ctypes

    lib = ctypes.CDLL(plan["helper"])
    lib.bench_dump.argtypes = [ctypes.c_char_p]
    lib.bench_dump.restype = None

    def dump(label: str) -> None:
        lib.bench_dump(label.encode())

    for name, data in plan["scenarios"]:
        await _child(name, plan["large"], data, (plan["small"], dump))


_HELPER_C = """
#include <valgrind/callgrind.h>
void bench_dump(const char *label) { CALLGRIND_DUMP_STATS_AT(label); }
"""


def _build_helper(workdir: Path) -> Path | None:
    """A two-line C library issuing callgrind's ``DUMP_STATS_AT`` client request, or
    ``None`` without a C compiler or valgrind's headers (then one process per count)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    source, lib = workdir / "benchcg.c", workdir / "libbenchcg.so"
    source.write_text(_HELPER_C)
    built = subprocess.run(  # noqa: S603 - the system compiler on our own two lines
        [cc, "-shared", "-fPIC", "-O1", "-o", str(lib), str(source)],
        capture_output=True,
        check=False,
    )
    return lib if built.returncode == 0 else None


def _dumps(out: Path) -> dict[str, int]:
    """The instruction total of each client-request dump, by its label."""
    totals = {}
    for part in sorted(out.parent.glob(out.name + ".*")):
        text = part.read_text()
        label = re.search(r"^desc: Trigger: Client Request: (.*)$", text, re.M)
        if label is not None:
            totals[label.group(1).strip()] = _instructions(part)
        part.unlink()
    return totals


def _count_all(plan_file: Path, workdir: Path, tag: str) -> dict[str, int]:
    out = workdir / f"callgrind.all.{tag}"
    done = subprocess.run(  # noqa: S603 - our own interpreter under a fixed valgrind command
        [
            _valgrind(),
            "--tool=callgrind",
            "--trace-children=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "benchmarks.instructions",
            "--child-all",
            str(plan_file),
        ],
        env=dict(os.environ, PYTHONHASHSEED="0"),
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the instruction run failed under valgrind:\n{done.stderr[-3000:]}")
    out.unlink(missing_ok=True)
    return _dumps(out)


# --- the parent: proofs, the simulator, valgrind --------------------------------------------


def _signers() -> dict[str, Any]:
    """Fixed keys (the same in every run); RSA from a fixed seed is not offered by
    ``cryptography``, so the PS256 key is generated once per invocation."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    from dpop_guard import ProofSigner

    return {
        "ES256": ProofSigner(ec.derive_private_key(0x5EED_0001_D0D0, ec.SECP256R1()), alg="ES256"),
        "PS256": ProofSigner(
            rsa.generate_private_key(public_exponent=65537, key_size=2048), alg="PS256"
        ),
        "EdDSA": ProofSigner(
            ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32))), alg="EdDSA"
        ),
    }


def _proofs(signer: Any, token: str | None, count: int, tag: str) -> list[str]:
    return [
        signer.sign(htm="GET", htu=URL, access_token=token, iat=IAT, jti=f"{tag}-{i:06d}")
        for i in range(count)
    ]


@contextlib.contextmanager
def simulator() -> Iterator[str]:
    """The Authlete simulator in its own process (not traced), with an ``iat`` window wide
    enough for the fixed clock: it checks proofs against its own wall clock."""
    from dpop_guard.devtools.demo import free_port, process

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "benchmarks.instructions", "--serve-simulator", str(port)]
    with process(cmd, dict(os.environ), f"{url}/sim/stats"):
        yield url


def _serve_simulator(port: int) -> None:
    import uvicorn

    from dpop_guard.devtools.simulator import SimulatorState, create_simulator_app

    state = SimulatorState(iat_skew=10 * 365 * 86400)
    uvicorn.run(create_simulator_app(state), host="127.0.0.1", port=port, log_level="warning")


def _instructions(out: Path) -> int:
    """The total ``Ir`` of a callgrind output file."""
    text = out.read_text()
    match = re.search(r"^(?:totals|summary):\s*(\d+)", text, re.M)
    if match is None:
        raise RuntimeError(f"no instruction total in {out}")
    return int(match.group(1))


def _valgrind() -> str:
    binary = shutil.which("valgrind")
    if binary is None:
        raise SystemExit("valgrind is required (Debian: apt-get install valgrind)")
    return binary


def _count(scenario: str, count: int, data_file: Path, workdir: Path) -> int:
    out = workdir / f"callgrind.{data_file.stem}"
    env = dict(os.environ, PYTHONHASHSEED="0")
    done = subprocess.run(  # noqa: S603 - our own interpreter under a fixed valgrind command
        [
            _valgrind(),
            "--tool=callgrind",
            "--trace-children=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "benchmarks.instructions",
            "--child",
            scenario,
            str(count),
            str(data_file),
        ],
        env=env,
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{scenario} x{count} failed under valgrind:\n{done.stderr[-3000:]}")
    total = _instructions(out)
    out.unlink()
    return total


def measure(
    runs: int = 2,
    small: int = SMALL,
    large: int = LARGE,
    jobs: int = 2,
    method: str = "auto",
    only: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Instructions per request for every scenario and algorithm, ``runs`` times (each run
    with freshly signed proofs). ``jobs`` valgrind processes run side by side: instruction
    counts do not depend on the machine's load.

    :param method: ``client-requests``: one interpreter per run, callgrind's counters
        dumped by a client request after ``small`` requests and after ``large`` (needs a C
        compiler and valgrind's headers); ``process``: one interpreter per count and the
        difference of the totals; ``auto``: the first when it can be built.
    :param only: measure just these scenarios (while iterating on one path; the derived
        figures that need a missing scenario are left out).
    :raises SystemExit: without valgrind, or ``client-requests`` cannot be built."""
    from dpop_guard.devtools.demo import mint_token
    from dpop_guard.devtools.simulator import DEFAULT_SERVICE_ID, DEFAULT_SERVICE_TOKEN

    if large <= small:
        raise ValueError("large must exceed small")
    started = time.monotonic()
    signers = _signers()
    names = (*SCENARIOS, *ALG_HITS, *(f"verify {alg}" for alg in ALGS))
    if only:
        unknown = set(only) - set(names)
        if unknown:
            raise SystemExit(f"unknown scenarios: {sorted(unknown)}; known: {names}")
        names = tuple(name for name in names if name in only)
    tasks: list[tuple[int, str, int, Path]] = []
    per_run: list[dict[str, float]] = []
    with simulator() as sim, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tokens = {
            alg: mint_token(sim, signers[alg], ["read:accounts"], lifetime=86400) for alg in ALGS
        }

        def data(run: int, index: int, name: str, tag: str) -> dict[str, Any]:
            alg = name.partition(" ")[2] or "ES256"
            return {
                "proofs": _proofs(signers[alg], tokens[alg], large, f"{tag}{run}{index}"),
                "jwk": dict(signers[alg].public_jwk),
                "token": tokens[alg],
                "simulator": sim,
                "service_id": DEFAULT_SERVICE_ID,
                "service": DEFAULT_SERVICE_TOKEN,
            }

        helper = _build_helper(work) if method != "process" else None
        if method == "client-requests" and helper is None:
            raise SystemExit("no C compiler or valgrind headers for the client requests")
        method = "client-requests" if helper is not None else "process"
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            if helper is not None:
                plans = []
                for run in range(runs):
                    plan = {
                        "helper": str(helper),
                        "small": small,
                        "large": large,
                        "scenarios": [
                            (name, data(run, i, name, "m")) for i, name in enumerate(names)
                        ],
                    }
                    plan_file = work / f"plan.{run}.json"
                    plan_file.write_text(json.dumps(plan))
                    plans.append(pool.submit(_count_all, plan_file, work, str(run)))
                for future in plans:
                    dumps = future.result()
                    per_run.append(
                        {name: dumps[f"{name}:measured"] / (large - small) for name in names}
                    )
            else:
                for run in range(runs):
                    for index, name in enumerate(names):
                        # Each count gets its own proofs (jti of one length, so the
                        # preparation costs the same): the simulator refuses a replay.
                        for n, tag in ((small, "s"), (large, "l")):
                            data_file = work / f"data.{len(tasks)}.json"
                            data_file.write_text(json.dumps(data(run, index, name, tag)))
                            tasks.append((run, name, n, data_file))
                futures = {
                    (run, name, n): pool.submit(_count, name, n, path, work)
                    for run, name, n, path in tasks
                }
                totals = {key: f.result() for key, f in futures.items()}
                for run in range(runs):
                    per_run.append(
                        {
                            name: (totals[(run, name, large)] - totals[(run, name, small)])
                            / (large - small)
                            for name in names
                        }
                    )
    return summarise(per_run, small, large, time.monotonic() - started, method)


def summarise(
    per_run: Sequence[dict[str, float]],
    small: int,
    large: int,
    seconds: float,
    method: str = "process",
) -> dict[str, Any]:
    """Medians over the runs, the spread ((max - min) / median), and the middleware's own
    instructions as multiples of one raw ES256 verify."""
    names = list(per_run[0])
    rows: list[dict[str, Any]] = []
    for name in names:
        values = [run[name] for run in per_run]
        mid = statistics.median(values)
        rows.append(
            {
                "scenario": name,
                "instructions_per_request": mid,
                "runs": values,
                "spread": (max(values) - min(values)) / mid if mid else 0.0,
            }
        )
    unit = "verify ES256" if "verify ES256" in per_run[0] else names[0]
    verify = statistics.median(run[unit] for run in per_run)

    def ratio(
        values: Callable[[dict[str, float]], float], of: str = "verify ES256"
    ) -> dict[str, Any]:
        each = [values(run) / run[of] for run in per_run]
        return {"median": statistics.median(each), "min": min(each), "max": max(each)}

    formulas: dict[str, tuple[tuple[str, ...], Callable[[dict[str, float]], float], str]] = {
        "middleware_on_hit_vs_verify (hit - bare+verify)": (
            ("hit", "bare+verify"),
            lambda r: r["hit"] - r["bare+verify"],
            "verify ES256",
        ),
        "middleware_on_hit_vs_verify (hit - bare - verify)": (
            ("hit", "bare"),
            lambda r: r["hit"] - r["bare"] - r["verify ES256"],
            "verify ES256",
        ),
        "middleware_on_miss_vs_verify (miss - bare - verify)": (
            ("miss", "bare"),
            lambda r: r["miss"] - r["bare"] - r["verify ES256"],
            "verify ES256",
        ),
        "PS256_verify_vs_ES256": (("verify PS256",), lambda r: r["verify PS256"], "verify ES256"),
        "EdDSA_verify_vs_ES256": (("verify EdDSA",), lambda r: r["verify EdDSA"], "verify ES256"),
    }
    for alg in ALGS[1:]:
        formulas[f"middleware_on_{alg}_hit_vs_{alg}_verify (hit {alg} - bare - verify {alg})"] = (
            (f"hit {alg}", "bare"),
            lambda r, alg=alg: r[f"hit {alg}"] - r["bare"] - r[f"verify {alg}"],  # type: ignore[misc]
            f"verify {alg}",
        )
    derived = {
        label: ratio(values, of)
        for label, (needs, values, of) in formulas.items()
        if all(name in per_run[0] for name in (*needs, of))
    }
    return {
        "tool": "valgrind --tool=callgrind --trace-children=no (Ir, instructions executed)",
        "valgrind": _version([_valgrind(), "--version"]),
        "python": platform.python_version(),
        "method": (
            f"(I(requests 1..{large}) - I(requests 1..{small})) / {large - small}, "
            + (
                "one interpreter per run, counters dumped by callgrind client requests"
                if method == "client-requests"
                else "one fresh interpreter per count"
            )
            + ", PYTHONHASHSEED=0, fixed clock and keys, ASGI app called directly"
        ),
        "small": small,
        "large": large,
        "runs": len(per_run),
        "seconds": seconds,
        "rows": rows,
        "derived": derived,
        "raw_es256_verify_instructions": verify,
    }


def _version(cmd: list[str]) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()  # noqa: S603


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Instructions per request ({result['tool']}; {result['valgrind']}, Python "
        f"{result['python']}; {result['method']}; {result['runs']} runs, "
        f"{result['seconds']:.0f} s):",
        "",
        "| scenario | instructions/request | x raw ES256 verify | spread between runs |",
        "|---|---:|---:|---:|",
    ]
    verify = result["raw_es256_verify_instructions"]
    for row in result["rows"]:
        lines.append(
            f"| {row['scenario']} | {row['instructions_per_request']:,.0f} | "
            f"{row['instructions_per_request'] / verify:.3f} | {row['spread']:.2%} |"
        )
    lines += ["", "| derived | median | range |", "|---|---:|---:|"]
    for name, r in result["derived"].items():
        lines.append(f"| {name} | {r['median']:.3f} | {r['min']:.3f}-{r['max']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="repetitions (default 2)")
    parser.add_argument("--small", type=int, default=SMALL)
    parser.add_argument("--large", type=int, default=LARGE)
    parser.add_argument("--jobs", type=int, default=2, help="valgrind processes at once")
    parser.add_argument("--method", choices=("auto", "client-requests", "process"), default="auto")
    parser.add_argument("--child", nargs=3, metavar=("SCENARIO", "COUNT", "DATA"))
    parser.add_argument("--child-all", metavar="PLAN")
    parser.add_argument("--serve-simulator", type=int, metavar="PORT")
    parser.add_argument(
        "--only",
        metavar="NAMES",
        help="comma-separated scenarios to measure (e.g. 'hit,bare+verify,verify ES256'); "
        "the results are printed, not written",
    )
    args = parser.parse_args(argv)
    if args.serve_simulator:
        _serve_simulator(args.serve_simulator)
        return
    if args.child_all:
        asyncio.run(_child_all(json.loads(Path(args.child_all).read_text())))
        return
    if args.child:
        scenario, count, data_file = args.child
        asyncio.run(_child(scenario, int(count), json.loads(Path(data_file).read_text())))
        return
    if not 1 <= args.runs <= 10 or not 1 <= args.small < args.large <= 100_000:
        parser.error("--runs must be 1-10 and 1 <= --small < --large <= 100000")
    from .report import save  # the in-process children never need it

    only = [name.strip() for name in args.only.split(",")] if args.only else None
    result = measure(
        args.runs, args.small, args.large, max(1, min(args.jobs, 8)), method=args.method, only=only
    )
    if only:
        print(markdown(result))
        return
    save("instructions", result, markdown(result))


if __name__ == "__main__":
    main()
