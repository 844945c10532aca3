"""``python -m benchmarks.load [--quick]``: req/s of the accounts example under uvicorn.

The server (one uvicorn worker) is pinned to core 0 and the load generator, wrk with a Lua
script, to core 1. Every request carries a distinct, pre-generated, fresh proof. Scenarios:
a bare public endpoint (``/health``), and ``/accounts`` on a cache hit with the memory
replay store and with the Redis replay store. Each is reported as a ratio to the bare
endpoint measured in the same run.

Needs Debian's ``wrk``, ``redis-server`` and ``taskset`` (util-linux).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from dpop_guard.client import ProofSigner
from dpop_guard.introspection.simulator import DEFAULT_SERVICE_ID, DEFAULT_SERVICE_TOKEN

from .__main__ import RESULTS, machine

ROOT = Path(__file__).resolve().parent.parent
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
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") and os.cpu_count() != 1 else []


@contextmanager
def serve(args: list[str], env: dict[str, str], ready: str) -> Iterator[None]:
    proc = subprocess.Popen(args, cwd=ROOT, env=env)  # noqa: S603 - our own commands
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(ready, timeout=0.5)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{args} did not start") from None
                time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def wrk(
    url: str, path: str, token: str, proofs: Path | None, duration: int, connections: int
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(LUA)
    out = subprocess.run(  # noqa: S603
        [
            *pin(1),
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
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
    os.unlink(script.name)

    def latency(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)", out, re.M)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "requests": total,
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(1) if errors else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--duration", type=int, default=None)
    args = parser.parse_args()
    duration = args.duration or (3 if args.quick else 10)
    for tool in ("wrk", "redis-server"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is required (Debian: apt-get install {tool})")
    sim_port, redis_port = free_port(), free_port()
    simulator = f"http://127.0.0.1:{sim_port}"
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    base_env = dict(
        os.environ,
        AUTHLETE_BASE_URL=simulator,
        AUTHLETE_API_VERSION="V3",
        AUTHLETE_SERVICE_APIKEY=DEFAULT_SERVICE_ID,
        AUTHLETE_SERVICE_ACCESSTOKEN=DEFAULT_SERVICE_TOKEN,
    )
    signer = ProofSigner.generate("ES256")
    rows: list[dict[str, Any]] = []
    redis_proc = subprocess.Popen(  # noqa: S603
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
                "dpop_guard.introspection.simulator",
                "--port",
                str(sim_port),
            ],
            base_env,
            f"{simulator}/sim/stats",
        ):
            token = httpx.post(
                f"{simulator}/api/{DEFAULT_SERVICE_ID}/auth/token/create",
                headers={"Authorization": f"Bearer {DEFAULT_SERVICE_TOKEN}"},
                json={
                    "subject": "alice",
                    "scopes": ["read:accounts"],
                    "dpopKeyThumbprint": signer.jkt,
                    "accessTokenDuration": 3600,
                },
            ).json()["accessToken"]
            scenarios = [
                ("bare /health", "memory", "/health"),
                ("/accounts cache hit, memory replay store", "memory", "/accounts"),
                ("/accounts cache hit, Redis replay store", redis_url, "/accounts"),
            ]
            for name, store, path in scenarios:
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                env = dict(base_env, DPOP_GUARD_REPLAY_STORE=store, DPOP_GUARD_PUBLIC_URL=url)
                with serve(
                    [
                        *pin(0),
                        sys.executable,
                        "-m",
                        "uvicorn",
                        "examples.accounts:app",
                        "--port",
                        str(port),
                        "--log-level",
                        "warning",
                        "--no-access-log",
                    ],
                    env,
                    f"{url}/health",
                ):
                    proofs_file = None
                    if path != "/health":
                        warm = signer.sign(htm="GET", htu=url + path, access_token=token)
                        httpx.get(
                            url + path, headers={"Authorization": f"DPoP {token}", "DPoP": warm}
                        ).raise_for_status()
                        count = 6000 * duration
                        proofs_file = Path(tempfile.mkstemp(suffix=".txt")[1])
                        proofs_file.write_text(
                            "\n".join(
                                signer.sign(htm="GET", htu=url + path, access_token=token)
                                for _ in range(count)
                            )
                            + "\n"
                        )
                    calls_before = httpx.get(
                        f"{simulator}/sim/stats",
                        headers={"Authorization": f"Bearer {DEFAULT_SERVICE_TOKEN}"},
                    ).json()["calls"]
                    result = wrk(
                        url, path, token if proofs_file else "-", proofs_file, duration, 32
                    )
                    calls_after = httpx.get(
                        f"{simulator}/sim/stats",
                        headers={"Authorization": f"Bearer {DEFAULT_SERVICE_TOKEN}"},
                    ).json()["calls"]
                    if proofs_file:
                        proofs_file.unlink()
                    result["authlete_calls"] = calls_after.get(
                        "auth/introspection", 0
                    ) - calls_before.get("auth/introspection", 0)
                    rows.append({"scenario": name, **result})
                    print(f"  {name}: {result['rps']:.0f} req/s", flush=True)
    finally:
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
    bare = rows[0]["rps"]
    memory = rows[1]["rps"]
    for row in rows:
        row["ratio_to_bare"] = row["rps"] / bare
    info = machine()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / ("load-quick.json" if args.quick else "load.json")).write_text(
        json.dumps({"machine": info, "duration_s": duration, "rows": rows}, indent=2) + "\n"
    )
    print(
        f"\n{info['cpu']}, {info['cores']} cores, Python {info['python']}; server pinned to "
        f"core 0, wrk (1 thread, 32 connections, {duration} s) to core 1\n"
    )
    print("| scenario | req/s | vs bare | p50 ms | p99 ms | non-2xx | Authlete calls |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['scenario']} | {row['rps']:.0f} | {row['ratio_to_bare']:.2f}x | "
            f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['non_2xx']} | "
            f"{row['authlete_calls']} |"
        )
    print(f"\nRedis replay store vs memory: {rows[2]['rps'] / memory:.2f}x")


if __name__ == "__main__":
    main()
