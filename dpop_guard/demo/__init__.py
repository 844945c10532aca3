"""The demo, runnable from an installed package: ``python -m dpop_guard.demo`` starts the
Authlete development simulator and the accounts API (:mod:`dpop_guard.demo.accounts`) on
loopback, and a DPoP client shows what passes and what is refused.

The helpers here (starting a server process, the environment that points an app at a
running simulator, minting a token) are shared with the load benchmarks.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from ..client import ProofSigner
from ..simulator import DEFAULT_SERVICE_ID, DEFAULT_SERVICE_TOKEN

__all__ = ["SERVICE_AUTH", "free_port", "mint_token", "process", "simulator_env"]

SERVICE_AUTH = {"Authorization": f"Bearer {DEFAULT_SERVICE_TOKEN}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def process(
    args: list[str],
    env: dict[str, str],
    ready_url: str,
    headers: dict[str, str] | None = None,
    *,
    cwd: str | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` (in ``cwd``, by default the current directory) until the block ends;
    ready once ``ready_url`` answers below 500. Also used by the benchmarks."""
    proc = subprocess.Popen(args, cwd=cwd, env=env)  # noqa: S603 - our own interpreter
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{' '.join(args)} exited with {proc.returncode}")
            try:
                if httpx.get(ready_url, headers=headers, timeout=0.5).status_code < 500:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{ready_url} did not come up")
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def simulator_env(simulator: str) -> dict[str, str]:
    """The environment that points the example (Authlete API V3) at a running simulator."""
    return dict(
        os.environ,
        AUTHLETE_BASE_URL=simulator,
        AUTHLETE_API_VERSION="V3",
        AUTHLETE_SERVICE_APIKEY=DEFAULT_SERVICE_ID,
        AUTHLETE_SERVICE_ACCESSTOKEN=DEFAULT_SERVICE_TOKEN,
    )


def mint_token(simulator: str, signer: ProofSigner, scopes: list[str], *, lifetime: int) -> str:
    """A token for alice bound to ``signer``, from the simulator's /auth/token/create (what
    the authorization server would issue after PAR, the code and the token request)."""
    response = httpx.post(
        f"{simulator}/api/{DEFAULT_SERVICE_ID}/auth/token/create",
        headers=SERVICE_AUTH,
        json={
            "grantType": "AUTHORIZATION_CODE",
            "subject": "alice",
            "scopes": scopes,
            "dpopKeyThumbprint": signer.jkt,
            "accessTokenDuration": lifetime,
        },
    )
    response.raise_for_status()
    token: str = response.json()["accessToken"]
    return token
