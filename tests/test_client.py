"""The client helpers: ProofSigner and the httpx DPoPAuth."""

from __future__ import annotations

import httpx
import pytest

from dpop_guard.client import DPoPAuth, ProofSigner
from dpop_guard.proof import verify_proof


class TestProofSigner:
    @pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512", "PS256", "RS256", "EdDSA"])
    def test_sign_verifies(self, alg: str) -> None:
        """Every proof the signer makes passes our verifier."""
        from dpop_guard.settings import ProofPolicy

        signer = ProofSigner.generate(alg)
        proof = signer.sign(htm="POST", htu="https://rs/x", access_token="t", nonce="n", iat=100)
        result = verify_proof(
            proof,
            method="POST",
            url="https://rs/x",
            access_token="t",
            now=100,
            policy=ProofPolicy(algorithms=(alg,)),
        )
        assert result.jkt == signer.jkt and result.nonce == "n"

    def test_from_jwk(self) -> None:
        """A private JWK round-trips into a signer with the same thumbprint."""
        from joserfc import jwk

        key = jwk.ECKey.generate_key("P-256")
        signer = ProofSigner.from_jwk(key.as_dict(private=True))
        assert signer.jkt == key.thumbprint() and signer.alg == "ES256"

    def test_unsupported(self) -> None:
        """Unknown algorithms and key types are refused."""
        for alg in ("HS256", "ES999", "PS1"):
            with pytest.raises(ValueError):
                ProofSigner.generate(alg)
        from joserfc import jwk

        with pytest.raises(ValueError):
            ProofSigner.from_jwk(jwk.OctKey.generate_key(256).as_dict(private=True))


class TestDPoPAuth:
    async def test_headers_and_nonce_retry(self) -> None:
        """Authorization and a fresh proof per request; one retry on use_dpop_nonce, with the
        nonce remembered for the origin."""
        signer = ProofSigner.generate("ES256")
        seen: list[dict[str, str]] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(dict(request.headers))  # a copy: the retry reuses the request
            if len(seen) == 1:
                return httpx.Response(
                    401,
                    headers={"WWW-Authenticate": 'DPoP error="use_dpop_nonce"', "DPoP-Nonce": "n1"},
                )
            return httpx.Response(200)

        auth = DPoPAuth(signer, "tok")
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler), auth=auth) as client:
            assert (await client.get("https://rs.test/accounts?x=1")).status_code == 200
            await client.get("https://rs.test/accounts")
        assert len(seen) == 3
        proofs = [
            verify_proof(
                r["dpop"],
                method="GET",
                url="https://rs.test/accounts",
                access_token="tok",
                now=int(__import__("time").time()),
            )
            for r in seen
        ]
        assert [p.nonce for p in proofs] == [None, "n1", "n1"]
        assert len({p.jti for p in proofs}) == 3
        assert all(r["authorization"] == "DPoP tok" for r in seen)

    async def test_no_retry_without_nonce_challenge(self) -> None:
        """A plain 401 is returned as is."""
        calls: list[int] = []

        def handler(request: httpx.Request) -> httpx.Response:
            calls.append(1)
            return httpx.Response(401, headers={"WWW-Authenticate": 'DPoP error="invalid_token"'})

        auth = DPoPAuth(ProofSigner.generate("ES256"), "tok")
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler), auth=auth) as client:
            assert (await client.get("https://rs.test/")).status_code == 401
        assert calls == [1]
