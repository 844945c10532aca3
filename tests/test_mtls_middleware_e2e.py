"""Certificate-bound tokens end to end: a TLS client -> Debian's nginx or HAProxy (the
operator example configurations) -> the real middleware under uvicorn
(``proxy_headers=False``) on loopback.

nginx passes the certificate as ``$ssl_client_escaped_cert`` in ``X-Client-Cert``
(:class:`~dpop_guard.mtls.NginxCertificateSource`); HAProxy as RFC 9440 ``Client-Cert``
(:class:`~dpop_guard.mtls.Rfc9440CertificateSource`). The trusted proxy is ``127.0.0.1``;
a client that talks to the app directly binds ``127.0.0.2``.

The token facts come from a table behind the real :class:`CachingIntrospector`, so the
second request with a token is a cache hit and the thumbprint comparison on a hit is the
middleware's. The last test mints the token at the simulator (``certificateThumbprint``)
and introspects it through the production Authlete client.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import quote

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route as HTTPRoute

from dpop_guard import (
    AuthleteIntrospector,
    AuthleteSettings,
    CachingIntrospector,
    DPoPCredentials,
    DPoPGuardMiddleware,
    GuardSettings,
    Route,
    cli,
)
from dpop_guard.challenges import parse_challenge
from dpop_guard.devtools.conformance import MTLS_CASES, run_mtls_conformance
from dpop_guard.devtools.simulator import DEFAULT_SERVICE_ID, DEFAULT_SERVICE_TOKEN, SimulatorState
from dpop_guard.introspection import InactiveToken, Introspector, RequestFacts, TokenInfo
from dpop_guard.mtls import (
    ClientCertificateSource,
    NginxCertificateSource,
    Rfc9440CertificateSource,
)
from dpop_guard.replay import MemoryReplayStore

from ._support.pki import PKI, PKIFiles
from ._support.servers import ServerThread
from ._support.tls_proxies import DirectPeerServer, ProxyProcess, Verify, haproxy, nginx

pytestmark = pytest.mark.e2e

UNTRUSTED_CLIENT = "127.0.0.2"
ROUTES = (Route("/accounts", scopes=("read",), sender_constraint="mtls"),)


@dataclass
class TableIntrospector:
    """Answers each token from a table (unknown: inactive); counts the calls."""

    table: dict[str, TokenInfo] = field(default_factory=dict)
    calls: int = 0

    async def introspect(self, token: str, *, request: RequestFacts) -> TokenInfo:
        self.calls += 1
        info = self.table.get(token)
        if info is None:
            raise InactiveToken("introspection_inactive")
        return info


async def accounts(request: Request) -> JSONResponse:
    auth: DPoPCredentials = request.auth
    return JSONResponse({"subject": auth.subject, "x5t_s256": auth.x5t_s256})


def guarded(introspector: Introspector, source: ClientCertificateSource) -> DPoPGuardMiddleware:
    return DPoPGuardMiddleware(
        Starlette(routes=[HTTPRoute("/accounts", accounts)]),
        settings=GuardSettings(
            routes=ROUTES,
            trusted_proxies=("127.0.0.1",),
            proxy_headers=("x-forwarded-proto", "x-forwarded-host"),
        ),
        introspector=introspector,
        replay_store=MemoryReplayStore(epoch=int(time.time()) - 3600),
        certificate_source=source,
    )


@dataclass
class Deployment:
    name: str
    proxy: ProxyProcess
    upstream: DirectPeerServer
    table: TableIntrospector
    header: str
    forge: Callable[[bytes], str]


def _forge_nginx(der: bytes) -> str:
    return quote(ssl.DER_cert_to_PEM_cert(der), safe="")


def _forge_rfc9440(der: bytes) -> str:
    return ":" + base64.b64encode(der).decode() + ":"


@pytest.fixture(scope="module", name="pki")
def _pki() -> PKI:
    return PKI.generate()


@pytest.fixture(scope="module", name="files")
def _files(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> PKIFiles:
    return pki.write(tmp_path_factory.mktemp("pki"))


def _deploy(
    name: str, files: PKIFiles, tmp_path_factory: pytest.TempPathFactory, verify: Verify
) -> Iterator[Deployment]:
    table = TableIntrospector()
    if name == "nginx":
        source: ClientCertificateSource = NginxCertificateSource("X-Client-Cert")
        header, forge, start = "X-Client-Cert", _forge_nginx, nginx
    else:
        source = Rfc9440CertificateSource()
        header, forge, start = "Client-Cert", _forge_rfc9440, haproxy
    app = guarded(CachingIntrospector(table, ttl=60), source)
    with (
        DirectPeerServer(app) as upstream,
        start(
            tmp_path_factory.mktemp(f"{name}-{verify}"), files, upstream.address, verify=verify
        ) as proxy,
    ):
        yield Deployment(name, proxy, upstream, table, header, forge)


@pytest.fixture(scope="module", name="deployment", params=["nginx", "haproxy"])
def _deployment(
    request: pytest.FixtureRequest, files: PKIFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """Certificates optional at the proxy, so that "no certificate" reaches the app."""
    yield from _deploy(request.param, files, tmp_path_factory, "optional")


def tls_client(files: PKIFiles, identity: str | None) -> httpx.Client:
    """The client side, as in the README: trust the server's CA, present a certificate."""
    context = ssl.create_default_context(cafile=str(files.ca))
    if identity is not None:
        certfile, keyfile = files.clients[identity]
        context.load_cert_chain(certfile=str(certfile), keyfile=str(keyfile))
    return httpx.Client(verify=context, timeout=10)


_SERIAL = iter(range(1_000_000))


def bound_token(deployment: Deployment, x5t: str) -> str:
    token = f"token-{next(_SERIAL)}"
    deployment.table.table[token] = TokenInfo(
        subject="alice",
        client_id="1",
        scopes=frozenset({"read"}),
        expires_at=int(time.time()) + 3600,
        jkt=None,
        x5t_s256=x5t,
    )
    return token


def assert_refused(response: httpx.Response, reasons: list[str], reason: str) -> None:
    assert response.status_code == 401, response.text
    scheme, params = parse_challenge(response.headers["www-authenticate"])
    assert (scheme, params.get("error")) == ("Bearer", "invalid_token")
    assert reasons[-1:] == [reason]


def test_right_certificate_passes(deployment: Deployment, files: PKIFiles, pki: PKI) -> None:
    token = bound_token(deployment, pki.alice.x5t_s256)
    with tls_client(files, "alice") as client:
        response = client.get(
            deployment.proxy.url + "/accounts", headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 200, response.text
    assert response.json() == {"subject": "alice", "x5t_s256": pki.alice.x5t_s256}


def test_another_clients_certificate_refused(
    deployment: Deployment, files: PKIFiles, pki: PKI, reasons: list[str]
) -> None:
    token = bound_token(deployment, pki.alice.x5t_s256)
    with tls_client(files, "bob") as client:
        response = client.get(
            deployment.proxy.url + "/accounts", headers={"Authorization": f"Bearer {token}"}
        )
    assert_refused(response, reasons, "certificate_mismatch")


def test_no_certificate_refused(
    deployment: Deployment, files: PKIFiles, pki: PKI, reasons: list[str]
) -> None:
    token = bound_token(deployment, pki.alice.x5t_s256)
    with tls_client(files, None) as client:
        response = client.get(
            deployment.proxy.url + "/accounts", headers={"Authorization": f"Bearer {token}"}
        )
    assert_refused(response, reasons, "certificate_missing")


@pytest.mark.parametrize("presented", ["bob", None])
def test_forged_header_through_the_proxy_never_wins(
    deployment: Deployment, files: PKIFiles, pki: PKI, reasons: list[str], presented: str | None
) -> None:
    """A client sends alice's certificate in the proxy's own header: the proxy replaces or
    strips it, so the app sees the handshake's certificate (bob's) or none."""
    token = bound_token(deployment, pki.alice.x5t_s256)
    with tls_client(files, presented) as client:
        response = client.get(
            deployment.proxy.url + "/accounts",
            headers={
                "Authorization": f"Bearer {token}",
                deployment.header: deployment.forge(pki.alice.der),
            },
        )
    assert_refused(
        response, reasons, "certificate_mismatch" if presented else "certificate_missing"
    )


def test_forged_header_from_an_untrusted_peer_ignored(
    deployment: Deployment, pki: PKI, reasons: list[str]
) -> None:
    token = bound_token(deployment, pki.alice.x5t_s256)
    transport = httpx.HTTPTransport(local_address=UNTRUSTED_CLIENT)
    with httpx.Client(transport=transport, timeout=10) as client:
        response = client.get(
            deployment.upstream.url + "/accounts",
            headers={
                "Authorization": f"Bearer {token}",
                deployment.header: deployment.forge(pki.alice.der),
            },
        )
    assert_refused(response, reasons, "certificate_missing")


def test_cache_hit_compares_thumbprints(
    deployment: Deployment, files: PKIFiles, pki: PKI, reasons: list[str]
) -> None:
    token = bound_token(deployment, pki.alice.x5t_s256)
    url = deployment.proxy.url + "/accounts"
    headers = {"Authorization": f"Bearer {token}"}
    with tls_client(files, "alice") as alice:
        assert alice.get(url, headers=headers).status_code == 200
    calls = deployment.table.calls
    with tls_client(files, "bob") as bob:
        response = bob.get(url, headers=headers)
    assert deployment.table.calls == calls  # a cache hit: no introspection
    assert_refused(response, reasons, "certificate_mismatch")


# -- the simulator -----------------------------------------------------------------------


@dataclass
class LoopBoundIntrospector:
    """The Authlete chain, remembering the server's event loop so that the test can close
    the HTTP client on the loop that used it."""

    inner: Introspector
    loop: asyncio.AbstractEventLoop | None = None

    async def introspect(self, token: str, *, request: RequestFacts) -> TokenInfo:
        self.loop = asyncio.get_running_loop()
        return await self.inner.introspect(token, request=request)


@pytest.fixture(scope="module", name="authlete_deployment")
def _authlete_deployment(
    files: PKIFiles,
    tmp_path_factory: pytest.TempPathFactory,
    simulator_server: tuple[ServerThread, SimulatorState],
) -> Iterator[ProxyProcess]:
    http = httpx.AsyncClient()
    authlete = AuthleteSettings(
        base_url=simulator_server[0].url,
        api_version="V3",
        api_key=DEFAULT_SERVICE_ID,
        access_token=DEFAULT_SERVICE_TOKEN,
    )
    chain = LoopBoundIntrospector(CachingIntrospector(AuthleteIntrospector(http, authlete), ttl=60))
    app = guarded(chain, NginxCertificateSource("X-Client-Cert"))
    with (
        DirectPeerServer(app) as upstream,
        nginx(tmp_path_factory.mktemp("nginx-authlete"), files, upstream.address) as proxy,
    ):
        yield proxy
        if chain.loop is not None:
            asyncio.run_coroutine_threadsafe(http.aclose(), chain.loop).result(timeout=10)


def test_simulator_certificate_bound_token_through_nginx(
    authlete_deployment: ProxyProcess,
    simulator_url: str,
    files: PKIFiles,
    pki: PKI,
    reasons: list[str],
) -> None:
    proxy = authlete_deployment
    with httpx.Client(base_url=simulator_url) as sim:
        token = sim.post(
            f"/api/{DEFAULT_SERVICE_ID}/auth/token/create",
            headers={"Authorization": f"Bearer {DEFAULT_SERVICE_TOKEN}"},
            json={
                "grantType": "CLIENT_CREDENTIALS",
                "subject": "alice",
                "scopes": ["read"],
                "certificateThumbprint": pki.alice.x5t_s256,
            },
        ).json()["accessToken"]
    headers = {"Authorization": f"Bearer {token}"}
    url = proxy.url + "/accounts"
    with tls_client(files, "alice") as alice:
        assert alice.get(url, headers=headers).status_code == 200  # a miss
        assert alice.get(url, headers=headers).status_code == 200  # a hit
    with tls_client(files, "bob") as bob:
        response = bob.get(url, headers=headers)  # a hit, another certificate
    assert_refused(response, reasons, "certificate_mismatch")


# -- the RFC 8705 self-test ------------------------------------------------------------------


def test_mtls_self_test_passes_through_the_proxy(
    deployment: Deployment, files: PKIFiles, pki: PKI
) -> None:
    """``dpop-guard conformance URL --token T --mtls-cert C --mtls-key K --ca CA``."""
    token = bound_token(deployment, pki.alice.x5t_s256)
    certfile, keyfile = files.clients["alice"]
    argv = [
        "conformance",
        deployment.proxy.url + "/accounts",
        f"--token={token}",  # a token may begin with "-"
        "--mtls-cert",
        str(certfile),
        "--mtls-key",
        str(keyfile),
        "--ca",
        str(files.ca),
        "--json",
    ]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(argv)
    outcomes = json.loads(out.getvalue())
    assert code == 0, outcomes
    assert [o["case"] for o in outcomes] == [name for name, *_ in MTLS_CASES]


async def test_mtls_self_test_fails_a_token_bound_to_another_certificate(
    deployment: Deployment, files: PKIFiles, pki: PKI
) -> None:
    token = bound_token(deployment, pki.bob.x5t_s256)
    async with (
        httpx.AsyncClient(verify=_context(files, "alice"), timeout=10) as alice,
        httpx.AsyncClient(verify=_context(files, None), timeout=10) as nobody,
    ):
        outcomes = await run_mtls_conformance(
            deployment.proxy.url + "/accounts",
            token=token,
            with_certificate=alice,
            without_certificate=nobody,
        )
    failed = {o.case for o in outcomes if not o.passed}
    assert failed == {"CertificateBoundTokenWithItsCertificate", "CertificateBoundTokenStillWorks"}


def _context(files: PKIFiles, identity: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(files.ca))
    if identity is not None:
        certfile, keyfile = files.clients[identity]
        context.load_cert_chain(certfile=str(certfile), keyfile=str(keyfile))
    return context
