"""The one table of cases every framework and every server runs, and the helpers that run it.

Each case is data: what the client sends (its own key or another's, a proof used twice, a
path that needs a scope the token lacks) and what must come back (status, challenge
``error``, the middleware's logged ``reason``). A case whose refusal is the framework's own
(a FastAPI ``Security`` dependency, a Litestar guard) expects no middleware reason: that
shows the framework, not a path rule, enforced the scope.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from dpop_guard import DPoPGuard, Route, from_env, parse_challenge
from dpop_guard.client import DPoPAuth, ProofSigner
from dpop_guard.devtools.demo import mint_token, simulator_env
from dpop_guard.devtools.simulator import SimulatorState
from tests._support.servers import ServerThread

__all__ = [
    "CASES",
    "SERVER_CASES",
    "Case",
    "Enforcer",
    "app_environ",
    "build_guard",
    "case_ids",
    "check_case",
    "check_websocket_refused",
]

Enforcer = Literal["middleware", "framework", "helper"]
"""Who checks the scopes: the middleware's path rules, the framework's own idiom (a
Litestar guard), or dpop_guard's endpoint helper (FastAPI's ``DPoPSecurity``), which
logs its refusal as the middleware does."""


@dataclass(frozen=True)
class Case:
    """One request and what it must earn.

    :param key: ``own`` signs with the key the token is bound to, ``other`` with a stranger's.
    :param replay: send the same proof twice; the second answer is the one checked.
    :param reason: the middleware's internal reason; ``None`` when it must not refuse.
    """

    name: str
    path: str
    status: int
    error: str | None = None
    reason: str | None = None
    key: Literal["own", "other"] = "own"
    replay: bool = False


GOOD = Case("good", "/accounts", 200)
REPLAYED = Case("replayed", "/accounts", 401, "invalid_dpop_proof", "jti_replayed", replay=True)
# Authlete (here its simulator) checks the binding itself when it is sent the proof, so the
# refusal is its answer to the introspection call.
ANOTHER_KEY = Case(
    "another_key", "/accounts", 401, "invalid_dpop_proof", "authlete_unauthorized", key="other"
)
# The token carries read:accounts only; /accounts/transactions needs read:transactions.
# Under a path rule the reworked shell checks the scopes itself (``scope_missing``); before
# it, the middleware sends them to Authlete, which refuses (``authlete_forbidden``).
MISSING_SCOPE = Case(
    "missing_scope",
    "/accounts/transactions",
    403,
    "insufficient_scope",
    "scope_missing",
)
CASES = (GOOD, REPLAYED, ANOTHER_KEY, MISSING_SCOPE)
SERVER_CASES = (GOOD, REPLAYED, ANOTHER_KEY)
TOKEN_SCOPES = ["read:accounts"]


def routes(enforcer: Enforcer) -> tuple[Route, ...]:
    """The path rules: with ``framework``, only authentication is left to the middleware
    and the app's own idiom checks the scopes."""
    if enforcer != "middleware":
        return ()
    return (
        Route("/accounts/transactions", scopes=("read:transactions",)),
        Route("/accounts", scopes=("read:accounts",)),
    )


def app_environ(simulator_url: str) -> dict[str, str]:
    """The environment that points an app at the simulator, with our caching defaults."""
    return simulator_env(simulator_url)


def build_guard(environ: Mapping[str, str] | None, enforcer: Enforcer) -> DPoPGuard:
    """The guard every app uses, from ``environ`` (``os.environ`` under a server process)."""
    return from_env(routes=routes(enforcer), environ=os.environ if environ is None else environ)


def _challenge_error(response: httpx.Response) -> str | None:
    challenge = response.headers.get("www-authenticate")
    if challenge is None:
        return None
    scheme, params = parse_challenge(challenge)
    assert scheme == "DPoP", challenge
    return params.get("error")


async def check_case(
    case: Case,
    *,
    base_url: str,
    simulator_url: str,
    enforcer: Enforcer = "middleware",
    reasons: list[str] | None = None,
) -> httpx.Response:
    """Run ``case`` against the app at ``base_url`` and assert its answer; ``reasons`` (the
    conftest fixture) is checked when the server runs in this process."""
    signer = ProofSigner.generate("ES256")
    token = mint_token(simulator_url, signer, TOKEN_SCOPES, lifetime=600)
    sender = signer if case.key == "own" else ProofSigner.generate("ES256")
    async with httpx.AsyncClient(base_url=base_url) as client:
        if case.replay:
            proof = sender.sign(htm="GET", htu=base_url + case.path, access_token=token)
            headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
            first = await client.get(case.path, headers=headers)
            assert first.status_code == 200, first.text
            if reasons is not None:
                reasons.clear()
            response = await client.get(case.path, headers=headers)
        else:
            response = await client.get(case.path, auth=DPoPAuth(sender, token))
    assert response.status_code == case.status, response.text
    if case.status == 200:
        # The handler read the subject from our credentials through the framework.
        assert response.json() == {"subject": "alice"}
    else:
        assert _challenge_error(response) == case.error, response.headers.get("www-authenticate")
        assert response.headers["cache-control"] == "no-store"
    if reasons is not None:
        # Where the framework's own idiom enforces the scope, the middleware let it
        # through and nothing of dpop_guard's logged the refusal.
        by_framework = case is MISSING_SCOPE and enforcer == "framework"
        assert reasons == ([case.reason] if case.reason and not by_framework else [])
    return response


async def check_websocket_refused(
    base_url: str, *, path: str = "/ws", reasons: list[str] | None = None
) -> None:
    """A websocket handshake without credentials must never reach the app's ``accept``.

    uvicorn, hypercorn and granian all offer the ``websocket.http.response`` extension, so
    the refusal must be the middleware's own HTTP answer: 401 with a ``DPoP`` challenge
    (a 403 would be a close before accept, a 500 the app failing on a scope it cannot serve:
    Django refuses websockets by raising).
    """
    url = base_url.replace("http://", "ws://", 1) + path
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, proxy=None, open_timeout=10) as ws:
            await ws.recv()  # pragma: no cover - reached only when the app accepted
    response = refused.value.response
    assert response.status_code == 401, response.status_code
    challenge = response.headers.get("www-authenticate", "")
    assert parse_challenge(challenge)[0] == "DPoP", challenge
    assert "date" in response.headers  # each of the three servers adds one to a denial too
    if reasons is not None:
        assert reasons == ["authorization_missing"]


def case_ids(cases: Sequence[Case]) -> list[str]:
    return [case.name for case in cases]


class FrameworkCases:
    """The shared cases as tests, in front of one framework's app under uvicorn in a
    thread. A module per framework subclasses it naming the app's module (imported only
    when that class runs, so a framework's import cost stays in its own tests) and who
    enforces scopes there."""

    app_module: ClassVar[str]
    enforcer: ClassVar[Enforcer]

    @pytest.fixture(name="server", scope="class")
    @classmethod
    def _server(
        cls, simulator_server: tuple[ServerThread, SimulatorState]
    ) -> Iterator[ServerThread]:
        create_app = importlib.import_module(cls.app_module).create_app
        with ServerThread(create_app(app_environ(simulator_server[0].url))) as server:
            yield server

    @pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
    async def test_case(
        self, case: Case, server: ServerThread, simulator_url: str, reasons: list[str]
    ) -> None:
        """Each shared case earns its status, challenge error and reason."""
        await check_case(
            case,
            base_url=server.url,
            simulator_url=simulator_url,
            enforcer=self.enforcer,
            reasons=reasons,
        )

    async def test_websocket_refused_without_credentials(
        self, server: ServerThread, reasons: list[str]
    ) -> None:
        """A handshake without credentials is refused by the middleware, never accepted."""
        await check_websocket_refused(server.url, reasons=reasons)
