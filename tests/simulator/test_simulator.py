"""The Authlete simulator speaks Authlete's HTTP API."""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx
import pytest

from dpop_guard.client import ProofSigner
from dpop_guard.devtools.simulator import (
    DEFAULT_API_SECRET,
    DEFAULT_SERVICE_ID,
    DEFAULT_SERVICE_TOKEN,
    SimulatorState,
)
from dpop_guard.testing import make_proof

V3_AUTH = {"Authorization": f"Bearer {DEFAULT_SERVICE_TOKEN}"}
V2_AUTH = {
    "Authorization": "Basic "
    + base64.b64encode(f"{DEFAULT_SERVICE_ID}:{DEFAULT_API_SECRET}".encode()).decode()
}
V3_PATH = f"/api/{DEFAULT_SERVICE_ID}/auth/introspection"


@pytest.fixture(name="http")
async def _http(simulator_url: str) -> Any:
    async with httpx.AsyncClient(base_url=simulator_url) as client:
        yield client


class TestAuthentication:
    async def test_v2_and_v3(self, http: httpx.AsyncClient, simulator: SimulatorState) -> None:
        """V2 Basic and V3 Bearer both reach introspection."""
        token = simulator.create_token(subject="a", scopes=["s"])
        for path, auth in (("/api/auth/introspection", V2_AUTH), (V3_PATH, V3_AUTH)):
            response = await http.post(path, json={"token": token}, headers=auth)
            assert response.status_code == 200 and response.json()["action"] == "OK"

    @pytest.mark.parametrize(
        ("path", "headers"),
        [
            (V3_PATH, {}),
            (V3_PATH, {"Authorization": "Bearer wrong"}),
            (V3_PATH, V2_AUTH),
            ("/api/auth/introspection", V3_AUTH),
            ("/api/999/auth/introspection", V3_AUTH),
        ],
    )
    async def test_refused(
        self, http: httpx.AsyncClient, path: str, headers: dict[str, str]
    ) -> None:
        """Wrong credentials are an API-level 401, not an action."""
        response = await http.post(path, json={"token": "t"}, headers=headers)
        assert response.status_code == 401
        assert response.json()["resultCode"] == "A001202"


class TestIntrospection:
    async def post(self, http: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
        response = await http.post(V3_PATH, json=body, headers=V3_AUTH)
        assert response.status_code == 200
        data: dict[str, Any] = response.json()
        return data

    async def test_ok_shape(self, http: httpx.AsyncClient, simulator: SimulatorState) -> None:
        """OK carries Authlete's fields, expiresAt in ms, and no cnf/jkt."""
        token = simulator.create_token(subject="alice", scopes=["a", "b"], lifetime=100)
        data = await self.post(http, {"token": token, "scopes": ["a"]})
        assert data["action"] == "OK" and data["resultCode"] == "A056001"
        assert data["resultMessage"].startswith("[A056001]")
        assert data["responseContent"] == 'Bearer error="invalid_request"'
        assert abs(data["expiresAt"] / 1000 - (time.time() + 100)) < 5
        assert data["scopes"] == ["a", "b"] and data["subject"] == "alice"
        assert "cnf" not in data and "jkt" not in str(data)

    async def test_missing_token(self, http: httpx.AsyncClient) -> None:
        """No token: BAD_REQUEST."""
        assert (await self.post(http, {}))["action"] == "BAD_REQUEST"

    async def test_expired_then_gone(
        self, http: httpx.AsyncClient, simulator: SimulatorState
    ) -> None:
        """An expired token is UNAUTHORIZED once, then does not exist."""
        token = simulator.create_token(subject="a", scopes=[], lifetime=-1, refreshable=True)
        first = await self.post(http, {"token": token})
        assert first["action"] == "UNAUTHORIZED" and first["resultCode"] == "A065301"
        second = await self.post(http, {"token": token})
        assert second["existent"] is False

    async def test_scope(self, http: httpx.AsyncClient, simulator: SimulatorState) -> None:
        """Missing scopes: FORBIDDEN with Authlete's A064302 and a scope attribute."""
        token = simulator.create_token(subject="a", scopes=["profile"])
        data = await self.post(http, {"token": token, "scopes": ["profile", "unknown"]})
        assert data["action"] == "FORBIDDEN" and data["resultCode"] == "A064302"
        assert 'scope="profile unknown"' in data["responseContent"]

    async def test_form_encoding(self, http: httpx.AsyncClient, simulator: SimulatorState) -> None:
        """Form bodies work, scopes space-separated."""
        token = simulator.create_token(subject="a", scopes=["x"])
        response = await http.post(V3_PATH, data={"token": token, "scopes": "x y"}, headers=V3_AUTH)
        assert response.json()["action"] == "FORBIDDEN"

    async def test_dpop_binding(self, http: httpx.AsyncClient, simulator: SimulatorState) -> None:
        """A bound token needs a proof from its key, with ath, htm, htu; jti is single-use."""
        signer = ProofSigner.generate("ES256")
        token = simulator.create_token(subject="a", scopes=[], jkt=signer.jkt)
        htu = "https://rs/accounts"
        no_proof = await self.post(http, {"token": token})
        assert no_proof["resultCode"] == "A065308"
        assert no_proof["responseContent"].startswith('DPoP error="invalid_token"')
        proof = make_proof(signer, htu=htu, access_token=token)
        ok = await self.post(http, {"token": token, "dpop": proof, "htm": "GET", "htu": htu})
        assert ok["action"] == "OK"
        again = await self.post(http, {"token": token, "dpop": proof, "htm": "GET", "htu": htu})
        assert again["action"] == "UNAUTHORIZED"
        cases = {
            "thumbprint": make_proof(ProofSigner.generate("ES256"), htu=htu, access_token=token),
            "htm": make_proof(signer, htm="POST", htu=htu, access_token=token),
            "htu": make_proof(signer, htu="https://other/x", access_token=token),
            "ath": make_proof(signer, htu=htu),
            "iat": make_proof(signer, htu=htu, access_token=token, iat=time.time() - 3600),
            "typ": make_proof(signer, htu=htu, access_token=token, header={"typ": "JWT"}),
        }
        for name, bad in cases.items():
            data = await self.post(http, {"token": token, "dpop": bad, "htm": "GET", "htu": htu})
            assert data["action"] == "UNAUTHORIZED", name
            assert 'error="invalid_dpop_proof"' in data["responseContent"], name

    async def test_unbound_with_proof(
        self, http: httpx.AsyncClient, simulator: SimulatorState
    ) -> None:
        """An unbound token with a proof is OK (Authlete's observed behaviour), unless
        configured otherwise."""
        token = simulator.create_token(subject="a", scopes=[])
        body = {"token": token, "dpop": "x.y.z", "htm": "GET", "htu": "https://rs/"}
        assert (await self.post(http, body))["action"] == "OK"
        simulator.accept_unbound_with_proof = False
        assert (await self.post(http, body))["action"] == "UNAUTHORIZED"

    async def test_log_hashes_secrets(
        self, http: httpx.AsyncClient, simulator: SimulatorState
    ) -> None:
        """The request log keeps what was sent, with token and proof only as hashes."""
        await self.post(http, {"token": "secret-tok", "dpop": "a.b.c", "htm": "GET"})
        entry = simulator.log[-1]
        assert "secret-tok" not in str(entry) and "a.b.c" not in str(entry)
        assert entry["htm"] == "GET" and "token_sha256" in entry and "dpop_sha256" in entry


class TestTokenCreate:
    async def test_create_bound(self, http: httpx.AsyncClient, simulator: SimulatorState) -> None:
        """/auth/token/create issues a DPoP-bound token when given dpopKeyThumbprint."""
        response = await http.post(
            f"/api/{DEFAULT_SERVICE_ID}/auth/token/create",
            headers=V3_AUTH,
            json={
                "grantType": "AUTHORIZATION_CODE",
                "subject": "bob",
                "scopes": ["read"],
                "dpopKeyThumbprint": "JKT",
                "accessTokenDuration": 60,
            },
        )
        data = response.json()
        assert data["action"] == "OK" and data["tokenType"] == "DPoP"
        assert simulator.tokens[data["accessToken"]].jkt == "JKT"


class TestHooks:
    async def test_faults_and_stats(
        self, http: httpx.AsyncClient, simulator: SimulatorState
    ) -> None:
        """Faults can be set for N calls over HTTP, and calls are counted."""
        response = await http.post(
            "/sim/faults",
            json={"fault": "http_500", "count": 1, "reset_counters": True},
            headers=V3_AUTH,
        )
        assert response.json()["fault"] == "http_500"
        first = await http.post(V3_PATH, json={"token": "t"}, headers=V3_AUTH)
        second = await http.post(V3_PATH, json={"token": "t"}, headers=V3_AUTH)
        assert (first.status_code, second.status_code) == (500, 200)
        stats = (await http.get("/sim/stats", headers=V2_AUTH)).json()
        assert stats["calls"] == {"auth/introspection": 2}

    async def test_hooks_need_credentials(self, http: httpx.AsyncClient) -> None:
        """The hooks are not open."""
        assert (await http.get("/sim/stats")).status_code == 401
        assert (await http.post("/sim/faults", json={})).status_code == 401

    async def test_unknown_fault(self, http: httpx.AsyncClient) -> None:
        """Unknown fault names are refused."""
        response = await http.post("/sim/faults", json={"fault": "nope"}, headers=V3_AUTH)
        assert response.status_code == 400

    @pytest.mark.parametrize("fault", ["garbage", "truncated", "http_429", "internal_error"])
    async def test_fault_shapes(
        self, http: httpx.AsyncClient, simulator: SimulatorState, fault: str
    ) -> None:
        """Each fault looks like what it names."""
        simulator.set_fault(fault, count=1)
        response = await http.post(V3_PATH, json={"token": "t"}, headers=V3_AUTH)
        if fault == "internal_error":
            assert response.json()["action"] == "INTERNAL_SERVER_ERROR"
        elif fault == "http_429":
            assert response.status_code == 429
        else:
            with pytest.raises(ValueError):
                response.json()

    async def test_malformed_body(self, http: httpx.AsyncClient) -> None:
        """A body that is not JSON is an API-level 400."""
        response = await http.post(
            V3_PATH, content=b"{", headers=V3_AUTH | {"Content-Type": "application/json"}
        )
        assert response.status_code == 400


class TestStandardIntrospection:
    async def test_authlete_standard_introspector(
        self, simulator: SimulatorState, simulator_url: str
    ) -> None:
        """AuthleteStandardIntrospector reads the RFC 7662 answer inside Authlete's
        responseContent, cnf.jkt included; inactive tokens are invalid_token."""
        from dpop_guard.errors import InvalidToken
        from dpop_guard.introspection import RequestFacts
        from dpop_guard.introspection.authlete import AuthleteSettings
        from dpop_guard.introspection.rfc7662 import AuthleteStandardIntrospector

        settings = AuthleteSettings(
            base_url=simulator_url, api_key=DEFAULT_SERVICE_ID, access_token=DEFAULT_SERVICE_TOKEN
        )
        facts = RequestFacts(method="GET", htu="https://rs/a", proof=None, jkt=None)
        token = simulator.create_token(subject="alice", scopes=["a", "b"], jkt="JKT")
        async with httpx.AsyncClient() as http:
            introspector = AuthleteStandardIntrospector(http, settings)
            info = await introspector.introspect(token, request=facts)
            assert (info.subject, info.jkt, info.scopes) == ("alice", "JKT", frozenset({"a", "b"}))
            with pytest.raises(InvalidToken):
                await introspector.introspect("unknown", request=facts)
        assert simulator.calls["auth/introspection/standard"] == 2

    async def test_standard_needs_parameters(self, http: httpx.AsyncClient) -> None:
        """Without 'parameters': BAD_REQUEST."""
        response = await http.post(V3_PATH + "/standard", json={}, headers=V3_AUTH)
        assert response.json()["action"] == "BAD_REQUEST"


class TestWarningsScope:
    def test_no_process_wide_filter(self) -> None:
        """The simulator silences joserfc's EdDSA warning only around its own calls: after
        importing it, building the app and checking an EdDSA proof, the process's warning
        filters are unchanged, and no warning escaped."""
        import subprocess
        import sys

        code = """
import warnings, asyncio
warnings.simplefilter("error")
before = list(warnings.filters)
import httpx
from dpop_guard.client import ProofSigner
from dpop_guard.devtools.simulator import DEFAULT_SERVICE_TOKEN, SimulatorState, create_simulator_app
from dpop_guard.testing import make_proof
state = SimulatorState()
signer = ProofSigner.generate("EdDSA")
token = state.create_token(subject="a", scopes=[], jkt=signer.jkt)
proof = make_proof(signer, htu="https://rs/a", access_token=token, header={"alg": "EdDSA"})
async def main():
    async with httpx.AsyncClient(transport=httpx.ASGITransport(create_simulator_app(state)),
                                 base_url="http://sim") as c:
        r = await c.post("/api/715948317/auth/introspection",
            headers={"Authorization": "Bearer " + DEFAULT_SERVICE_TOKEN},
            json={"token": token, "dpop": proof, "htm": "GET", "htu": "https://rs/a"})
        return r.json()["action"]
print(asyncio.run(main()), warnings.filters == before)
"""
        result = subprocess.run(  # noqa: S603 - our own interpreter
            [sys.executable, "-c", code], capture_output=True, text=True, check=False
        )
        assert result.stdout.split() == ["OK", "True"], result.stderr


class TestSeed:
    def test_seeds_tokens(self) -> None:
        """seed() issues one token per entry, with a fixed value when one is given (what
        `dpop-guard simulate --tokens` and `python -m dpop_guard.devtools.simulator --tokens` do)."""
        from dpop_guard.devtools.simulator import seed

        state = SimulatorState()
        issued = seed(
            state,
            [
                {"token": "fixed-1", "subject": "alice", "scopes": ["a"], "jkt": "j"},
                {"subject": None, "scopes": [], "lifetime": 60},
            ],
        )
        assert issued[0] == "fixed-1" and len(issued) == 2
        assert state.tokens["fixed-1"].subject == "alice" and state.tokens["fixed-1"].jkt == "j"
        assert state.tokens[issued[1]].subject is None

    def test_seeds_certificate_bound_tokens(self) -> None:
        """An entry may bind the token to a certificate and give resources and acr."""
        from dpop_guard.devtools.simulator import seed

        state = SimulatorState()
        (token,) = seed(
            state,
            [{"subject": "a", "scopes": [], "x5t_s256": "X" * 43, "resources": ["https://rs"]}],
        )
        record = state.tokens[token]
        assert (record.x5t_s256, record.resources, record.acr) == ("X" * 43, ("https://rs",), None)

    @pytest.mark.parametrize(
        "entry",
        [
            {"subject": 1},
            {"scopes": "a b"},
            {"scopes": [1]},
            {"lifetime": "x"},
            {"x5t_s256": 5},
            {"resources": "https://rs"},
            {"acr": ["a"]},
        ],
    )
    def test_refuses_bad_entries(self, entry: dict[str, object]) -> None:
        """A malformed entry is refused before anything is issued."""
        from dpop_guard.devtools.simulator import seed

        with pytest.raises(ValueError, match="token entry"):
            seed(SimulatorState(), [entry])


class TestWaveTwoShape:
    """The wire shape of what the simulator added for RFC 8705, 8707, 9396 and 9470."""

    async def post(self, http: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
        response = await http.post(V3_PATH, json=body, headers=V3_AUTH)
        assert response.status_code == 200
        data: dict[str, Any] = response.json()
        return data

    async def test_ok_facts_in_authlete_shape(
        self, http: httpx.AsyncClient, simulator: SimulatorState
    ) -> None:
        """authorizationDetails wrapped in elements, both resources fields, authTime in
        seconds, the alias and whether it was used."""
        token = simulator.create_token(
            subject="a",
            scopes=[],
            resources=["https://rs"],
            auth_time=1_700_000_000,
            authorization_details=[{"type": "t"}],
            client_id_alias="alias",
            client_id_alias_used=True,
        )
        data = await self.post(http, {"token": token})
        assert data["authorizationDetails"] == {"elements": [{"type": "t"}]}
        assert data["resources"] == data["accessTokenResources"] == ["https://rs"]
        assert data["authTime"] == 1_700_000_000
        assert (data["clientIdAlias"], data["clientIdAliasUsed"]) == ("alias", True)

    async def test_unknown_auth_time_is_zero(
        self, http: httpx.AsyncClient, simulator: SimulatorState
    ) -> None:
        """As Authlete's Java DTO sends it: 0, not absent."""
        data = await self.post(http, {"token": simulator.create_token(subject="a", scopes=[])})
        assert data["authTime"] == 0 and "certificateThumbprint" not in data

    async def test_decision_order(self, http: httpx.AsyncClient, simulator: SimulatorState) -> None:
        """subject before scopes before resources, each FORBIDDEN with its own error."""
        token = simulator.create_token(subject="a", scopes=["s"], resources=["https://rs"])
        cases: list[tuple[dict[str, Any], str]] = [
            ({"subject": "b", "scopes": ["x"], "resources": ["https://x"]}, "invalid_request"),
            ({"scopes": ["x"], "resources": ["https://x"]}, "insufficient_scope"),
            ({"resources": ["https://x"]}, "invalid_target"),
        ]
        for extra, error in cases:
            data = await self.post(http, {"token": token, **extra})
            assert data["action"] == "FORBIDDEN"
            assert data["responseContent"].startswith(f'Bearer error="{error}"'), error

    async def test_certificate_refusal_is_bearer_unauthorized(
        self, http: httpx.AsyncClient, simulator: SimulatorState
    ) -> None:
        """A certificate-bound token without its certificate: UNAUTHORIZED, usable true
        (a binding failure, not a dead token)."""
        token = simulator.create_token(subject="a", scopes=[], x5t_s256="X" * 43)
        data = await self.post(http, {"token": token})
        assert data["action"] == "UNAUTHORIZED" and data["usable"] is True
        assert data["responseContent"].startswith('Bearer error="invalid_token"')

    async def test_step_up_challenge_names_the_requirement(
        self, http: httpx.AsyncClient, simulator: SimulatorState
    ) -> None:
        """acrValues/maxAge unmet: RFC 9470's error with acr_values and max_age."""
        token = simulator.create_token(subject="a", scopes=[], acr="low")
        data = await self.post(http, {"token": token, "acrValues": ["high"], "maxAge": 60})
        assert data["action"] == "UNAUTHORIZED"
        content = data["responseContent"]
        assert 'error="insufficient_user_authentication"' in content
        assert 'acr_values="high"' in content and 'max_age="60"' in content

    async def test_request_level_nonce_requirement(
        self, http: httpx.AsyncClient, simulator: SimulatorState
    ) -> None:
        """dpopNonceRequired on the request: every answer names the expected nonce, and
        a DPoP-bound token's proof without it is use_dpop_nonce."""
        signer = ProofSigner.generate("ES256")
        token = simulator.create_token(subject="a", scopes=[], jkt=signer.jkt)
        htu = "https://rs/accounts"
        proof = make_proof(signer, htu=htu, access_token=token)
        body = {"token": token, "dpop": proof, "htm": "GET", "htu": htu}
        data = await self.post(http, body | {"dpopNonceRequired": True})
        assert data["action"] == "UNAUTHORIZED" and data["dpopNonce"]
        assert data["responseContent"].startswith('DPoP error="use_dpop_nonce"')
        gone = await self.post(http, {"token": "nope", "dpopNonceRequired": True})
        assert gone["existent"] is False and gone["dpopNonce"]
        retry = make_proof(signer, htu=htu, access_token=token, claims={"nonce": data["dpopNonce"]})
        ok = await self.post(http, body | {"dpop": retry, "dpopNonceRequired": True})
        assert ok["action"] == "OK" and ok["dpopNonce"]


class TestCommandLine:
    async def test_nonce_options(self) -> None:
        """--dpop-nonce-required and --dpop-nonce-duration set the service: answers for a
        DPoP-bound token's proof without a nonce ask for one."""
        import argparse

        from dpop_guard.devtools.simulator import add_arguments, build

        parser = argparse.ArgumentParser()
        add_arguments(parser)
        args = parser.parse_args(["--dpop-nonce-required", "--dpop-nonce-duration", "30"])
        state, app = build(args)
        assert app.state.authorization.service.dpop_nonce_duration == 30
        signer = ProofSigner.generate("ES256")
        token = state.create_token(subject="a", scopes=[], jkt=signer.jkt)
        htu = "https://rs/accounts"
        body = {
            "token": token,
            "dpop": make_proof(signer, htu=htu, access_token=token),
            "htm": "GET",
            "htu": htu,
        }
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http:
            data = (await http.post(V3_PATH, json=body, headers=V3_AUTH)).json()
        assert data["action"] == "UNAUTHORIZED" and data["dpopNonce"]


class TestFormStepUp:
    async def test_form_encoded_step_up(
        self, http: httpx.AsyncClient, simulator: SimulatorState
    ) -> None:
        """In a form body acrValues is space-separated (never a substring match) and
        maxAge a number."""
        token = simulator.create_token(subject="a", scopes=[], acr="high", auth_time=1)
        for form in ({"acrValues": "higher"}, {"acrValues": "high", "maxAge": "60"}):
            response = await http.post(V3_PATH, data={"token": token, **form}, headers=V3_AUTH)
            assert response.json()["action"] == "UNAUTHORIZED", form
        response = await http.post(
            V3_PATH, data={"token": token, "acrValues": "low high"}, headers=V3_AUTH
        )
        assert response.json()["action"] == "OK"
