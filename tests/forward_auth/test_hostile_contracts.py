"""The middleware's hostile corpus through the check requests Traefik and Envoy make
(not in Debian's archive, so not run end to end): each client request becomes the check
request the shipped traefik-dynamic.yml or envoy.yaml sends (only the headers they pass,
the contract's headers set by the proxy), and must get its in-process verdict."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from dpop_guard.challenges import parse_challenge
from dpop_guard.client import ProofSigner
from dpop_guard.devtools.simulator import SimulatorState, create_simulator_app
from dpop_guard.forward_auth import create_app
from dpop_guard.replay import MemoryReplayStore
from tests._support.harness import ORIGIN
from tests._support.hostile import CORPUS, Request
from tests._support.servers import ServerThread

from ._support import ROUTES, environment

PROXY_PEER = ("127.0.0.1", 40000)
# traefik-dynamic.yml's authRequestHeaders; envoy.yaml's allowed_headers (with Envoy's own
# Authorization and Host).
TRAEFIK_SENDS = (b"authorization", b"dpop", b"x-fapi-interaction-id")
ENVOY_SENDS = (b"authorization", b"dpop", b"x-fapi-interaction-id")


def _traefik(request: httpx.Request) -> httpx.Request:
    kept = [(k, v) for k, v in request.headers.raw if k.lower() in TRAEFIK_SENDS]
    return httpx.Request(
        "GET",
        "http://auth.internal/",
        headers=[
            *kept,
            (b"X-Forwarded-Method", request.method.encode()),
            (b"X-Forwarded-Proto", b"https"),
            (b"X-Forwarded-Host", request.url.netloc),
            (b"X-Forwarded-Uri", request.url.raw_path),
            (b"X-Forwarded-For", b"203.0.113.9"),
        ],
    )


def _envoy(request: httpx.Request) -> httpx.Request:
    kept = [(k, v) for k, v in request.headers.raw if k.lower() in ENVOY_SENDS]
    url = httpx.URL(f"http://{request.url.netloc.decode()}").copy_with(
        raw_path=b"/check" + request.url.raw_path
    )
    return httpx.Request(request.method, url, headers=[*kept, (b"x-forwarded-proto", b"https")])


class CheckRequests(httpx.AsyncBaseTransport):
    """A client's request, made into the proxy's check request to the forward-auth app."""

    def __init__(self, app: Any, translate: Callable[[httpx.Request], httpx.Request]) -> None:
        self.inner = httpx.ASGITransport(app=app, client=PROXY_PEER)
        self.translate = translate

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.inner.handle_async_request(self.translate(request))


class ContractHarness:
    def __init__(self, simulator: SimulatorState, client: httpx.AsyncClient) -> None:
        self.simulator = simulator
        self.client = client


@pytest.fixture(scope="module", name="keys")
def _keys() -> dict[str, ProofSigner]:
    return {
        alg: ProofSigner.generate(alg)
        for alg in ("ES256", "ES384", "PS256", "EdDSA", "Ed25519", "RS256")
    } | {"other": ProofSigner.generate("ES256")}


@pytest.fixture(scope="module", name="proxy_simulator", params=["traefik", "envoy"])
def _proxy_simulator(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[str, ServerThread, SimulatorState]]:
    """A simulator of the proxy's own: the corpus has fixed jtis, which it remembers."""
    state = SimulatorState()
    with ServerThread(create_simulator_app(state)) as server:
        yield request.param, server, state


@pytest.fixture(name="harness")
async def _harness(
    proxy_simulator: tuple[str, ServerThread, SimulatorState],
) -> AsyncIterator[ContractHarness]:
    proxy, server, simulator = proxy_simulator
    app: Any = create_app(
        routes=ROUTES,
        environ=environment(server.url, proxy, ORIGIN),
        replay_store=MemoryReplayStore(epoch=int(time.time()) - 3600),
    )
    transport = CheckRequests(app, _traefik if proxy == "traefik" else _envoy)
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
        yield ContractHarness(simulator, client)
    await app.guard.aclose()


@pytest.mark.parametrize("case", CORPUS, ids=[c["id"] for c in CORPUS])
async def test_hostile_through_check_requests(
    case: dict[str, Any],
    harness: ContractHarness,
    keys: dict[str, ProofSigner],
    reasons: list[str],
) -> None:
    """The in-process verdict (status, challenge error, reason), through the check request."""
    request = Request(case, harness, keys)
    proof = await request.prepare()
    before = len(reasons)
    response = await request.send(proof)
    expect = case["expect"]
    assert response.status_code == expect["status"], (response.text, reasons[-3:])
    if expect["status"] == 200:
        assert len(reasons) == before
        assert response.headers["x-auth-subject"] == "alice"
        return
    assert reasons[-1] == expect["reason"]
    assert response.headers["cache-control"] == "no-store"
    assert response.headers.get("x-auth-subject") is None
    _, params = parse_challenge(response.headers["www-authenticate"])
    assert params.get("error") == expect["error"]
    assert params["algs"] == "ES256 PS256 EdDSA"
