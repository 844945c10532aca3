"""CPU per introspection POST: our h11-framed ``AsyncioHTTPClient`` against httpx (and,
optionally, another implementation of the same interface, e.g. the client this one replaced),
and per cache miss through ``AuthleteIntrospector`` on the DPoP scheme, JSON both ways, on
each client: a token seen for the first time (two POSTs side by side, the check and the
binding probe) and one seen before (the check alone: the probe's answer is remembered).

What is measured: the client process's CPU time (``time.process_time``, user + system, all
threads) over ``--calls`` sequential POSTs on one kept-alive connection, divided by the
number of calls. The server runs in a child process, so its CPU is not counted; it answers
every request at once with a fixed Authlete-sized JSON body (``Content-Length``
framing). The request is shaped like an Authlete ``/auth/introspection`` call: three
headers (a Bearer service token, ``Content-Type``, ``Accept``) and a JSON body of about
1 KB (a token and a DPoP proof).

Scenarios are interleaved (A B C, then C B A, ...) over ``--rounds`` rounds so that a
noisy neighbour affects them alike; the median and the range over the rounds are printed.

Usage::

    python -m benchmarks.transport_cpu                       # ours vs httpx
    git show <old-commit>:dpop_guard/introspection/transport.py > /tmp/old_transport.py
    python -m benchmarks.transport_cpu --compare /tmp/old_transport.py   # + the old client
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.util
import json
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from dpop_guard import AsyncioHTTPClient, AuthleteIntrospector, AuthleteSettings
from dpop_guard.introspection import RequestFacts

ANSWER_BODY = json.dumps(
    {
        "action": "OK",
        "resultCode": "A056001",
        "resultMessage": "[A056001] The access token is valid.",
        "subject": "alice",
        "clientId": 1234567890,
        "scopes": ["read:accounts", "write:payments"],
        "expiresAt": 4102444800000,
        "existent": True,
        "usable": True,
        "sufficient": True,
        "refreshable": False,
        "responseContent": "Bearer error=...",
        "properties": [],
        "certificateBoundToken": False,
        "forExternalAttachment": False,
    }
).encode()
ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json;charset=UTF-8\r\n"
    b"Date: Tue, 01 Dec 2026 00:00:00 GMT\r\nContent-Length: %d\r\n\r\n%s"
    % (len(ANSWER_BODY), ANSWER_BODY)
)
HEADERS = (
    ("Authorization", "Bearer " + "s" * 43),
    ("Content-Type", "application/json"),
    ("Accept", "application/json"),
)
# A cache miss on the DPoP scheme: two POSTs (check and probe) for a token seen for the
# first time, the check alone for one seen before.
MISS = RequestFacts("GET", "https://rs.test/accounts", "p" * 800, "k" * 43, ("read:accounts",))
BODY = json.dumps(
    {"token": "t" * 43, "dpop": "p" * 800, "htm": "GET", "htu": "https://rs.test/accounts"}
).encode()


async def _serve(port_out: Callable[[int], None]) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                writer.write(ANSWER)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port_out(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


def serve_forever() -> None:
    """The child process: print the port, then answer until killed."""

    def announce(port: int) -> None:
        print(port, flush=True)

    asyncio.run(_serve(announce))


Post = Callable[[str], Awaitable[Any]]


def _load(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("compared_transport", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.AsyncioHTTPClient


async def _cpu_per_call(post: Post, url: str, calls: int) -> float:
    for _ in range(50):  # warm: connection, caches
        await post(url)
    start = time.process_time()
    for _ in range(calls):
        await post(url)
    return (time.process_time() - start) / calls


async def measure(
    url: str, calls: int, rounds: int, compare: Path | None
) -> dict[str, list[float]]:
    """CPU seconds per call for each client, one list entry per round."""
    ours = AsyncioHTTPClient(proxies={})  # direct: a proxy in the environment is not measured
    httpx_client = httpx.AsyncClient(trust_env=False)
    clients: dict[str, Post] = {
        "asyncio-h11 (ours)": lambda u: ours.post(u, HEADERS, BODY),
        "httpx.AsyncClient": lambda u: httpx_client.post(u, content=BODY, headers=list(HEADERS)),
    }
    settings = AuthleteSettings(
        base_url=url.partition("/api/")[0], api_key="1", access_token="s" * 43
    )
    # Nothing remembered: every token is new, so every miss makes the check and the probe.
    first_sight = dataclasses.replace(settings, binding_ttl=0)
    ours_miss = AuthleteIntrospector(AsyncioHTTPClient(proxies={}), first_sight)
    httpx_miss = AuthleteIntrospector(httpx.AsyncClient(trust_env=False), first_sight)
    ours_seen = AuthleteIntrospector(AsyncioHTTPClient(proxies={}), settings)
    clients["miss, 2 POSTs (ours)"] = lambda u: ours_miss.introspect("t" * 43, request=MISS)
    clients["miss, 2 POSTs (httpx)"] = lambda u: httpx_miss.introspect("t" * 43, request=MISS)
    clients["miss, token seen, 1 POST (ours)"] = lambda u: ours_seen.introspect(
        "t" * 43, request=MISS
    )
    closers: list[Callable[[], Awaitable[None]]] = [ours.aclose, httpx_client.aclose]
    if compare is not None:
        other = _load(compare)()
        clients[f"compared ({compare.name})"] = lambda u: other.post(u, HEADERS, BODY)
        other_miss = AuthleteIntrospector(_load(compare)(), first_sight)
        clients["miss, 2 POSTs (compared)"] = lambda u: other_miss.introspect(
            "t" * 43, request=MISS
        )
        closers.append(other.aclose)
    results: dict[str, list[float]] = {name: [] for name in clients}
    names = list(clients)
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else reversed(names):
            results[name].append(await _cpu_per_call(clients[name], url, calls))
    for close in closers:
        await close()
    return results


def main(argv: Sequence[str] | None = None) -> None:
    """Start the server process, measure, print one line per client."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compare", type=Path, help="a module file with an AsyncioHTTPClient")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve_forever()
        return
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.transport_cpu", "--serve"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        with socket.create_connection(("127.0.0.1", port)):
            pass  # the server is up
        url = f"http://127.0.0.1:{port}/api/1/auth/introspection"
        results = asyncio.run(measure(url, args.calls, args.rounds, args.compare))
    finally:
        child.kill()
        child.wait()
    print(
        f"CPU per POST ({args.calls} calls x {args.rounds} rounds, interleaved; "
        f"Python {platform.python_version()}, {platform.machine()}, "
        f"h11 {_version('h11')}, httpx {_version('httpx')})"
    )
    for name, values in results.items():
        micros = sorted(v * 1e6 for v in values)
        print(
            f"  {name:<32} median {statistics.median(micros):7.1f} us"
            f"  (range {micros[0]:.1f} .. {micros[-1]:.1f})"
        )


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    main()
