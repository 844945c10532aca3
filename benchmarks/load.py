"""Load: the accounts example (and two reference apps) under uvicorn, driven by wrk.

The server (one uvicorn worker) is pinned to core 0; wrk (one thread, C connections) and
the Authlete simulator share core 1. Every guarded request carries a distinct, pre-generated,
fresh proof. Each scenario reports req/s, latency percentiles (p50, p99, p99.9), non-2xx
answers, Authlete calls, the server's CPU per request (from /proc, so the simulator's work is
not counted as ours), and the generator's CPU use (to show it is not the bottleneck).

Needs Debian's ``wrk`` and ``redis-server``; ``taskset`` pins processes when present.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
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
from dpop_guard.demo import mint_token, simulator_env
from dpop_guard.demo import process as serve
from dpop_guard.simulator import DEFAULT_SERVICE_TOKEN

ADMIN = {"Authorization": f"Bearer {DEFAULT_SERVICE_TOKEN}"}
CONNECTIONS = 32
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
  return wrk.format("GET", path, {["Authorization"] = "DPoP " .. token, ["DPoP"] = proofs[i]})
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    proofs_per_second: int = 6000


def run_wrk(url: str, path: str, token: str, proofs: Path | None, duration: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(LUA)
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


def scenarios(redis_url: str) -> list[Scenario]:
    fleet = {"DPOP_GUARD_REPLAY_STORE": redis_url, "DPOP_GUARD_INTROSPECTION_CACHE": redis_url}
    return [
        Scenario("bare endpoint (no middleware)", "benchmarks.apps:bare", guarded=False),
        Scenario("cache hit, memory replay store", "examples.accounts:app"),
        Scenario(
            "cache hit, Redis replay store",
            "examples.accounts:app",
            env={"DPOP_GUARD_REPLAY_STORE": redis_url},
        ),
        Scenario(
            "cache miss every request, Authlete 20 ms",
            "examples.accounts:app",
            env={"DPOP_GUARD_CACHE_TTL": "0"},
            latency=0.02,
            proofs_per_second=1500,
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
    ]


@dataclass(frozen=True)
class Stack:
    """The parts every load run needs: the simulator, a Redis, a client key and its token."""

    simulator: str
    redis_url: str
    env: dict[str, str]
    signer: ProofSigner
    token: str


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
                "dpop_guard.simulator",
                "--port",
                str(sim_port),
            ],
            env,
            f"{simulator}/sim/stats",
        ):
            token = mint_token(simulator, signer, ["read:accounts"], lifetime=7200)
            yield Stack(simulator, f"redis://127.0.0.1:{redis_port}/0", env, signer, token)
    finally:
        redis_proc.terminate()
        redis_proc.wait(timeout=10)


def load(duration: int, progress: Callable[[str], None] = lambda _: None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with stack() as parts:
        for scenario in scenarios(parts.redis_url):
            progress(scenario.name)
            rows.append(
                _run(scenario, parts.env, parts.simulator, parts.signer, parts.token, duration)
            )
    bare = rows[0]
    for row in rows:
        row["ratio_to_bare"] = row["rps"] / bare["rps"]
    return rows


def _calls(simulator: str) -> int:
    calls = httpx.get(f"{simulator}/sim/stats", headers=ADMIN).json()["calls"]
    return int(calls.get("auth/introspection", 0))


def _run(
    scenario: Scenario,
    base_env: dict[str, str],
    simulator: str,
    signer: ProofSigner,
    token: str,
    duration: int,
) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(base_env, DPOP_GUARD_PUBLIC_URL=url, **scenario.env)
    httpx.post(f"{simulator}/sim/faults", headers=ADMIN, json={"latency": scenario.latency})
    if scenario.launcher == "uvicorn":
        command = [
            *(pin(0) if scenario.workers == 1 else []),
            sys.executable,
            "-m",
            "uvicorn",
            scenario.app,
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--workers",
            str(scenario.workers),
        ]
    else:
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
    with serve(command, env, f"{url}/health") as proc:
        proofs_file = None
        if scenario.guarded:
            for _ in range(2 * scenario.workers):  # warm every worker's cache
                warm = signer.sign(htm="GET", htu=url + scenario.path, access_token=token)
                httpx.get(
                    url + scenario.path,
                    headers={"Authorization": f"DPoP {token}", "DPoP": warm, "Connection": "close"},
                )
            fd, name = tempfile.mkstemp(suffix=".txt")
            os.close(fd)
            proofs_file = Path(name)
            count = scenario.proofs_per_second * scenario.workers * (duration + 1)
            proofs_file.write_text(
                "\n".join(
                    signer.sign(htm="GET", htu=url + scenario.path, access_token=token)
                    for _ in range(count)
                )
                + "\n"
            )
        calls = _calls(simulator)
        cpu = tree_cpu(proc.pid)
        result = run_wrk(url, scenario.path, token if proofs_file else "-", proofs_file, duration)
        result["server_cpu_us_per_request"] = (
            (tree_cpu(proc.pid) - cpu) / max(1, result["requests"]) * 1e6
        )
        result["authlete_calls"] = _calls(simulator) - calls
        if proofs_file is not None:
            result["proofs_available"] = count
            proofs_file.unlink()
    httpx.post(f"{simulator}/sim/faults", headers=ADMIN, json={"latency": 0.0})
    return {
        "scenario": scenario.name,
        "workers": scenario.workers,
        "authlete_latency_ms": scenario.latency * 1000,
        **result,
    }
