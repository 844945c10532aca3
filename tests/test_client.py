"""The client helpers: ProofSigner, the httpx DPoPAuth and the FAPI 2.0 client."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from dpop_guard.client import (
    PKCE,
    AuthorizationServerMetadata,
    DPoPAuth,
    FAPIClient,
    OAuthError,
    ProofSigner,
    PushedAuthorization,
    client_assertion,
)
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


ISSUER = "https://as.test"
METADATA = {
    "issuer": ISSUER,
    "authorization_endpoint": f"{ISSUER}/authorize",
    "token_endpoint": f"{ISSUER}/token",
    "pushed_authorization_request_endpoint": f"{ISSUER}/par",
    "authorization_response_iss_parameter_supported": True,
}


def claims_of(jwt: str) -> dict[str, Any]:
    segment = jwt.split(".")[1]
    value: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return value


class TestPKCE:
    def test_rfc7636_vector(self) -> None:
        """RFC 7636 Appendix B: the verifier's S256 challenge."""
        pkce = PKCE.from_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        assert pkce.challenge == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        assert pkce.method == "S256"

    def test_generated(self) -> None:
        """A generated verifier is fresh, within the length bounds, and matches."""
        first, second = PKCE.generate(), PKCE.generate()
        assert first.verifier != second.verifier and 43 <= len(first.verifier) <= 128
        assert PKCE.from_verifier(first.verifier) == first

    def test_length_bounds(self) -> None:
        """Verifiers outside 43..128 characters are refused."""
        for verifier in ("a" * 42, "a" * 129):
            with pytest.raises(ValueError):
                PKCE.from_verifier(verifier)


class TestClientAssertion:
    @pytest.mark.parametrize("alg", ["PS256", "ES256", "EdDSA"])
    def test_claims_and_signature(self, alg: str, signers: dict[str, ProofSigner]) -> None:
        """iss = sub = client_id, aud, fresh jti, iat = nbf = now, exp bounded; it
        verifies with the client's public key."""
        from joserfc import jwk, jws

        signer = signers[alg]
        token = client_assertion(signer, client_id="c1", audience=ISSUER, now=1000, kid="k1")
        verified = jws.deserialize_compact(
            token,
            jwk.import_key(dict(signer.public_jwk)),
            registry=jws.JWSRegistry(algorithms=[alg]),
        )
        assert verified.protected == {"alg": alg, "typ": "JWT", "kid": "k1"}
        claims = json.loads(verified.payload)
        assert claims.pop("jti")
        assert claims == {
            "iss": "c1",
            "sub": "c1",
            "aud": ISSUER,
            "iat": 1000,
            "nbf": 1000,
            "exp": 1060,
        }
        again = client_assertion(signer, client_id="c1", audience=ISSUER, now=1000)
        assert claims_of(again)["jti"] != claims_of(token)["jti"]


class TestMetadata:
    def test_issuer_must_match(self) -> None:
        """A document for another issuer is refused (RFC 8414 §3.3)."""
        with pytest.raises(OAuthError, match="issuer"):
            AuthorizationServerMetadata.from_document(METADATA, issuer="https://other.test")

    def test_par_endpoint_required(self) -> None:
        """No PAR endpoint, no FAPI 2.0."""
        document = {k: v for k, v in METADATA.items() if not k.startswith("pushed")}
        with pytest.raises(OAuthError, match="pushed_authorization_request_endpoint"):
            AuthorizationServerMetadata.from_document(document, issuer=ISSUER)

    async def test_well_known_path_for_issuer_with_path(self) -> None:
        """The well-known segment goes before the issuer's path (RFC 8414 §3.1)."""
        issuer = "https://as.test/tenant"
        asked: list[str] = []

        def handler(request: httpx.Request) -> httpx.Response:
            asked.append(str(request.url))
            return httpx.Response(200, json={**METADATA, "issuer": issuer})

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            client = await FAPIClient.discover(
                http,
                issuer,
                client_id="c1",
                client_key=ProofSigner.generate("ES256"),
                dpop_key=ProofSigner.generate("ES256"),
                redirect_uri="https://app/cb",
            )
        assert asked == ["https://as.test/.well-known/oauth-authorization-server/tenant"]
        assert client.metadata.iss_parameter_supported


def fapi_client(handler: Callable[[httpx.Request], httpx.Response]) -> FAPIClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return FAPIClient(
        http,
        AuthorizationServerMetadata.from_document(METADATA, issuer=ISSUER),
        client_id="c1",
        client_key=ProofSigner.generate("ES256"),
        dpop_key=ProofSigner.generate("ES256"),
        redirect_uri="https://app.test/cb",
        clock=lambda: 1_800_000_000,
    )


PUSHED = PushedAuthorization("urn:x", 60, f"{ISSUER}/authorize?x", "st", PKCE.generate())


class TestCallback:
    @pytest.mark.parametrize(
        ("query", "error"),
        [
            ("code=c&state=st", "invalid_response"),  # no iss: a possible mix-up
            ("code=c&state=st&iss=https://evil.test", "invalid_response"),
            ("code=c&state=other&iss=https://as.test", "invalid_response"),
            ("error=access_denied&state=st&iss=https://as.test", "access_denied"),
            ("state=st&iss=https://as.test", "invalid_response"),
        ],
    )
    def test_refused(self, query: str, error: str) -> None:
        """iss (RFC 9207) and state must match; the server's error is raised as such."""
        client = fapi_client(lambda r: httpx.Response(500))
        with pytest.raises(OAuthError) as caught:
            client.code_from_callback(f"https://app.test/cb?{query}", PUSHED)
        assert caught.value.error == error

    def test_code(self) -> None:
        """A matching callback yields its code."""
        client = fapi_client(lambda r: httpx.Response(500))
        url = "https://app.test/cb?code=c1&state=st&iss=https%3A%2F%2Fas.test"
        assert client.code_from_callback(url, PUSHED) == "c1"


class TestTokenRequest:
    async def test_nonce_retry_once(self) -> None:
        """use_dpop_nonce: one retry with the nonce and a fresh assertion; a second nonce
        refusal is returned as the error."""
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(
                400, json={"error": "use_dpop_nonce"}, headers={"DPoP-Nonce": f"n{len(seen)}"}
            )

        client = fapi_client(handler)
        with pytest.raises(OAuthError) as caught:
            await client.exchange_code(
                "https://app.test/cb?code=c&state=st&iss=https://as.test", PUSHED
            )
        assert caught.value.error == "use_dpop_nonce" and len(seen) == 2
        proofs = [claims_of(r.headers["dpop"]) for r in seen]
        assert "nonce" not in proofs[0] and proofs[1]["nonce"] == "n1"
        assert proofs[1]["htu"] == f"{ISSUER}/token" and proofs[1]["htm"] == "POST"
        forms = [dict(parse_qsl(r.content.decode())) for r in seen]
        assert forms[1]["code_verifier"] == PUSHED.pkce.verifier
        jtis = {claims_of(f["client_assertion"])["jti"] for f in forms}
        assert len(jtis) == 2  # a retried assertion is a new one (jti single use)

    async def test_bearer_token_refused(self) -> None:
        """A Bearer token where a DPoP one was asked for is a downgrade: refused."""
        client = fapi_client(
            lambda r: httpx.Response(200, json={"access_token": "t", "token_type": "Bearer"})
        )
        with pytest.raises(OAuthError, match="DPoP"):
            await client.exchange_code(
                "https://app.test/cb?code=c&state=st&iss=https://as.test", PUSHED
            )

    async def test_par_error(self) -> None:
        """A PAR refusal raises the server's error and status."""
        client = fapi_client(
            lambda r: httpx.Response(
                401, json={"error": "invalid_client", "error_description": "x"}
            )
        )
        with pytest.raises(OAuthError) as caught:
            await client.push_authorization_request(scope="read:accounts")
        assert (caught.value.error, caught.value.status) == ("invalid_client", 401)
