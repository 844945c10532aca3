"""End to end: Debian's nginx and Caddy with the shipped configurations
(deploy/forward-auth) in front of a non-Python API (nginx echoing what it received), the
forward-auth server under real uvicorn, the Authlete simulator over real HTTP. Every case
runs through both proxies."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from dpop_guard.challenges import parse_challenge
from dpop_guard.client import ProofSigner
from dpop_guard.devtools.demo._nginx import ProxyProcess
from dpop_guard.devtools.simulator import SimulatorState
from dpop_guard.testing import make_proof
from tests._support.servers import ServerThread

from ._servers import ForwardAuthServer, caddy, echo_upstream, free_port, nginx, parse_echo
from ._support import ROUTES, environment

pytestmark = pytest.mark.e2e

PROXIES = ("nginx", "caddy")


@dataclass
class Front:
    """A proxy in front of the echo API, asking a forward-auth server."""

    proxy: str
    url: str
    simulator: SimulatorState

    def token(
        self, signer: ProofSigner | None, scopes: tuple[str, ...] = ("read:accounts",)
    ) -> str:
        return self.simulator.create_token(
            subject="alice", scopes=list(scopes), jkt=signer.jkt if signer else None
        )

    def headers(
        self,
        signer: ProofSigner,
        token: str,
        path: str = "/accounts",
        method: str = "GET",
        nonce: str | None = None,
        iat: float | None = None,
    ) -> dict[str, str]:
        claims = {} if nonce is None else {"nonce": nonce}
        proof = make_proof(
            signer,
            htm=method,
            htu=self.url + path.partition("?")[0],
            access_token=token,
            claims=claims,
            iat=iat,
        )
        return {"Authorization": f"DPoP {token}", "DPoP": proof}


def _start(
    tmp: Path,
    proxy: str,
    simulator_url: str,
    upstream: str,
    clock: Callable[[], float] | None = None,
    **extra: str,
) -> Iterator[str]:
    """Start a forward-auth server and ``proxy`` in front of ``upstream``; yield its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = environment(simulator_url, proxy, url, **extra)
    with ForwardAuthServer(env, ROUTES, clock) as auth:
        make = nginx if proxy == "nginx" else caddy
        with make(tmp / proxy, port=port, auth=auth.address, upstream=upstream):
            yield url


@pytest.fixture(scope="module", name="upstream")
def _upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    with echo_upstream(tmp_path_factory.mktemp("upstream")) as process:
        yield process


@pytest.fixture(scope="module", name="front_url", params=PROXIES)
def _front_url(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    simulator_server: tuple[ServerThread, SimulatorState],
    upstream: ProxyProcess,
) -> Iterator[tuple[str, str]]:
    server, _ = simulator_server
    tmp = tmp_path_factory.mktemp("front")
    for url in _start(tmp, request.param, server.url, f"127.0.0.1:{upstream.port}"):
        yield request.param, url


@pytest.fixture(name="front")
def _front(front_url: tuple[str, str], simulator: SimulatorState) -> Front:
    proxy, url = front_url
    return Front(proxy, url, simulator)


def _raw_get(url: str, target: str) -> tuple[int, bytes]:
    """``GET target`` written on the socket as it is; the status and the whole answer."""
    host, port = url.removeprefix("http://").split(":")
    request = f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request.encode("latin-1"))
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), answer


def _refused(response: httpx.Response, status: int, error: str | None) -> dict[str, str]:
    """The middleware's refusal, as the proxy passed it back."""
    assert response.status_code == status, response.text
    assert response.headers["cache-control"] == "no-store"
    if status == 503:
        assert response.json()["error"] == "temporarily_unavailable"
        return {}
    assert response.json()["error"] == error
    scheme, params = parse_challenge(response.headers["www-authenticate"])
    assert scheme == "DPoP" and params.get("error") == error
    return params


class TestThroughProxy:
    def test_right_token_reaches_the_api_with_its_identity(self, front: Front) -> None:
        """200 from the API, which received the token's subject, client id, scopes and
        the interaction id; the client gets the interaction id too."""
        signer = ProofSigner.generate("ES256")
        token = front.token(signer)
        response = httpx.get(front.url + "/accounts?page=2", headers=front.headers(signer, token))
        assert response.status_code == 200, response.text
        seen = parse_echo(response.text)
        assert seen["method"] == "GET" and seen["uri"] == "/accounts?page=2"
        assert seen["subject"] == "alice" and seen["scope"] == "read:accounts"
        assert seen["client_id"] and seen["interaction_id"]
        assert response.headers["x-fapi-interaction-id"] == seen["interaction_id"]
        # No proxy placeholder or empty copy leaks to the client.
        assert not any("{" in v for v in response.headers.values()), response.headers
        assert response.headers.get("dpop-nonce", "x") != ""

    def test_replay_is_refused(self, front: Front) -> None:
        signer = ProofSigner.generate("ES256")
        token = front.token(signer)
        headers = front.headers(signer, token)
        assert httpx.get(front.url + "/accounts", headers=headers).status_code == 200
        replay = httpx.get(front.url + "/accounts", headers=headers)
        _refused(replay, 401, "invalid_dpop_proof")
        assert "subject=" not in replay.text

    def test_wrong_key_is_refused(self, front: Front) -> None:
        token = front.token(ProofSigner.generate("ES256"))
        thief = front.headers(ProofSigner.generate("ES256"), token)
        _refused(httpx.get(front.url + "/accounts", headers=thief), 401, "invalid_dpop_proof")

    def test_missing_scope_is_403(self, front: Front) -> None:
        signer = ProofSigner.generate("ES256")
        token = front.token(signer)
        path = "/accounts/acc-1001/transactions"
        response = httpx.get(front.url + path, headers=front.headers(signer, token, path))
        params = _refused(response, 403, "insufficient_scope")
        assert params["scope"] == "read:transactions"

    def test_no_token_is_401_without_error(self, front: Front) -> None:
        response = httpx.get(front.url + "/accounts")
        assert response.status_code == 401
        assert response.headers["cache-control"] == "no-store"
        scheme, params = parse_challenge(response.headers["www-authenticate"])
        assert scheme == "DPoP" and "error" not in params

    def test_client_certificate_and_guard_headers_never_reach_the_api(self, front: Front) -> None:
        """Headers only a proxy or the guard may set (a client certificate, the guard's
        answer headers) are dropped on the way to the API, on public and protected paths."""
        forged = {
            "X-Client-Cert": "forged",
            "Client-Cert": ":Zm9yZ2Vk:",
            "X-Forwarded-Client-Cert": "Hash=forged",
            "X-Dpop-Guard-Status": "200",
            "X-Dpop-Guard-Body": "forged",
        }
        signer = ProofSigner.generate("ES256")
        token = front.token(signer)
        for headers in (forged, front.headers(signer, token) | forged):
            path = "/health" if headers is forged else "/accounts"
            seen = parse_echo(httpx.get(front.url + path, headers=headers).text)
            assert seen["client_cert"] == "" and seen["guard"] == "", seen

    @pytest.mark.parametrize(
        "spoof",
        ["X-Auth-Subject", "x-auth-subject", "X-AUTH-SUBJECT"],
    )
    def test_client_identity_headers_never_reach_the_api(self, front: Front, spoof: str) -> None:
        """On a public path (no identity) and on a protected one (the token's identity),
        the API never sees the client's own identity headers."""
        forged = {spoof: "mallory", "X-Auth-Scope": "admin", "X-Auth-Client-Id": "evil"}
        public = parse_echo(httpx.get(front.url + "/health", headers=forged).text)
        assert public["subject"] == "" and public["scope"] == "" and public["client_id"] == ""
        signer = ProofSigner.generate("ES256")
        token = front.token(signer)
        response = httpx.get(front.url + "/accounts", headers=front.headers(signer, token) | forged)
        seen = parse_echo(response.text)
        assert seen["subject"] == "alice" and seen["scope"] == "read:accounts"
        assert seen["client_id"] != "evil"

    @pytest.mark.parametrize(
        "spoof",
        [
            {"X-Original-URI": "/health", "X-Original-Method": "GET"},
            {"X-Forwarded-Uri": "/health", "X-Forwarded-Method": "GET"},
            {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"},
            {"X-Original-URI": "/health", "X-Forwarded-Uri": "/health", "Forwarded": "host=x"},
        ],
    )
    def test_client_original_request_headers_are_ignored(
        self, front: Front, spoof: dict[str, str]
    ) -> None:
        """A client naming another (public) target, method or host in the proxy's own
        headers: the proxy's values win, so the protected path stays protected, and a good
        request stays good (htu is the public URL's)."""
        response = httpx.request("DELETE", front.url + "/accounts", headers=spoof)
        assert response.status_code == 401, response.text
        signer = ProofSigner.generate("ES256")
        token = front.token(signer)
        ok = httpx.get(front.url + "/accounts", headers=front.headers(signer, token) | spoof)
        assert ok.status_code == 200, ok.text
        assert parse_echo(ok.text)["uri"] == "/accounts"

    @pytest.mark.parametrize(
        "target",
        [
            "/health/../accounts",
            "/health/%2e%2e/accounts",
            "/health%2F..%2Faccounts",
            "/health;x=1",
            "//health",
            "/health\\..\\accounts",
        ],
    )
    def test_a_target_routers_read_differently_never_passes(
        self, front: Front, target: str
    ) -> None:
        """Sent raw (no client library normalises it): refused, and never the API's answer."""
        status, body = _raw_get(front.url, target)
        assert status == 400, body
        assert b"subject=" not in body

    def test_authlete_down_is_503_never_a_pass(self, front: Front) -> None:
        signer = ProofSigner.generate("ES256")
        token = front.token(signer)
        front.simulator.set_fault("http_500")
        response = httpx.get(front.url + "/accounts", headers=front.headers(signer, token))
        _refused(response, 503, None)
        assert "subject=" not in response.text
        front.simulator.set_fault(None)
        again = httpx.get(front.url + "/accounts", headers=front.headers(signer, token))
        assert again.status_code == 200


@pytest.mark.parametrize("proxy", PROXIES)
def test_forward_auth_server_down_is_a_refusal(
    proxy: str, tmp_path: Path, upstream: ProxyProcess
) -> None:
    """Nothing listening where the forward-auth server should be: 5xx, never the API."""
    port = free_port()
    make = nginx if proxy == "nginx" else caddy
    dead = f"127.0.0.1:{free_port()}"
    with make(tmp_path, port=port, auth=dead, upstream=f"127.0.0.1:{upstream.port}"):
        response = httpx.get(f"http://127.0.0.1:{port}/health")
    assert response.status_code in (502, 503)
    assert "subject=" not in response.text


class Clock:
    """The forward-auth server's clock: real time plus an offset the test moves."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


NONCE_STEP = 60


@pytest.fixture(scope="module", name="nonce_front", params=PROXIES)
def _nonce_front(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    simulator_server: tuple[ServerThread, SimulatorState],
    upstream: ProxyProcess,
) -> Iterator[tuple[str, Clock]]:
    server, _ = simulator_server
    tmp = tmp_path_factory.mktemp("nonce")
    upstream_address = f"127.0.0.1:{upstream.port}"
    clock = Clock()
    extra = {"nonce": "required", "nonce_secret": "n" * 32, "nonce_step": str(NONCE_STEP)}
    for url in _start(tmp, request.param, server.url, upstream_address, clock, **extra):
        yield url, clock


def test_nonce_round_trip(nonce_front: tuple[str, Clock], simulator: SimulatorState) -> None:
    """Without a nonce: 401 use_dpop_nonce with DPoP-Nonce; with it: 200 from the API. A
    step later the nonce is still accepted, and the API's answer carries the next one."""
    url, clock = nonce_front
    clock.offset = 0.0
    front = Front("", url, simulator)
    signer = ProofSigner.generate("ES256")
    token = front.token(signer)
    first = httpx.get(url + "/accounts", headers=front.headers(signer, token))
    _refused(first, 401, "use_dpop_nonce")
    nonce = first.headers["dpop-nonce"]
    second = httpx.get(url + "/accounts", headers=front.headers(signer, token, nonce=nonce))
    assert second.status_code == 200, second.text
    assert parse_echo(second.text)["subject"] == "alice"
    assert "dpop-nonce" not in second.headers  # still current: nothing new to send
    clock.offset = NONCE_STEP
    later = front.headers(signer, token, nonce=nonce, iat=clock())
    third = httpx.get(url + "/accounts", headers=later)
    assert third.status_code == 200, third.text
    fresh = third.headers["dpop-nonce"]
    assert fresh and fresh != nonce
    fourth = httpx.get(
        url + "/accounts", headers=front.headers(signer, token, nonce=fresh, iat=clock())
    )
    assert fourth.status_code == 200, fourth.text
