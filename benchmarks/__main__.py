"""``python -m benchmarks [--quick] [--no-load] [--no-instructions]``: every benchmark.

Runs the instruction counts (:mod:`benchmarks.instructions`, callgrind: the deterministic
figures), the in-process benchmarks (:mod:`benchmarks.micro`), the interleaved load test
(:mod:`benchmarks.load`, JWT mode against the Node.js peers included), the tail latency
of hits under misses (:mod:`benchmarks.tail`) and the fleet simulation
(:mod:`benchmarks.fleet`), shows progress, and writes ``results/<name>.json``, a Markdown
table ``results/<name>.md`` and a plot ``results/<name>.png``, each with the machine and
the stack described. ``--quick`` is a smoke run of one scenario per section of issue 24 in
under a minute (no callgrind, no fleet, no bare endpoint; 1 s runs): the cache hit against
the ceiling, the miss on a token seen before, the JWT-mode hit beside the Node ``jose``
peer, the replay store's bytes per record, and hit latency with and without misses against
a 200 ms Authlete (3 rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from .load import MIN_ROUNDS, scenarios
from .micro import RESULTS, asgi, machine, micro, replay_scale, worst_case
from .report import markdown, plot, save

QUICK_TAIL_ROUNDS = 3
"""Rounds of the tail-latency smoke run in ``--quick`` (the full run takes ``--rounds``)."""


class Progress:
    """A one-line progress bar on stderr; a line per step when stderr is not a terminal
    (a CI log or a redirected file gets no carriage returns)."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.start = total, 0, time.monotonic()
        self.terminal = sys.stderr.isatty()

    def step(self, label: str) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.start
        if not self.terminal:
            sys.stderr.write(f"{self.done}/{self.total} {elapsed:5.0f}s {label}\n")
            sys.stderr.flush()
            return
        width = 30
        filled = width * self.done // self.total
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
            f"{elapsed:5.0f}s  {label[:48]:<48}"
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.terminal:
            sys.stderr.write("\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run in under a minute")
    parser.add_argument("--no-load", action="store_true", help="skip the uvicorn/wrk load test")
    parser.add_argument(
        "--no-instructions", action="store_true", help="skip the callgrind instruction counts"
    )
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS, help="interleaved load rounds")
    parser.add_argument("--duration", type=int, help="seconds per load run (5; quick: 1)")
    args = parser.parse_args()
    if not MIN_ROUNDS <= args.rounds <= 50:
        parser.error(f"--rounds must be {MIN_ROUNDS}-50")
    n, rounds = (100, 3) if args.quick else (3000, 9)
    duration = args.duration or (1 if args.quick else 5)
    if not 1 <= duration <= 600:
        parser.error("--duration must be 1-600")
    algs = ("ES256", "EdDSA", "PS256")
    instructions = not (args.quick or args.no_instructions)
    load_steps = 0
    if not args.no_load:
        count = len(scenarios("redis://unused", quick=args.quick))
        load_steps = count * (args.rounds + 1)
    tail_steps = 0 if args.no_load else 1
    progress = Progress(
        len(algs) + 3 + int(instructions) + load_steps + int(not args.quick) + tail_steps
    )
    counts: dict[str, Any] | None = None
    if instructions:
        from .instructions import measure

        progress.step("instructions (callgrind, ~3 min)")
        counts = measure()
    rows: list[dict[str, Any]] = []
    for alg in algs:
        progress.step(f"verify {alg}")
        rows += micro(n, rounds, (alg,))
    progress.step("middleware in process")
    rows += asyncio.run(asgi(n, rounds))
    progress.step("replay store mass expiry")
    rows += replay_scale(5_000 if args.quick else 100_000)
    progress.step("worst case per request")
    rows += worst_case(10 if args.quick else 300)
    load_rows: list[dict[str, Any]] = []
    if not args.no_load:
        from .load import load

        load_rows = load(duration, progress.step, rounds=args.rounds, quick=args.quick)
    tail_result: dict[str, Any] | None = None
    if tail_steps:
        from .tail import CONDITIONS, tail

        if args.quick:  # a smoke run: hits alone, and with misses against a 200 ms Authlete
            progress.step("tail latency: hits while misses wait on Authlete")
            tail_result = tail(duration, QUICK_TAIL_ROUNDS, conditions=CONDITIONS[:2])
        else:
            progress.step("tail latency: hits while misses wait on Authlete (~2 min)")
            tail_result = tail(duration, args.rounds)
    fleet_result: dict[str, Any] | None = None
    if not args.quick:
        from .fleet import fleet

        progress.step("fleet: N guards, one Redis")
        fleet_result = fleet()
    progress.close()

    info = machine()
    name = "quick" if args.quick else "latest"
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": info,
        "quick": args.quick,
        "instructions": counts,
        "micro": rows,
        "load": load_rows,
        "load_duration_s": duration,
        "load_rounds": args.rounds,
        "fleet": fleet_result,
        "tail": tail_result,
    }
    table = markdown(result)
    save(name, result, table, show=False)
    plot(result, RESULTS / f"{name}.png")
    print(table)
    print(f"written: {RESULTS}/{name}.json, {name}.md, {name}.png")


if __name__ == "__main__":
    main()
