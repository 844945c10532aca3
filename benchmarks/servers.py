"""Scenario: the protected/bare req/s ratio under uvicorn, hypercorn and granian, side by side.

For each server, two processes (one worker each, the server's default stack) serve the same
one-route Starlette app: ``bare`` without the guard, ``protected`` behind it (introspection
by the Authlete simulator, cached after the first call, so the figure is the guard's own
cost: proof verification, the replay record, the cache lookup). wrk (one thread, C
connections) drives each in turn, with a distinct fresh proof per protected request.

The six runs are interleaved over the rounds (A B C ... C B A), and each server's figures
are medians with their ranges; the ratio is taken within a round, so a noisy moment hurts
one pair, not one server. Servers are pinned to core 0, wrk and the simulator to core 1
(``taskset``, when present). Everything listens on loopback only.

    python -m benchmarks.servers [--rounds 3] [--duration 3] [--connections 32]

Needs Debian's ``wrk``; uvicorn, hypercorn and granian come with the ``tests`` group.
"""

from __future__ import annotations

import argparse
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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route as HTTPRoute

from dpop_guard import DPoPCredentials, Route, from_env
from dpop_guard.client import DPoPAuth, ProofSigner
from dpop_guard.devtools.demo import free_port, mint_token, simulator_env

from .load import pin

SERVERS = ("uvicorn", "hypercorn", "granian")
KINDS = ("bare", "protected")
ROOT = Path(__file__).resolve().parents[1]
READY_SECONDS = 30
MAX_ROUNDS = 9
MAX_DURATION = 30
# Proofs made for a protected run: the fastest rate seen on that server (its bare app is
# the ceiling; before any figure, this guess) times the duration, with room to spare. A run
# that runs out replays proofs, which the guard refuses: they show as non-2xx.
FIRST_GUESS_RPS = 20_000
MAX_PROOFS = 400_000

LUA = """
local proofs, i, token = {}, 0, nil
init = function(args)
  token = args[1]
  if args[2] ~= "-" then
    for line in io.lines(args[2]) do proofs[#proofs + 1] = line end
  end
end
request = function()
  if token == "-" then return wrk.format("GET", "/accounts") end
  i = i + 1
  if proofs[i] == nil then i = 1 end
  local headers = {["Authorization"] = "DPoP " .. token, ["DPoP"] = proofs[i]}
  return wrk.format("GET", "/accounts", headers)
end
done = function(summary, latency, requests)
  io.write(string.format(
    "RESULT {\\"requests\\": %d, \\"duration_us\\": %d, \\"non_2xx\\": %d, \\"errors\\": %d}\\n",
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout))
end
"""


async def _bare_accounts(request: Request) -> JSONResponse:
    return JSONResponse({"subject": "alice"})


async def _protected_accounts(request: Request) -> JSONResponse:
    auth: DPoPCredentials = request.auth
    return JSONResponse({"subject": auth.subject})


def create_bare() -> Starlette:
    """The ceiling: the same route and body, no guard."""
    return Starlette(routes=[HTTPRoute("/accounts", _bare_accounts)])


def create_protected() -> Starlette:
    """The same route behind the guard, configured from the environment."""
    guard = from_env(routes=(Route("/accounts", scopes=("read:accounts",)),))
    app = Starlette(routes=[HTTPRoute("/accounts", _protected_accounts)], lifespan=guard.lifespan)
    guard.install(app)
    return app


def __getattr__(name: str) -> Any:
    # ``benchmarks.servers:bare`` / ``:protected`` for uvicorn and granian, built on first
    # access so that importing this module (to run it) reads no environment.
    if name in KINDS:
        return create_bare() if name == "bare" else create_protected()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} is not installed (it is in the tests dependency group)")
    return found


def command(server: str, kind: str, port: int) -> list[str]:
    """One worker, the server's default event loop and parser, no access log."""
    target = f"benchmarks.servers:{kind}"
    if server == "uvicorn":
        return [
            _tool("uvicorn"), target, "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
    if server == "hypercorn":
        # hypercorn evaluates the target in the module's namespace: call the factory.
        factory = "create_bare()" if kind == "bare" else "create_protected()"
        return [
            _tool("hypercorn"), f"benchmarks.servers:{factory}", "--bind", f"127.0.0.1:{port}",
            "--workers", "1", "--log-level", "warning",
        ]  # fmt: skip
    if server == "granian":
        return [
            _tool("granian"), "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--log-level", "warning", target,
        ]  # fmt: skip
    raise ValueError(f"unknown server {server!r}")


@contextmanager
def running(args: list[str], env: Mapping[str, str], url: str) -> Iterator[None]:
    """Run ``args`` until the block ends; ready once ``url`` answers at all."""
    environ = {**env, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(args, cwd=ROOT, env=environ, stdout=log, stderr=log)  # noqa: S603
        try:
            deadline = time.monotonic() + READY_SECONDS
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise SystemExit(f"{args[0]} exited: {log.read().decode(errors='replace')}")
                try:
                    httpx.get(url, timeout=1.0)
                    break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"{url} did not come up in {READY_SECONDS} s")
                time.sleep(0.05)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def run_wrk(
    url: str, token: str, proofs: Path | None, *, duration: int, connections: int
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(LUA)
    try:
        out = subprocess.run(  # noqa: S603
            [
                *pin(1),
                shutil.which("wrk") or "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{duration}s",
                "--timeout",
                "5s",
                "-s",
                script.name,
                url,
                "--",
                token,
                str(proofs) if proofs else "-",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=duration + 30,
        ).stdout
    finally:
        os.unlink(script.name)
    match = re.search(r"^RESULT (.*)$", out, re.M)
    if match is None:
        raise RuntimeError(f"no result from wrk: {out}")
    result: dict[str, Any] = json.loads(match.group(1))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def write_proofs(path: Path, signer: ProofSigner, url: str, token: str, count: int) -> None:
    with path.open("w") as out:
        for _ in range(count):
            out.write(signer.sign(htm="GET", htu=url + "/accounts", access_token=token) + "\n")


def spread(values: Sequence[float], digits: int = 0) -> str:
    """``median [min..max]``."""
    fmt = f"{{:.{digits}f}}"
    median = fmt.format(statistics.median(values))
    return f"{median} [{fmt.format(min(values))}..{fmt.format(max(values))}]"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rounds", type=int, default=3, help=f"interleaved rounds (3..{MAX_ROUNDS})"
    )
    parser.add_argument("--duration", type=int, default=3, help="seconds per run (1..30)")
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)
    if not 3 <= args.rounds <= MAX_ROUNDS or not 1 <= args.duration <= MAX_DURATION:
        parser.error(f"--rounds must be 3..{MAX_ROUNDS} and --duration 1..{MAX_DURATION}")
    if not 1 <= args.connections <= 256:
        parser.error("--connections must be 1..256")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")

    load_before = os.getloadavg()
    started = time.monotonic()
    sim_port = free_port()
    simulator = f"http://127.0.0.1:{sim_port}"
    sim_args = [
        *pin(1),
        sys.executable,
        "-m",
        "dpop_guard.devtools.simulator",
        "--port",
        str(sim_port),
    ]
    env = simulator_env(simulator)
    urls = {(s, k): f"http://127.0.0.1:{free_port()}" for s in SERVERS for k in KINDS}
    rps: dict[tuple[str, str], list[float]] = {key: [] for key in urls}
    ratios: dict[str, list[float]] = {s: [] for s in SERVERS}
    non_2xx: dict[tuple[str, str], int] = {key: 0 for key in urls}
    errors: dict[tuple[str, str], int] = {key: 0 for key in urls}
    with ExitStack() as stack:
        stack.enter_context(running(sim_args, os.environ, simulator + "/"))
        for (server, kind), url in urls.items():
            port = int(url.rsplit(":", 1)[1])
            stack.enter_context(running([*pin(0), *command(server, kind, port)], env, url))
        signer = ProofSigner.generate("ES256")
        token = mint_token(simulator, signer, ["read:accounts"], lifetime=3600)
        for server in SERVERS:  # warm: the token's introspection is cached from here on
            ok = httpx.get(urls[server, "protected"] + "/accounts", auth=DPoPAuth(signer, token))
            if ok.status_code != 200:
                raise SystemExit(f"{server}: the protected app answered {ok.status_code}")
        order = [(s, k) for s in SERVERS for k in KINDS]
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        for round_no in range(args.rounds):
            this_round: dict[tuple[str, str], float] = {}
            for server, kind in order if round_no % 2 == 0 else order[::-1]:
                url = urls[server, kind]
                proofs: Path | None = None
                if kind == "protected":
                    seen = rps[server, "bare"] + rps[server, "protected"]
                    ceiling = max(seen, default=FIRST_GUESS_RPS)
                    count = min(MAX_PROOFS, int(ceiling * args.duration * 1.2) + 1000)
                    proofs = tmp / f"{server}.proofs"
                    write_proofs(proofs, signer, url, token, count)
                result = run_wrk(
                    url, token if proofs else "-", proofs,
                    duration=args.duration, connections=args.connections,
                )  # fmt: skip
                non_2xx[server, kind] += result["non_2xx"]
                errors[server, kind] += result["errors"]
                rps[server, kind].append(result["rps"])
                this_round[server, kind] = result["rps"]
            for server in SERVERS:
                ratios[server].append(this_round[server, "protected"] / this_round[server, "bare"])
    load_after = os.getloadavg()

    print(
        f"\nServers, one worker each, pinned to core 0; wrk -t1 -c{args.connections} "
        f"-d{args.duration}s on core 1; {args.rounds} interleaved rounds; "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
        f"{time.monotonic() - started:.0f} s in all.\n"
    )
    print("| server | bare req/s | protected req/s | protected/bare | non-2xx | socket errors |")
    print("|---|---|---|---|---|---|")
    for server in SERVERS:
        b, p = (server, "bare"), (server, "protected")
        print(
            f"| {server} | {spread(rps[b])} | {spread(rps[p])} | {spread(ratios[server], 2)} "
            f"| {non_2xx[b] + non_2xx[p]} | {errors[b] + errors[p]} |"
        )
    print("\nmedian [min..max] over the rounds; the ratio is taken within each round.")
    # A non-2xx answer (a proof replayed after the supply ran out) makes a ratio meaningless.
    return 1 if any(non_2xx.values()) or any(errors.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
