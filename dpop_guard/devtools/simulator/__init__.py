"""The Authlete-compatible development server: ``/auth/introspection`` (V2 and V3),
``/auth/introspection/standard``, ``/auth/token/create``, the authorization-server APIs of
Authlete's FAPI 2.0 guide (``/pushed_auth_req``, ``/auth/authorization``,
``/auth/authorization/issue``, ``/auth/authorization/fail``, ``/auth/token``) and test hooks
under ``/sim/``.

It is a server, not an introspector: the production client talks to it over HTTP exactly
as it talks to Authlete. Its credentials are fixed in the source, and anyone who reaches it
can mint tokens for any subject and scope, so it never runs by accident: a protected app
uses it only when started with ``DPOP_GUARD_DEVELOPMENT_SIMULATOR=1`` (see
:func:`dpop_guard.from_env`).

Run it on its own with ``python -m dpop_guard.devtools.simulator`` or ``dpop-guard simulate``; both
are :func:`main`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from ._app import create_simulator_app
from ._state import (
    DEFAULT_API_SECRET,
    DEFAULT_CLIENT_ID,
    DEFAULT_SERVICE_ID,
    DEFAULT_SERVICE_TOKEN,
    FAULTS,
    SimToken,
    SimulatorState,
)

__all__ = [
    "DEFAULT_API_SECRET",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_SERVICE_ID",
    "DEFAULT_SERVICE_TOKEN",
    "FAULTS",
    "SimToken",
    "SimulatorState",
    "add_arguments",
    "build",
    "create_simulator_app",
    "main",
    "seed",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The simulator's command-line options, shared by ``python -m dpop_guard.devtools.simulator``
    and ``dpop-guard simulate``."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each call")
    parser.add_argument(
        "--dpop-nonce-required",
        action="store_true",
        help="the service's dpopNonceRequired: DPoP-bound tokens need Authlete's nonce",
    )
    parser.add_argument(
        "--dpop-nonce-duration", type=int, default=60, help="seconds each nonce is current"
    )
    parser.add_argument(
        "--tokens",
        help=(
            "a JSON list of {subject, scopes, jkt?, x5t_s256?, resources?, acr?, lifetime?, "
            "token?} to issue at start"
        ),
    )


def seed(state: SimulatorState, entries: list[dict[str, object]]) -> list[str]:
    """Issue a token per entry (``subject``, ``scopes``, ``jkt``, ``x5t_s256`` (a
    certificate binding), ``resources``, ``acr``, ``lifetime``, and an optional fixed
    ``token`` value for reproducible scripts); returns the tokens."""
    issued: list[str] = []
    for entry in entries:
        subject, jkt, x5t = entry.get("subject"), entry.get("jkt"), entry.get("x5t_s256")
        scopes, resources = entry.get("scopes", []), entry.get("resources", [])
        acr = entry.get("acr")
        lifetime = entry.get("lifetime", 3600)
        if not (
            all(v is None or isinstance(v, str) for v in (subject, jkt, x5t, acr))
            and isinstance(scopes, list)
            and all(isinstance(s, str) for s in scopes)
            and isinstance(resources, list)
            and all(isinstance(r, str) for r in resources)
            and isinstance(lifetime, int | float)
        ):
            raise ValueError(
                "each token entry needs string subject/jkt/x5t_s256/acr, lists of scopes "
                "and resources"
            )
        strings = cast("tuple[str | None, ...]", (subject, jkt, x5t, acr))
        token = state.create_token(
            subject=strings[0],
            scopes=scopes,
            lifetime=float(lifetime),
            jkt=strings[1],
            x5t_s256=strings[2],
            resources=resources,
            acr=strings[3],
        )
        fixed = entry.get("token")
        if isinstance(fixed, str) and fixed:
            state.tokens[fixed] = state.tokens.pop(token)
            token = fixed
        issued.append(token)
    return issued


def build(args: argparse.Namespace) -> tuple[SimulatorState, Any]:
    """The state and ASGI app the parsed command-line ``args`` describe."""
    from ._authorization import AuthorizationService, SimService

    state = SimulatorState(latency=args.latency)
    service = SimService(
        dpop_nonce_required=args.dpop_nonce_required,
        dpop_nonce_duration=args.dpop_nonce_duration,
    )
    return state, create_simulator_app(state, AuthorizationService(service=service))


def run(args: argparse.Namespace) -> int:
    """Serve the simulator with the parsed ``args`` until interrupted."""
    import uvicorn

    state, app = build(args)
    if args.tokens:
        entries = json.loads(Path(args.tokens).read_text())
        for entry, token in zip(entries, seed(state, entries), strict=True):
            record = {"token": token, "subject": entry.get("subject"), "jkt": entry.get("jkt")}
            print(json.dumps(record), flush=True)
    print(
        f"Authlete simulator on http://{args.host}:{args.port} (service {state.service_id}); "
        "development only: its credentials are public",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dpop_guard.devtools.simulator [--host H] [--port P] [--latency S]
    [--tokens F]``."""
    parser = argparse.ArgumentParser(
        prog="dpop-guard simulate", description="Authlete-compatible development simulator"
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
