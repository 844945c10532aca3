"""The message-signing conformance cases (``dpop-guard conformance --httpsig-key``) against
the demo's accounts API built by ``from_env`` with ``DPOP_GUARD_HTTPSIG`` on, under real
uvicorn, with the Authlete simulator behind it: every case passes, GET and a POST with a
body. And the other way round: against the same API without message signing, the refusal
cases fail (a self-test that cannot fail proves nothing)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.routing import Route as HTTPRoute

from dpop_guard import from_env
from dpop_guard.client import ProofSigner
from dpop_guard.devtools._conformance_httpsig import HTTPSIG_CASES, run_httpsig_conformance
from dpop_guard.devtools.conformance import _private_jwk, main
from dpop_guard.devtools.demo import mint_token
from dpop_guard.devtools.demo.accounts import ROUTES, accounts, search
from dpop_guard.devtools.simulator import DEFAULT_SERVICE_ID, DEFAULT_SERVICE_TOKEN, SimulatorState
from dpop_guard.httpsig import SigningKey
from dpop_guard.replay import MemoryReplayStore
from tests._support.servers import ServerThread

pytestmark = pytest.mark.e2e

CLIENT_EC, SERVER_EC = (
    ec.generate_private_key(ec.SECP256R1()),
    ec.generate_private_key(ec.SECP256R1()),
)
CLIENT = SigningKey(CLIENT_EC, "conformance-client")
SERVER = SigningKey(SERVER_EC, "conformance-rs")
SIGNING = {
    "DPOP_GUARD_HTTPSIG": "/accounts=required /=off",
    "DPOP_GUARD_HTTPSIG_CLIENT_JWKS": json.dumps({"keys": [CLIENT.public_jwk()]}),
    "DPOP_GUARD_HTTPSIG_SIGNING_KEY": json.dumps(
        {**_private_jwk(ProofSigner(SERVER_EC)), "kid": SERVER.keyid}
    ),
}


async def mint(simulator_url: str, signer: ProofSigner) -> str:
    """A token for alice bound to ``signer`` (the simulator's ``/auth/token/create``)."""
    return await asyncio.to_thread(
        mint_token, simulator_url, signer, ["read:accounts"], lifetime=3600
    )


def _app(env: Mapping[str, str]) -> Starlette:
    guard = from_env(routes=ROUTES, environ=env)
    guard.replay_store = MemoryReplayStore(epoch=int(time.time()) - 3600)
    app = Starlette(
        routes=[
            HTTPRoute("/accounts", accounts),
            HTTPRoute("/accounts/search", search, methods=["POST"]),
        ],
        lifespan=guard.lifespan,
    )
    guard.install(app)
    return app


@pytest.fixture(name="apis", scope="module")
def _apis(simulator_server: tuple[ServerThread, SimulatorState]) -> Iterator[dict[str, str]]:
    server, _ = simulator_server
    env = {
        "AUTHLETE_BASE_URL": server.url,
        "AUTHLETE_API_VERSION": "V3",
        "AUTHLETE_SERVICE_APIKEY": DEFAULT_SERVICE_ID,
        "AUTHLETE_SERVICE_ACCESSTOKEN": DEFAULT_SERVICE_TOKEN,
        "DPOP_GUARD_PUBLIC_URL": "request",
    }
    with ServerThread(_app({**env, **SIGNING})) as signed, ServerThread(_app(env)) as plain:
        yield {"signed": signed.url, "plain": plain.url}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("GET", "/accounts", None), ("POST", "/accounts/search", b'{"currency": "EUR"}')],
)
async def test_every_case_passes_against_a_signing_api(
    apis: dict[str, str], simulator_url: str, method: str, path: str, body: bytes | None
) -> None:
    signer = ProofSigner.generate("ES256")
    outcomes = await run_httpsig_conformance(
        apis["signed"] + path,
        token=await mint(simulator_url, signer),
        signer=signer,
        key=CLIENT,
        response_keys={"keys": [SERVER.public_jwk()]},
        method=method,
        body=body,
    )
    assert [o.case for o in outcomes] == [c.name for c in HTTPSIG_CASES]
    assert all(o.passed for o in outcomes), outcomes
    body_case = next(o for o in outcomes if o.case == "HttpSigBodyChanged")
    assert (body_case.expected == "n/a") == (body is None)
    assert outcomes[0].detail == "answer verified"


async def test_the_refusal_cases_fail_against_an_api_without_signing(
    apis: dict[str, str], simulator_url: str
) -> None:
    signer = ProofSigner.generate("ES256")
    outcomes = await run_httpsig_conformance(
        apis["plain"] + "/accounts/search",
        token=await mint(simulator_url, signer),
        signer=signer,
        key=CLIENT,
        method="POST",
        body=b'{"currency": "EUR"}',
    )
    by_case = {o.case: o for o in outcomes}
    assert by_case["HttpSigCorrectRequest"].passed
    assert by_case["HttpSigCorrectRequest"].detail == "answer not checked"
    refusals = [o for o in outcomes if o.expected == "refuse"]
    assert refusals and not any(o.passed for o in refusals), outcomes
    # and a client that expects signed answers fails the accepted cases there
    verifying = await run_httpsig_conformance(
        apis["plain"] + "/accounts",
        token=await mint(simulator_url, signer),
        signer=signer,
        key=CLIENT,
        response_keys={"keys": [SERVER.public_jwk()]},
    )
    correct = next(o for o in verifying if o.case == "HttpSigCorrectRequest")
    assert not correct.passed and correct.detail == "the answer's signature: signature_missing"


async def test_the_command_line(
    apis: dict[str, str], simulator_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signer = ProofSigner.generate("ES256")
    (tmp_path / "token").write_text(await mint(simulator_url, signer))
    (tmp_path / "dpop.json").write_text(json.dumps(_private_jwk(signer)))
    private = {**_private_jwk(ProofSigner(CLIENT_EC)), "kid": CLIENT.keyid}
    (tmp_path / "sig.json").write_text(json.dumps(private))
    (tmp_path / "rs.json").write_text(json.dumps({"keys": [SERVER.public_jwk()]}))
    argv = [
        f"{apis['signed']}/accounts/search",
        "--token-file",
        str(tmp_path / "token"),
        "--key",
        str(tmp_path / "dpop.json"),
        "--httpsig-key",
        str(tmp_path / "sig.json"),
        "--httpsig-server-jwks",
        str(tmp_path / "rs.json"),
        "--method",
        "POST",
        "--body",
        '{"currency": "GBP"}',
        "--json",
    ]
    # The CLI runs its own event loop: from a worker thread, not this test's loop.
    code = await asyncio.to_thread(main, argv)
    printed = json.loads(capsys.readouterr().out)
    assert code == 0, printed
    assert [o["case"] for o in printed] == [c.name for c in HTTPSIG_CASES]
    (tmp_path / "sig.json").write_text(json.dumps({"kty": "EC", "kid": "x"}))
    with pytest.raises(SystemExit) as exited:
        await asyncio.to_thread(main, argv)
    assert exited.value.code == 2
    assert "--httpsig-key/--httpsig-server-jwks: not usable" in capsys.readouterr().err
