"""JWT mode against the fastest Node.js peers: what the load benchmark (:mod:`benchmarks.load`)
needs for its JWT scenarios.

- :class:`JWTIssuer`: an ES256 signing key, its JWKS served on loopback (a thread), and a
  DPoP-bound RFC 9068 access token for alice (``iss``, ``aud``, ``exp``, ``iat``, ``jti``,
  ``sub``, ``client_id``, ``scope``, ``cnf.jkt``), which every JWT scenario presents.
- The two Node.js peers in ``benchmarks/node/``, each one process on ``node:http``:
  ``jose_server.mjs`` (panva's ``jose``, the RFC 9449 checks written out, the issuer's key
  imported once) and ``oauth4webapi_server.mjs`` (panva's
  ``oauth4webapi.validateJwtAccessToken``, JWKS fetched and cached by the library). Both add
  a ``jti`` replay map. Their npm packages, pinned in ``package-lock.json``, are installed
  into ``benchmarks/node/node_modules`` (git-ignored) by ``npm ci`` on first use.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from joserfc import jwk as jose_jwk
from joserfc import jws

NODE_DIR = Path(__file__).resolve().parent / "node"
PEERS = {"jose": "jose_server.mjs", "oauth4webapi": "oauth4webapi_server.mjs"}


def node() -> str:
    """``node``, with the peers' packages installed (``npm ci`` on first use).

    :raises SystemExit: node or npm missing (Debian: ``apt-get install nodejs npm``).
    """
    found, npm = shutil.which("node"), shutil.which("npm")
    if found is None or npm is None:
        raise SystemExit("node and npm are needed for the Node peers (apt-get install nodejs npm)")
    if not all((NODE_DIR / "node_modules" / name).exists() for name in ("jose", "oauth4webapi")):
        subprocess.run(  # noqa: S603 - npm with fixed arguments
            [npm, "ci", "--silent", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True
        )
    return found


@dataclass(frozen=True)
class JWTIssuer:
    """A running JWKS endpoint and the token signed by its key."""

    issuer: str
    jwks_uri: str
    public_jwk: dict[str, Any]
    token: str

    def guard_env(self, audience: str) -> dict[str, str]:
        """dpop_guard's ``jwt`` mode against this issuer."""
        return {
            "DPOP_GUARD_INTROSPECTION": "jwt",
            "DPOP_GUARD_JWT_ISSUER": self.issuer,
            "DPOP_GUARD_JWT_JWKS_URI": self.jwks_uri,
            "DPOP_GUARD_JWT_AUDIENCE": audience,
        }

    def node_env(self, audience: str) -> dict[str, str]:
        """The Node peers' settings (the same issuer, audience and public URL)."""
        return {
            "ISSUER": self.issuer,
            "AUDIENCE": audience,
            "PUBLIC_URL": audience,
            "JWKS_URI": self.jwks_uri,
            "ISSUER_JWK": json.dumps(self.public_jwk),
        }


@contextmanager
def jwt_issuer(port: int, *, audience: str, jkt: str, lifetime: int = 7200) -> Iterator[JWTIssuer]:
    """Serve a fresh key's JWKS on ``127.0.0.1:port`` until the block ends, and sign one
    token for ``audience`` bound to ``jkt``."""
    key = jose_jwk.ECKey.generate_key("P-256", {"kid": "bench", "alg": "ES256", "use": "sig"})
    public = key.as_dict(private=False)
    body = json.dumps({"keys": [public]}).encode()

    class JWKS(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), JWKS)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    issuer = f"http://127.0.0.1:{port}"
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": audience,
        "exp": now + lifetime,
        "iat": now,
        "jti": str(uuid.uuid4()),
        "sub": "alice",
        "client_id": "bench-client",
        "scope": "read:accounts",
        "cnf": {"jkt": jkt},
    }
    header = {"alg": "ES256", "typ": "at+jwt", "kid": "bench"}
    token = jws.serialize_compact(header, json.dumps(claims).encode(), key)
    try:
        yield JWTIssuer(issuer, f"{issuer}/jwks", public, token)
    finally:
        server.shutdown()
        server.server_close()
