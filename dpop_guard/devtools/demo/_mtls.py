"""The demo's mTLS leg: certificate-bound access tokens (RFC 8705) through Debian's nginx.

nginx terminates TLS on loopback with the packaged ``nginx-mtls.conf`` (client certificates
``optional``, so that a client without one reaches the API and is refused by it, not by the
handshake) and forwards the verified certificate in ``X-Client-Cert``; the accounts API
(:func:`dpop_guard.devtools.demo.accounts.create_mtls_app`) believes that header only from nginx's
address. A throw-away CA (:mod:`dpop_guard.devtools.demo._pki`) signs nginx's certificate and the
clients' (alice's and bob's).
"""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Final
from urllib.parse import quote

import httpx

from ...challenges import parse_challenge
from . import SERVICE_AUTH, free_port, process, token_create
from ._nginx import find_command, nginx
from ._pki import PKI, Identity, PKIFiles
from ._report import Report, outcome, short

__all__ = ["MTLSDeployment", "MTLSLeg", "deployment", "nginx_version"]

HTTP_TIMEOUT: Final = 10.0
ROUTE: Final = "/mtls/accounts"


@dataclass(frozen=True)
class MTLSDeployment:
    """nginx in front of the mTLS accounts API, and the certificates of this run."""

    url: str  # nginx, https://127.0.0.1:port
    upstream: str  # the accounts API, http://127.0.0.1:port (reached by nginx only)
    nginx_version: str
    pki: PKI
    files: PKIFiles


def nginx_version(command: str) -> str:
    """``nginx/1.22.1`` for the binary at ``command`` (``nginx -v`` writes to stderr)."""
    result = subprocess.run(  # noqa: S603 - the nginx binary found on PATH
        [command, "-v"], capture_output=True, text=True, timeout=10, check=False
    )
    text = (result.stderr or result.stdout).strip()
    return text.rsplit(" ", 1)[-1] if text else "nginx (version unknown)"


def behind_nginx(env: dict[str, str], public_url: str) -> dict[str, str]:
    """``env`` for the accounts API behind the packaged ``nginx-mtls.conf`` on loopback:
    the certificate from nginx's ``X-Client-Cert``, nginx the one trusted proxy, and the
    forwarding headers it sets (replacing the client's copies)."""
    return dict(
        env,
        DPOP_GUARD_PUBLIC_URL=public_url,
        DPOP_GUARD_CLIENT_CERT_SOURCE="nginx",
        DPOP_GUARD_CLIENT_CERT_HEADER="X-Client-Cert",
        DPOP_GUARD_TRUSTED_PROXIES="127.0.0.1",
        DPOP_GUARD_PROXY_HEADERS="x-forwarded",
    )


@contextmanager
def deployment(uvicorn: list[str], env: dict[str, str]) -> Iterator[MTLSDeployment | None]:
    """Start the mTLS accounts API and nginx in front of it until the block ends; ``None``
    when nginx is not installed (the leg is then skipped, and says so).

    :param uvicorn: the uvicorn command line (interpreter, module, log options).
    :param env: the API's environment (the simulator's URL and credentials).
    :raises SystemExit: the API did not come up; :raises RuntimeError: nginx did not start.
    """
    command = find_command("nginx")
    if command is None:
        yield None
        return
    with ExitStack() as stack:
        directory = Path(stack.enter_context(TemporaryDirectory(prefix="dpop-guard-demo-")))
        pki = PKI.generate()
        files = pki.write(directory / "pki")
        api_port = free_port()
        proxy = nginx(directory / "nginx", files, f"127.0.0.1:{api_port}", verify="optional")
        upstream = f"http://127.0.0.1:{api_port}"
        api_env = behind_nginx(env, proxy.url)
        log = stack.enter_context(open(directory / "api.log", "w+b"))
        stack.enter_context(
            process(
                [
                    *uvicorn,
                    # The peer address the header check sees must be nginx's own.
                    "--no-proxy-headers",
                    "--factory",
                    "dpop_guard.devtools.demo.accounts:create_mtls_app",
                    "--port",
                    str(api_port),
                ],
                api_env,
                f"{upstream}/health",
                stderr=log,
            )
        )
        stack.enter_context(proxy)
        yield MTLSDeployment(proxy.url, upstream, nginx_version(command), pki, files)


def _client_context(files: PKIFiles, client: str | None) -> ssl.SSLContext:
    """Trust the demo CA for nginx's certificate; present ``client``'s, if any."""
    context = ssl.create_default_context(cafile=str(files.ca))
    if client is not None:
        cert, key = files.clients[client]
        context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    return context


def forged_header(identity: Identity) -> str:
    """What nginx would put in ``X-Client-Cert`` for ``identity``: a client's forgery."""
    return quote(identity.pem, safe="")


class MTLSLeg:
    """The leg's requests and what the demo prints for them."""

    def __init__(self, deployment: MTLSDeployment, simulator: str, report: Report) -> None:
        self.deployment, self.simulator, self.report = deployment, simulator, report

    async def mint(self, http: httpx.AsyncClient, identity: Identity) -> str:
        """A token for alice bound to ``identity``'s certificate, from the simulator's
        ``/auth/token/create`` with ``certificateThumbprint`` (what the authorization server
        issues after a token request over mutual TLS)."""
        url, body = token_create(
            self.simulator, ["read:accounts"], lifetime=600, x5t_s256=identity.x5t_s256
        )
        response = await http.post(url, headers=SERVICE_AUTH, json=body)
        response.raise_for_status()
        token: str = response.json()["accessToken"]
        return token

    async def get(
        self, client: str | None, token: str, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """``GET /mtls/accounts`` through nginx, presenting ``client``'s certificate."""
        verify = _client_context(self.deployment.files, client)
        async with httpx.AsyncClient(verify=verify, timeout=HTTP_TIMEOUT) as http:
            return await http.get(
                f"{self.deployment.url}{ROUTE}",
                headers={"Authorization": f"Bearer {token}", **(headers or {})},
            )

    def refused(self, title: str, response: httpx.Response) -> None:
        """Expected: 401 with the RFC 6750 challenge ``error="invalid_token"``."""
        challenge = response.headers.get("www-authenticate", "")
        error = parse_challenge(challenge)[1].get("error") if challenge else None
        good = response.status_code == 401 and error == "invalid_token"
        self.report.line(good, title, outcome(response))

    async def run(self, http: httpx.AsyncClient) -> None:
        d, report, pki = self.deployment, self.report, self.deployment.pki
        print("\nCertificate-bound tokens (RFC 8705) through nginx, mutual TLS")
        print(f"  {d.nginx_version} at {d.url} (client certificates optional)")
        print(f"    -> accounts API {d.upstream}, GET {ROUTE} (sender_constraint mtls)")
        print(
            f"  a throw-away CA signed nginx's certificate (127.0.0.1) and the clients' "
            f"({pki.alice.name}, {pki.bob.name})"
        )
        token = await self.mint(http, pki.alice)
        report.line(
            True,
            "token bound to alice's certificate",
            f"x5t#S256 {short(pki.alice.x5t_s256)}, sent as Bearer",
        )
        right = await self.get("alice", token)
        subject = right.json().get("subject") if right.status_code == 200 else None
        report.line(
            right.status_code == 200 and subject == "alice",
            "alice's certificate",
            f"{outcome(right)}, accounts of {subject}",
        )
        self.refused("bob's certificate, alice's token", await self.get("bob", token))
        self.refused("no certificate", await self.get(None, token))
        forged = {"X-Client-Cert": forged_header(pki.alice)}
        self.refused(
            "no cert, X-Client-Cert forged as alice's",
            await self.get(None, token, forged),
        )
        self.refused(
            "bob's cert, X-Client-Cert forged as alice's",
            await self.get("bob", token, forged),
        )
        report.detail("nginx replaces X-Client-Cert with the certificate it verified, or drops it")
