"""panva's oidc-provider (from npm) on a free loopback port: an independent authorization
server issuing DPoP-bound tokens, for the RFC 7662 and RFC 9068 end-to-end tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwk as jose_jwk

from dpop_guard.client import ProofSigner
from dpop_guard.devtools.demo import free_port

HERE = Path(__file__).parent.parent / "oidc_provider"
RS_CLIENT = ("rs", "rs-secret-0123456789abcdef")
APP_CLIENT = ("app", "app-secret-0123456789abcdef")


class OIDCProvider:
    """:param fapi_clients: FAPI 2.0 clients to register, each ``{"client_id", "jwks",
    "redirect_uris"}`` with public keys."""

    def __init__(self, fapi_clients: list[dict[str, Any]] | None = None) -> None:
        node, npm = shutil.which("node"), shutil.which("npm")
        if node is None or npm is None:
            raise RuntimeError(
                "node and npm are needed for the oidc-provider tests "
                "(Debian: apt-get install nodejs npm)"
            )
        if not (HERE / "node_modules" / "oidc-provider").exists():
            subprocess.run(  # noqa: S603 - npm with fixed arguments
                [npm, "ci", "--silent", "--no-audit", "--no-fund"],
                cwd=HERE,
                check=True,
            )
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        key = jose_jwk.ECKey.generate_key("P-256", parameters={"alg": "ES256", "use": "sig"})
        env = dict(
            os.environ,
            AS_SIGNING_KEY=json.dumps(key.as_dict(private=True)),
            AS_FAPI_CLIENTS=json.dumps(fapi_clients or []),
        )
        self.proc = subprocess.Popen(  # noqa: S603 - node with our own script
            [node, "server.mjs", str(self.port)],
            cwd=HERE,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 20
        for line in self.proc.stdout:
            if line.startswith("listening"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("oidc-provider did not start")
        else:
            raise RuntimeError("oidc-provider exited")

    @property
    def introspection_url(self) -> str:
        return f"{self.issuer}/token/introspection"

    def token(
        self, signer: ProofSigner | None, scope: str = "read:accounts", resource: str | None = None
    ) -> str:
        """A client-credentials token, DPoP-bound to ``signer`` (or a Bearer token)."""
        url = f"{self.issuer}/token"
        headers = {"DPoP": signer.sign(htm="POST", htu=url)} if signer else {}
        form = {"grant_type": "client_credentials", "scope": scope}
        if resource:
            form["resource"] = resource
        response = httpx.post(url, data=form, auth=APP_CLIENT, headers=headers)
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
