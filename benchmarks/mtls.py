"""``python -m benchmarks.mtls [--rounds 5] [--requests 2000]`` (``make bench-mtls``): a
cache hit on an mTLS route through nginx against a DPoP route through the same nginx, in
one run.

The stack: the accounts API (:func:`dpop_guard.devtools.demo.accounts.create_mtls_app`) on uvicorn
with uvloop and httptools, access log off, ``--no-proxy-headers``; Debian's nginx in front
with the packaged ``nginx-mtls.conf`` (client certificates optional, ``X-Client-Cert``
from ``$ssl_client_escaped_cert``); the Authlete simulator on loopback. Each scenario's
token is introspected once before the rounds, so every timed request is a cache hit.

The load client: wrk cannot present a TLS client certificate and h2load is not installed
here, so the client is Python, httpx over asyncio with keep-alive connections that all
present alice's certificate (the same TLS on both scenarios: the only difference is the
route and the credential). It is the bottleneck, so its throughput is reported but the
figure to compare is the server's CPU per request (utime + stime of the uvicorn process
and of nginx, from /proc, over the round). DPoP proofs are signed before each round,
outside the timed window. Rounds are interleaved (A B, B A, ...); medians and ranges.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from dpop_guard.client import ProofSigner
from dpop_guard.devtools.demo import (
    SERVICE_AUTH,
    free_port,
    mint_token,
    process,
    simulator_env,
    token_create,
)
from dpop_guard.devtools.demo._mtls import behind_nginx, nginx_version
from dpop_guard.devtools.demo._nginx import find_command, nginx
from dpop_guard.devtools.demo._pki import PKI, PKIFiles

from .load import describe_stack, fast_stack, interleaved, tree_cpu
from .report import save

CONNECTIONS = 8


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    token: str
    signer: ProofSigner | None  # DPoP: a fresh proof per request


@dataclass(frozen=True)
class Deployment:
    url: str
    api_pid: int
    nginx_pid: int
    files: PKIFiles


@contextmanager
def deployment(directory: Path, pki: PKI) -> Iterator[tuple[Deployment, str]]:
    """The simulator, the API and nginx; yields them and the simulator's URL.

    :raises SystemExit: nginx is missing, or a server did not come up.
    """
    if find_command("nginx") is None:
        raise SystemExit("nginx is missing: run tools/ensure-command nginx nginx")
    files = pki.write(directory / "pki")
    sim_port, api_port = free_port(), free_port()
    simulator = f"http://127.0.0.1:{sim_port}"
    env = simulator_env(simulator)
    proxy = nginx(directory / "nginx", files, f"127.0.0.1:{api_port}", verify="optional")
    api_env = behind_nginx(env, proxy.url)
    uvicorn = [sys.executable, "-m", "uvicorn", "--log-level", "warning", "--no-access-log"]
    with ExitStack() as stack:
        stack.enter_context(
            process(
                [sys.executable, "-m", "dpop_guard.devtools.simulator", "--port", str(sim_port)],
                env,
                f"{simulator}/sim/stats",
                SERVICE_AUTH,
                stderr=stack.enter_context(tempfile.TemporaryFile()),
            )
        )
        api = stack.enter_context(
            process(
                [
                    *uvicorn,
                    "--loop",
                    "uvloop",
                    "--http",
                    "httptools",
                    "--no-proxy-headers",
                    "--factory",
                    "dpop_guard.devtools.demo.accounts:create_mtls_app",
                    "--port",
                    str(api_port),
                ],
                api_env,
                f"http://127.0.0.1:{api_port}/health",
            )
        )
        stack.enter_context(proxy)
        assert proxy.process is not None
        yield Deployment(proxy.url, api.pid, proxy.process.pid, files), simulator


def mtls_token(simulator: str, pki: PKI) -> str:
    url, body = token_create(
        simulator, ["read:accounts"], lifetime=3600, x5t_s256=pki.alice.x5t_s256
    )
    response = httpx.post(url, headers=SERVICE_AUTH, json=body)
    response.raise_for_status()
    token: str = response.json()["accessToken"]
    return token


def tls_version(d: Deployment) -> str:
    """The TLS version the client and nginx agree on (what the rounds use)."""
    port = int(d.url.rsplit(":", 1)[1])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        _context(d.files).wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.version() or "unknown"


def _context(files: PKIFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(files.ca))
    cert, key = files.clients["alice"]
    context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    return context


def _headers(scenario: Scenario, url: str, count: int) -> list[dict[str, str]]:
    if scenario.signer is None:
        return [{"Authorization": f"Bearer {scenario.token}"}] * count
    signer = scenario.signer
    return [
        {
            "Authorization": f"DPoP {scenario.token}",
            "DPoP": signer.sign(htm="GET", htu=url, access_token=scenario.token),
        }
        for _ in range(count)
    ]


async def _round(http: httpx.AsyncClient, url: str, headers: list[dict[str, str]]) -> list[int]:
    queue = iter(headers)
    statuses: list[int] = []

    async def worker() -> None:
        for h in queue:  # shared iterator: each request once, bounded by len(headers)
            statuses.append((await http.get(url, headers=h)).status_code)

    await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    return statuses


def run(rounds: int, requests: int) -> dict[str, Any]:
    versions = fast_stack()
    load_before = os.getloadavg()[0]
    pki = PKI.generate()
    with tempfile.TemporaryDirectory(prefix="bench-mtls-") as tmp:
        with deployment(Path(tmp), pki) as (d, simulator):
            signer = ProofSigner.generate("ES256")
            dpop_token = mint_token(simulator, signer, ["read:accounts"], lifetime=3600)
            scenarios = [
                Scenario(
                    "mTLS route, Bearer + certificate",
                    "/mtls/accounts",
                    mtls_token(simulator, pki),
                    None,
                ),
                Scenario("DPoP route, DPoP proof (ES256)", "/accounts", dpop_token, signer),
            ]
            tls = tls_version(d)
            samples: dict[str, list[dict[str, float]]] = {s.name: [] for s in scenarios}

            async def measure() -> None:
                limits = httpx.Limits(max_connections=CONNECTIONS)
                async with httpx.AsyncClient(
                    verify=_context(d.files), limits=limits, timeout=30
                ) as http:
                    for s in scenarios:  # warm-up: the miss that fills the cache
                        url = d.url + s.path
                        got = await _round(http, url, _headers(s, url, CONNECTIONS * 4))
                        if set(got) != {200}:
                            raise SystemExit(f"{s.name}: warm-up answered {sorted(set(got))}")
                    for _, i in interleaved(len(scenarios), rounds):
                        s = scenarios[i]
                        url = d.url + s.path
                        headers = _headers(s, url, requests)
                        api0, nginx0, t0 = (
                            tree_cpu(d.api_pid),
                            tree_cpu(d.nginx_pid),
                            time.perf_counter(),
                        )
                        got = await _round(http, url, headers)
                        elapsed = time.perf_counter() - t0
                        api1, nginx1 = tree_cpu(d.api_pid), tree_cpu(d.nginx_pid)
                        if got.count(200) != requests:
                            raise SystemExit(f"{s.name}: {len(got) - got.count(200)} not 200")
                        samples[s.name].append(
                            {
                                "rps": requests / elapsed,
                                "api_us": (api1 - api0) / requests * 1e6,
                                "nginx_us": (nginx1 - nginx0) / requests * 1e6,
                            }
                        )

            asyncio.run(measure())
            nginx_name = nginx_version(find_command("nginx") or "nginx")
    summary = {
        name: {
            key: {
                "median": statistics.median(v[key] for v in values),
                "min": min(v[key] for v in values),
                "max": max(v[key] for v in values),
            }
            for key in ("rps", "api_us", "nginx_us")
        }
        for name, values in samples.items()
    }
    return {
        "stack": f"{describe_stack(versions)}; {nginx_name} ({tls}, keep-alive to the app)",
        "client": f"httpx {httpx.__version__} over asyncio, {CONNECTIONS} keep-alive TLS "
        "connections presenting a client certificate",
        "machine": f"{os.cpu_count()} CPUs, shared and unpinned (client, nginx and the app "
        f"compete); 1-minute load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after",
        "rounds": rounds,
        "requests_per_round": requests,
        "scenarios": summary,
    }


def _fmt(s: dict[str, float], digits: int = 0) -> str:
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def markdown(result: dict[str, Any]) -> str:
    """The run as a Markdown table, with the stack and the client."""
    lines = [
        "# A cache hit on an mTLS route against a DPoP route, through the same nginx",
        "",
        f"Stack: {result['stack']}.  ",
        f"Client: {result['client']}.  ",
        f"Machine: {result['machine']}: noisy, compare within one run only.  ",
        f"{result['rounds']} interleaved rounds of {result['requests_per_round']} requests; "
        "median (min-max). CPU from /proc (utime + stime over the round, 10 ms ticks).",
        "",
        "| scenario | req/s (client-bound) | app CPU us/request | nginx CPU us/request |",
        "|---|---|---|---|",
    ]
    for name, s in result["scenarios"].items():
        lines.append(f"| {name} | {_fmt(s['rps'])} | {_fmt(s['api_us'])} | {_fmt(s['nginx_us'])} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mtls", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (>= 5)")
    parser.add_argument("--requests", type=int, default=2000, help="requests per round")
    args = parser.parse_args(argv)
    rounds = max(5, min(args.rounds, 50))
    requests = max(100, min(args.requests, 100_000))
    result = run(rounds, requests)
    print(f"Stack: {result['stack']}\nClient: {result['client']}")
    print(f"Machine: {result['machine']}")
    print(f"{rounds} interleaved rounds of {requests} requests; median (min-max)\n")
    print(f"{'scenario':<36} {'req/s':>18} {'app CPU us/req':>18} {'nginx CPU us/req':>18}")
    for name, s in result["scenarios"].items():
        print(f"{name:<36} {_fmt(s['rps']):>18} {_fmt(s['api_us']):>18} {_fmt(s['nginx_us']):>18}")
    save("mtls", result, markdown(result), show=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
