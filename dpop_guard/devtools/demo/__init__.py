"""The demo, runnable from an installed package: ``python -m dpop_guard.devtools.demo`` starts the
Authlete development simulator, the example authorization server
(:mod:`dpop_guard.devtools.demo.authorization_server`) and the accounts API
(:mod:`dpop_guard.devtools.demo.accounts`) on loopback, walks the seven steps of Authlete's FAPI 2.0
guide with :class:`dpop_guard.client.FAPIClient`, and shows what the API refuses; then
certificate-bound tokens (RFC 8705) through Debian's nginx with a throw-away CA, where nginx
is installed (``make demo`` installs it), and says so plainly where it is not.

The helpers here (starting a server process, the environment that points an app at a
running simulator, minting a token without the code flow) are shared with the benchmarks.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import IO

import httpx

from ...client import ProofSigner
from ..simulator import DEFAULT_API_SECRET, DEFAULT_SERVICE_ID, DEFAULT_SERVICE_TOKEN

__all__ = [
    "SERVICE_AUTH",
    "authlete_api",
    "free_port",
    "mint_token",
    "process",
    "simulator_env",
    "tail",
    "token_create",
]

SERVICE_AUTH = {"Authorization": f"Bearer {DEFAULT_SERVICE_TOKEN}"}


def authlete_api(simulator: str, api_version: str = "V3") -> tuple[str, dict[str, str]]:
    """Where the simulator's Authlete APIs are for ``api_version``, and the credential:
    V3 ``{base}/api/{service id}/...`` with the service access token, V2 ``{base}/api/...``
    with Basic ``api key:api secret``."""
    if api_version == "V3":
        return f"{simulator}/api/{DEFAULT_SERVICE_ID}", dict(SERVICE_AUTH)
    pair = f"{DEFAULT_SERVICE_ID}:{DEFAULT_API_SECRET}".encode()
    return f"{simulator}/api", {"Authorization": "Basic " + base64.b64encode(pair).decode()}


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
    stderr: IO[bytes] | None = None,
    startup: float = 30.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` (in ``cwd``, by default the current directory) until the block ends;
    ready once ``ready_url`` answers below 500 (within ``startup`` seconds). Also used by
    the benchmarks.

    :param stderr: a file for the process's standard error (default: ours); when it exits
        before it is ready, the end of that file is in the message.
    :param startup: seconds the process has to come up (more under valgrind).
    :raises SystemExit: when the process exits or does not come up in time.
    """
    proc = subprocess.Popen(args, cwd=cwd, env=env, stderr=stderr)  # noqa: S603 - our own interpreter
    try:
        deadline = time.monotonic() + startup
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{' '.join(args)} exited with {proc.returncode}{tail(stderr)}")
            try:
                answer = httpx.get(ready_url, headers=headers, timeout=max(0.5, startup / 60))
                if answer.status_code < 500:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{ready_url} did not come up{_wrote(stderr)}")
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def tail(log: IO[bytes] | None, size: int = 2000) -> str:
    """The last ``size`` bytes of a process's log file, stripped ('' if none)."""
    if log is None:
        return ""
    log.flush()
    end = log.seek(0, os.SEEK_END)
    log.seek(max(0, end - size))
    return log.read().decode("utf-8", "replace").strip()


def _wrote(log: IO[bytes] | None) -> str:
    text = tail(log)
    return f"; it wrote:\n{text}" if text else ""


def simulator_env(
    simulator: str, api_version: str = "V3", *, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment that points the examples at a running simulator, with Authlete's
    own variable names: ``base`` (default ``os.environ``) plus the URL and the credentials
    of ``api_version`` (V3: the service access token; V2: the API key and secret)."""
    env = dict(os.environ if base is None else base)
    # Local runs address the app by whatever host the test or the browser uses.
    env.setdefault("DPOP_GUARD_PUBLIC_URL", "request")
    env.update(
        AUTHLETE_BASE_URL=simulator,
        AUTHLETE_API_VERSION=api_version,
        AUTHLETE_SERVICE_APIKEY=DEFAULT_SERVICE_ID,
    )
    if api_version == "V3":
        env["AUTHLETE_SERVICE_ACCESSTOKEN"] = DEFAULT_SERVICE_TOKEN
    else:
        env["AUTHLETE_SERVICE_APISECRET"] = DEFAULT_API_SECRET
    return env


def token_create(
    simulator: str,
    scopes: list[str],
    *,
    lifetime: int,
    jkt: str | None = None,
    x5t_s256: str | None = None,
) -> tuple[str, dict[str, object]]:
    """The simulator's ``/auth/token/create`` URL and body for a token for alice, bound to
    the DPoP key ``jkt`` or to the certificate ``x5t_s256`` (what the authorization server
    would issue after PAR, the code and the token request). Send it with
    :data:`SERVICE_AUTH`; the answer's ``accessToken`` is the token."""
    body: dict[str, object] = {
        "grantType": "AUTHORIZATION_CODE",
        "subject": "alice",
        "scopes": scopes,
        "accessTokenDuration": lifetime,
    }
    if jkt is not None:
        body["dpopKeyThumbprint"] = jkt
    if x5t_s256 is not None:
        body["certificateThumbprint"] = x5t_s256
    return f"{simulator}/api/{DEFAULT_SERVICE_ID}/auth/token/create", body


def mint_token(simulator: str, signer: ProofSigner, scopes: list[str], *, lifetime: int) -> str:
    """A token for alice bound to ``signer``, from :func:`token_create`."""
    url, body = token_create(simulator, scopes, lifetime=lifetime, jkt=signer.jkt)
    response = httpx.post(url, headers=SERVICE_AUTH, json=body)
    response.raise_for_status()
    token: str = response.json()["accessToken"]
    return token
