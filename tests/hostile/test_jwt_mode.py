"""The hostile corpus and the hit-path equivalence matrix in ``jwt`` mode: the same cases as
``test_hostile.py`` and ``test_hit_path_equivalence.py``, against JWT access tokens verified
locally behind the binding-safe cache (a hit verifies the proof alone). The answers are the
same but for the token's own refusals, which name the JWT validator's reasons."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from dpop_guard.challenges import parse_challenge
from dpop_guard.client import ProofSigner
from dpop_guard.testing import make_proof
from tests._support.harness import ORIGIN, Harness, assert_rejected
from tests._support.jwt_issuer import JWTHarness, JWTIssuer
from tests.hostile.test_hit_path_equivalence import MATRIX
from tests.hostile.test_hostile import CORPUS, Request

# What a JWT-mode guard answers where the corpus expects Authlete's verdict on the token.
JWT_EXPECT: dict[str, dict[str, Any]] = {
    # Not three segments: refused before any key is looked up.
    "unknown token": {"status": 401, "error": "invalid_token", "reason": "jwt_malformed"},
    # One second past exp: within the validator's leeway, refused by the expiry check
    # every request (hit or miss) makes.
    "expired token": {"status": 401, "error": "invalid_token", "reason": "token_expired"},
    # The token states its key (cnf.jkt): refused locally, cold cache or warm, where
    # Authlete's own binding check answers the cold case.
    "proof from another key, cold cache": {
        "status": 401,
        "error": "invalid_dpop_proof",
        "reason": "jkt_mismatch",
    },
}


@pytest.fixture(scope="module", name="keys")
def _keys() -> dict[str, ProofSigner]:
    return {
        alg: ProofSigner.generate(alg)
        for alg in ("ES256", "ES384", "PS256", "EdDSA", "Ed25519", "RS256")
    } | {"other": ProofSigner.generate("ES256")}


@pytest.fixture(name="jh")
async def _jh() -> AsyncIterator[JWTHarness]:
    harness = JWTHarness(JWTIssuer())
    yield harness
    await harness.aclose()


@pytest.mark.parametrize("case", CORPUS, ids=[c["id"] for c in CORPUS])
async def test_hostile_in_jwt_mode(
    case: dict[str, Any],
    jh: JWTHarness,
    keys: dict[str, ProofSigner],
    reasons: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each corpus case: the expected status, challenge error and internal reason, never
    a 5xx, never the token or the proof in the log or the answer."""
    request = Request(case, cast(Harness, jh), keys)
    sequence = case.get("sequence")
    proof = request.proof()
    if sequence == "replay":
        assert (await request.send(proof)).status_code == 200
    elif sequence == "replay_after_binding_failure":
        assert (await request.send(proof)).status_code == 401
        assert (await request.send(request.proof(request.owner, plain=True))).status_code == 200
    elif sequence == "warm_cache":
        assert (await request.send(request.proof(request.owner, plain=True))).status_code == 200
        assert jh.cache is not None and jh.cache.peek(request.token) is not None
    caplog.set_level(logging.DEBUG)
    before = len(reasons)
    response = await request.send(proof)
    expect = JWT_EXPECT.get(case["id"], case["expect"])
    logged = caplog.text + json.dumps([str(r.__dict__) for r in caplog.records])
    for secret in (request.token, proof, proof.split(".")[-1]):
        if len(secret) >= 8:
            assert secret not in logged, "a token or proof reached the log"
    assert response.status_code == expect["status"], (response.text, reasons[-3:])
    assert request.token not in response.text
    if expect["status"] == 200:
        assert len(reasons) == before
        return
    assert reasons[-1] == expect["reason"]
    assert response.headers["cache-control"] == "no-store"
    _, params = parse_challenge(response.headers["www-authenticate"])
    assert params.get("error") == expect["error"]
    assert params["algs"] == "ES256 PS256 EdDSA"


@pytest.mark.parametrize("warm", [False, True], ids=["miss", "hit"])
@pytest.mark.parametrize(("authorization", "dpop", "status", "error", "reason"), MATRIX)
async def test_repeated_header_matrix_in_jwt_mode(
    jh: JWTHarness,
    signer: ProofSigner,
    reasons: list[str],
    authorization: tuple[str, ...],
    dpop: tuple[str, ...],
    status: int,
    error: str | None,
    reason: str | None,
    warm: bool,
) -> None:
    """Each mix of Authorization and DPoP headers gets the same answer in jwt mode as in
    the others, whether the token is already cached (hit) or not (miss)."""
    token = jh.token(signer)
    if warm:
        assert (await jh.call(token, signer)).status_code == 200
    auths = [("Authorization", v.replace(" B", f" {token}")) for v in authorization]
    proofs = [
        ("DPoP", make_proof(signer, htm="GET", htu=ORIGIN + "/accounts", access_token=token))
        if v == "P"
        else ("DPoP", v)
        for v in dpop
    ]
    response = await jh.client.get("/accounts", headers=[*auths, *proofs])
    if reason is None:
        assert response.status_code == 200, response.text
    else:
        assert_rejected(response, status, error, reason, reasons)
