"""``dpop-guard``: the operator's command line.

- ``dpop-guard simulate``: run the Authlete simulator, optionally seeded from a token file;
- ``dpop-guard proof``: print a DPoP proof, for testing with curl;
- ``dpop-guard check-config``: validate the settings from the environment and reach the
  introspection endpoint (and Redis, when configured); exit 1 on any problem.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .client import ProofSigner


def _simulate(args: argparse.Namespace) -> int:
    import uvicorn

    from .introspection.simulator import SimulatorState, create_simulator_app

    state = SimulatorState(latency=args.latency)
    if args.tokens:
        for entry in json.loads(Path(args.tokens).read_text()):
            token = state.create_token(
                subject=entry.get("subject"),
                scopes=entry.get("scopes", []),
                lifetime=float(entry.get("lifetime", 3600)),
                jkt=entry.get("jkt"),
            )
            if "token" in entry:  # a fixed value, for reproducible scripts
                state.tokens[entry["token"]] = state.tokens.pop(token)
                token = entry["token"]
            print(
                json.dumps(
                    {"token": token, "subject": entry.get("subject"), "jkt": entry.get("jkt")}
                ),
                flush=True,
            )
    print(
        f"Authlete simulator on http://{args.host}:{args.port} (service {state.service_id})",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(create_simulator_app(state), host=args.host, port=args.port, log_level="warning")
    return 0


def _proof(args: argparse.Namespace) -> int:
    if args.new_key:
        signer = ProofSigner.generate(args.alg)
        from cryptography.hazmat.primitives import serialization
        from joserfc import jwk as jose_jwk

        pem = signer.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        kty: Any = signer.public_jwk["kty"]
        key = jose_jwk.import_key(pem, kty)
        Path(args.new_key).write_text(json.dumps(key.as_dict(private=True) | {"alg": args.alg}))
        os.chmod(args.new_key, 0o600)
        print(f"new key in {args.new_key}, jkt {signer.jkt}", file=sys.stderr)
    elif args.key:
        signer = ProofSigner.from_jwk(json.loads(Path(args.key).read_text()))
    else:
        print("give --key FILE or --new-key FILE", file=sys.stderr)
        return 2
    print(signer.sign(htm=args.htm, htu=args.htu, access_token=args.token, nonce=args.nonce))
    return 0


async def _check(environ: Mapping[str, str]) -> list[str]:
    """Problems found, as sentences; empty when all is well."""
    from .introspection import RequestFacts
    from .settings import AuthleteSettings, GuardSettings

    problems: list[str] = []
    try:
        settings = GuardSettings.from_env(environ)
    except ValueError as exc:
        return [str(exc)]
    introspector: Any
    try:
        from .introspection._http import AsyncioHTTPClient

        client = AsyncioHTTPClient()
        if environ.get("DPOP_GUARD_INTROSPECTION", "authlete").lower() == "rfc7662":
            from .introspection.rfc7662 import RFC7662Introspector, RFC7662Settings

            introspector = RFC7662Introspector(client, RFC7662Settings.from_env(environ))
            target = "the RFC 7662 endpoint"
        else:
            from .introspection.authlete import AuthleteIntrospector

            introspector = AuthleteIntrospector(
                client, AuthleteSettings.from_env(environ), breaker=None
            )
            target = "Authlete"
    except ValueError as exc:
        return [str(exc)]
    from .errors import DPoPGuardError, ServiceUnavailable

    facts = RequestFacts("GET", "https://check-config.invalid/", None, None)
    try:
        await introspector.introspect("dpop-guard-check-config-not-a-token", request=facts)
        problems.append(f"{target} accepted a made-up token: is it the right endpoint?")
    except ServiceUnavailable as exc:
        problems.append(f"{target} cannot be used: {exc.reason}")
    except DPoPGuardError:
        pass  # refused, as it should: the endpoint answers and our credentials work
    finally:
        await client.aclose()
    for name, url in (
        ("DPOP_GUARD_REPLAY_STORE", settings.replay_store),
        ("DPOP_GUARD_INTROSPECTION_CACHE", settings.introspection_cache),
    ):
        if url and url != "memory":
            from ._redis import redis_client

            redis = redis_client(url, connect_timeout=1.0, command_timeout=1.0)
            try:
                await redis.ping()
            except Exception as exc:
                problems.append(f"{name}: Redis does not answer ({type(exc).__name__})")
            finally:
                await redis.aclose()
    if settings.nonce_routes and settings.nonce_secret is None:
        problems.append(
            "nonces are required but DPOP_GUARD_NONCE_SECRET is not set: "
            "nonces will only be valid in the process that issued them"
        )
    if settings.public_url is None and not settings.trusted_proxies:
        problems.append(
            "neither DPOP_GUARD_PUBLIC_URL nor DPOP_GUARD_TRUSTED_PROXIES is set: "
            "htu is checked against the Host header, which clients control"
        )
    return problems


def _check_config(args: argparse.Namespace) -> int:
    problems = asyncio.run(_check(os.environ))
    for problem in problems:
        print(f"problem: {problem}")
    if not problems:
        print("ok: the settings are valid and the introspection endpoint answers")
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dpop-guard", description="dpop_guard operator tools")
    commands = parser.add_subparsers(dest="command", required=True)
    simulate = commands.add_parser("simulate", help="run the Authlete simulator")
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=int, default=8081)
    simulate.add_argument("--latency", type=float, default=0.0, help="seconds per call")
    simulate.add_argument(
        "--tokens",
        help="a JSON list of {subject, scopes, jkt?, lifetime?, token?} to issue at start",
    )
    simulate.set_defaults(run=_simulate)
    proof = commands.add_parser("proof", help="print a DPoP proof")
    proof.add_argument("--htu", required=True, help="the request URL")
    proof.add_argument("--htm", default="GET")
    proof.add_argument("--token", help="the access token (sets ath)")
    proof.add_argument("--nonce")
    proof.add_argument("--key", help="a private JWK file")
    proof.add_argument("--new-key", help="generate a key into this file")
    proof.add_argument("--alg", default="ES256", help="for --new-key")
    proof.set_defaults(run=_proof)
    check = commands.add_parser("check-config", help="validate settings, reach the endpoint")
    check.set_defaults(run=_check_config)
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
