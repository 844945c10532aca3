"""Load: the accounts example (and three reference apps) under uvicorn, driven by wrk.

The stack is production's: uvicorn with uvloop and httptools, the access log off (the run
stops at once if uvloop or httptools is missing). Each server (one uvicorn worker) is pinned
to core 0; wrk (one thread, 32 connections) and the Authlete simulator share core 1. Every
server is started once; then the scenarios take turns, A B C ... in odd rounds and ... C B A
in even ones, over at least 5 rounds, so drift on a shared machine hits them alike. Every
ratio (to the bare endpoint, and to the ceiling: bare plus one raw ES256 verify) is taken
within a round and reported as the median and the range over the rounds: never one run.

Every request carries the same headers, the benchmark's token and a pre-generated fresh
proof, guarded scenario or not, so the bare endpoint and the ceiling parse the same request
bytes as the guard (and answer the same body, ``apps.py``); each guarded request carries a
distinct proof. Each scenario reports
req/s, latency percentiles (p50, p99, p99.9), non-2xx answers, Authlete calls, the server's
CPU per request (from /proc, so the simulator's work is not counted as ours), and the
generator's CPU use (to show it is not the bottleneck), each as the median over the rounds.

JWT mode (issue 24 section 1) is measured in the same interleaved run: dpop_guard in ``jwt``
mode with its cache of verified tokens (a hit verifies the proof alone) and without it
(``DPOP_GUARD_CACHE_TTL=0``: two verifies per request), and the two Node.js peers of
:mod:`benchmarks.node_peers` (one ``node:http`` process each, pinned like uvicorn), all
presenting one RFC 9068 token from a local JWKS; each JWT row reports its req/s ratio to
the hand-written Node ``jose`` server, taken within each round.

Needs Debian's ``wrk``, ``redis-server``, ``node`` and ``npm``; ``taskset`` pins processes
when present.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from dpop_guard.client import ProofSigner
from dpop_guard.devtools.demo import (
    SERVICE_AUTH,
    free_port,
    mint_token,
    simulator_env,
    token_create,
)
from dpop_guard.devtools.demo import process as serve

from .node_peers import NODE_DIR, PEERS, JWTIssuer, jwt_issuer, node

ADMIN = SERVICE_AUTH  # the simulator's test hooks take the service credential
CONNECTIONS = 32
# Every server is told it is reached at this URL (as behind a proxy), so one set of proofs
# serves every server whatever its port.
PUBLIC_URL = "http://rs.bench.test"
MIN_ROUNDS = 5
LUA = """
local proofs, i, token, path = {}, 0, nil, "/"
init = function(args)
  token, path = args[1], args[3]
  if args[2] ~= "-" then
    for line in io.lines(args[2]) do proofs[#proofs + 1] = line end
  end
end
request = function()
  if token == "-" then return wrk.format("GET", path) end
  i = i + 1
  if proofs[i] == nil then i = 1 end  -- out of proofs: the replays show up as non-2xx
  local use, proof = token, proofs[i]
  local space = string.find(proof, " ", 1, true)
  if space then  -- "token proof": a token of its own for this request
    use, proof = string.sub(proof, 1, space - 1), string.sub(proof, space + 1)
  end
  return wrk.format("GET", path, {["Authorization"] = "DPoP " .. use, ["DPoP"] = proof})
end
done = function(summary, latency, requests)
  io.write(string.format(
    "RESULT {\\"requests\\": %d, \\"duration_us\\": %d, \\"non_2xx\\": %d, " ..
    "\\"socket_errors\\": %d, \\"p50_us\\": %d, \\"p99_us\\": %d, \\"p999_us\\": %d}\\n",
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"""


def pin(core: int) -> list[str]:
    taskset = shutil.which("taskset")
    return [taskset, "-c", str(core)] if taskset and (os.cpu_count() or 1) > 1 else []


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its children that have exited, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its live children (uvicorn --workers)."""
    total = cpu_seconds(pid)
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        for child in children.read_text().split():
            try:
                total += tree_cpu(int(child))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return total


@dataclass
class Scenario:
    name: str
    app: str
    path: str = "/accounts"
    env: dict[str, str] = field(default_factory=dict)
    latency: float = 0.0  # Authlete simulator latency, seconds
    workers: int = 1
    launcher: str = "uvicorn"  # or "examples.serve" (uvicorn's supervisor, TCP_NODELAY kept)
    guarded: bool = True
    proofs_per_second: int = 4000  # proofs signed for the first round; then 1.5x the rate seen
    issuer: str = "authlete"  # or "jwt": the RFC 9068 token of the local JWKS
    fresh_tokens: bool = False  # a token of its own per request: each miss is a first sight
    quick: bool = False  # in ``make bench-quick``: one scenario per section of issue 24


def run_wrk(
    url: str, path: str, token: str, proofs: Path | None, duration: int, *, pace_ms: float = 0
) -> dict[str, Any]:
    """One wrk run; with ``pace_ms``, each connection waits that long before each request
    (wrk's ``delay``): a load below saturation, where latency shows waiting, not a queue."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(LUA)
        if pace_ms:
            script.write(f"delay = function() return {pace_ms:.3f} end\n")
    before = os.times()
    out = subprocess.run(  # noqa: S603
        [
            *pin(1),
            shutil.which("wrk") or "wrk",
            "-t1",
            f"-c{CONNECTIONS}",
            f"-d{duration}s",
            "-s",
            script.name,
            url,
            "--",
            token,
            str(proofs) if proofs else "-",
            path,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    after = os.times()
    os.unlink(script.name)
    match = re.search(r"^RESULT (.*)$", out, re.M)
    if match is None:
        raise RuntimeError(f"no result from wrk: {out}")
    result: dict[str, Any] = json.loads(match.group(1))
    seconds = result["duration_us"] / 1e6
    result["rps"] = result["requests"] / seconds
    gen_cpu = (
        after.children_user - before.children_user + after.children_system - before.children_system
    )
    result["generator_cpu"] = gen_cpu / seconds
    return result


def fast_stack() -> dict[str, str]:
    """The versions of the production stack; stops the run if uvloop or httptools is
    missing (uvicorn would quietly fall back to asyncio and h11, a different figure)."""
    missing = [name for name in ("uvloop", "httptools") if importlib.util.find_spec(name) is None]
    if missing:
        raise SystemExit(
            f"the load benchmark runs on uvicorn with uvloop and httptools; missing: "
            f"{', '.join(missing)} (pip install uvloop httptools, or `make .venv/.installed`)"
        )
    return {name: importlib.metadata.version(name) for name in ("uvicorn", "uvloop", "httptools")}


def describe_stack(versions: dict[str, str]) -> str:
    return (
        f"uvicorn {versions['uvicorn']} with uvloop {versions['uvloop']} and httptools "
        f"{versions['httptools']}, access log off"
    )


BARE = "bare endpoint (no middleware)"
HIT = "cache hit, memory replay store"
CEILING = "ceiling: bare + one raw ES256 verify"
NODE_JOSE = "Node jose, RFC 9449 checks written out (peer)"
JWT_SCENARIOS = (
    Scenario("JWT mode, cache hit (one verify)", "examples.accounts:app", issuer="jwt", quick=True),
    Scenario(
        "JWT mode, no cache (two verifies)",
        "examples.accounts:app",
        env={"DPOP_GUARD_CACHE_TTL": "0"},
        issuer="jwt",
    ),
    Scenario(NODE_JOSE, PEERS["jose"], launcher="node", issuer="jwt", quick=True),
    Scenario(
        "Node oauth4webapi.validateJwtAccessToken (peer)",
        PEERS["oauth4webapi"],
        launcher="node",
        issuer="jwt",
    ),
)


def scenarios(redis_url: str, *, quick: bool = False) -> list[Scenario]:
    """Every load scenario; the first is the bare endpoint, the second the ceiling.
    ``quick``: the ceiling, the cache hit, the miss on a token seen before, the JWT-mode hit
    and the Node ``jose`` peer (the scenarios marked ``quick``)."""
    fleet = {"DPOP_GUARD_REPLAY_STORE": redis_url, "DPOP_GUARD_INTROSPECTION_CACHE": redis_url}
    every = [
        Scenario(BARE, "benchmarks.apps:bare", guarded=False),
        Scenario(CEILING, "benchmarks.apps:ceiling", guarded=False, quick=True),
        Scenario(HIT, "examples.accounts:app", quick=True),
        Scenario(
            "cache hit, Redis replay store",
            "examples.accounts:app",
            env={"DPOP_GUARD_REPLAY_STORE": redis_url},
        ),
        Scenario(
            "cache miss every request (token seen before: the check alone), Authlete 20 ms",
            "examples.accounts:app",
            env={"DPOP_GUARD_CACHE_TTL": "0"},
            latency=0.02,
            proofs_per_second=1500,
            quick=True,
        ),
        Scenario(
            "cache miss every request (a new token each: check and probe), Authlete 20 ms",
            "examples.accounts:app",
            env={"DPOP_GUARD_CACHE_TTL": "0"},
            latency=0.02,
            proofs_per_second=1000,
            fresh_tokens=True,
        ),
        Scenario(
            "Authlete-delegated (no local check), 20 ms",
            "benchmarks.apps:delegated",
            latency=0.02,
            proofs_per_second=1500,
        ),
        Scenario(
            "2 workers (examples.serve), cache hit, Redis stores",
            "examples.accounts:app",
            env=fleet,
            workers=2,
            launcher="examples.serve",
        ),
        Scenario(
            "2 workers (uvicorn --workers, uvicorn#3149), same",
            "examples.accounts:app",
            env=fleet,
            workers=2,
        ),
        *JWT_SCENARIOS,
    ]
    return [s for s in every if s.quick] if quick else every


@dataclass(frozen=True)
class Stack:
    """The parts every load run needs: the simulator, a Redis, a client key and its token."""

    simulator: str
    redis_url: str
    env: dict[str, str]
    signer: ProofSigner
    token: str
    jwt: JWTIssuer
    admin: httpx.Client
    """The simulator's test hooks (``/sim/faults``, ``/sim/stats``) and token endpoint, one
    kept-alive client: a new ``httpx`` client per call costs about 30 ms (it loads the
    trust store)."""

    def token_for(self, scenario: Scenario) -> str:
        return self.jwt.token if scenario.issuer == "jwt" else self.token


@contextmanager
def stack() -> Iterator[Stack]:
    """Start Redis and the Authlete simulator (on core 1) and mint a DPoP-bound token."""
    for tool in ("wrk", "redis-server"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is required (Debian: apt-get install {tool})")
    sim_port, redis_port = free_port(), free_port()
    simulator = f"http://127.0.0.1:{sim_port}"
    env = simulator_env(simulator)
    signer = ProofSigner.generate("ES256")
    redis_proc = subprocess.Popen(  # noqa: S603 - a fixed binary with fixed arguments
        [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        with serve(
            [
                *pin(1),
                sys.executable,
                "-m",
                "dpop_guard.devtools.simulator",
                "--port",
                str(sim_port),
            ],
            env,
            f"{simulator}/sim/stats",
        ):
            token = mint_token(simulator, signer, ["read:accounts"], lifetime=7200)
            with jwt_issuer(free_port(), audience=PUBLIC_URL, jkt=signer.jkt) as jwt:
                with httpx.Client(headers=ADMIN, trust_env=False) as admin:
                    redis_url = f"redis://127.0.0.1:{redis_port}/0"
                    yield Stack(simulator, redis_url, env, signer, token, jwt, admin)
    finally:
        redis_proc.terminate()
        redis_proc.wait(timeout=10)


def interleaved(count: int, rounds: int) -> Iterator[tuple[int, int]]:
    """``(round, index)`` pairs: A B C ... in even rounds, ... C B A in odd ones."""
    for r in range(rounds):
        order = range(count) if r % 2 == 0 else range(count - 1, -1, -1)
        for i in order:
            yield r, i


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def load(
    duration: int,
    progress: Callable[[str], None] = lambda _: None,
    *,
    rounds: int = MIN_ROUNDS,
    quick: bool = False,
    only: Callable[[Scenario], bool] | None = None,
) -> list[dict[str, Any]]:
    """One row per scenario: medians over ``rounds`` interleaved rounds, each ratio's median
    and range (``ratio_to_bare``, ``ratio_to_ceiling``, ``ratio_to_node_jose``: to the
    reference scenarios that ran), and every round's raw figures."""
    if rounds < MIN_ROUNDS:
        raise ValueError(f"at least {MIN_ROUNDS} rounds: a single run proves little")
    versions = fast_stack()
    with stack() as parts, contextlib.ExitStack() as servers:
        chosen = scenarios(parts.redis_url, quick=quick)
        if only is not None:  # the references stay: the ratios need them
            chosen = [s for s in chosen if s.name in (BARE, CEILING) or only(s)]
        urls = []
        for scenario in chosen:
            progress(f"start {scenario.name}")
            urls.append(servers.enter_context(_server(scenario, parts)))
        samples: list[list[dict[str, Any]]] = [[] for _ in chosen]
        for r, i in interleaved(len(chosen), rounds):
            progress(f"round {r + 1}/{rounds}: {chosen[i].name}")
            seen = max((run["rps"] for run in samples[i]), default=None)
            proofs = proofs_needed(seen, duration, chosen[i].proofs_per_second)
            samples[i].append(_run(chosen[i], urls[i], parts, duration, proofs))
    rows: list[dict[str, Any]] = []
    for scenario, runs in zip(chosen, samples, strict=True):
        row: dict[str, Any] = {
            "scenario": scenario.name,
            "stack": describe_stack(versions),
            "workers": scenario.workers,
            "authlete_latency_ms": scenario.latency * 1000,
            "rounds": len(runs),
            "runs": runs,
        }
        for key in runs[0]:
            row[key] = statistics.median(run[key] for run in runs)
        row["rps_range"] = [min(r["rps"] for r in runs), max(r["rps"] for r in runs)]
        names = [s.name for s in chosen]
        references = [(BARE, "ratio_to_bare"), (CEILING, "ratio_to_ceiling")]
        if scenario.issuer == "jwt":
            references.append((NODE_JOSE, "ratio_to_node_jose"))
        refs = [(names.index(ref), key) for ref, key in references if ref in names]
        for ref, name in refs:
            ratios = [
                run["rps"] / base["rps"] for run, base in zip(runs, samples[ref], strict=True)
            ]
            row[name] = statistics.median(ratios)
            row[f"{name}_range"] = [min(ratios), max(ratios)]
        rows.append(row)
    return rows


def mint_tokens(parts: Stack, count: int, lifetime: int = 7200) -> list[str]:
    """``count`` tokens bound to the client's key, each from the simulator's
    ``/auth/token/create`` (over the stack's kept-alive client)."""
    url, body = token_create(
        parts.simulator, ["read:accounts"], lifetime=lifetime, jkt=parts.signer.jkt
    )
    return [
        str(parts.admin.post(url, json=body).raise_for_status().json()["accessToken"])
        for _ in range(count)
    ]


def _calls(parts: Stack) -> int:
    calls = parts.admin.get(f"{parts.simulator}/sim/stats").json()["calls"]
    return int(calls.get("auth/introspection", 0))


@dataclass(frozen=True)
class Server:
    url: str
    pid: int


def uvicorn_command(app: str, port: int, workers: int = 1) -> list[str]:
    """The production stack's command line for ``app``: uvicorn with uvloop and httptools,
    the access log off."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--workers",
        str(workers),
    ]


@contextmanager
def _server(scenario: Scenario, parts: Stack) -> Iterator[Server]:
    """One scenario's server, started once for every round, its caches warmed."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(parts.env, DPOP_GUARD_PUBLIC_URL=PUBLIC_URL, **scenario.env)
    cwd = None
    if scenario.issuer == "jwt":
        env.update(parts.jwt.guard_env(PUBLIC_URL), **parts.jwt.node_env(PUBLIC_URL))
    if scenario.launcher == "node":
        command = [*pin(0), node(), scenario.app, str(port)]
        cwd = str(NODE_DIR)
    elif scenario.launcher == "uvicorn":
        command = [
            *(pin(0) if scenario.workers == 1 else []),
            *uvicorn_command(scenario.app, port, scenario.workers),
        ]
    else:  # examples.serve: uvicorn's defaults pick uvloop and httptools (checked above)
        command = [
            sys.executable,
            "-m",
            scenario.launcher,
            scenario.app,
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--workers",
            str(scenario.workers),
        ]
    token = parts.token_for(scenario)
    with serve(command, env, f"{url}/health", cwd=cwd) as proc:
        if scenario.guarded:
            for _ in range(2 * scenario.workers):  # warm every worker's cache
                warm = parts.signer.sign(
                    htm="GET", htu=PUBLIC_URL + scenario.path, access_token=token
                )
                answer = httpx.get(
                    url + scenario.path,
                    headers={
                        "Authorization": f"DPoP {token}",
                        "DPoP": warm,
                        "Connection": "close",
                    },
                )
                if answer.status_code != 200:
                    raise SystemExit(f"{scenario.name}: answered {answer.status_code}")
        yield Server(url, proc.pid)


def proofs_needed(seen_rps: float | None, duration: int, nominal: int) -> int:
    """Fresh proofs to sign for one run (signing them is most of a short run's time): for
    1.5x the rate seen so far and a quarter second more; before any run, for the
    ``nominal`` rate, a guess, and a second more. Running out shows up as non-2xx answers,
    never as a silently faster figure."""
    if seen_rps is None:
        return nominal * (duration + 1)
    rate = int(1.5 * seen_rps)
    return rate * duration + rate // 4


def _run(
    scenario: Scenario, server: Server, parts: Stack, duration: int, proofs: int
) -> dict[str, Any]:
    """One wrk run against a running server, with ``proofs`` fresh proofs of its own
    (:func:`proofs_needed`)."""
    fd, name = tempfile.mkstemp(suffix=".txt")
    os.close(fd)
    proofs_file = Path(name)
    # A guarded scenario needs a fresh proof per request; the others get the same request
    # bytes from a few hundred proofs, reused (nothing checks them there).
    count = max(500, proofs) if scenario.guarded else 500
    htu = PUBLIC_URL + scenario.path
    token = parts.token_for(scenario)
    if scenario.fresh_tokens:
        lines = [
            f"{own} {parts.signer.sign(htm='GET', htu=htu, access_token=own)}"
            for own in mint_tokens(parts, count)
        ]
    else:
        lines = [parts.signer.sign(htm="GET", htu=htu, access_token=token) for _ in range(count)]
    proofs_file.write_text("\n".join(lines) + "\n")
    try:
        # The latency is set once the tokens are minted (it slows every simulator API).
        latency = {"latency": scenario.latency}
        parts.admin.post(f"{parts.simulator}/sim/faults", json=latency)
        calls = _calls(parts)
        cpu = tree_cpu(server.pid)
        result = run_wrk(server.url, scenario.path, token, proofs_file, duration)
        result["server_cpu_us_per_request"] = (
            (tree_cpu(server.pid) - cpu) / max(1, result["requests"]) * 1e6
        )
        result["authlete_calls"] = _calls(parts) - calls
        result["proofs_available"] = count
    finally:
        proofs_file.unlink()
        parts.admin.post(f"{parts.simulator}/sim/faults", json={"latency": 0.0})
    return result


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.load [--jwt] [--rounds N] [--duration S]``: the load scenarios
    alone (``--jwt``: the bare endpoint, the ceiling and the JWT-mode scenarios with the
    Node peers), their table printed and written to ``results/load.*``."""
    import argparse

    from .micro import machine
    from .report import markdown, save

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--jwt", action="store_true", help="JWT mode and the Node peers only")
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS)
    parser.add_argument("--duration", type=int, default=5)
    args = parser.parse_args(argv)
    only = (lambda s: s.issuer == "jwt" or not s.guarded) if args.jwt else None
    rows = load(
        args.duration,
        lambda label: print(label, file=sys.stderr),
        rounds=args.rounds,
        only=only,
    )
    result = {
        "machine": machine(),
        "micro": [],
        "load": rows,
        "load_duration_s": args.duration,
        "load_rounds": args.rounds,
    }
    save("load-jwt" if args.jwt else "load", result, markdown(result))


if __name__ == "__main__":
    main()
