"""``python -m benchmarks.forward_auth [--rounds 5] [--duration 4]`` (``make
bench-forward-auth``): the cost of the forward-auth hop.

Three stacks answer ``GET /accounts`` with a DPoP-bound token (a cache hit, a fresh proof
per request), each driven by wrk (one thread, 32 connections, keep-alive):

- ``in process``: the accounts example with the guard as middleware, on uvicorn;
- ``nginx + in process``: the same app behind nginx (a plain ``proxy_pass``), for the
  proxy's own share;
- ``nginx + forward-auth + static``: the shipped ``deploy/forward-auth/nginx.conf`` asking
  the forward-auth server (``dpop-guard forward-auth``) over kept-alive connections, in
  front of a static (non-Python) upstream: a second nginx answering a fixed JSON body.

Every uvicorn runs with uvloop and httptools, access log off (the run stops if either is
missing). The servers of every stack (uvicorn, nginx) share core 0; wrk and the Authlete
simulator share core 1. Rounds are interleaved (A B C, C B A, ...); each stack reports the
median and range over the rounds of req/s and of the server side's CPU per request
(utime + stime from /proc of every server process of the stack, nginx workers included).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from dpop_guard.client import ProofSigner
from dpop_guard.devtools.demo import free_port, mint_token, simulator_env
from dpop_guard.devtools.demo import process as serve
from dpop_guard.devtools.demo._nginx import ProxyProcess, find_command, render
from dpop_guard.settings import Route

from .load import describe_stack, fast_stack, interleaved, pin, run_wrk, tree_cpu, uvicorn_command

PUBLIC_URL = "http://rs.bench.test"
ROUTES = (
    Route("/health", public=True),
    Route("/accounts", scopes=("read:accounts",)),
    Route("/accounts/{account_id}/transactions", scopes=("read:transactions",)),
)
"""The accounts example's rules, for the forward-auth server (``--routes``)."""

ROOT = Path(__file__).resolve().parents[1]
NGINX_CONF = ROOT / "deploy" / "forward-auth" / "nginx.conf"
BODY = '{"accounts": [{"account_id": "acc-1001"}, {"account_id": "acc-1002"}]}'
_NGINX_HEAD = """
worker_processes 1;
pid {prefix}/nginx.pid;
error_log stderr error;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
"""
STATIC_CONF = (
    _NGINX_HEAD
    + """    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type application/json;
            return 200 '{body}';
        }}
    }}
}}
"""
)
PROXY_CONF = (
    _NGINX_HEAD
    + """    upstream app {{ server {upstream}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""
)


@dataclass(frozen=True)
class Stack:
    name: str
    url: str
    pids: tuple[int, ...]


def _nginx(directory: Path, conf: str, port: int) -> ProxyProcess:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "nginx.conf"
    path.write_text(conf)
    command = find_command("nginx")
    if command is None:
        raise SystemExit("nginx is required (Debian: apt-get install nginx)")
    argv = [*pin(0), command, "-e", "stderr", "-p", str(directory), "-c", str(path)]
    return ProxyProcess([*argv, "-g", "daemon off;"], port, directory / "nginx.log")


@contextlib.contextmanager
def stacks(directory: Path, env: dict[str, str]) -> Iterator[list[Stack]]:
    """Start the three stacks; yield them."""
    with contextlib.ExitStack() as stack:
        app_port = free_port()
        app_url = f"http://127.0.0.1:{app_port}"
        app = stack.enter_context(
            serve(
                [*pin(0), *uvicorn_command("examples.accounts:app", app_port)],
                env,
                f"{app_url}/health",
            )
        )
        proxy_port = free_port()
        proxy = stack.enter_context(
            _nginx(
                directory / "proxy",
                PROXY_CONF.format(
                    prefix=directory / "proxy", port=proxy_port, upstream=f"127.0.0.1:{app_port}"
                ),
                proxy_port,
            )
        )
        static_port = free_port()
        static = stack.enter_context(
            _nginx(
                directory / "static",
                STATIC_CONF.format(prefix=directory / "static", port=static_port, body=BODY),
                static_port,
            )
        )
        auth_port = free_port()
        auth_env = env | {
            "DPOP_GUARD_FORWARD_AUTH_PROXY": "nginx",
            "DPOP_GUARD_TRUSTED_PROXIES": "127.0.0.1",
            "DPOP_GUARD_READINESS_PATH": "/readyz",
        }
        auth = stack.enter_context(
            serve(
                [
                    *pin(0),
                    sys.executable,
                    "-m",
                    "dpop_guard.cli",
                    "forward-auth",
                    "--port",
                    str(auth_port),
                    "--routes",
                    "benchmarks.forward_auth:ROUTES",
                ],
                auth_env,
                f"http://127.0.0.1:{auth_port}/readyz",
                cwd=str(ROOT),
            )
        )
        front_port = free_port()
        front_dir = directory / "front"
        front_dir.mkdir()
        conf = render(
            NGINX_CONF,
            {
                "listen": f"127.0.0.1:{front_port}",
                "auth": f"127.0.0.1:{auth_port}",
                "upstream": f"127.0.0.1:{static_port}",
                "prefix": str(front_dir),
            },
        )
        front = stack.enter_context(_nginx(front_dir, conf, front_port))
        pids = {p: p.process.pid for p in (proxy, static, front) if p.process is not None}
        yield [
            Stack("in process (uvicorn + guard)", app_url, (app.pid,)),
            Stack("nginx + in process", f"http://127.0.0.1:{proxy_port}", (pids[proxy], app.pid)),
            Stack(
                "nginx + forward-auth + static",
                f"http://127.0.0.1:{front_port}",
                (pids[front], auth.pid, pids[static]),
            ),
        ]


def _round(
    stack: Stack, signer: ProofSigner, token: str, duration: int, rate: int
) -> dict[str, Any]:
    htu = PUBLIC_URL + "/accounts"
    fd, name = tempfile.mkstemp(suffix=".txt")
    os.close(fd)
    proofs = Path(name)
    count = rate * (duration + 1)
    proofs.write_text(
        "\n".join(signer.sign(htm="GET", htu=htu, access_token=token) for _ in range(count)) + "\n"
    )
    try:
        before = sum(tree_cpu(pid) for pid in stack.pids)
        result = run_wrk(stack.url, "/accounts", token, proofs, duration)
        after = sum(tree_cpu(pid) for pid in stack.pids)
    finally:
        proofs.unlink()
    result["server_cpu_us_per_request"] = (after - before) / max(1, result["requests"]) * 1e6
    return result


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=4, help="seconds per run")
    args = parser.parse_args(argv)
    versions = fast_stack()
    sim_port = free_port()
    simulator = f"http://127.0.0.1:{sim_port}"
    env = simulator_env(simulator) | {"DPOP_GUARD_PUBLIC_URL": PUBLIC_URL}
    signer = ProofSigner.generate("ES256")
    sim_command = [
        *pin(1),
        sys.executable,
        "-m",
        "dpop_guard.devtools.simulator",
        "--port",
        str(sim_port),
    ]
    with (
        serve(sim_command, env, f"{simulator}/sim/stats"),
        tempfile.TemporaryDirectory() as tmp,
        stacks(Path(tmp), env) as chosen,
    ):
        token = mint_token(simulator, signer, ["read:accounts"], lifetime=7200)
        for stack in chosen:  # warm each stack's introspection cache
            warm = signer.sign(htm="GET", htu=PUBLIC_URL + "/accounts", access_token=token)
            answer = httpx.get(
                stack.url + "/accounts", headers={"Authorization": f"DPoP {token}", "DPoP": warm}
            )
            if answer.status_code != 200:
                raise SystemExit(f"{stack.name}: {answer.status_code} {answer.text}")
        samples: list[list[dict[str, Any]]] = [[] for _ in chosen]
        for r, i in interleaved(len(chosen), args.rounds):
            seen = [run["rps"] for run in samples[i]]
            # Proofs for 1.5x the best rate seen, never fewer than the first round's: a round
            # that ran out would answer replays (non-2xx), faster than real requests.
            rate = max(3000, int(1.5 * max(seen))) if seen else 3000
            print(f"round {r + 1}/{args.rounds}: {chosen[i].name}", file=sys.stderr)
            samples[i].append(_round(chosen[i], signer, token, args.duration, rate))
    rows = []
    for stack, runs in zip(chosen, samples, strict=True):
        rows.append(
            {
                "stack": stack.name,
                "rps": _spread([run["rps"] for run in runs]),
                "server_cpu_us_per_request": _spread(
                    [run["server_cpu_us_per_request"] for run in runs]
                ),
                "p99_ms": statistics.median(run["p99_us"] for run in runs) / 1000,
                "non_2xx": sum(run["non_2xx"] for run in runs),
                "rounds": len(runs),
            }
        )
    report = {"runtime": describe_stack(versions), "nginx": _nginx_version(), "rows": rows}
    print(json.dumps(report, indent=2))
    return 0


def _nginx_version() -> str:
    command = find_command("nginx") or "nginx"
    out = subprocess.run([command, "-v"], capture_output=True, text=True, check=False)  # noqa: S603
    return out.stderr.strip()


if __name__ == "__main__":
    sys.exit(main())
