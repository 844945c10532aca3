"""The middleware's hostile corpus (tests/hostile/corpus.json) through nginx and Caddy with
the shipped configurations and the forward-auth server: every case gets the verdict it gets
in process (status, challenge error, internal reason), or is refused by the proxy itself
before the forward-auth server sees it (a header over the proxy's own size limit). None
reaches the API unless the middleware accepts it too."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest

from dpop_guard.challenges import parse_challenge
from dpop_guard.client import ProofSigner
from dpop_guard.devtools.demo._nginx import ProxyProcess
from dpop_guard.devtools.simulator import SimulatorState, create_simulator_app
from dpop_guard.replay import MemoryReplayStore
from tests._support.harness import ORIGIN
from tests._support.hostile import CORPUS, Request
from tests._support.servers import ServerThread

from ._servers import ForwardAuthServer, caddy, echo_upstream, free_port, nginx, parse_echo
from ._support import ROUTES, environment

pytestmark = pytest.mark.e2e

PROXIES = ("nginx", "caddy")
PROXY_LIMITS = {
    # Over the shipped large_client_header_buffers (16 KB a line): nginx's own 400.
    ("nginx", "200 KB proof"): 400,
    # nginx refuses a repeated Authorization header itself ("duplicate header line").
    ("nginx", "two Authorization headers"): 400,
    ("nginx", "DPoP and Bearer Authorization"): 400,
}
"""Cases a proxy refuses itself, by case id, with the status it answers: each is a
refusal in process too, and the proxy's answer is not the API's."""


@pytest.fixture(scope="module", name="keys")
def _keys() -> dict[str, ProofSigner]:
    return {
        alg: ProofSigner.generate(alg)
        for alg in ("ES256", "ES384", "PS256", "EdDSA", "Ed25519", "RS256")
    } | {"other": ProofSigner.generate("ES256")}


@pytest.fixture(scope="module", name="upstream")
def _upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    with echo_upstream(tmp_path_factory.mktemp("upstream")) as process:
        yield process


@dataclass
class Front:
    """A proxy, its URL, and the simulator of its own (the corpus has fixed jtis, which
    the simulator remembers: one simulator per proxy, as one per in-process run)."""

    proxy: str
    url: str
    simulator: SimulatorState


@pytest.fixture(scope="module", name="front", params=PROXIES)
def _front(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    upstream: ProxyProcess,
) -> Iterator[Front]:
    """A proxy on a free port; the public URL is the corpus's origin, as in process."""
    proxy = request.param
    port = free_port()
    state = SimulatorState()
    with ServerThread(create_simulator_app(state)) as simulator:
        env = environment(simulator.url, proxy, ORIGIN)
        # As the in-process harness: a store standing in for a process up for an hour.
        store = MemoryReplayStore(epoch=int(time.time()) - 3600)
        with ForwardAuthServer(env, ROUTES, replay_store=store) as auth:
            make = nginx if proxy == "nginx" else caddy
            tmp = tmp_path_factory.mktemp(proxy)
            address = f"127.0.0.1:{upstream.port}"
            with make(tmp, port=port, auth=auth.address, upstream=address):
                yield Front(proxy, f"http://127.0.0.1:{port}", state)


@dataclass
class ProxyHarness:
    """What :class:`tests._support.hostile.Request` needs: the simulator, and a client
    into the proxy."""

    simulator: SimulatorState
    client: httpx.AsyncClient


@pytest.fixture(name="harness")
async def _harness(front: Front) -> AsyncIterator[ProxyHarness]:
    front.simulator.accept_unbound_with_proof = True
    async with httpx.AsyncClient(base_url=front.url) as client:
        yield ProxyHarness(front.simulator, client)


@pytest.mark.parametrize("case", CORPUS, ids=[c["id"] for c in CORPUS])
async def test_hostile_through_proxy(
    case: dict[str, object],
    harness: ProxyHarness,
    front: Front,
    keys: dict[str, ProofSigner],
    reasons: list[str],
) -> None:
    """The in-process verdict (status, challenge error, reason), through the proxy."""
    proxy = front.proxy
    request = Request(case, harness, keys)
    proof = await request.prepare()
    before = len(reasons)
    response = await request.send(proof)
    expect: dict[str, object] = case["expect"]  # type: ignore[assignment]
    limit = PROXY_LIMITS.get((proxy, str(case["id"])))
    if limit is not None:
        assert response.status_code == limit and len(reasons) == before
        return
    assert response.status_code == expect["status"], (response.text, reasons[-3:])
    assert request.token not in response.text
    if expect["status"] == 200:
        assert len(reasons) == before
        assert parse_echo(response.text)["subject"] == "alice"
        return
    assert "subject=" not in response.text  # the API never answered
    assert reasons[-1] == expect["reason"]
    assert response.headers["cache-control"] == "no-store"
    _, params = parse_challenge(response.headers["www-authenticate"])
    assert params.get("error") == expect["error"]
    assert response.json()["error"] == (expect["error"] or "authentication_required")
    assert params["algs"] == "ES256 PS256 EdDSA"


def test_proxy_limits_name_real_refusals() -> None:
    """Every case excepted above exists and is refused in process too (a renamed case
    cannot hide a difference, and no proxy refuses what the guard accepts)."""
    by_id = {c["id"]: c for c in CORPUS}
    for _, case_id in PROXY_LIMITS:
        assert by_id[case_id]["expect"]["status"] >= 400
