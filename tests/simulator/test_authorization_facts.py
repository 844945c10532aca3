"""The simulator's authorization-server APIs mint tokens with the facts an introspection
returns: RFC 8707 ``resource``, RFC 9470 ``acr_values`` (with the ``acr`` and ``authTime``
the issue call reports) and RFC 9396 ``authorization_details``."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from dpop_guard.client import PKCE, ProofSigner
from dpop_guard.devtools.simulator import SimulatorState
from dpop_guard.devtools.simulator._authorization import AuthorizationService
from tests._support.clock import Clock
from tests._support.flow import AuthleteCalls, Registered, register, simulator_with_authorization

DETAILS = [{"type": "payment_initiation", "instructedAmount": {"currency": "EUR", "amount": "1"}}]
RS = "https://rs.example.com"


@pytest.fixture(name="auth")
def _auth() -> AuthorizationService:
    return AuthorizationService(clock=Clock(time.time()))


@pytest.fixture(name="state")
def _state() -> SimulatorState:
    return SimulatorState()


@pytest.fixture(name="calls")
async def _calls(state: SimulatorState, auth: AuthorizationService) -> AsyncIterator[AuthleteCalls]:
    transport = httpx.ASGITransport(app=simulator_with_authorization(state, auth))
    async with httpx.AsyncClient(transport=transport, base_url="http://authlete.test") as http:
        yield AuthleteCalls(http, auth)


@pytest.fixture(name="reg")
def _reg(auth: AuthorizationService, signers: dict[str, ProofSigner]) -> Registered:
    return register(auth, signers["ES256"], ProofSigner.generate("ES256"))


async def issue(calls: AuthleteCalls, reg: Registered, issue: dict[str, Any], **par: str) -> Any:
    pkce = PKCE.generate()
    pushed = await calls.par(reg, pkce, **par)
    assert pushed["action"] == "CREATED", pushed
    ticket = (await calls.authorize(reg, pushed["requestUri"]))["ticket"]
    issued = await calls.call(
        "auth/authorization/issue", {"ticket": ticket, "subject": "alice", **issue}
    )
    assert issued["action"] == "LOCATION", issued
    token = await calls.token(reg, issued["authorizationCode"], pkce)
    assert token["action"] == "OK", token
    return token["accessToken"]


class TestFacts:
    async def test_resource_acr_and_details_reach_the_token(
        self, calls: AuthleteCalls, reg: Registered, state: SimulatorState
    ) -> None:
        """PAR's resource (repeated), acr_values and authorization_details, and the issue
        call's acr, authTime and consentedClaims, are what introspection reports."""
        token = await issue(
            calls,
            reg,
            {"acr": "urn:high", "authTime": 1_799_000_000, "consentedClaims": ["name"]},
            resource=RS,
            acr_values="urn:high urn:mid",
            authorization_details=json.dumps(DETAILS),
        )
        record = state.tokens[token]
        assert record.resources == (RS,) and record.acr == "urn:high"
        assert record.auth_time == 1_799_000_000 and record.consented_claims == ("name",)
        assert record.authorization_details == tuple(DETAILS)

    async def test_repeated_resource(
        self, calls: AuthleteCalls, reg: Registered, state: SimulatorState
    ) -> None:
        """RFC 8707 lets resource repeat; every value is kept."""
        params = calls.par_parameters(reg, PKCE.generate(), resource=RS)
        params += "&resource=" + "https%3A%2F%2Frs2.example.com"
        pushed = await calls.call("pushed_auth_req", {"parameters": params})
        assert pushed["action"] == "CREATED", pushed

    @pytest.mark.parametrize(
        ("par", "error"),
        [
            ({"resource": "relative"}, "invalid_target"),
            ({"resource": "https://rs.example.com/#f"}, "invalid_target"),
            ({"authorization_details": "{not json"}, "invalid_authorization_details"),
            ({"authorization_details": '[{"no": "type"}]'}, "invalid_authorization_details"),
            ({"authorization_details": "[" * 2000 + "]" * 2000}, "invalid_authorization_details"),
        ],
    )
    async def test_malformed_request_is_refused(
        self, calls: AuthleteCalls, reg: Registered, par: dict[str, str], error: str
    ) -> None:
        """A resource that is not an absolute URI, or malformed details: BAD_REQUEST."""
        pushed = await calls.par(reg, PKCE.generate(), **par)
        assert pushed["action"] == "BAD_REQUEST"
        assert json.loads(pushed["responseContent"])["error"] == error

    async def test_auth_time_defaults_to_the_issue_time(
        self,
        calls: AuthleteCalls,
        reg: Registered,
        state: SimulatorState,
        auth: AuthorizationService,
    ) -> None:
        """Without authTime the user authenticated when the code was issued."""
        token = await issue(calls, reg, {})
        assert state.tokens[token].auth_time == int(auth.clock())

    @pytest.mark.parametrize(
        "bad", [{"acr": 5}, {"authTime": "x"}, {"authTime": -1}, {"consentedClaims": "name"}]
    )
    async def test_malformed_issue_is_refused(
        self, calls: AuthleteCalls, reg: Registered, bad: dict[str, Any]
    ) -> None:
        """The authorization server's own mistake: INTERNAL_SERVER_ERROR, as Authlete does."""
        pushed = await calls.par(reg, PKCE.generate())
        ticket = (await calls.authorize(reg, pushed["requestUri"]))["ticket"]
        issued = await calls.call(
            "auth/authorization/issue", {"ticket": ticket, "subject": "alice", **bad}
        )
        assert issued["action"] == "INTERNAL_SERVER_ERROR"


class TestServiceHook:
    async def test_nonce_settings_over_http(
        self, calls: AuthleteCalls, auth: AuthorizationService, signers: dict[str, ProofSigner]
    ) -> None:
        """The client-registration hook also sets the service's nonce requirement (for a
        simulator run as a subprocess); wrong types or ranges are a 400."""
        key = signers["ES256"]
        client = {
            "client_id": 4242,
            "redirect_uris": ["https://app.example/cb"],
            "jwks": {"keys": [dict(key.public_jwk)]},
        }
        hook = "/sim/authorization/clients"
        ok = await calls.http.post(
            hook,
            json=client | {"service": {"dpop_nonce_required": True, "dpop_nonce_duration": 30}},
            auth=_v2_auth(),
        )
        assert ok.status_code == 201, ok.text
        assert (auth.service.dpop_nonce_required, auth.service.dpop_nonce_duration) == (True, 30)
        for bad in ({"dpop_nonce_required": "yes"}, {"dpop_nonce_duration": 0}):
            refused = await calls.http.post(hook, json=client | {"service": bad}, auth=_v2_auth())
            assert refused.status_code == 400, bad


def _v2_auth() -> tuple[str, str]:
    from dpop_guard.devtools.simulator import DEFAULT_API_SECRET, DEFAULT_SERVICE_ID

    return (DEFAULT_SERVICE_ID, DEFAULT_API_SECRET)
