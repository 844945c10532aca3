"""Tail latency of cache hits while misses wait on a slow or failing Authlete (issue 24
section 4): do hits wait behind misses?

One server (the accounts example, Authlete mode, cache on, ``DPOP_GUARD_AUTHLETE_TIMEOUT=1``,
uvicorn with uvloop and httptools, pinned to core 0) takes two streams at once:

- **hits**: wrk (one thread, 32 connections, closed loop) with one cached token and a fresh
  proof per request, as in :mod:`benchmarks.load`; its latency distribution is the hits'
  alone (p50, p99, p99.9);
- **misses**: an open-loop generator (asyncio, a request every ``1 / rate`` seconds whether
  or not the earlier ones were answered, over a pool of keep-alive connections), each with
  a token never seen before, so each is a cache miss; its rate is a ninth of the hit rate
  measured without it, so misses are about 10% of the requests.

Four conditions take turns in each round (A B C D, then D C B A): hits alone; hits with
misses while the Authlete simulator answers in 200 ms; hits with misses while it never
answers (each miss ends at the 1 s timeout, or at once with a 503 once the circuit breaker
opens); and a control, the 200 ms misses sent to a second server (:data:`CONDITIONS`).
The figure the issue asks for is hit p99 under misses / hit p99 alone, taken within each
round: the median and range over the rounds.

    python -m benchmarks.tail [--rounds 5] [--duration 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from .load import (
    MIN_ROUNDS,
    PUBLIC_URL,
    Scenario,
    Server,
    Stack,
    _server,
    describe_stack,
    fast_stack,
    mint_tokens,
    proofs_needed,
    run_wrk,
    stack,
    tree_cpu,
)

PATH = "/accounts"
SLOW = 0.2  # seconds: the slow Authlete's latency
TIMEOUT = "1"  # DPOP_GUARD_AUTHLETE_TIMEOUT for the server
CONDITIONS = (
    "hits alone",
    "misses, Authlete 200 ms",
    "misses, Authlete times out",
    "control: the same misses sent to another server, Authlete 200 ms",
)
"""The control sends the 200 ms condition's misses to a second, identical server: the
machine (the simulator, the generators) works as in that condition, but the server under
test sees none. Hit latency that rises there is the machine's, not the guard's."""


def _request(token: str, proof: str) -> bytes:
    return (
        f"GET {PATH} HTTP/1.1\r\nHost: rs.bench.test\r\nAuthorization: DPoP {token}\r\n"
        f"DPoP: {proof}\r\n\r\n"
    ).encode()


async def _open_loop(port: int, requests: list[bytes], rate: float) -> Counter[int]:
    """Send ``requests`` at ``rate`` per second, each on a free keep-alive connection (a new
    one when none is free), never waiting for an answer before the next is due; the
    statuses of the answers (0: the connection failed)."""
    free: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    statuses: Counter[int] = Counter()

    async def one(raw: bytes) -> None:
        try:
            reader, writer = (
                free.pop() if free else await asyncio.open_connection("127.0.0.1", port)
            )
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            statuses[int(head.split(b" ", 2)[1])] += 1
            free.append((reader, writer))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            statuses[0] += 1

    started = time.monotonic()
    tasks = []
    for i, raw in enumerate(requests):
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(raw)))
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
    for _, writer in free:
        writer.close()
    return statuses


def _misses(parts: Stack, count: int) -> list[bytes]:
    """``count`` requests, each with a token of its own (a cache miss) and its proof."""
    return [
        _request(token, parts.signer.sign(htm="GET", htu=PUBLIC_URL + PATH, access_token=token))
        for token in mint_tokens(parts, count, lifetime=600)
    ]


def _run(
    parts: Stack,
    server: Server,
    control: Server | None,
    condition: str,
    duration: int,
    hit_rate: float | None,
    pace_ms: float,
) -> dict[str, Any]:
    """One run of ``condition``: the hits' wrk figures, and the misses sent alongside."""
    latency, fault = (0.0, "hang") if condition == CONDITIONS[2] else (SLOW, None)
    storm = condition != CONDITIONS[0] and hit_rate is not None
    rate = (hit_rate or 0.0) / 9
    misses = _misses(parts, int(rate * duration)) if storm else []  # before the faults
    body: dict[str, Any] = {"latency": latency if storm else 0.0, "fault": fault if storm else None}
    parts.admin.post(f"{parts.simulator}/sim/faults", json=body)
    fd, name = tempfile.mkstemp(suffix=".txt")
    os.close(fd)
    proofs = Path(name)
    count = proofs_needed(hit_rate, duration, nominal=6000)
    proofs.write_text(
        "\n".join(
            parts.signer.sign(htm="GET", htu=PUBLIC_URL + PATH, access_token=parts.token)
            for _ in range(count)
        )
        + "\n"
    )
    statuses: Counter[int] = Counter()
    url = server.url
    target = server
    if condition == CONDITIONS[3]:
        assert control is not None, "the control condition needs the control server"
        target = control
    port = int(target.url.rsplit(":", 1)[1])
    cpu = tree_cpu(server.pid)
    generator = None
    if misses:
        generator = threading.Thread(
            target=lambda: statuses.update(asyncio.run(_open_loop(port, misses, rate)))
        )
        generator.start()
    try:
        result = run_wrk(url, PATH, parts.token, proofs, duration, pace_ms=pace_ms)
    finally:
        if generator is not None:
            generator.join()
        # The server's CPU share over the run (hits and misses): what the misses take.
        result["server_cpu"] = (tree_cpu(server.pid) - cpu) / duration
        proofs.unlink()
        parts.admin.post(f"{parts.simulator}/sim/faults", json={"fault": None})
        parts.admin.post(f"{parts.simulator}/sim/faults", json={"latency": 0.0})
    result["misses_sent"] = len(misses)
    result["miss_rate"] = rate if misses else 0.0
    result["miss_statuses"] = dict(statuses)
    return result


def tail(
    duration: int,
    rounds: int = MIN_ROUNDS,
    *,
    pace_ms: float = 0,
    conditions: tuple[str, ...] = CONDITIONS,
) -> dict[str, Any]:
    """Each of ``conditions``' runs (hits alone first), interleaved; per condition the
    medians and ranges of the hit percentiles, and the ratio of hit p99 to hit p99 alone
    within each round.

    :param pace_ms: each hit connection's wait before each request: ``0`` saturates the
        server (hit latency is then mostly the queue, and grows with whatever CPU the
        misses take); above 0 the hits come below capacity, so their latency shows whether
        they wait behind misses."""
    versions = fast_stack()
    scenario = Scenario(
        "tail", "examples.accounts:app", env={"DPOP_GUARD_AUTHLETE_TIMEOUT": TIMEOUT}
    )
    if conditions[0] != CONDITIONS[0]:
        raise ValueError(f"the first condition is {CONDITIONS[0]!r}: the others' reference")
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in conditions}
    with stack() as parts, contextlib.ExitStack() as servers:
        server = servers.enter_context(_server(scenario, parts))
        # The control server only where its condition runs.
        control = (
            servers.enter_context(_server(scenario, parts)) if CONDITIONS[3] in conditions else None
        )
        hit_rate: float | None = None
        for r in range(rounds):
            order = conditions if r % 2 == 0 else conditions[::-1]
            if hit_rate is None:  # the first round starts with hits alone: the rate to match
                order = conditions
            for condition in order:
                print(f"round {r + 1}/{rounds}: {condition}", file=sys.stderr)
                result = _run(parts, server, control, condition, duration, hit_rate, pace_ms)
                runs[condition].append(result)
                if condition == CONDITIONS[0]:
                    hit_rate = statistics.median(x["rps"] for x in runs[CONDITIONS[0]])
    rows = []
    alone = runs[CONDITIONS[0]]
    for condition, results in runs.items():
        row: dict[str, Any] = {"condition": condition, "runs": results}
        for key in ("rps", "p50_us", "p99_us", "p999_us", "miss_rate", "non_2xx", "server_cpu"):
            values = [x[key] for x in results]
            row[key] = statistics.median(values)
            row[f"{key}_range"] = [min(values), max(values)]
        ratios = [x["p99_us"] / a["p99_us"] for x, a in zip(results, alone, strict=True)]
        row["p99_ratio"] = statistics.median(ratios)
        row["p99_ratio_range"] = [min(ratios), max(ratios)]
        totals: Counter[int] = Counter()
        for x in results:
            totals.update({int(k): v for k, v in x["miss_statuses"].items()})
        row["miss_statuses"] = dict(totals)
        rows.append(row)
    return {
        "stack": describe_stack(versions),
        "rounds": rounds,
        "duration": duration,
        "pace_ms": pace_ms,
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Tail latency of cache hits ({result['stack']}; wrk -t1 -c32 for hits"
        + (
            f", each connection pausing {result['pace_ms']:g} ms before each request"
            if result.get("pace_ms")
            else " (saturating)"
        )
        + ", an open-loop "
        f"generator for misses, each a new token; {result['rounds']} interleaved rounds of "
        f"{result['duration']} s; medians and ranges):",
        "",
        "| condition | hit req/s | misses/s | hit p50 ms | hit p99 ms | hit p99.9 ms "
        "| hit p99 / alone | miss answers | server CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]

    def ms(row: dict[str, Any], key: str) -> str:
        low, high = row[f"{key}_range"]
        return f"{row[key] / 1000:.1f} ({low / 1000:.1f}-{high / 1000:.1f})"

    for row in result["rows"]:
        low, high = row["p99_ratio_range"]
        answers = ", ".join(
            f"{'failed' if k == 0 else k}: {v}" for k, v in sorted(row["miss_statuses"].items())
        )
        lines.append(
            f"| {row['condition']} | {row['rps']:.0f} | {row['miss_rate']:.0f} | "
            f"{ms(row, 'p50_us')} | {ms(row, 'p99_us')} | {ms(row, 'p999_us')} | "
            f"{row['p99_ratio']:.2f}x ({low:.2f}-{high:.2f}) | {answers or '-'} | "
            f"{row['server_cpu']:.0%} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument(
        "--pace", type=float, default=0.0, help="ms each hit connection waits per request"
    )
    args = parser.parse_args(argv)
    if args.rounds < MIN_ROUNDS or not 1 <= args.duration <= 60 or not 0 <= args.pace <= 1000:
        parser.error(f"--rounds must be at least {MIN_ROUNDS}, --duration 1-60, --pace 0-1000")
    result = tail(args.duration, args.rounds, pace_ms=args.pace)
    from .report import save

    save("tail-paced" if args.pace else "tail", result, markdown(result))


if __name__ == "__main__":
    main()
