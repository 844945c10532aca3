"""``python -m benchmarks.fleet [--requests 1000]``: a fleet of guards sharing one Redis.

N in-process guards (N = 1, 2, 4, 8, 16, 32), each a :class:`DPoPGuardMiddleware` with its
own local cache, its own HTTP client to Authlete and its own Redis clients, as N workers
would have, share one real ``redis-server`` (a free loopback port, no persistence) for the
replay store and the second-level introspection cache. They are introspected by the
Authlete simulator (its own process, over real HTTP). Requests pick a token from a Zipf mix
(``--tokens`` tokens, exponent ``--zipf``) and a guard at random, and arrive
``--concurrency`` at a time, each with a fresh proof.

Reported for each N, from a cold fleet (Redis flushed, fresh guards), over one run that
lasts less than the cache TTL (so "per TTL" is "per run"):

- Authlete calls per token (the simulator's own count over the distinct tokens used), and
  the same as a multiple of one guard's (N = 1): the Authlete introspector makes two calls
  on a token's first introspection (check and binding probe) and one after, so one guard's
  figure is "one round per
  token per TTL" and "x one guard" above 1.0 means concurrent misses on different guards
  each went to Authlete.
- Redis commands per request: Redis's own ``INFO commandstats`` (this harness's
  ``INFO``/``FLUSHALL``/``CONFIG`` left out, and with them the replay stores' own safety
  check, one ``INFO`` per guard at most once a second; the once-per-connection ``CLIENT
  SETINFO``/``HELLO``/``SELECT`` reported apart, as connection set-up); the counts by
  command are in the JSON. Redis round trips per request: the pipelines the guards' stores
  sent (the commands of one event-loop tick share one).
- Redis memory per key after the run (``used_memory`` growth over ``DBSIZE``: nearly all
  keys are replay records), the input of the replay store's sizing.

Bounded: N at most 32, ``--requests`` at most 20000, every request answered (a non-200 is
reported, never retried).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import redis

from dpop_guard import (
    AuthleteIntrospector,
    AuthleteSettings,
    CachingIntrospector,
    DPoPGuardMiddleware,
    GuardSettings,
    ProofSigner,
    Route,
)
from dpop_guard.devtools.demo import mint_token
from dpop_guard.devtools.simulator import DEFAULT_SERVICE_ID, DEFAULT_SERVICE_TOKEN
from dpop_guard.introspection.redis_cache import RedisTokenCache
from dpop_guard.replay.redis import RedisReplayStore

from .instructions import HOST, URL, _bare_app, _scope, simulator
from .report import save

FLEET_SIZES = (1, 2, 4, 8, 16, 32)
ADMIN = {"Authorization": f"Bearer {DEFAULT_SERVICE_TOKEN}"}
TTL = 600.0  # longer than any run: every figure is "per TTL"


class _Reasons(logging.Handler):
    """Counts the guard's logged reasons (e.g. ``shared_cache_error``: a Redis timeout
    that sent a request to Authlete) instead of printing them."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        reason = str(getattr(record, "dpop_guard_reason", "other"))
        self.counts[reason] = self.counts.get(reason, 0) + 1


def zipf_picks(count: int, tokens: int, exponent: float, seed: int) -> list[int]:
    """``count`` token indexes, index k drawn with weight 1/(k+1)^exponent."""
    weights = [1.0 / (k + 1) ** exponent for k in range(tokens)]
    return random.Random(seed).choices(range(tokens), weights=weights, k=count)


def _introspections(sim: str) -> int:
    calls = httpx.get(f"{sim}/sim/stats", headers=ADMIN).json()["calls"]
    return int(calls.get("auth/introspection", 0))


_HARNESS = ("info", "flushall", "config", "dbsize")
_SETUP = ("client", "hello", "select", "auth")  # once per new connection, not per request


def _commands(client: redis.Redis) -> dict[str, int]:
    """Calls per command name, this harness's own commands left out."""
    stats: dict[str, dict[str, int]] = client.info("commandstats")
    counts = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
    return {k: v for k, v in counts.items() if k.split("|")[0] not in _HARNESS}


async def _fleet_run(
    n: int,
    sim: str,
    redis_url: str,
    signer: ProofSigner,
    tokens: list[str],
    picks: list[int],
    concurrency: int,
    seed: int,
) -> dict[str, Any]:
    bare = _bare_app()
    authlete = AuthleteSettings(
        base_url=sim, api_key=DEFAULT_SERVICE_ID, access_token=DEFAULT_SERVICE_TOKEN
    )
    settings = GuardSettings(
        routes=(Route("/accounts", scopes=("read:accounts",)),), public_url=f"https://{HOST}"
    )
    closers: list[Callable[[], Awaitable[None]]] = []
    guards = []
    stores: list[RedisReplayStore | RedisTokenCache] = []
    for _ in range(n):
        client = httpx.AsyncClient()
        store = RedisReplayStore.from_url(redis_url)
        shared = RedisTokenCache.from_url(redis_url)
        closers += [client.aclose, store.aclose, shared.aclose]
        stores += [store, shared]
        guards.append(
            DPoPGuardMiddleware(
                bare,
                settings=settings,
                introspector=CachingIntrospector(
                    AuthleteIntrospector(client, authlete), ttl=TTL, shared=shared
                ),
                replay_store=store,
            )
        )
    route = random.Random(seed + n)
    scopes = [
        (
            guards[route.randrange(n)],
            _scope(tokens[k], signer.sign(htm="GET", htu=URL, access_token=tokens[k])),
        )
        for k in picks
    ]
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def one(guard: Any, scope: dict[str, Any]) -> None:
        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await guard(scope, receive, send)

    started = time.perf_counter()
    try:
        for i in range(0, len(scopes), concurrency):
            await asyncio.gather(*(one(g, s) for g, s in scopes[i : i + concurrency]))
    finally:
        for close in closers:
            await close()
    elapsed = time.perf_counter() - started
    round_trips = sum(s.batcher.round_trips for s in stores)
    return {"statuses": statuses, "seconds": elapsed, "round_trips": round_trips}


def fleet(
    requests: int = 1000,
    tokens: int = 50,
    exponent: float = 1.1,
    concurrency: int = 32,
    sizes: tuple[int, ...] = FLEET_SIZES,
    seed: int = 13,
    latency: float = 0.0,
) -> dict[str, Any]:
    """One cold run per fleet size; see the module docstring for what is counted.

    :param latency: seconds the simulator waits before each answer (a real Authlete's round
        trip widens the window in which misses on different guards overlap).
    """
    if not 1 <= requests <= 20_000 or not 1 <= tokens <= 1000 or not 1 <= concurrency <= 256:
        raise ValueError("requests 1-20000, tokens 1-1000, concurrency 1-256")
    if not sizes or max(sizes) > 32 or min(sizes) < 1:
        raise ValueError("fleet sizes 1-32")
    if not 0 <= latency <= 1:
        raise ValueError("Authlete latency 0-1 s")
    from tests._support.redis_server import RedisServer

    picks = zipf_picks(requests, tokens, exponent, seed)
    used = len(set(picks))
    signer = ProofSigner.generate("ES256")
    server = RedisServer().start()
    rows = []
    try:
        admin = redis.Redis(host="127.0.0.1", port=server.port)
        with simulator() as sim:
            minted = [
                mint_token(sim, signer, ["read:accounts"], lifetime=3600) for _ in range(tokens)
            ]
            httpx.post(f"{sim}/sim/faults", headers=ADMIN, json={"latency": latency})
            logger = logging.getLogger("dpop_guard")
            for n in sizes:
                reasons = _Reasons()
                logger.addHandler(reasons)
                logger.propagate = False
                admin.flushall()
                admin.config_resetstat()
                memory = int(admin.info("memory")["used_memory"])
                calls, commands = _introspections(sim), _commands(admin)
                run = asyncio.run(
                    _fleet_run(n, sim, server.url, signer, minted, picks, concurrency, seed)
                )
                logger.removeHandler(reasons)
                logger.propagate = True
                calls = _introspections(sim) - calls
                keys = int(admin.dbsize())
                memory = int(admin.info("memory")["used_memory"]) - memory
                after = _commands(admin)
                by_name = {k: v - commands.get(k, 0) for k, v in after.items()}
                by_name = {k: v for k, v in by_name.items() if v}
                setup = sum(v for k, v in by_name.items() if k.split("|")[0] in _SETUP)
                per_request = sum(by_name.values()) - setup
                statuses = run["statuses"]
                rows.append(
                    {
                        "guards": n,
                        "requests": len(statuses),
                        "non_200": sum(1 for s in statuses if s != 200),
                        "tokens_used": used,
                        "authlete_calls": calls,
                        "authlete_calls_per_token_per_ttl": calls / used,
                        "redis_commands": by_name,
                        "redis_commands_per_request": per_request / len(statuses),
                        "redis_round_trips_per_request": run["round_trips"] / len(statuses),
                        "redis_connection_setup_commands": setup,
                        "redis_keys": keys,
                        "redis_bytes_per_key": memory / max(1, keys),
                        "seconds": run["seconds"],
                        "logged_reasons": reasons.counts,
                    }
                )
        admin.close()
    finally:
        server.stop()
    for row in rows:
        row["authlete_calls_vs_one_guard"] = (
            row["authlete_calls_per_token_per_ttl"] / rows[0]["authlete_calls_per_token_per_ttl"]
        )
    return {
        "sizes_note": "the first row is the reference for authlete_calls_vs_one_guard",
        "what": "N in-process guards, one real redis-server (replay store + shared cache), "
        "the Authlete simulator over HTTP; cold fleet per N; one run < one TTL",
        "requests": requests,
        "tokens": tokens,
        "authlete_latency_ms": latency * 1000,
        "zipf_exponent": exponent,
        "concurrency": concurrency,
        "ttl_s": TTL,
        "rows": rows,
        "median_round_trips_per_request": statistics.median(
            r["redis_round_trips_per_request"] for r in rows
        ),
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Fleet: {result['what']}. {result['requests']} requests, {result['tokens']} tokens "
        f"(Zipf {result['zipf_exponent']}), {result['concurrency']} at a time.",
        "",
        "| guards | tokens used | Authlete calls | per token per TTL | x first row | Redis "
        "commands/request | Redis round trips/request | connection set-up | non-200 | logged "
        "| seconds |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['guards']} | {r['tokens_used']} | {r['authlete_calls']} | "
            f"{r['authlete_calls_per_token_per_ttl']:.2f} | "
            f"{r['authlete_calls_vs_one_guard']:.2f} | "
            f"{r['redis_commands_per_request']:.2f} | "
            f"{r['redis_round_trips_per_request']:.2f} | "
            f"{r['redis_connection_setup_commands']} | {r['non_200']} | "
            f"{', '.join(f'{k} {v}' for k, v in r['logged_reasons'].items()) or '-'} | "
            f"{r['seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--sizes", default=",".join(map(str, FLEET_SIZES)))
    parser.add_argument("--authlete-latency-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    try:
        sizes = tuple(int(s) for s in args.sizes.split(","))
        result = fleet(
            args.requests,
            args.tokens,
            args.zipf,
            args.concurrency,
            sizes,
            latency=args.authlete_latency_ms / 1000,
        )
    except ValueError as exc:
        parser.error(str(exc))
    save("fleet", result, markdown(result))


if __name__ == "__main__":
    main()
