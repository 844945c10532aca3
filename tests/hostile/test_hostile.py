"""The hostile corpus: every case in corpus.json through the middleware (in process, with
the Authlete simulator over real HTTP), in Authlete mode and in jwt mode (JWT access tokens
verified locally behind the cache, ``tests/_support/jwt_issuer.py``). Each asserts the
status, the challenge error and the internal reason; none may be answered 5xx, and no answer
may echo the token."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from dpop_guard.challenges import parse_challenge
from dpop_guard.client import ProofSigner
from dpop_guard.devtools.simulator import DEFAULT_SERVICE_TOKEN, SimulatorState
from tests._support.harness import Harness
from tests._support.hostile import CORPUS, Request
from tests._support.jwt_issuer import JWTHarness, JWTIssuer


@pytest.fixture(scope="module", name="keys")
def _keys() -> dict[str, ProofSigner]:
    return {
        alg: ProofSigner.generate(alg)
        for alg in ("ES256", "ES384", "PS256", "EdDSA", "Ed25519", "RS256")
    } | {"other": ProofSigner.generate("ES256")}


@pytest.fixture(name="harness", params=["authlete", "jwt"])
async def _harness(
    request: pytest.FixtureRequest, simulator: SimulatorState, simulator_url: str
) -> AsyncIterator[Harness]:
    """The guarded app in each mode; the JWT harness mints tokens through the same
    ``create_token`` arguments as the simulator."""
    if request.param == "jwt":
        jwt = JWTHarness(JWTIssuer())
        yield cast(Harness, jwt)
        await jwt.aclose()
        return
    harness = Harness(simulator, simulator_url)
    yield harness
    await harness.aclose()


@pytest.mark.parametrize("case", CORPUS, ids=[c["id"] for c in CORPUS])
async def test_hostile(
    case: dict[str, Any],
    harness: Harness,
    keys: dict[str, ProofSigner],
    reasons: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Refused with the expected status, challenge error and internal reason (or accepted,
    for the boundary cases), never a 5xx, never echoing the token."""
    request = Request(case, harness, keys)
    proof = await request.prepare()
    caplog.set_level(logging.DEBUG)
    before = len(reasons)
    response = await request.send(proof)
    jwt = isinstance(harness, JWTHarness)
    expect = case.get("expect_jwt", case["expect"]) if jwt else case["expect"]
    logged = caplog.text + json.dumps([str(r.__dict__) for r in caplog.records])
    for secret in (request.token, proof, proof.split(".")[-1], DEFAULT_SERVICE_TOKEN):
        if len(secret) >= 8:
            assert secret not in logged, "a token, proof or credential reached the log"
    assert response.status_code == expect["status"], (response.text, reasons[-3:])
    assert response.status_code < 500
    assert request.token not in response.text
    if expect["status"] == 200:
        assert len(reasons) == before
        return
    assert reasons[-1] == expect["reason"]
    assert response.headers["cache-control"] == "no-store"
    _, params = parse_challenge(response.headers["www-authenticate"])
    assert params.get("error") == expect["error"]
    assert params["algs"] == "ES256 PS256 EdDSA"


def test_corpus_size() -> None:
    """At least 100 hostile cases, each with a unique id."""
    ids = [c["id"] for c in CORPUS]
    assert len(ids) >= 100 and len(set(ids)) == len(ids)
