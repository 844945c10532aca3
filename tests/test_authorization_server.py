"""The simulator's authorization-server APIs: one test per rule of Authlete's FAPI 2.0
configuration, each asserting the action and the OAuth error Authlete would give."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpop_guard.client import PKCE, ProofSigner
from dpop_guard.devtools.simulator import (
    DEFAULT_SERVICE_ID,
    DEFAULT_SERVICE_TOKEN,
    SimulatorState,
)
from dpop_guard.devtools.simulator._authorization import AuthorizationService, SimClient, SimService
from tests._support.clock import Clock
from tests._support.flow import AuthleteCalls, Registered, register, simulator_with_authorization

ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture(name="clock")
def _clock() -> Clock:
    import time

    return Clock(time.time())  # issued tokens are introspected against the wall clock


@pytest.fixture(name="auth")
def _auth(clock: Clock) -> AuthorizationService:
    return AuthorizationService(clock=clock)


@pytest.fixture(name="state")
def _state() -> SimulatorState:
    return SimulatorState()


@pytest.fixture(name="calls")
async def _calls(state: SimulatorState, auth: AuthorizationService) -> AsyncIterator[AuthleteCalls]:
    app = simulator_with_authorization(state, auth)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://authlete.test") as http:
        yield AuthleteCalls(http, auth)


@pytest.fixture(name="reg")
def _reg(auth: AuthorizationService, signers: dict[str, ProofSigner]) -> Registered:
    return register(auth, signers["ES256"], ProofSigner.generate("ES256"))


def error_of(result: Any) -> str:
    return str(json.loads(result["responseContent"])["error"])


class TestHappyPath:
    @pytest.mark.parametrize("version", ["V2", "V3"])
    @pytest.mark.parametrize("alg", ["PS256", "ES256", "EdDSA"])
    async def test_code_flow_issues_a_bound_token(
        self,
        calls: AuthleteCalls,
        auth: AuthorizationService,
        state: SimulatorState,
        signers: dict[str, ProofSigner],
        version: str,
        alg: str,
    ) -> None:
        """PAR → request_uri → ticket → code (with iss) → DPoP-bound token, on both API
        versions and each FAPI 2.0 algorithm; the token introspects as a minted one."""
        reg = register(auth, signers[alg], ProofSigner.generate(alg))
        pkce = PKCE.generate()
        pushed = await calls.call(
            "pushed_auth_req", {"parameters": calls.par_parameters(reg, pkce)}, version=version
        )
        assert pushed["action"] == "CREATED"
        content = json.loads(pushed["responseContent"])
        assert content == {"expires_in": 60, "request_uri": pushed["requestUri"]}
        assert pushed["requestUri"].startswith("urn:ietf:params:oauth:request_uri:")
        authorized = await calls.call(
            "auth/authorization",
            {"parameters": f"client_id={reg.client_id}&request_uri={pushed['requestUri']}"},
            version=version,
        )
        assert authorized["action"] == "INTERACTION"
        assert authorized["client"]["clientId"] == reg.client_id
        assert authorized["scopes"] == [
            {"name": "read:accounts", "attributes": [{"key": "fapi2", "value": "sp"}]}
        ]
        issued = await calls.call(
            "auth/authorization/issue",
            {"ticket": authorized["ticket"], "subject": "alice"},
            version=version,
        )
        assert issued["action"] == "LOCATION"
        code = issued["authorizationCode"]
        token = await calls.token(reg, code, pkce)
        assert token["action"] == "OK", token
        body = json.loads(token["responseContent"])
        assert body["token_type"] == "DPoP" and body["scope"] == "read:accounts"
        assert body["access_token"] == token["accessToken"]
        record = state.tokens[token["accessToken"]]
        assert record.jkt == reg.dpop.jkt  # RFC 7638 thumbprint of the proof's key
        assert record.subject == "alice" and record.client_id == reg.client_id
        url = "https://rs.example.com/accounts"
        introspected = await calls.call(
            "auth/introspection",
            {
                "token": token["accessToken"],
                "scopes": ["read:accounts"],
                "dpop": reg.dpop.sign(htm="GET", htu=url, access_token=token["accessToken"]),
                "htm": "GET",
                "htu": url,
            },
        )
        assert introspected["action"] == "OK" and introspected["subject"] == "alice"

    async def test_another_key_cannot_use_the_issued_token(
        self, calls: AuthleteCalls, reg: Registered
    ) -> None:
        """Introspection refuses the issued token with a proof from another key."""
        pkce = PKCE.generate()
        token = (await calls.token(reg, await calls.code(reg, pkce), pkce))["accessToken"]
        url = "https://rs.example.com/accounts"
        thief = ProofSigner.generate("ES256")
        result = await calls.call(
            "auth/introspection",
            {
                "token": token,
                "dpop": thief.sign(htm="GET", htu=url, access_token=token),
                "htm": "GET",
                "htu": url,
            },
        )
        assert result["action"] == "UNAUTHORIZED"
        assert 'error="invalid_dpop_proof"' in result["responseContent"]


class TestApiCaller:
    async def test_wrong_service_credential(self, calls: AuthleteCalls) -> None:
        """A call without the service's credential gets HTTP 401 and A001202, no action."""
        response = await calls.http.post("/api/auth/token", json={"parameters": ""})
        assert response.status_code == 401
        assert response.json()["resultCode"] == "A001202" and "action" not in response.json()


class TestGrantAndResponseType:
    async def test_grant_type_authorization_code_only(
        self, calls: AuthleteCalls, reg: Registered
    ) -> None:
        """grant_type=client_credentials → BAD_REQUEST unsupported_grant_type."""
        result = await calls.token(reg, "x", PKCE.generate(), grant_type="client_credentials")
        assert result["action"] == "BAD_REQUEST"
        assert error_of(result) == "unsupported_grant_type"

    async def test_response_type_code_only(self, calls: AuthleteCalls, reg: Registered) -> None:
        """response_type=token → BAD_REQUEST unsupported_response_type."""
        result = await calls.par(reg, PKCE.generate(), response_type="token")
        assert result["action"] == "BAD_REQUEST"
        assert error_of(result) == "unsupported_response_type"

    async def test_client_without_the_grant_type(
        self, calls: AuthleteCalls, auth: AuthorizationService, signers: dict[str, ProofSigner]
    ) -> None:
        """A client not registered for AUTHORIZATION_CODE → unauthorized_client."""
        reg = register(auth, signers["ES256"], signers["ES256"], grant_types=())
        result = await calls.par(reg, PKCE.generate())
        assert result["action"] == "BAD_REQUEST" and error_of(result) == "unauthorized_client"


class TestIssResponseParameter:
    async def test_redirect_carries_iss(self, calls: AuthleteCalls, reg: Registered) -> None:
        """The authorization response carries iss (RFC 9207), state and the code."""
        pkce = PKCE.generate()
        pushed = await calls.par(reg, pkce)
        ticket = (await calls.authorize(reg, pushed["requestUri"]))["ticket"]
        issued = await calls.call("auth/authorization/issue", {"ticket": ticket, "subject": "al"})
        location = httpx.URL(issued["responseContent"])
        assert location.params["iss"] == "https://as.example.com"
        assert location.params["state"] == "st-1"
        assert location.params["code"] == issued["authorizationCode"]
        assert str(location).startswith(reg.redirect_uri + "?")

    async def test_denial_redirects_access_denied_with_iss(
        self, calls: AuthleteCalls, reg: Registered
    ) -> None:
        """/auth/authorization/fail gives the redirect with access_denied, and iss."""
        pushed = await calls.par(reg, PKCE.generate())
        ticket = (await calls.authorize(reg, pushed["requestUri"]))["ticket"]
        failed = await calls.call("auth/authorization/fail", {"ticket": ticket, "reason": "DENIED"})
        location = httpx.URL(failed["responseContent"])
        assert failed["action"] == "LOCATION"
        assert location.params["error"] == "access_denied"
        assert location.params["iss"] == "https://as.example.com"


class TestPrivateKeyJWT:
    async def test_no_assertion(self, calls: AuthleteCalls, reg: Registered) -> None:
        """No client assertion (e.g. client_secret_post) → INVALID_CLIENT invalid_client."""
        result = await calls.token(
            reg, "x", PKCE.generate(), client_assertion=None, client_secret="s"
        )
        assert result["action"] == "INVALID_CLIENT" and error_of(result) == "invalid_client"

    async def test_par_refusal_is_unauthorized(self, calls: AuthleteCalls, reg: Registered) -> None:
        """At the PAR endpoint the same failure is action UNAUTHORIZED."""
        result = await calls.par(reg, PKCE.generate(), client_assertion_type=None)
        assert result["action"] == "UNAUTHORIZED" and error_of(result) == "invalid_client"

    @pytest.mark.parametrize("alg", ["RS256", "HS256", "none", "ES384"])
    async def test_algorithm_not_allowed(
        self, calls: AuthleteCalls, reg: Registered, alg: str
    ) -> None:
        """Assertions signed other than PS256/ES256/EdDSA are refused before verification."""
        good = calls.assertion(reg)
        forged_header = base64.urlsafe_b64encode(
            json.dumps({"alg": alg, "typ": "JWT"}).encode()
        ).rstrip(b"=")
        forged = forged_header.decode() + "." + good.split(".", 1)[1]
        result = await calls.token(reg, "x", PKCE.generate(), client_assertion=forged)
        assert result["action"] == "INVALID_CLIENT"
        assert "algorithm" in result["resultMessage"]

    async def test_client_alg_setting(
        self, calls: AuthleteCalls, auth: AuthorizationService, signers: dict[str, ProofSigner]
    ) -> None:
        """A client registered for PS256 may not sign its assertions with ES256."""
        reg = register(auth, signers["ES256"], signers["ES256"], token_auth_sign_alg="PS256")
        result = await calls.token(reg, "x", PKCE.generate())
        assert result["action"] == "INVALID_CLIENT" and "PS256" in result["resultMessage"]

    async def test_client_auth_method_setting(
        self, calls: AuthleteCalls, auth: AuthorizationService, signers: dict[str, ProofSigner]
    ) -> None:
        """A client registered for another method cannot use private_key_jwt."""
        reg = register(
            auth, signers["ES256"], signers["ES256"], token_auth_method="CLIENT_SECRET_BASIC"
        )
        result = await calls.token(reg, "x", PKCE.generate())
        assert result["action"] == "INVALID_CLIENT"
        assert "private_key_jwt" in result["resultMessage"]

    async def test_signature_from_another_key(self, calls: AuthleteCalls, reg: Registered) -> None:
        """An assertion signed by a key the client did not register → invalid_client."""
        other = Registered(reg.client_id, ProofSigner.generate("ES256"), reg.dpop)
        result = await calls.token(
            reg, "x", PKCE.generate(), client_assertion=calls.assertion(other)
        )
        assert result["action"] == "INVALID_CLIENT" and "signature" in result["resultMessage"]

    async def test_unknown_client(self, calls: AuthleteCalls, reg: Registered) -> None:
        """iss naming no registered client → invalid_client."""
        assertion = calls.assertion(reg, iss="999", sub="999")
        result = await calls.token(
            reg, "x", PKCE.generate(), client_assertion=assertion, client_id="999"
        )
        assert result["action"] == "INVALID_CLIENT" and "exist" in result["resultMessage"]

    async def test_sub_must_be_client_id(self, calls: AuthleteCalls, reg: Registered) -> None:
        """sub other than the client ID → invalid_client."""
        result = await calls.token(
            reg, "x", PKCE.generate(), client_assertion=calls.assertion(reg, sub="someone")
        )
        assert result["action"] == "INVALID_CLIENT" and "sub" in result["resultMessage"]

    async def test_nbf_required(self, calls: AuthleteCalls, reg: Registered) -> None:
        """An assertion without nbf → invalid_client."""
        result = await calls.token(
            reg, "x", PKCE.generate(), client_assertion=calls.assertion(reg, nbf=None)
        )
        assert result["action"] == "INVALID_CLIENT" and "nbf" in result["resultMessage"]

    async def test_nbf_in_the_future(self, calls: AuthleteCalls, reg: Registered) -> None:
        """nbf beyond the leeway → invalid_client."""
        nbf = int(calls.auth.clock()) + 120
        result = await calls.token(
            reg, "x", PKCE.generate(), client_assertion=calls.assertion(reg, nbf=nbf)
        )
        assert result["action"] == "INVALID_CLIENT" and "nbf" in result["resultMessage"]

    @pytest.mark.parametrize("which", ["issuer", "token_endpoint", "pushed_auth_req_endpoint"])
    async def test_aud_accepted(self, calls: AuthleteCalls, reg: Registered, which: str) -> None:
        """aud may be the issuer, the token endpoint or the PAR endpoint (FAPI 2.0)."""
        aud = getattr(calls.auth.service, which)
        result = await calls.par(
            reg, PKCE.generate(), client_assertion=calls.assertion(reg, aud=[aud, "x"])
        )
        assert result["action"] == "CREATED"

    async def test_aud_other_server(self, calls: AuthleteCalls, reg: Registered) -> None:
        """aud naming another server → invalid_client."""
        result = await calls.token(
            reg,
            "x",
            PKCE.generate(),
            client_assertion=calls.assertion(reg, aud="https://other.example.com/token"),
        )
        assert result["action"] == "INVALID_CLIENT" and "aud" in result["resultMessage"]

    async def test_jti_single_use(self, calls: AuthleteCalls, reg: Registered) -> None:
        """The same assertion a second time → invalid_client."""
        assertion = calls.assertion(reg)
        first = await calls.par(reg, PKCE.generate(), client_assertion=assertion)
        second = await calls.par(reg, PKCE.generate(), client_assertion=assertion)
        assert first["action"] == "CREATED"
        assert second["action"] == "UNAUTHORIZED" and "jti" in second["resultMessage"]

    async def test_exp_required(self, calls: AuthleteCalls, reg: Registered) -> None:
        """No exp → invalid_client."""
        result = await calls.par(
            reg, PKCE.generate(), client_assertion=calls.assertion(reg, exp=None)
        )
        assert result["action"] == "UNAUTHORIZED" and "exp" in result["resultMessage"]

    async def test_exp_bounded(self, calls: AuthleteCalls, reg: Registered) -> None:
        """exp more than five minutes ahead → invalid_client."""
        exp = int(calls.auth.clock()) + 3600
        result = await calls.par(
            reg, PKCE.generate(), client_assertion=calls.assertion(reg, exp=exp)
        )
        assert result["action"] == "UNAUTHORIZED" and "exp" in result["resultMessage"]

    async def test_expired(self, calls: AuthleteCalls, reg: Registered, clock: Clock) -> None:
        """An assertion used after its exp → invalid_client."""
        assertion = calls.assertion(reg)
        clock.now += 120
        result = await calls.par(reg, PKCE.generate(), client_assertion=assertion)
        assert result["action"] == "UNAUTHORIZED" and "expired" in result["resultMessage"]


class TestPKCE:
    async def test_challenge_required(self, calls: AuthleteCalls, reg: Registered) -> None:
        """No code_challenge → BAD_REQUEST invalid_request."""
        result = await calls.par(reg, PKCE.generate(), code_challenge=None)
        assert result["action"] == "BAD_REQUEST" and error_of(result) == "invalid_request"
        assert "PKCE" in result["resultMessage"]

    async def test_plain_refused(self, calls: AuthleteCalls, reg: Registered) -> None:
        """code_challenge_method=plain → BAD_REQUEST invalid_request."""
        result = await calls.par(reg, PKCE.generate(), code_challenge_method="plain")
        assert result["action"] == "BAD_REQUEST" and "S256" in result["resultMessage"]

    async def test_wrong_verifier(self, calls: AuthleteCalls, reg: Registered) -> None:
        """A verifier that does not hash to the challenge → invalid_grant."""
        pkce = PKCE.generate()
        code = await calls.code(reg, pkce)
        result = await calls.token(reg, code, pkce, code_verifier=PKCE.generate().verifier)
        assert result["action"] == "BAD_REQUEST" and error_of(result) == "invalid_grant"


class TestPAR:
    async def test_required(self, calls: AuthleteCalls, reg: Registered) -> None:
        """An authorization request without request_uri → BAD_REQUEST invalid_request."""
        query = calls.par_parameters(reg, PKCE.generate())
        result = await calls.call("auth/authorization", {"parameters": query})
        assert result["action"] == "BAD_REQUEST" and "PAR" in result["resultMessage"]

    async def test_request_uri_single_use(self, calls: AuthleteCalls, reg: Registered) -> None:
        """The request_uri works once → invalid_request_uri the second time."""
        pushed = await calls.par(reg, PKCE.generate())
        assert (await calls.authorize(reg, pushed["requestUri"]))["action"] == "INTERACTION"
        again = await calls.authorize(reg, pushed["requestUri"])
        assert again["action"] == "BAD_REQUEST" and error_of(again) == "invalid_request_uri"

    async def test_request_uri_short_lived(
        self, calls: AuthleteCalls, reg: Registered, clock: Clock
    ) -> None:
        """After pushedAuthReqDuration (60 s) the request_uri is gone."""
        pushed = await calls.par(reg, PKCE.generate())
        clock.now += 61
        result = await calls.authorize(reg, pushed["requestUri"])
        assert result["action"] == "BAD_REQUEST" and error_of(result) == "invalid_request_uri"

    async def test_request_uri_of_another_client(
        self, calls: AuthleteCalls, reg: Registered, auth: AuthorizationService
    ) -> None:
        """A request_uri presented with another client_id → invalid_request_uri."""
        other = register(auth, reg.key, reg.dpop, client_id=42)
        pushed = await calls.par(reg, PKCE.generate())
        result = await calls.authorize(other, pushed["requestUri"])
        assert result["action"] == "BAD_REQUEST" and error_of(result) == "invalid_request_uri"


class TestConfidentialClient:
    async def test_unregistered_redirect_uri(self, calls: AuthleteCalls, reg: Registered) -> None:
        """A redirect_uri the client did not register → BAD_REQUEST invalid_request."""
        result = await calls.par(reg, PKCE.generate(), redirect_uri="https://evil.example/cb")
        assert result["action"] == "BAD_REQUEST" and "redirect_uri" in result["resultMessage"]

    async def test_public_client(
        self, calls: AuthleteCalls, auth: AuthorizationService, signers: dict[str, ProofSigner]
    ) -> None:
        """A PUBLIC client may not make a FAPI 2.0 request → unauthorized_client."""
        reg = register(auth, signers["ES256"], signers["ES256"], client_type="PUBLIC")
        result = await calls.par(reg, PKCE.generate())
        assert result["action"] == "BAD_REQUEST" and error_of(result) == "unauthorized_client"

    def test_settings_are_checked(self) -> None:
        """Registering a private key, or a redirect URI with a fragment, is refused."""
        private = {"kty": "EC", "crv": "P-256", "x": "x", "y": "y", "d": "d"}
        with pytest.raises(ValueError, match="public"):
            SimClient(client_id=1, redirect_uris=(), jwks=(private,))
        with pytest.raises(ValueError, match="fragment"):
            SimClient(client_id=1, redirect_uris=("https://a/cb#x",), jwks=())
        with pytest.raises(ValueError, match="token_auth_sign_algs"):
            SimService(token_auth_sign_algs=("HS256",))


class TestFAPI2ScopeAttribute:
    async def test_attribute_makes_par_and_pkce_mandatory(
        self,
        calls: AuthleteCalls,
        auth: AuthorizationService,
        signers: dict[str, ProofSigner],
    ) -> None:
        """With PAR and PKCE off service- and client-wide, a scope without fapi2=sp passes
        without them while read:accounts (fapi2=sp) still needs both."""
        auth.service = SimService(par_required=False, pkce_required=False)
        reg = register(auth, signers["ES256"], signers["ES256"], par_required=False)
        plain = calls.par_parameters(reg, PKCE.generate(), scope="profile", code_challenge=None)
        assert (await calls.call("auth/authorization", {"parameters": plain}))[
            "action"
        ] == "INTERACTION"
        fapi = calls.par_parameters(reg, PKCE.generate(), code_challenge=None)
        refused = await calls.call("auth/authorization", {"parameters": fapi})
        assert refused["action"] == "BAD_REQUEST" and "PKCE" in refused["resultMessage"]
        with_pkce = calls.par_parameters(reg, PKCE.generate())
        refused = await calls.call("auth/authorization", {"parameters": with_pkce})
        assert refused["action"] == "BAD_REQUEST" and "PAR" in refused["resultMessage"]

    async def test_unknown_scope(self, calls: AuthleteCalls, reg: Registered) -> None:
        """A scope the service does not support → invalid_scope."""
        result = await calls.par(reg, PKCE.generate(), scope="read:accounts admin")
        assert result["action"] == "BAD_REQUEST" and error_of(result) == "invalid_scope"


class TestTokenEndpointDPoP:
    async def test_proof_required(self, calls: AuthleteCalls, reg: Registered) -> None:
        """No DPoP proof for a FAPI 2.0 code → BAD_REQUEST invalid_dpop_proof."""
        pkce = PKCE.generate()
        result = await calls.token(reg, await calls.code(reg, pkce), pkce, dpop=None)
        assert result["action"] == "BAD_REQUEST" and error_of(result) == "invalid_dpop_proof"

    async def test_proof_for_another_url(self, calls: AuthleteCalls, reg: Registered) -> None:
        """A proof whose htu is not the token endpoint → invalid_dpop_proof."""
        pkce = PKCE.generate()
        proof = reg.dpop.sign(htm="POST", htu="https://as.example.com/par")
        result = await calls.token(reg, await calls.code(reg, pkce), pkce, dpop=proof)
        assert result["action"] == "BAD_REQUEST" and "htu" in result["resultMessage"]

    async def test_proof_replayed(self, calls: AuthleteCalls, reg: Registered) -> None:
        """A proof used for one token request is refused for the next."""
        proof = reg.dpop.sign(htm="POST", htu=calls.auth.service.token_endpoint)
        first_pkce, second_pkce = PKCE.generate(), PKCE.generate()
        first = await calls.token(reg, await calls.code(reg, first_pkce), first_pkce, dpop=proof)
        second = await calls.token(reg, await calls.code(reg, second_pkce), second_pkce, dpop=proof)
        assert first["action"] == "OK"
        assert second["action"] == "BAD_REQUEST" and "used before" in second["resultMessage"]

    async def test_nonce_required(
        self, calls: AuthleteCalls, reg: Registered, auth: AuthorizationService
    ) -> None:
        """dpopNonceRequired: use_dpop_nonce with dpopNonce, then OK with that nonce."""
        pkce = PKCE.generate()
        code = await calls.code(reg, pkce)
        url = auth.service.token_endpoint
        first = await calls.token(reg, code, pkce, body={"dpopNonceRequired": True})
        assert first["action"] == "BAD_REQUEST" and error_of(first) == "use_dpop_nonce"
        nonce = first["dpopNonce"]
        # The same code again: a nonce refusal must not burn it, or no retry could work.
        proof = reg.dpop.sign(htm="POST", htu=url, nonce=nonce, iat=auth.clock())
        second = await calls.token(reg, code, pkce, dpop=proof, body={"dpopNonceRequired": True})
        assert second["action"] == "OK" and second["dpopNonce"] == nonce

    async def test_par_key_binding(self, calls: AuthleteCalls, reg: Registered) -> None:
        """A proof at PAR binds the code: a token request with another key is refused."""
        pkce = PKCE.generate()
        par_url = calls.auth.service.pushed_auth_req_endpoint
        pushed = await calls.call(
            "pushed_auth_req",
            {
                "parameters": calls.par_parameters(reg, pkce),
                "dpop": reg.dpop.sign(htm="POST", htu=par_url, iat=calls.auth.clock()),
                "htm": "POST",
                "htu": par_url,
            },
        )
        ticket = (await calls.authorize(reg, pushed["requestUri"]))["ticket"]
        issued = await calls.call("auth/authorization/issue", {"ticket": ticket, "subject": "a"})
        other = ProofSigner.generate("ES256")
        proof = other.sign(htm="POST", htu=calls.auth.service.token_endpoint)
        result = await calls.token(reg, issued["authorizationCode"], pkce, dpop=proof)
        assert result["action"] == "BAD_REQUEST" and "PAR" in result["resultMessage"]


class TestCode:
    async def test_single_use(self, calls: AuthleteCalls, reg: Registered) -> None:
        """The code works once → invalid_grant the second time."""
        pkce = PKCE.generate()
        code = await calls.code(reg, pkce)
        assert (await calls.token(reg, code, pkce))["action"] == "OK"
        again = await calls.token(reg, code, pkce)
        assert again["action"] == "BAD_REQUEST" and error_of(again) == "invalid_grant"

    async def test_short_lived(self, calls: AuthleteCalls, reg: Registered, clock: Clock) -> None:
        """After authorizationCodeDuration (60 s) the code is gone."""
        pkce = PKCE.generate()
        code = await calls.code(reg, pkce)
        clock.now += 61
        result = await calls.token(reg, code, pkce)
        assert result["action"] == "BAD_REQUEST" and error_of(result) == "invalid_grant"

    async def test_redirect_uri_must_match(self, calls: AuthleteCalls, reg: Registered) -> None:
        """The token request's redirect_uri must be the authorization request's."""
        pkce = PKCE.generate()
        code = await calls.code(reg, pkce)
        result = await calls.token(reg, code, pkce, redirect_uri="https://app.example.org/x")
        assert result["action"] == "BAD_REQUEST" and error_of(result) == "invalid_grant"

    async def test_ticket_single_use(self, calls: AuthleteCalls, reg: Registered) -> None:
        """A ticket issues one code; a second issue call is BAD_REQUEST."""
        pushed = await calls.par(reg, PKCE.generate())
        ticket = (await calls.authorize(reg, pushed["requestUri"]))["ticket"]
        await calls.call("auth/authorization/issue", {"ticket": ticket, "subject": "a"})
        again = await calls.call("auth/authorization/issue", {"ticket": ticket, "subject": "a"})
        assert again["action"] == "BAD_REQUEST"


class TestHostileInput:
    """Whatever a client sends through the AS, the answer is an action, never a 500."""

    async def test_nan_exp(self, calls: AuthleteCalls, reg: Registered) -> None:
        """exp = NaN (which Python's json accepts) is refused, not let through every bound."""
        result = await calls.par(
            reg, PKCE.generate(), client_assertion=calls.assertion(reg, exp=float("nan"))
        )
        assert result["action"] == "UNAUTHORIZED" and "well-formed" in result["resultMessage"]

    async def test_nan_iat_in_proof(self, calls: AuthleteCalls, reg: Registered) -> None:
        """A DPoP proof with iat = NaN → invalid_dpop_proof."""
        pkce = PKCE.generate()
        claims = {"jti": "j", "htm": "POST", "htu": calls.auth.service.token_endpoint}
        proof = reg.dpop.sign_raw(None, {**claims, "iat": float("nan")})
        result = await calls.token(reg, await calls.code(reg, pkce), pkce, dpop=proof)
        assert result["action"] == "BAD_REQUEST" and error_of(result) == "invalid_dpop_proof"

    async def test_huge_rsa_key_in_proof(self, calls: AuthleteCalls, reg: Registered) -> None:
        """An RSA proof key over 4096 bits is refused before any RSA work."""
        pkce = PKCE.generate()
        header = {
            "typ": "dpop+jwt",
            "alg": "PS256",
            "jwk": {"kty": "RSA", "n": "A" * 2000, "e": "AQAB"},
        }
        claims = {"jti": "j", "htm": "POST", "htu": calls.auth.service.token_endpoint, "iat": 1}
        proof = reg.dpop.sign_raw(header, claims)
        result = await calls.token(reg, await calls.code(reg, pkce), pkce, dpop=proof)
        assert result["action"] == "BAD_REQUEST" and "too large" in result["resultMessage"]

    async def test_long_client_id(self, calls: AuthleteCalls) -> None:
        """A client_id of 5000 digits (beyond int()'s default limit) is an unknown client."""
        result = await calls.call("auth/authorization", {"parameters": "client_id=" + "9" * 5000})
        assert result["action"] == "BAD_REQUEST" and "exist" in result["resultMessage"]

    async def test_too_many_parameters(self, calls: AuthleteCalls) -> None:
        """More than 64 parameters → BAD_REQUEST."""
        query = "&".join(f"p{i}=v" for i in range(65))
        result = await calls.call("pushed_auth_req", {"parameters": query})
        assert result["action"] == "BAD_REQUEST" and "Too many" in result["resultMessage"]

    async def test_repeated_parameter(self, calls: AuthleteCalls, reg: Registered) -> None:
        """A parameter given twice → BAD_REQUEST invalid_request (RFC 6749 §3.1)."""
        query = calls.par_parameters(reg, PKCE.generate()) + "&scope=profile"
        result = await calls.call("pushed_auth_req", {"parameters": query})
        assert result["action"] == "BAD_REQUEST" and "repeated" in result["resultMessage"]

    async def test_non_ascii_nonce(
        self, calls: AuthleteCalls, reg: Registered, auth: AuthorizationService
    ) -> None:
        """A nonce outside ASCII is a stale nonce (use_dpop_nonce), not a crash."""
        pkce = PKCE.generate()
        url = auth.service.token_endpoint
        proof = reg.dpop.sign(htm="POST", htu=url, nonce="nonce-é", iat=auth.clock())
        result = await calls.token(
            reg, await calls.code(reg, pkce), pkce, dpop=proof, body={"dpopNonceRequired": True}
        )
        assert result["action"] == "BAD_REQUEST" and error_of(result) == "use_dpop_nonce"

    @pytest.mark.parametrize(
        "body", [b"[" * 5000 + b"]" * 5000, b'{"parameters": "' + b"a" * 70000 + b'"}', b"\xff"]
    )
    async def test_malformed_api_body(self, calls: AuthleteCalls, body: bytes) -> None:
        """Deep, oversized or undecodable API bodies → HTTP 400 A001201."""
        from tests._support.flow import V3_AUTH

        response = await calls.http.post(
            f"/api/{DEFAULT_SERVICE_ID}/auth/token",
            content=body,
            headers={**V3_AUTH, "Content-Type": "application/json"},
        )
        assert response.status_code == 400 and response.json()["resultCode"] == "A001201"


ACTIONS = {"CREATED", "BAD_REQUEST", "UNAUTHORIZED", "INVALID_CLIENT", "INTERACTION"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    api=st.sampled_from(["pushed_auth_req", "auth/authorization", "auth/token"]),
    parameters=st.one_of(
        st.text(max_size=300),
        st.lists(
            st.tuples(
                st.sampled_from(
                    [
                        "client_id",
                        "client_assertion",
                        "client_assertion_type",
                        "request_uri",
                        "code",
                        "grant_type",
                        "response_type",
                        "redirect_uri",
                        "scope",
                        "code_challenge",
                        "code_verifier",
                    ]
                ),
                st.text(max_size=40),
            ),
            max_size=12,
        ).map(lambda pairs: urlencode(pairs)),
    ),
    dpop=st.one_of(st.none(), st.text(max_size=60), st.just("a.b.c")),
)
def test_any_parameters_get_an_action(api: str, parameters: str, dpop: str | None) -> None:
    """Arbitrary parameters and proofs: always HTTP 200 with an error action."""
    auth = AuthorizationService()
    auth.register(SimClient(client_id=1, redirect_uris=("https://a/cb",), jwks=()))
    app = simulator_with_authorization(SimulatorState(), auth)
    body: dict[str, Any] = {"parameters": parameters}
    if dpop is not None:
        body["dpop"] = dpop

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
            return await client.post(
                f"/api/{DEFAULT_SERVICE_ID}/{api}",
                json=body,
                headers={"Authorization": f"Bearer {DEFAULT_SERVICE_TOKEN}"},
            )

    response = anyio.run(send)
    assert response.status_code == 200
    assert response.json()["action"] in ACTIONS - {"CREATED", "INTERACTION"}


class TestClientRegistrationHook:
    async def test_register_over_http(
        self, calls: AuthleteCalls, signers: dict[str, ProofSigner]
    ) -> None:
        """POST /sim/authorization/clients registers a client and the AS's URLs (for a
        simulator in another process, as in the demo)."""
        from tests._support.flow import V3_AUTH

        key = signers["EdDSA"]
        response = await calls.http.post(
            "/sim/authorization/clients",
            headers=V3_AUTH,
            json={
                "client_id": 77,
                "redirect_uris": ["https://demo.example/cb"],
                "jwks": {"keys": [dict(key.public_jwk)]},
                "service": {
                    "issuer": "http://127.0.0.1:9000",
                    "token_endpoint": "http://127.0.0.1:9000/token",
                },
            },
        )
        assert response.status_code == 201
        assert calls.auth.clients[77].redirect_uris == ("https://demo.example/cb",)
        assert calls.auth.service.issuer == "http://127.0.0.1:9000"
        reg = Registered(77, key, key, "https://demo.example/cb")
        assert (await calls.par(reg, PKCE.generate()))["action"] == "CREATED"

    async def test_refused_without_credential_or_with_bad_key(self, calls: AuthleteCalls) -> None:
        """The hook needs the service credential; a private key is refused."""
        from tests._support.flow import V3_AUTH

        body = {"client_id": 1, "redirect_uris": [], "jwks": {"keys": [{"kty": "oct", "k": "x"}]}}
        anonymous = await calls.http.post("/sim/authorization/clients", json=body)
        assert anonymous.status_code == 401
        refused = await calls.http.post("/sim/authorization/clients", json=body, headers=V3_AUTH)
        assert refused.status_code == 400
