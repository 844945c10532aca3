"""``dpop-guard``: the operator's command line.

- ``dpop-guard simulate``: run the Authlete development simulator, optionally seeded from a
  token file (the same code path as ``python -m dpop_guard.devtools.simulator``);
- ``dpop-guard proof``: print a DPoP proof, for testing with curl;
- ``dpop-guard check-config``: build the guard from the environment with the same builder
  the app uses (:func:`dpop_guard.from_env`), run the start-up probes, report; exit 1 on
  any problem (see :data:`CHECK_CONFIG_HELP`);
- ``dpop-guard conformance URL --token-file F --key key.json [--require-interaction-id]
  [--json]``: send a deployed resource what the OpenID Foundation's FAPI 2.0 suite sends
  (:mod:`dpop_guard.devtools.conformance`), print a table, exit 1 on any failed case;
- ``dpop-guard forward-auth [--host H] [--port P] [--routes module:NAME]``: serve the
  forward-auth server (:mod:`dpop_guard.forward_auth`) for nginx, Caddy, Traefik or Envoy,
  configured from the environment, under uvicorn (proxy headers off: the peer it checks is
  the proxy's own);
- ``dpop-guard --version``.
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

from . import __version__
from .client import ProofSigner

CHECK_CONFIG_HELP = """\
Build the guard from this environment exactly as the app's start-up does
(dpop_guard.from_env), then probe what it depends on, and report. It checks:

  - every DPOP_GUARD_* variable is one the guard reads (a misspelt name is refused,
    with the closest known name suggested);
  - every value: numbers, booleans, URLs, secrets' shape, the introspection mode and
    its own variables (AUTHLETE_*, DPOP_GUARD_INTROSPECTION_*, DPOP_GUARD_JWT_*);
  - DPOP_GUARD_PUBLIC_URL is set (or 'request'), outside the development simulator;
  - the introspection endpoint answers a made-up token with our credentials (a refused
    credential, an unresolvable name, a refused connection, a TLS failure, a timeout and
    a 5xx are told apart), or the JWKS can be fetched in jwt mode;
  - Redis (replay store, shared cache) answers PING and cannot evict keys;
  - nonce, proxy and client-certificate settings that would not work together.

Prints "problem: ..." lines (one per problem) and exits 1, or "ok" and exits 0.
Secrets are never printed.
"""


def _simulate(args: argparse.Namespace) -> int:
    from .devtools.simulator import run

    return run(args)


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
    """Problems found, as sentences; empty when all is well (see :func:`_report`)."""
    return (await _report(environ))[1]


async def _report(environ: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """Information and problems found, as sentences; no problems when all is well. The
    guard is built by :func:`dpop_guard.guard.from_env`, the builder the app itself uses,
    so the two cannot disagree about the configuration."""
    from .guard import from_env

    try:
        guard = from_env(environ=environ)
    except (ValueError, ImportError) as exc:
        return [], [str(exc)]
    try:
        return guard.describe(), await guard.check()
    finally:
        await guard.aclose()


def _check_config(args: argparse.Namespace) -> int:
    info, problems = asyncio.run(_report(os.environ))
    for line in info:
        print(f"info: {line}")
    for problem in problems:
        print(f"problem: {problem}")
    if not problems:
        print("ok: the settings are valid and the introspection endpoint answers")
    return 1 if problems else 0


def _load_routes(spec: str | None) -> tuple[Any, ...]:
    """The ``Route`` rules named ``module:NAME`` (none: every path protected).

    :raises ValueError: the name does not resolve to a sequence of ``Route``.
    """
    if spec is None:
        return ()
    import importlib

    from .routes import Route

    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"--routes: {spec!r} is not module:NAME")
    try:
        routes = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"--routes: {spec!r} cannot be loaded: {exc}") from None
    if isinstance(routes, (str, bytes)) or not all(isinstance(r, Route) for r in routes):
        raise ValueError(f"--routes: {spec!r} is not a sequence of dpop_guard.Route")
    return tuple(routes)


def _forward_auth(args: argparse.Namespace) -> int:
    import uvicorn

    from ._env import ConfigurationError
    from .forward_auth import create_app

    try:
        app = create_app(routes=_load_routes(args.routes))
    except (ConfigurationError, ValueError, ImportError) as exc:
        print(f"dpop-guard forward-auth: {exc}", file=sys.stderr)
        return 2
    # Proxy headers off: the peer the server checks against DPOP_GUARD_TRUSTED_PROXIES must
    # be the proxy's own address, never one rewritten from a client's X-Forwarded-For.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        proxy_headers=False,
        access_log=False,
        lifespan="on",
        log_level=args.log_level,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dpop-guard",
        description="dpop_guard operator tools: check a configuration, run the FAPI 2.0 "
        "resource self-test, make a DPoP proof, run the development simulator.",
    )
    parser.add_argument("--version", action="version", version=f"dpop-guard {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    raw = argparse.RawDescriptionHelpFormatter
    simulate = commands.add_parser(
        "simulate",
        help="run the Authlete simulator (development only)",
        description="Serve an Authlete-compatible API for development and tests, optionally "
        "seeded with tokens from a file. Its credentials are public: never use it in "
        "production.",
    )
    from .devtools.simulator import add_arguments

    add_arguments(simulate)
    simulate.set_defaults(run=_simulate)
    proof = commands.add_parser(
        "proof",
        help="print a DPoP proof (for curl)",
        description="Sign a DPoP proof (RFC 9449) for one request and print it, e.g. "
        'curl -H "DPoP: $(dpop-guard proof --key k.json --htu URL --token T)" ...',
    )
    proof.add_argument("--htu", required=True, help="the request URL")
    proof.add_argument("--htm", default="GET", help="the request method (default GET)")
    proof.add_argument(
        "--token", help="the access token (sets ath); write --token=VALUE if it begins with '-'"
    )
    proof.add_argument("--nonce", help="the server's DPoP-Nonce, when it asked for one")
    proof.add_argument("--key", help="a private JWK file")
    proof.add_argument("--new-key", help="generate a key into this file")
    proof.add_argument("--alg", default="ES256", help="for --new-key (default ES256)")
    proof.set_defaults(run=_proof)
    check = commands.add_parser(
        "check-config",
        help="validate the environment's settings and probe the dependencies",
        description=CHECK_CONFIG_HELP,
        formatter_class=raw,
    )
    check.set_defaults(run=_check_config)
    from .devtools import conformance

    self_test = commands.add_parser(
        "conformance",
        help="run the FAPI 2.0 resource-endpoint self-test against a URL",
        description=conformance.__doc__,
        formatter_class=raw,
    )
    conformance.add_arguments(self_test)
    self_test.set_defaults(run=conformance.run_from_args)
    forward = commands.add_parser(
        "forward-auth",
        help="serve the forward-auth server for nginx, Caddy, Traefik or Envoy",
        description="Serve dpop_guard as the authorization service a proxy asks before each "
        "request (nginx auth_request, Caddy forward_auth, Traefik ForwardAuth, Envoy "
        "ext_authz): configured from the environment like the middleware, plus "
        "DPOP_GUARD_FORWARD_AUTH_PROXY (see docs/forward-auth.md).",
    )
    forward.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    forward.add_argument("--port", type=int, default=9000, help="port (default 9000)")
    forward.add_argument(
        "--routes", help="the Route rules, as module:NAME (default: every path protected)"
    )
    forward.add_argument("--log-level", default="warning", help="uvicorn's (default warning)")
    forward.set_defaults(run=_forward_auth)
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
