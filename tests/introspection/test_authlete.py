"""The Authlete client: wire format and the action mapping, over httpx.MockTransport."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest

from dpop_guard.errors import (
    DPoPGuardError,
    InsufficientScope,
    IntrospectionUnavailable,
    InvalidDPoPProof,
    InvalidRequest,
    InvalidToken,
    UseDPoPNonce,
)
from dpop_guard.introspection import InactiveToken, RequestFacts, TokenInfo
from dpop_guard.introspection.authlete import AuthleteIntrospector, AuthleteSettings, Bindings

V2 = AuthleteSettings(
    base_url="https://authlete.test",
    api_version="V2",
    api_key="1234",
    api_secret="s3cret-v2",
    timeout=0.5,
)
V3 = AuthleteSettings(
    base_url="https://authlete.test/",
    api_version="V3",
    api_key="987",
    access_token="svc-t0ken",
    timeout=0.5,
)
FACTS = RequestFacts(
    method="GET", htu="https://rs/accounts", proof="h.p.s", jkt="JKT", scopes=("read:accounts",)
)
BEARER_FACTS = RequestFacts(method="GET", htu="https://rs/accounts", proof=None, jkt=None)

OK = {
    "action": "OK",
    "resultCode": "A056001",
    "subject": "alice",
    "clientId": 42,
    "scopes": ["read:accounts", "openid"],
    "expiresAt": 1_900_000_000_123,
    "responseContent": 'Bearer error="invalid_request"',
}
NEEDS_PROOF = {
    "action": "UNAUTHORIZED",
    "resultCode": "A065308",
    "responseContent": 'DPoP error="invalid_token",error_description="[A065308] '
    'Expected a DPoP header but none was provided."',
}

Handler = Callable[[httpx.Request], httpx.Response]


def json_response(body: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=body)


def split_handler(check: Any, probe: Any = NEEDS_PROOF) -> tuple[Handler, list[dict[str, Any]]]:
    """Answer calls with a proof with ``check`` and calls without one with ``probe``."""
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body | {"_url": str(request.url), "_auth": request.headers["authorization"]})
        answer = check if "dpop" in body else probe
        return answer(request) if callable(answer) else json_response(answer)

    return handler, seen


def introspector(handler: Handler, settings: AuthleteSettings = V3) -> AuthleteIntrospector:
    return AuthleteIntrospector(httpx.AsyncClient(transport=httpx.MockTransport(handler)), settings)


class TestWire:
    async def test_v3_request(self) -> None:
        """V3: /api/{serviceId}/auth/introspection, Bearer, token+dpop+htm+htu (never the
        route's scopes: the answer is cached for every route), and a parallel probe with the
        token alone."""
        handler, seen = split_handler(OK)
        await introspector(handler, V3).introspect("tok", request=FACTS)
        check = next(b for b in seen if "dpop" in b)
        probe = next(b for b in seen if "dpop" not in b)
        assert check["_url"] == "https://authlete.test/api/987/auth/introspection"
        assert check["_auth"] == "Bearer svc-t0ken"
        assert {k: v for k, v in check.items() if not k.startswith("_")} == {
            "token": "tok",
            "dpop": "h.p.s",
            "htm": "GET",
            "htu": "https://rs/accounts",
        }
        assert {k: v for k, v in probe.items() if not k.startswith("_")} == {"token": "tok"}

    async def test_v2_request(self) -> None:
        """V2: /api/auth/introspection with Basic apikey:apisecret."""
        handler, seen = split_handler(OK)
        await introspector(handler, V2).introspect("tok", request=FACTS)
        assert seen[0]["_url"] == "https://authlete.test/api/auth/introspection"
        expected = "Basic " + base64.b64encode(b"1234:s3cret-v2").decode()
        assert {b["_auth"] for b in seen} == {expected}

    async def test_bearer_scheme_single_call(self) -> None:
        """Without a proof there is one call, and an OK token is unbound."""
        handler, seen = split_handler(OK, probe=OK)
        info = await introspector(handler).introspect("tok", request=BEARER_FACTS)
        assert len(seen) == 1 and info.jkt is None


class TestMapping:
    async def test_bound_token(self) -> None:
        """Check OK + probe UNAUTHORIZED: bound to the proof's key; facts parsed."""
        info = await introspector(split_handler(OK)[0]).introspect("tok", request=FACTS)
        assert info == TokenInfo(
            subject="alice",
            client_id="42",
            scopes=frozenset({"read:accounts", "openid"}),
            expires_at=1_900_000_000,
            jkt="JKT",
        )

    async def test_unbound_token(self) -> None:
        """Check OK + probe OK: an unbound token, jkt None."""
        info = await introspector(split_handler(OK, OK)[0]).introspect("tok", request=FACTS)
        assert info.jkt is None

    async def test_probe_inconclusive(self) -> None:
        """A probe answer that is neither OK nor UNAUTHORIZED fails closed."""
        handler, _ = split_handler(OK, {"action": "FORBIDDEN"})
        with pytest.raises(IntrospectionUnavailable) as info:
            await introspector(handler).introspect("tok", request=FACTS)
        assert info.value.reason == "authlete_probe_inconclusive"

    async def test_probe_outage(self) -> None:
        """A failed probe is an outage even if the check passed."""
        handler, _ = split_handler(OK, lambda r: httpx.Response(500))
        with pytest.raises(IntrospectionUnavailable):
            await introspector(handler).introspect("tok", request=FACTS)

    @pytest.mark.parametrize(
        ("answer", "cls", "status", "error"),
        [
            (
                {
                    "action": "BAD_REQUEST",
                    "responseContent": 'Bearer error="invalid_request",error_description="[A1] no token"',
                },
                InvalidRequest,
                400,
                "invalid_request",
            ),
            (
                {
                    "action": "UNAUTHORIZED",
                    "responseContent": 'Bearer error="invalid_token",error_description="[A2] gone",error_uri="https://docs/#A2"',
                },
                InvalidToken,
                401,
                "invalid_token",
            ),
            (
                {
                    "action": "UNAUTHORIZED",
                    "responseContent": 'DPoP error="invalid_dpop_proof",error_description="[A3] Thumbprint mismatch"',
                },
                InvalidDPoPProof,
                401,
                "invalid_dpop_proof",
            ),
            (
                {
                    "action": "FORBIDDEN",
                    "responseContent": 'Bearer error="insufficient_scope",error_description="[A064302] x",scope="read:accounts"',
                },
                InsufficientScope,
                403,
                "insufficient_scope",
            ),
            (
                {
                    "action": "FORBIDDEN",
                    "responseContent": 'Bearer error="invalid_request",error_description="subject mismatch"',
                },
                InvalidRequest,
                403,
                "invalid_request",
            ),
            ({"action": "UNAUTHORIZED"}, InvalidToken, 401, "invalid_token"),
            (
                {"action": "UNAUTHORIZED", "responseContent": "garbage ="},
                InvalidToken,
                401,
                "invalid_token",
            ),
            (
                {"action": "UNAUTHORIZED", "responseContent": 'DPoP error="use_dpop_nonce"'},
                InvalidDPoPProof,
                401,
                "invalid_dpop_proof",
            ),
        ],
    )
    async def test_rejections(
        self, answer: dict[str, Any], cls: type[DPoPGuardError], status: int, error: str
    ) -> None:
        """Each action becomes our typed error with Authlete's code and status."""
        with pytest.raises(cls) as info:
            await introspector(split_handler(answer)[0]).introspect("tok", request=FACTS)
        assert info.value.status == status
        assert info.value.error == error
        assert info.value.reason.startswith("authlete_")

    async def test_rejection_keeps_description_and_uri(self) -> None:
        """Authlete's error_description and error_uri are kept for the challenge."""
        answer = {
            "action": "UNAUTHORIZED",
            "responseContent": 'Bearer error="invalid_token",error_description="[A2] gone",'
            'error_uri="https://docs/#A2"',
        }
        with pytest.raises(InvalidToken) as info:
            await introspector(split_handler(answer)[0]).introspect("tok", request=FACTS)
        assert info.value.description == "[A2] gone"
        assert dict(info.value.challenge_params) == {"error_uri": "https://docs/#A2"}

    @pytest.mark.parametrize(
        ("fields", "inactive"),
        [
            ({"existent": False, "usable": False}, True),  # "does not exist"
            ({"existent": True, "usable": False}, True),  # "has expired"
            ({"existent": True, "usable": True}, False),  # binding or proof failure
            ({}, False),  # no facts given: assume it may depend on the request
        ],
    )
    async def test_inactive_token_only_when_not_usable(
        self, fields: dict[str, bool], inactive: bool
    ) -> None:
        """UNAUTHORIZED with usable false is about the token alone (InactiveToken, which a
        cache may remember); anything else stays a plain InvalidToken."""
        answer = {
            "action": "UNAUTHORIZED",
            "responseContent": 'Bearer error="invalid_token"',
            **fields,
        }
        for facts in (FACTS, BEARER_FACTS):
            with pytest.raises(InvalidToken) as info:
                await introspector(split_handler(answer, answer)[0]).introspect(
                    "tok", request=facts
                )
            assert isinstance(info.value, InactiveToken) is inactive
            assert info.value.reason == "authlete_unauthorized"

    async def test_proof_rejection_is_never_inactive(self) -> None:
        """An invalid_dpop_proof answer is not InactiveToken, whatever usable says."""
        answer = {
            "action": "UNAUTHORIZED",
            "usable": False,
            "responseContent": 'DPoP error="invalid_dpop_proof"',
        }
        with pytest.raises(InvalidDPoPProof) as info:
            await introspector(split_handler(answer)[0]).introspect("tok", request=FACTS)
        assert not isinstance(info.value, InactiveToken)

    async def test_insufficient_scope_defaults_to_route_scopes(self) -> None:
        """Without a scope attribute, the route's scopes are named."""
        answer = {"action": "FORBIDDEN", "responseContent": 'Bearer error="insufficient_scope"'}
        with pytest.raises(InsufficientScope) as info:
            await introspector(split_handler(answer)[0]).introspect("tok", request=FACTS)
        assert info.value.scope == "read:accounts"

    async def test_use_dpop_nonce_with_nonce(self) -> None:
        """Authlete's dpopNonce is carried on use_dpop_nonce."""
        answer = {
            "action": "UNAUTHORIZED",
            "dpopNonce": "n-1",
            "responseContent": 'DPoP error="use_dpop_nonce"',
        }
        with pytest.raises(UseDPoPNonce) as info:
            await introspector(split_handler(answer)[0]).introspect("tok", request=FACTS)
        assert info.value.nonce == "n-1"


class TestFaults:
    @pytest.mark.parametrize(
        ("handler", "reason"),
        [
            (
                lambda r: json_response({"action": "INTERNAL_SERVER_ERROR"}),
                "authlete_internal_error",
            ),
            (lambda r: json_response({"action": "WHATEVER"}), "authlete_unknown_action"),
            (lambda r: json_response({}), "authlete_unknown_action"),
            (
                lambda r: httpx.Response(500, json={"resultCode": "A001101"}),
                "authlete_server_error",
            ),
            (
                lambda r: httpx.Response(401, json={"resultCode": "A001202"}),
                "authlete_credentials_refused",
            ),
            (lambda r: httpx.Response(429), "authlete_http_error"),
            (lambda r: httpx.Response(200, text="<html>"), "authlete_bad_response"),
            (lambda r: httpx.Response(200, text='{"action":"OK",'), "authlete_bad_response"),
            (lambda r: json_response([1, 2]), "authlete_bad_response"),
            (lambda r: json_response(OK | {"scopes": "not-a-list"}), "authlete_bad_response"),
            (lambda r: json_response(OK | {"expiresAt": "soon"}), "authlete_bad_response"),
            (lambda r: json_response(OK | {"subject": 5}), "authlete_bad_response"),
        ],
    )
    async def test_unavailable(self, handler: Handler, reason: str) -> None:
        """Server errors and unusable answers are IntrospectionUnavailable (503)."""
        with pytest.raises(IntrospectionUnavailable) as info:
            await introspector(handler).introspect("tok", request=BEARER_FACTS)
        assert info.value.reason == reason
        assert info.value.status == 503

    async def test_connection_refused_then_recovers(self) -> None:
        """A refused connection is retried once within the budget."""
        calls = []

        def handler(request: httpx.Request) -> httpx.Response:
            calls.append(1)
            if len(calls) == 1:
                raise httpx.ConnectError("refused", request=request)
            return json_response(OK)

        info = await introspector(handler).introspect("tok", request=BEARER_FACTS)
        assert info.subject == "alice" and len(calls) == 2

    async def test_connection_refused_twice(self) -> None:
        """After the retries, unreachable."""

        def handler(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused", request=request)

        with pytest.raises(IntrospectionUnavailable) as info:
            await introspector(handler).introspect("tok", request=BEARER_FACTS)
        assert info.value.reason == "authlete_unreachable"

    async def test_503_retried(self) -> None:
        """A 503 is retried once; the second answer counts."""
        answers = [httpx.Response(503), json_response(OK)]
        info = await introspector(lambda r: answers.pop(0)).introspect("tok", request=BEARER_FACTS)
        assert info.subject == "alice"

    @pytest.mark.parametrize("exc", [httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError])
    async def test_transport_errors(self, exc: type[httpx.TransportError]) -> None:
        """Timeouts and broken connections are outages."""

        def handler(request: httpx.Request) -> httpx.Response:
            raise exc("boom", request=request)

        with pytest.raises(IntrospectionUnavailable) as info:
            await introspector(handler).introspect("tok", request=FACTS)
        assert info.value.reason in ("authlete_timeout", "authlete_transport_error")

    async def test_total_timeout(self) -> None:
        """A server that never answers is cut off at the total timeout."""

        class Hang(httpx.AsyncBaseTransport):
            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                await anyio.sleep(30)
                raise AssertionError("not reached")

        client = AuthleteIntrospector(httpx.AsyncClient(transport=Hang()), V3)
        with anyio.fail_after(5):
            with pytest.raises(IntrospectionUnavailable) as info:
                await client.introspect("tok", request=FACTS)
        assert info.value.reason == "authlete_timeout"

    async def test_no_secret_or_token_in_logs(self, caplog: pytest.LogCaptureFixture) -> None:
        """Failures log a reason, never the token, the proof or a credential."""
        caplog.set_level(logging.DEBUG)
        for handler in (
            lambda r: httpx.Response(500, text="svc-t0ken tok-secret"),
            lambda r: json_response({"action": "UNAUTHORIZED"}),
        ):
            with pytest.raises(DPoPGuardError):
                await introspector(handler).introspect("tok-secret", request=FACTS)
        text = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
        for secret in ("tok-secret", "svc-t0ken", "s3cret", "h.p.s"):
            assert secret not in text


class TestSettings:
    def test_repr_hides_secrets(self) -> None:
        """Secrets never appear in repr."""
        assert "s3cret" not in repr(V2) and "svc-t0ken" not in repr(V3)

    def test_from_env_v3(self) -> None:
        """Authlete's own variable names configure V3."""
        s = AuthleteSettings.from_env(
            {
                "AUTHLETE_BASE_URL": "https://jp.authlete.com",
                "AUTHLETE_API_VERSION": "v3",
                "AUTHLETE_SERVICE_APIKEY": "715948317",
                "AUTHLETE_SERVICE_ACCESSTOKEN": "at",
                "DPOP_GUARD_AUTHLETE_TIMEOUT": "2.5",
                "DPOP_GUARD_AUTHLETE_BINDING_TTL": "0",
            }
        )
        assert s.introspection_url == "https://jp.authlete.com/api/715948317/auth/introspection"
        assert s.authorization == "Bearer at" and s.timeout == 2.5 and s.binding_ttl == 0

    def test_from_env_v2(self) -> None:
        """V2 uses Basic key:secret."""
        s = AuthleteSettings.from_env(
            {
                "AUTHLETE_BASE_URL": "https://api.authlete.com",
                "AUTHLETE_API_VERSION": "V2",
                "AUTHLETE_SERVICE_APIKEY": "k",
                "AUTHLETE_SERVICE_APISECRET": "s",
            }
        )
        assert s.introspection_url == "https://api.authlete.com/api/auth/introspection"
        assert s.authorization == "Basic " + base64.b64encode(b"k:s").decode()

    @pytest.mark.parametrize(
        ("env", "message"),
        [
            ({}, "AUTHLETE_BASE_URL"),
            ({"AUTHLETE_BASE_URL": "https://a"}, "AUTHLETE_SERVICE_APIKEY"),
            ({"AUTHLETE_BASE_URL": "https://a", "AUTHLETE_SERVICE_APIKEY": "1"}, "access_token"),
            (
                {
                    "AUTHLETE_BASE_URL": "https://a",
                    "AUTHLETE_SERVICE_APIKEY": "1",
                    "AUTHLETE_API_VERSION": "V2",
                },
                "api_secret",
            ),
            (
                {
                    "AUTHLETE_BASE_URL": "https://a",
                    "AUTHLETE_SERVICE_APIKEY": "abc",
                    "AUTHLETE_SERVICE_ACCESSTOKEN": "t",
                },
                "numeric service id",
            ),
            (
                {
                    "AUTHLETE_BASE_URL": "ftp://a",
                    "AUTHLETE_SERVICE_APIKEY": "1",
                    "AUTHLETE_SERVICE_ACCESSTOKEN": "t",
                },
                "AUTHLETE_BASE_URL",
            ),
            (
                {
                    "AUTHLETE_BASE_URL": "https://a",
                    "AUTHLETE_SERVICE_APIKEY": "1",
                    "AUTHLETE_SERVICE_ACCESSTOKEN": "t",
                    "AUTHLETE_API_VERSION": "V9",
                },
                "api_version",
            ),
            (
                {
                    "AUTHLETE_BASE_URL": "https://a",
                    "AUTHLETE_SERVICE_APIKEY": "1",
                    "AUTHLETE_SERVICE_ACCESSTOKEN": "t",
                    "DPOP_GUARD_AUTHLETE_TIMEOUT": "x",
                },
                "TIMEOUT",
            ),
        ],
    )
    def test_from_env_errors(self, env: dict[str, str], message: str) -> None:
        """Misconfiguration names the problem, never a secret."""
        with pytest.raises(ValueError, match=message):
            AuthleteSettings.from_env(env)


class TestCircuitBreaker:
    def breaker(self) -> tuple[Any, list[float]]:
        from dpop_guard.introspection.authlete import CircuitBreaker

        now = [100.0]
        return CircuitBreaker(threshold=3, cooldown=2.0, clock=lambda: now[0]), now

    async def test_opens_after_consecutive_outages(self) -> None:
        """Three outages in a row open the circuit: the next calls fail without a request;
        after the cooldown one trial goes out, and its success closes the circuit."""
        breaker, now = self.breaker()
        calls: list[int] = []
        healthy = [False]

        def handler(request: httpx.Request) -> httpx.Response:
            calls.append(1)
            return json_response(OK) if healthy[0] else httpx.Response(500)

        intro = AuthleteIntrospector(
            httpx.AsyncClient(transport=httpx.MockTransport(handler)), V3, breaker=breaker
        )
        for _ in range(3):
            with pytest.raises(IntrospectionUnavailable):
                await intro.introspect("tok", request=BEARER_FACTS)
        assert len(calls) == 3 and breaker.is_open
        with pytest.raises(IntrospectionUnavailable) as info:
            await intro.introspect("tok", request=BEARER_FACTS)
        assert info.value.reason == "authlete_circuit_open" and len(calls) == 3
        now[0] += 2.0
        healthy[0] = True
        assert (await intro.introspect("tok", request=BEARER_FACTS)).subject == "alice"
        assert not breaker.is_open and len(calls) == 4

    async def test_failed_trial_reopens(self) -> None:
        """A failed trial call opens the circuit for another cooldown."""
        breaker, now = self.breaker()
        for _ in range(3):
            breaker.failure()
        now[0] += 2.0
        assert breaker.allow() and not breaker.allow()  # one trial at a time
        breaker.failure()
        assert not breaker.allow()
        now[0] += 2.0
        assert breaker.allow()

    async def test_rejections_are_not_outages(self) -> None:
        """UNAUTHORIZED answers mean Authlete is up: they never open the circuit."""
        breaker, _ = self.breaker()
        intro = introspector(lambda r: json_response({"action": "UNAUTHORIZED"}))
        intro.breaker = breaker
        for _ in range(5):
            with pytest.raises(InvalidToken):
                await intro.introspect("tok", request=BEARER_FACTS)
        assert not breaker.is_open

    async def test_cancelled_trial_allows_another(self) -> None:
        """A trial call cancelled midway does not leave the circuit stuck open."""
        breaker, now = self.breaker()
        for _ in range(3):
            breaker.failure()
        now[0] += 2.0

        class Hang(httpx.AsyncBaseTransport):
            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                await anyio.sleep(30)
                raise AssertionError("not reached")

        intro = AuthleteIntrospector(httpx.AsyncClient(transport=Hang()), V3, breaker=breaker)
        with anyio.move_on_after(0.05):
            await intro.introspect("tok", request=BEARER_FACTS)
        assert breaker.allow()

    async def test_disabled(self) -> None:
        """breaker=None: every call goes out."""
        calls: list[int] = []

        def handler(request: httpx.Request) -> httpx.Response:
            calls.append(1)
            return httpx.Response(500)

        intro = AuthleteIntrospector(
            httpx.AsyncClient(transport=httpx.MockTransport(handler)), V3, breaker=None
        )
        for _ in range(8):
            with pytest.raises(IntrospectionUnavailable):
                await intro.introspect("tok", request=BEARER_FACTS)
        assert len(calls) == 8


# The binding probe's answer, remembered per token (authlete.Bindings): one call per
# re-check of a token seen before, never a stale or wrong binding.

EXPIRES = 1_900_000_000  # OK's expiresAt, in seconds
WRONG_KEY = {
    "action": "UNAUTHORIZED",
    "resultCode": "A065304",
    "responseContent": 'DPoP error="invalid_dpop_proof"',
    "usable": True,
}
GONE = {
    "action": "UNAUTHORIZED",
    "resultCode": "A065304",
    "responseContent": 'Bearer error="invalid_token"',
    "existent": False,
    "usable": False,
}


class Clock:
    def __init__(self, now: float = EXPIRES - 3600) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Authlete:
    """Answers the check (a call with ``dpop``) and the probe (without) from settable
    answers, and counts both; ``during_probe`` runs while a probe is being answered."""

    def __init__(
        self, check: dict[str, Any] = OK, probe: dict[str, Any] | None = NEEDS_PROOF
    ) -> None:
        self.check, self.probe = check, probe
        self.checks = self.probes = 0
        self.during_probe: Callable[[], None] = lambda: None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if "dpop" in json.loads(request.content):
            self.checks += 1
            return httpx.Response(200, json=self.check)
        self.probes += 1
        self.during_probe()
        answer = self.probe
        return httpx.Response(500) if answer is None else httpx.Response(200, json=answer)


def make(authlete: Authlete, clock: Clock, **changes: Any) -> AuthleteIntrospector:
    client = httpx.AsyncClient(transport=httpx.MockTransport(authlete))
    settings = dataclasses.replace(V3, **changes)
    return AuthleteIntrospector(client, settings, clock=clock, breaker=None)


@pytest.mark.parametrize(("probe", "jkt"), [(NEEDS_PROOF, "JKT"), (OK, None)])
async def test_a_token_seen_before_costs_the_check_alone(probe: dict[str, Any], jkt: str) -> None:
    """First sight: check and probe. Again: the check alone, with the same binding."""
    authlete, clock = Authlete(probe=probe), Clock()
    introspector = make(authlete, clock)
    first = await introspector.introspect("tok", request=FACTS)
    again = await introspector.introspect("tok", request=FACTS)
    assert (authlete.checks, authlete.probes) == (2, 1)
    assert first.jkt == again.jkt == jkt


async def test_every_request_is_still_checked() -> None:
    """Only the binding is remembered: a proof Authlete now refuses is refused, and the
    owner's binding stays (a thief's refused proof costs the owner no probe)."""
    authlete, clock = Authlete(), Clock()
    introspector = make(authlete, clock)
    await introspector.introspect("tok", request=FACTS)
    authlete.check = WRONG_KEY
    with pytest.raises(InvalidDPoPProof) as refused:
        await introspector.introspect("tok", request=FACTS)
    assert refused.value.reason == "authlete_unauthorized"
    assert refused.value.error == "invalid_dpop_proof" and refused.value.status == 401
    authlete.check = OK
    await introspector.introspect("tok", request=FACTS)
    assert (authlete.checks, authlete.probes) == (3, 1)


async def test_a_refusal_of_the_token_forgets_its_binding() -> None:
    """Authlete says the token does not exist: its binding is forgotten, and a token
    issued again under the same value is judged afresh."""
    authlete, clock = Authlete(), Clock()
    introspector = make(authlete, clock)
    await introspector.introspect("tok", request=FACTS)
    authlete.check = GONE
    with pytest.raises(InactiveToken):
        await introspector.introspect("tok", request=FACTS)
    assert len(introspector.bindings) == 0
    authlete.check, authlete.probe = OK, OK  # issued again, unbound
    info = await introspector.introspect("tok", request=FACTS)
    assert authlete.probes == 2 and info.jkt is None


async def test_a_token_issued_again_unseen_is_probed_again() -> None:
    """A bound token deleted and issued again unbound under the same value while this
    process saw nothing: the check answers another expiry, so the probe runs again before
    the answer is used, and a thief's key is not taken for the binding."""
    authlete, clock = Authlete(), Clock()
    introspector = make(authlete, clock)
    await introspector.introspect("tok", request=FACTS)
    authlete.check = {**OK, "expiresAt": (EXPIRES + 60) * 1000 + 123}
    authlete.probe = OK  # unbound now
    info = await introspector.introspect("tok", request=FACTS)
    assert info.jkt is None and authlete.probes == 2
    again = await introspector.introspect("tok", request=FACTS)
    assert again.jkt is None and authlete.probes == 2  # the new answer is remembered


async def test_an_answer_is_used_for_the_binding_ttl_at_most() -> None:
    """A binding added later (Authlete's /auth/token/update) is seen within binding_ttl."""
    authlete, clock = Authlete(probe=OK), Clock()
    introspector = make(authlete, clock, binding_ttl=300)
    await introspector.introspect("tok", request=FACTS)
    authlete.probe = NEEDS_PROOF  # bound in place, same expiry
    clock.now += 299
    assert (await introspector.introspect("tok", request=FACTS)).jkt is None
    clock.now += 1
    assert (await introspector.introspect("tok", request=FACTS)).jkt == "JKT"
    assert authlete.probes == 2


async def test_a_binding_ttl_of_zero_probes_every_miss() -> None:
    authlete, clock = Authlete(), Clock()
    introspector = make(authlete, clock, binding_ttl=0)
    for _ in range(3):
        await introspector.introspect("tok", request=FACTS)
    assert (authlete.checks, authlete.probes) == (3, 3)


async def test_the_binding_is_forgotten_when_the_token_expires() -> None:
    authlete, clock = Authlete(), Clock(now=EXPIRES - 10)
    introspector = make(authlete, clock)
    await introspector.introspect("tok", request=FACTS)
    clock.now = EXPIRES + 1  # past expiresAt (1,900,000,000.123)
    await introspector.introspect("tok", request=FACTS)
    assert authlete.probes == 2
    assert len(introspector.bindings) == 0  # the new answer's expiry has passed too


async def test_a_token_without_expiry_is_not_remembered() -> None:
    authlete, clock = Authlete(check={k: v for k, v in OK.items() if k != "expiresAt"}), Clock()
    introspector = make(authlete, clock)
    for _ in range(2):
        await introspector.introspect("tok", request=FACTS)
    assert authlete.probes == 2 and len(introspector.bindings) == 0


async def test_a_failed_probe_teaches_nothing() -> None:
    authlete, clock = Authlete(probe=None), Clock()  # the probe gets a 500
    introspector = make(authlete, clock)
    with pytest.raises(IntrospectionUnavailable):
        await introspector.introspect("tok", request=FACTS)
    authlete.probe = NEEDS_PROOF
    await introspector.introspect("tok", request=FACTS)
    assert authlete.probes == 2


async def test_a_probe_racing_a_forget_teaches_nothing() -> None:
    """A token forgotten while a probe is in flight: that probe's answer may predate what
    made the token forgotten, so it is not remembered."""
    authlete, clock = Authlete(), Clock()
    introspector = make(authlete, clock)
    authlete.during_probe = lambda: introspector.bindings.forget(Bindings.key("tok"))
    info = await introspector.introspect("tok", request=FACTS)
    assert info.jkt == "JKT" and len(introspector.bindings) == 0


async def test_tokens_are_remembered_apart_and_never_kept() -> None:
    """Each token has its own entry, keyed by its SHA-256: the memo holds no token."""
    authlete, clock = Authlete(), Clock()
    introspector = make(authlete, clock)
    await introspector.introspect("tok-a", request=FACTS)
    authlete.probe = OK
    info = await introspector.introspect("tok-b", request=FACTS)
    assert authlete.probes == 2 and info.jkt is None
    a, b = (introspector.bindings.recall(Bindings.key(t)) for t in ("tok-a", "tok-b"))
    assert a is not None and a.bound and b is not None and not b.bound
    assert Bindings.key("tok-a") == hashlib.sha256(b"tok-a").digest()


async def test_another_tokens_refusal_does_not_stop_learning() -> None:
    """Refusals of other tokens (junk, expired) while a probe runs: its answer is still
    remembered (only its own token's refusal discards it)."""
    authlete, clock = Authlete(), Clock()
    introspector = make(authlete, clock)
    authlete.during_probe = lambda: introspector.bindings.forget(Bindings.key("junk"))
    await introspector.introspect("tok", request=FACTS)
    assert len(introspector.bindings) == 1


async def test_an_outage_keeps_the_binding() -> None:
    """A check that fails (503) says nothing about the token: its binding stays."""
    authlete, clock = Authlete(), Clock()
    introspector = make(authlete, clock)
    await introspector.introspect("tok", request=FACTS)
    authlete.check = {"action": "INTERNAL_SERVER_ERROR", "resultCode": "A001"}
    with pytest.raises(IntrospectionUnavailable):
        await introspector.introspect("tok", request=FACTS)
    assert len(introspector.bindings) == 1


async def test_a_token_for_another_api_forgets_its_binding() -> None:
    authlete, clock = Authlete(), Clock()
    introspector = make(authlete, clock)
    await introspector.introspect("tok", request=FACTS)
    authlete.check = {
        "action": "BAD_REQUEST",
        "resultCode": "A327605",
        "responseContent": 'Bearer error="invalid_target"',
    }
    with pytest.raises(InactiveToken) as refused:
        await introspector.introspect("tok", request=FACTS)
    assert refused.value.reason == "authlete_resource_mismatch"
    assert len(introspector.bindings) == 0


def test_the_memo_is_bounded_in_bytes() -> None:
    """A flood of distinct tokens makes the memo start over; it never holds more than its
    budget allows, and a token learned again is charged once."""
    bindings = Bindings(Clock(), budget=10_000)  # 22 entries of 449 bytes
    mine = Bindings.key("tok")
    for _ in range(100):
        bindings.learn(mine, True, OK["expiresAt"], bindings.moment())
    for n in range(21):
        bindings.learn(Bindings.key(f"tok-{n}"), True, OK["expiresAt"], bindings.moment())
    assert len(bindings) == 22 and bindings.recall(mine) is not None
    for n in range(1_000):
        bindings.learn(Bindings.key(f"more-{n}"), True, OK["expiresAt"], bindings.moment())
        assert len(bindings) <= 22


@pytest.mark.parametrize("value", [-1, 86_401, float("nan")])
def test_binding_ttl_bounds(value: float) -> None:
    with pytest.raises(ValueError, match="binding_ttl"):
        dataclasses.replace(V3, binding_ttl=value)
