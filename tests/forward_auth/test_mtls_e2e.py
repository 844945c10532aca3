"""End to end, mutual TLS: the shipped nginx-mtls.conf terminates TLS and passes the
verified client certificate to the forward-auth server, which checks a certificate-bound
token (RFC 8705) issued by the Authlete simulator; the API behind is nginx."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import httpx
import pytest

from dpop_guard.challenges import parse_challenge
from dpop_guard.devtools.simulator import SimulatorState
from dpop_guard.settings import Route
from tests._support.pki import PKI, PKIFiles
from tests._support.servers import ServerThread

from ._servers import ForwardAuthServer, echo_upstream, free_port, nginx, parse_echo
from ._support import environment

pytestmark = pytest.mark.e2e

ROUTES = (
    Route("/health", public=True),
    Route("/payments", scopes=("payments",), sender_constraint="either"),
)


@pytest.fixture(scope="module", name="pki")
def _pki() -> PKI:
    return PKI.generate()


@pytest.fixture(scope="module", name="files")
def _files(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> PKIFiles:
    return pki.write(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module", name="front")
def _front(
    files: PKIFiles,
    tmp_path_factory: pytest.TempPathFactory,
    simulator_server: tuple[ServerThread, SimulatorState],
) -> Iterator[str]:
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    env = environment(
        simulator_server[0].url,
        "nginx",
        url,
        client_cert_source="nginx",
        client_cert_header="X-Client-Cert",
    )
    tmp = tmp_path_factory.mktemp("mtls")
    with (
        echo_upstream(tmp / "upstream") as upstream,
        ForwardAuthServer(env, ROUTES) as auth,
        nginx(
            tmp / "nginx",
            port=port,
            auth=auth.address,
            upstream=f"127.0.0.1:{upstream.port}",
            template="nginx-mtls.conf",
            extra={
                "server_cert": str(files.server_cert),
                "server_key": str(files.server_key),
                "client_ca": str(files.ca),
            },
        ),
    ):
        yield url


def _client(files: PKIFiles, identity: str | None) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(files.ca))
    if identity is not None:
        certfile, keyfile = files.clients[identity]
        context.load_cert_chain(certfile=str(certfile), keyfile=str(keyfile))
    return httpx.Client(verify=context, timeout=10)


def _token(simulator: SimulatorState, x5t: str) -> str:
    return simulator.create_token(subject="alice", scopes=["payments"], x5t_s256=x5t)


def test_certificate_bound_token_with_its_certificate(
    front: str, files: PKIFiles, pki: PKI, simulator: SimulatorState
) -> None:
    token = _token(simulator, pki.alice.x5t_s256)
    with _client(files, "alice") as alice:
        response = alice.get(front + "/payments", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert parse_echo(response.text)["subject"] == "alice"


@pytest.mark.parametrize("identity", ["bob", None])
def test_another_certificate_or_none_is_refused(
    front: str,
    files: PKIFiles,
    pki: PKI,
    simulator: SimulatorState,
    identity: str | None,
    reasons: list[str],
) -> None:
    """After Alice's own request (so that Bob's is a cache hit the guard checks itself)."""
    token = _token(simulator, pki.alice.x5t_s256)
    headers = {"Authorization": f"Bearer {token}"}
    with _client(files, "alice") as alice:
        assert alice.get(front + "/payments", headers=headers).status_code == 200
    with _client(files, identity) as client:
        response = client.get(front + "/payments", headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["cache-control"] == "no-store"
    _, params = parse_challenge(response.headers["www-authenticate"])
    assert params["error"] == "invalid_token"
    assert reasons[-1] == ("certificate_mismatch" if identity else "certificate_missing")


def test_a_forged_certificate_header_never_counts(
    front: str, files: PKIFiles, pki: PKI, simulator: SimulatorState
) -> None:
    """Bob presents his certificate and sends Alice's in the header the server reads."""
    from urllib.parse import quote

    token = _token(simulator, pki.alice.x5t_s256)
    forged = quote(pki.alice.pem, safe="")
    headers = {"Authorization": f"Bearer {token}", "X-Client-Cert": forged}
    for identity in ("bob", None):
        with _client(files, identity) as client:
            assert client.get(front + "/payments", headers=headers).status_code == 401
