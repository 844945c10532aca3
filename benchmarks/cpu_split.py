"""``python -m benchmarks.cpu_split [--rounds 3] [--duration 4]``: where the server's CPU
goes per request, over HTTP, by library.

The load benchmark (:mod:`benchmarks.load`) gives req/s and the server's CPU per request;
the instruction counts (:mod:`benchmarks.instructions`) give the guard's own work in
process. This splits the server's CPU per request under load into the parts of the stack
that spend it, so the gap between the ceiling (the bare endpoint plus one raw ES256 verify)
and a cache hit can be read part by part: OpenSSL's verify, the Python interpreter, the
kernel, the event loop and HTTP parser, the standard library's C modules.

How: the same servers and the same wrk load as :mod:`benchmarks.load` (uvicorn with uvloop
and httptools, the access log off, one worker pinned to core 0; wrk and the simulator on
core 1; a fresh proof per request), while ``perf record`` samples the server process
(``cpu-clock``, so it needs no hardware counters: a virtual machine will do). Each
sample is attributed to the shared object it ran in; the server's CPU per request (from
``/proc``, as in the load benchmark) times each object's share of the samples gives its
µs per request. Scenarios are interleaved (A B C, then C B A) over the rounds; medians.
Sampling adds a few percent to every figure alike. Needs ``perf`` (Debian: linux-perf) and
``kernel.perf_event_paranoid`` at most 2 (the default lets a user sample their own
processes).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from .load import (
    Scenario,
    Server,
    Stack,
    _run,
    _server,
    describe_stack,
    fast_stack,
    proofs_needed,
    stack,
)
from .micro import machine
from .report import save

GROUPS = (
    ("OpenSSL (cryptography)", ("_rust.abi3", "libcrypto", "libssl")),
    ("Python interpreter", ("libpython",)),
    ("kernel", ("[kernel", "[vdso]")),
    ("uvloop + httptools", ("loop.cpython", "parser.cpython", "url_parser.cpython")),
    ("libc", ("libc.so", "libm.so", "ld-linux")),
)
OTHER = "other C modules (json, binascii, asyncio, ...)"
_ROW = re.compile(r"^\s*([\d.]+)%\s+(\S+)", re.M)


def group_of(dso: str) -> str:
    """The part of the stack a shared object belongs to."""
    for name, needles in GROUPS:
        if any(needle in dso for needle in needles):
            return name
    return OTHER


def shares(report: str) -> dict[str, float]:
    """Each part's share of the samples (0-1), from ``perf report --sort dso``'s text."""
    found: dict[str, float] = {}
    for percent, dso in _ROW.findall(report):
        group = group_of(dso)
        found[group] = found.get(group, 0.0) + float(percent) / 100
    return found


def _perf() -> str:
    perf = shutil.which("perf")
    if perf is None:
        raise SystemExit("perf is required (Debian: apt-get install linux-perf)")
    probe = subprocess.run(  # noqa: S603 - a fixed binary with fixed arguments
        [perf, "stat", "-e", "task-clock", "true"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        raise SystemExit(f"perf cannot sample here: {probe.stderr.strip()[:200]}")
    return perf


def sample(
    perf: str, scenario: Scenario, server: Server, parts: Stack, duration: int
) -> dict[str, Any]:
    """One load run of ``scenario`` with the server sampled: its µs per request by part."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "perf.data"
        command = [perf, "record", "-F", "1999", "-p", str(server.pid), "-o", str(data)]
        recorder = subprocess.Popen(  # noqa: S603
            [*command, "--", "sleep", str(duration + 1)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.3)  # perf attached before the load starts
        run = _run(scenario, server, parts, duration, proofs_needed(None, duration, 8000))
        recorder.wait(timeout=duration + 30)
        report = subprocess.run(  # noqa: S603
            [perf, "report", "-i", str(data), "--stdio", "--sort", "dso", "--no-children"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    cpu = run["server_cpu_us_per_request"]
    split = {group: share * cpu for group, share in shares(report).items()}
    return {"rps": run["rps"], "server_cpu_us_per_request": cpu, "us_per_request": split}


def cpu_split(rounds: int, duration: int) -> dict[str, Any]:
    perf = _perf()
    versions = fast_stack()
    with stack() as parts:
        chosen = [
            Scenario("bare endpoint (no middleware)", "benchmarks.apps:bare", guarded=False),
            Scenario(
                "ceiling: bare + one raw ES256 verify", "benchmarks.apps:ceiling", guarded=False
            ),
            Scenario("cache hit, memory replay store", "examples.accounts:app"),
        ]
        samples: list[list[dict[str, Any]]] = [[] for _ in chosen]
        with contextlib.ExitStack() as servers:
            started = [servers.enter_context(_server(s, parts)) for s in chosen]
            for server, scenario in zip(started, chosen, strict=True):
                _run(
                    scenario, server, parts, 1, proofs_needed(None, 1, 8000)
                )  # warm: imports, caches
            for r in range(rounds):
                order = range(len(chosen)) if r % 2 == 0 else range(len(chosen) - 1, -1, -1)
                for i in order:
                    samples[i].append(sample(perf, chosen[i], started[i], parts, duration))
    rows = []
    for scenario, runs in zip(chosen, samples, strict=True):
        parts_seen = sorted({g for run in runs for g in run["us_per_request"]})
        rows.append(
            {
                "scenario": scenario.name,
                "rounds": len(runs),
                "rps": statistics.median(run["rps"] for run in runs),
                "server_cpu_us_per_request": statistics.median(
                    run["server_cpu_us_per_request"] for run in runs
                ),
                "us_per_request": {
                    g: statistics.median(run["us_per_request"].get(g, 0.0) for run in runs)
                    for g in parts_seen
                },
                "runs": runs,
            }
        )
    return {
        "machine": machine(),
        "stack": describe_stack(versions),
        "rounds": rounds,
        "duration_s": duration,
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    rows = result["rows"]
    columns = [name for name, _ in GROUPS] + [OTHER]
    lines = [
        f"Server CPU per request by part of the stack, µs ({result['stack']}; perf "
        f"cpu-clock samples of the server process; {result['rounds']} interleaved rounds of "
        f"{result['duration_s']} s, medians; sampling adds a few percent alike):",
        "",
        "| part | " + " | ".join(row["scenario"] for row in rows) + " | hit - ceiling |",
        "|---|" + "---:|" * (len(rows) + 1),
    ]
    for column in [*columns, "total (from /proc)"]:
        if column == "total (from /proc)":
            values = [row["server_cpu_us_per_request"] for row in rows]
        else:
            values = [row["us_per_request"].get(column, 0.0) for row in rows]
        cells = " | ".join(f"{v:.1f}" for v in values)
        lines.append(f"| {column} | {cells} | {values[-1] - values[1]:+.1f} |")
    lines.append("| req/s | " + " | ".join(f"{row['rps']:.0f}" for row in rows) + " | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=4, help="seconds per sampled run")
    args = parser.parse_args()
    result = cpu_split(args.rounds, args.duration)
    save("cpu_split", result, markdown(result))


if __name__ == "__main__":
    main()
