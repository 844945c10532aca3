"""The Node.js peers the JWT-mode benchmark compares with (``benchmarks/node``) make the
checks they are credited with: a fresh proof for the token passes; a replayed proof, a proof
from another key, for another URL or without ``ath``, and a tampered token are refused. (A
peer that skipped a check would be a faster, unfair baseline.)"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from benchmarks.node_peers import NODE_DIR, PEERS, JWTIssuer, jwt_issuer, node
from dpop_guard.client import ProofSigner
from dpop_guard.devtools.demo import free_port
from dpop_guard.devtools.demo import process as serve
from dpop_guard.testing import DELETE, make_proof

pytestmark = pytest.mark.slow
AUDIENCE = "http://rs.bench.test"
SIGNER = ProofSigner.generate("ES256")


@pytest.fixture(scope="module", name="issuer")
def _issuer() -> Iterator[JWTIssuer]:
    if shutil.which("node") is None:
        pytest.fail("node and npm are needed (Debian: apt-get install nodejs npm)")
    with jwt_issuer(free_port(), audience=AUDIENCE, jkt=SIGNER.jkt) as issuer:
        yield issuer


@pytest.fixture(scope="module", name="peer", params=sorted(PEERS))
def _peer(request: pytest.FixtureRequest, issuer: JWTIssuer) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, **issuer.node_env(AUDIENCE))
    command = [node(), PEERS[request.param], str(port)]
    with serve(command, env, f"{url}/health", cwd=str(NODE_DIR)):
        yield url


def send(url: str, token: str, proof: str) -> httpx.Response:
    return httpx.get(f"{url}/accounts", headers={"Authorization": f"DPoP {token}", "DPoP": proof})


def proof_for(token: str, signer: ProofSigner = SIGNER, **kwargs: Any) -> str:
    return make_proof(signer, htu=AUDIENCE + "/accounts", access_token=token, **kwargs)


def test_fresh_proof_passes_and_replay_is_refused(peer: str, issuer: JWTIssuer) -> None:
    proof = proof_for(issuer.token)
    assert send(peer, issuer.token, proof).status_code == 200
    assert send(peer, issuer.token, proof).status_code == 401


@pytest.mark.parametrize(
    "variant", ["other key", "other htu", "other htm", "no ath", "tampered token"]
)
def test_refusals(peer: str, issuer: JWTIssuer, variant: str) -> None:
    token = issuer.token
    if variant == "other key":
        proof = proof_for(token, ProofSigner.generate("ES256"))
    elif variant == "other htu":
        proof = make_proof(SIGNER, htu=AUDIENCE + "/other", access_token=token)
    elif variant == "other htm":
        proof = proof_for(token, claims={"htm": "POST"})
    elif variant == "no ath":
        proof = proof_for(token, claims={"ath": DELETE})
    else:
        header, payload, signature = token.split(".")
        token = f"{header}.{payload}.{signature[:-4]}AAAA"
        proof = proof_for(token)
    assert send(peer, token, proof).status_code == 401
