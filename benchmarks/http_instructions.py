"""``python -m benchmarks.http_instructions [--duration 15]``: the server's instructions per
request over real HTTP, counted by callgrind.

:mod:`benchmarks.instructions` counts the guard called in process; this counts the whole
server process (uvicorn with uvloop and httptools, the access log off, one worker) serving
real requests on loopback: the HTTP parser, the event loop, the framework, the app and the
guard, everything in user space (callgrind does not see the kernel). The scenarios are the
load benchmark's (:mod:`benchmarks.load`): the bare app, the ceiling (the bare app plus one
raw ES256 verify) and the accounts app on a cache hit with the memory replay store; every
request carries the same headers (the token and a fresh proof).

How: each server runs under ``valgrind --tool=callgrind``; once it answers and has served a
few warm-up requests, ``callgrind_control --zero`` clears its counters, ``wrk`` with one
connection sends requests one at a time for ``--duration`` seconds (valgrind runs the server
about 50 times slower, so a few thousand requests), and ``callgrind_control --dump`` writes
the counters. Instructions per request are the dump's total over wrk's request count. One
request at a time keeps the event loop's work per request fixed, so the figure repeats to
within about 1%; it is the same work the load benchmark's wall clock measures, less what
32 concurrent connections share per loop iteration.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from dpop_guard.devtools.demo import free_port
from dpop_guard.devtools.demo import process as serve

from .load import (
    LUA,
    PUBLIC_URL,
    Scenario,
    Stack,
    describe_stack,
    fast_stack,
    pin,
    stack,
    uvicorn_command,
)
from .micro import machine
from .report import save

SCENARIOS = (
    Scenario("bare endpoint (no middleware)", "benchmarks.apps:bare", guarded=False),
    Scenario("ceiling: bare + one raw ES256 verify", "benchmarks.apps:ceiling", guarded=False),
    Scenario("cache hit, memory replay store", "examples.accounts:app"),
)
_TOTAL = re.compile(r"^(?:totals|summary):\s*(\d+)", re.M)
_RESULT = re.compile(r"^RESULT (.*)$", re.M)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SystemExit(f"{name} is required (Debian: apt-get install valgrind wrk)")
    return path


def _proofs(parts: Stack, count: int, directory: Path) -> Path:
    path = directory / "proofs.txt"
    htu = PUBLIC_URL + "/accounts"
    path.write_text(
        "\n".join(
            parts.signer.sign(htm="GET", htu=htu, access_token=parts.token) for _ in range(count)
        )
        + "\n"
    )
    return path


@contextlib.contextmanager
def _traced_server(scenario: Scenario, parts: Stack, directory: Path) -> Iterator[tuple[str, int]]:
    """The scenario's server under callgrind: ``(url, pid)`` once it answers and is warm."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(parts.env, DPOP_GUARD_PUBLIC_URL=PUBLIC_URL, PYTHONHASHSEED="0", **scenario.env)
    command = [
        *pin(0),
        _tool("valgrind"),
        "--tool=callgrind",
        f"--callgrind-out-file={directory}/callgrind.%p",
        *uvicorn_command(scenario.app, port),
    ]
    with (
        (directory / "server.log").open("wb") as log,
        serve(
            command,
            env,
            f"{url}/health",
            stderr=log,
            startup=300,  # imports under valgrind
        ) as server,
    ):
        for _ in range(20):  # warm: imports done on first use, the key and token caches
            proof = parts.signer.sign(
                htm="GET", htu=PUBLIC_URL + "/accounts", access_token=parts.token
            )
            headers = {"Authorization": f"DPoP {parts.token}", "DPoP": proof}
            httpx.get(f"{url}/accounts", headers=headers, timeout=120)
        yield url, server.pid


def count(scenario: Scenario, parts: Stack, duration: int) -> dict[str, Any]:
    """Instructions per request of ``scenario``'s server over HTTP."""
    control = _tool("callgrind_control")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        script = directory / "requests.lua"
        script.write_text(LUA)
        with _traced_server(scenario, parts, directory) as (url, pid):
            # Signed now, not before the (slow) start: a proof is fresh for 60 s.
            proofs = _proofs(parts, 5000, directory)
            subprocess.run([control, "--zero", str(pid)], check=True, capture_output=True)  # noqa: S603
            wrk = [*pin(1), _tool("wrk"), "-t1", "-c1", f"-d{duration}s", "-s", str(script)]
            out = subprocess.run(  # noqa: S603
                [*wrk, url, "--", parts.token, str(proofs), "/accounts"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            dumped = set(directory.glob("callgrind.*"))
            subprocess.run([control, "--dump", str(pid)], check=True, capture_output=True)  # noqa: S603
            dump = None
            for _ in range(60):  # the dump is written by the server, a moment later
                new = set(directory.glob("callgrind.*")) - dumped
                if new:
                    dump = max(new, key=lambda p: p.stat().st_mtime)
                    break
                time.sleep(0.5)
            if dump is None:
                raise SystemExit("callgrind wrote no dump")
            time.sleep(1)  # let it finish writing
            total = _TOTAL.search(dump.read_text())
        match = _RESULT.search(out)
        if total is None or match is None:
            raise SystemExit(f"no count for {scenario.name}")
    result = json.loads(match.group(1))
    if result["non_2xx"] or result["socket_errors"]:
        raise SystemExit(f"{scenario.name}: {result['non_2xx']} non-2xx answers")
    return {
        "scenario": scenario.name,
        "requests": result["requests"],
        "instructions_per_request": int(total.group(1)) / result["requests"],
    }


def markdown(result: dict[str, Any]) -> str:
    rows = {row["scenario"]: row["instructions_per_request"] for row in result["rows"]}
    bare, ceiling, hit = (rows[s.name] for s in SCENARIOS)
    verify = ceiling - bare
    lines = [
        f"Server instructions per request over HTTP ({result['stack']}; callgrind, user space,"
        f" one connection, {result['duration_s']} s per scenario under valgrind):",
        "",
        "| scenario | instructions/request | requests counted |",
        "|---|---:|---:|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['scenario']} | {row['instructions_per_request']:,.0f} | {row['requests']} |"
        )
    lines += [
        "",
        f"The guard on a hit, over HTTP: hit - ceiling = {hit - ceiling:,.0f} instructions, "
        f"{(hit - ceiling) / verify:.3f} of the ceiling's verify (ceiling - bare = "
        f"{verify:,.0f}).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds of wrk per scenario")
    args = parser.parse_args()
    versions = fast_stack()
    with stack() as parts:
        rows = [count(scenario, parts, args.duration) for scenario in SCENARIOS]
    result = {
        "machine": machine(),
        "stack": describe_stack(versions),
        "duration_s": args.duration,
        "rows": rows,
    }
    save("http_instructions", result, markdown(result))


if __name__ == "__main__":
    main()
