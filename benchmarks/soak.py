"""``python -m benchmarks.soak [--duration 60]``: a soak run of the accounts example.

wrk sends fresh valid proofs as fast as the server takes them while a second client, at a
low rate, replays proofs wrk has already used and presents the token with another key's
proofs: every one of those must be refused. Reported: requests, 5xx (must be 0), wrongly
accepted (must be 0), p99, and the server's RSS at the start and the end. Run for one worker
with the memory store and for two workers (``examples.serve``) with the Redis stores.

The proofs are signed in batches of ten seconds' worth just before each batch is sent (the
server keeps running), and the ``iat`` window is set to 30 s: the replay records then live
40 s, so the RSS must be flat between 75% of the run and its end (before that it grows by
one replay record per request, about 240 bytes each with the memory store). Every other
check is as configured by default. ``p99`` is the worst batch's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import httpx

from dpop_guard.client import ProofSigner
from dpop_guard.devtools.demo import free_port
from dpop_guard.devtools.demo import process as serve

from .load import Stack, pin, run_wrk, stack
from .micro import RESULTS, machine

CHUNK = 10  # seconds of load per batch of freshly signed proofs


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` and its children, KiB."""
    total = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total += int(line.split()[1])
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        for child in children.read_text().split():
            try:
                total += rss_kib(int(child))
            except FileNotFoundError:
                pass
    return total


class Hostile(threading.Thread):
    """Replays used proofs and tries another key's proofs, ~20 times a second."""

    def __init__(self, url: str, token: str, used: list[str], thief: ProofSigner) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.used, self.thief = url, token, used, thief
        self.stop = threading.Event()
        self.sent = self.wrongly_accepted = self.server_errors = 0

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            i = 0
            while not self.stop.wait(0.05):
                i += 1
                if i % 2:
                    proof = self.used[i % len(self.used)]  # already consumed by wrk
                else:
                    proof = self.thief.sign(
                        htm="GET", htu=f"{self.url}/accounts", access_token=self.token
                    )
                response = client.get(
                    "/accounts", headers={"Authorization": f"DPoP {self.token}", "DPoP": proof}
                )
                self.sent += 1
                if response.status_code == 200:
                    self.wrongly_accepted += 1
                elif response.status_code >= 500:
                    self.server_errors += 1


def soak(
    name: str, duration: int, env: dict[str, str], workers: int, parts: Stack, rate_guess: int
) -> dict[str, Any]:
    signer, token = parts.signer, parts.token
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(env, DPOP_GUARD_PUBLIC_URL=url, DPOP_GUARD_PROOF_MAX_AGE="30")
    if workers == 1:
        command = [
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
        ]
    else:
        command = [
            sys.executable,
            "-m",
            "examples.serve",
            "examples.accounts:app",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ]
    with serve(command, env, f"{url}/health") as proc:
        for _ in range(4 * workers):
            warm = signer.sign(htm="GET", htu=f"{url}/accounts", access_token=token)
            httpx.get(
                f"{url}/accounts",
                headers={"Authorization": f"DPoP {token}", "DPoP": warm, "Connection": "close"},
            )
        # Proofs are signed in chunks of CHUNK seconds just before each chunk is sent, so
        # every one is fresh however fast the server turns out to be; the server runs on.
        chunks = max(1, round(duration / CHUNK))
        count = rate_guess * workers * (CHUNK + 2)
        hostile: Hostile | None = None
        totals = {"requests": 0, "non_2xx": 0, "socket_errors": 0, "seconds": 0.0}
        p99s: list[float] = []
        rss_start = rss_kib(proc.pid)
        rss_samples: list[int] = []
        for _ in range(chunks):
            proofs = [
                signer.sign(htm="GET", htu=f"{url}/accounts", access_token=token)
                for _ in range(count)
            ]
            fd, path = tempfile.mkstemp(suffix=".txt")
            os.close(fd)
            Path(path).write_text("\n".join(proofs) + "\n")
            if hostile is None:  # replays the first chunk's proofs, used by then
                hostile = Hostile(url, token, proofs[:200], ProofSigner.generate("ES256"))
                threading.Timer(2.0, hostile.start).start()
            result = run_wrk(url, "/accounts", token, Path(path), CHUNK)
            os.unlink(path)
            totals["requests"] += result["requests"]
            totals["non_2xx"] += result["non_2xx"]
            totals["socket_errors"] += result["socket_errors"]
            totals["seconds"] += result["duration_us"] / 1e6
            p99s.append(result["p99_us"] / 1000)
            rss_samples.append(rss_kib(proc.pid))
        assert hostile is not None
        hostile.stop.set()
        if hostile.is_alive():
            hostile.join()
    return {
        "scenario": name,
        "duration_s": totals["seconds"],
        "requests": totals["requests"],
        "rps": totals["requests"] / totals["seconds"],
        "p99_ms": max(p99s),
        "wrk_non_2xx": totals["non_2xx"],
        "socket_errors": totals["socket_errors"],
        "hostile_sent": hostile.sent,
        "wrongly_accepted": hostile.wrongly_accepted,
        "hostile_5xx": hostile.server_errors,
        "rss_start_kib": rss_start,
        "rss_after_each_chunk_kib": rss_samples,
        "rss_75pct_kib": rss_samples[max(0, (3 * len(rss_samples)) // 4 - 1)],
        "rss_end_kib": rss_samples[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=60, help="seconds, in 10 s batches")
    args = parser.parse_args()
    rows = []
    with stack() as parts:
        print(f"soak 1/2: one worker, memory store, {args.duration} s ...", flush=True)
        rows.append(soak("1 worker, memory store", args.duration, parts.env, 1, parts, 4000))
        print(f"soak 2/2: two workers, Redis stores, {args.duration} s ...", flush=True)
        fleet = dict(
            parts.env,
            DPOP_GUARD_REPLAY_STORE=parts.redis_url,
            DPOP_GUARD_INTROSPECTION_CACHE=parts.redis_url,
        )
        rows.append(
            soak("2 workers (examples.serve), Redis stores", args.duration, fleet, 2, parts, 3500)
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak.json").write_text(
        json.dumps({"machine": machine(), "rows": rows}, indent=2) + "\n"
    )
    print(
        "\n| scenario | requests | req/s | p99 ms | non-2xx | hostile sent | wrongly "
        "accepted | hostile 5xx | RSS start → 75% → end MiB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    failed = False
    for r in rows:
        print(
            f"| {r['scenario']} | {r['requests']} | {r['rps']:.0f} | {r['p99_ms']:.1f} | "
            f"{r['wrk_non_2xx'] + r['socket_errors']} | {r['hostile_sent']} | "
            f"{r['wrongly_accepted']} | {r['hostile_5xx']} | "
            f"{r['rss_start_kib'] / 1024:.1f} → {r['rss_75pct_kib'] / 1024:.1f} → "
            f"{r['rss_end_kib'] / 1024:.1f} |"
        )
        failed |= bool(r["wrongly_accepted"] or r["hostile_5xx"] or r["wrk_non_2xx"])
    if failed:
        raise SystemExit("soak failed: a 5xx, a wrongly accepted request or a refused valid one")


if __name__ == "__main__":
    main()
