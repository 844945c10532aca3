"""RFC 9701 end to end over real HTTP: the middleware, Authlete's standard introspection API
asked for signed answers, and the simulator behind it signing them with keys it publishes
at its JWKS URL (fetched over HTTP by the verifier); then the same built from the
environment. Each broken answer the simulator can give is a 503 with its own reason."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from joserfc import jwk as jose_jwk
from joserfc import jwt as jose_jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route as StarletteRoute

from dpop_guard import (
    AuthleteIntrospector,
    CachingIntrospector,
    DPoPGuardMiddleware,
    GuardSettings,
    ProofSigner,
    from_env,
)
from dpop_guard._env import ConfigurationError
from dpop_guard.devtools.simulator import DEFAULT_SERVICE_ID, DEFAULT_SERVICE_TOKEN, SimulatorState
from dpop_guard.devtools.simulator._rfc7662 import RFC7662_PATH, RS_CLIENT_ID, RS_CLIENT_SECRET
from dpop_guard.devtools.simulator._signed import JWKS_PATH
from dpop_guard.errors import IntrospectionUnavailable
from dpop_guard.introspection import RequestFacts
from dpop_guard.introspection._signed import SignedResponseSettings, SignedResponseVerifier
from dpop_guard.introspection.rfc7662 import (
    AuthleteStandardIntrospector,
    RFC7662Introspector,
    RFC7662Settings,
)
from dpop_guard.testing import make_proof
from tests._support.harness import ORIGIN, assert_rejected, authlete_settings, inner_app

AS_ISSUER = "https://as.example.com"  # the simulator's authorization-server issuer
STANDARD = "auth/introspection/standard"
FACTS = RequestFacts(method="GET", htu=ORIGIN + "/accounts", proof=None, jkt=None)


@pytest.fixture(name="sim")
def _sim(simulator: SimulatorState) -> Iterator[SimulatorState]:
    simulator.signed_flaw = None
    yield simulator
    simulator.signed_flaw = None


def signed_settings(simulator_url: str, **changes: Any) -> SignedResponseSettings:
    options: dict[str, Any] = {
        "issuer": AS_ISSUER,
        "audience": ORIGIN,
        "jwks_uri": simulator_url + JWKS_PATH,
        **changes,
    }
    return SignedResponseSettings(**options)


@pytest.fixture(name="client")
async def _client(simulator_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        verifier = SignedResponseVerifier.remote(http, signed_settings(simulator_url))
        introspector = AuthleteStandardIntrospector(
            http, authlete_settings(simulator_url), signed=verifier
        )
        app = DPoPGuardMiddleware(
            inner_app(),
            settings=GuardSettings(public_url=ORIGIN),
            introspector=CachingIntrospector(introspector, ttl=60),
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
            yield client


async def call(client: httpx.AsyncClient, token: str, signer: ProofSigner) -> httpx.Response:
    proof = make_proof(signer, htu=ORIGIN + "/accounts", access_token=token)
    return await client.get("/accounts", headers={"Authorization": f"DPoP {token}", "DPoP": proof})


def issue(sim: SimulatorState, signer: ProofSigner, **extra: Any) -> str:
    options: dict[str, Any] = {"resources": [ORIGIN], **extra}
    return sim.create_token(subject="alice", scopes=["read:accounts"], jkt=signer.jkt, **options)


class TestSigned:
    async def test_bound_token_one_call_per_miss(
        self, client: httpx.AsyncClient, sim: SimulatorState, signer: ProofSigner
    ) -> None:
        """The signed answer's cnf.jkt is the binding: one call to Authlete per miss (the
        standard API), none on a hit, and no binding probe."""
        token = issue(sim, signer)
        for _ in range(2):
            response = await call(client, token, signer)
            assert response.status_code == 200, response.text
            assert response.json()["jkt"] == signer.jkt
            assert response.json()["subject"] == "alice"
        assert sim.calls[STANDARD] == 1
        assert sim.calls["auth/introspection"] == 0

    async def test_the_app_holds_the_signed_answer(
        self, simulator_url: str, sim: SimulatorState, signer: ProofSigner
    ) -> None:
        """``request.auth.introspection_jwt`` is the authorization server's signed
        statement, as it sent it (checked here with joserfc alone against the JWKS it
        publishes), the same on a cache hit."""

        async def audit(request: Request) -> JSONResponse:
            return JSONResponse({"jwt": request.auth.introspection_jwt})

        async with httpx.AsyncClient() as http:
            verifier = SignedResponseVerifier.remote(http, signed_settings(simulator_url))
            introspector = AuthleteStandardIntrospector(
                http, authlete_settings(simulator_url), signed=verifier
            )
            app = DPoPGuardMiddleware(
                Starlette(routes=[StarletteRoute("/accounts", audit)]),
                settings=GuardSettings(public_url=ORIGIN),
                introspector=CachingIntrospector(introspector, ttl=60),
            )
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
                token = issue(sim, signer)
                seen = [(await call(client, token, signer)).json()["jwt"] for _ in range(2)]
            keys = jose_jwk.KeySet.import_key_set(
                (await http.get(simulator_url + JWKS_PATH)).json()
            )
        assert seen[0] == seen[1] and sim.calls[STANDARD] == 1
        statement = jose_jwt.decode(seen[0], keys, algorithms=["ES256"])
        assert statement.header["typ"] == "token-introspection+jwt"
        assert statement.claims["iss"] == AS_ISSUER and statement.claims["aud"] == ORIGIN
        assert statement.claims["token_introspection"]["cnf"] == {"jkt": signer.jkt}

    async def test_other_key(
        self,
        client: httpx.AsyncClient,
        sim: SimulatorState,
        signer: ProofSigner,
        reasons: list[str],
    ) -> None:
        token = issue(sim, signer)
        response = await call(client, token, ProofSigner.generate("ES256"))
        assert_rejected(response, 401, "invalid_dpop_proof", "jkt_mismatch", reasons)

    async def test_token_for_another_resource(
        self,
        client: httpx.AsyncClient,
        sim: SimulatorState,
        signer: ProofSigner,
        reasons: list[str],
    ) -> None:
        """Authlete judges ``rsUri`` against the token's resources: ``active: false``."""
        token = issue(sim, signer, resources=["https://other.bank.test"])
        response = await call(client, token, signer)
        assert_rejected(response, 401, "invalid_token", "introspection_inactive", reasons)

    async def test_unknown_token(
        self, client: httpx.AsyncClient, signer: ProofSigner, reasons: list[str]
    ) -> None:
        response = await call(client, "no-such-token", signer)
        assert_rejected(response, 401, "invalid_token", "introspection_inactive", reasons)

    @pytest.mark.parametrize(
        ("flaw", "reason"),
        [
            ("unsigned", "introspection_unsigned"),
            ("bad_signature", "introspection_jwt_signature"),
            ("unknown_kid", "introspection_jwt_unknown_key"),
            ("wrong_typ", "introspection_jwt_typ"),
            ("wrong_issuer", "introspection_jwt_issuer"),
            ("wrong_audience", "introspection_jwt_audience"),
            ("stale_iat", "introspection_jwt_iat"),
            ("no_introspection", "introspection_jwt_content"),
        ],
    )
    async def test_broken_answer(
        self,
        client: httpx.AsyncClient,
        sim: SimulatorState,
        signer: ProofSigner,
        reasons: list[str],
        flaw: str,
        reason: str,
    ) -> None:
        """A broken signed answer is the authorization server failing: 503, never a pass,
        and never remembered (the next request asks again)."""
        token = issue(sim, signer)
        sim.signed_flaw = flaw
        assert_rejected(await call(client, token, signer), 503, None, reason, reasons)
        sim.signed_flaw = None
        response = await call(client, token, signer)
        assert response.status_code == 200, response.text
        assert sim.calls[STANDARD] == 2

    async def test_key_rotation(
        self, simulator_url: str, sim: SimulatorState, signer: ProofSigner
    ) -> None:
        """The authorization server rotates its keys: an answer under the new ``kid`` is
        refused until the key set may be fetched again (at most every 30 s for unknown
        kids, so made-up kids cannot flood the JWKS endpoint), then fetched and accepted."""
        offset = [0.0]
        async with httpx.AsyncClient() as http:
            verifier = SignedResponseVerifier.remote(
                http, signed_settings(simulator_url), clock=lambda: time.time() + offset[0]
            )
            introspector = AuthleteStandardIntrospector(
                http, authlete_settings(simulator_url), signed=verifier, breaker=None
            )
            assert (await introspector.introspect(issue(sim, signer), request=FACTS)).jkt
            sim.signer.rotate()
            with pytest.raises(IntrospectionUnavailable) as caught:
                await introspector.introspect(issue(sim, signer), request=FACTS)
            assert caught.value.reason == "introspection_jwt_unknown_key"
            offset[0] = 31.0
            info = await introspector.introspect(issue(sim, signer), request=FACTS)
        assert info.jkt == signer.jkt

    async def test_ps256(
        self, simulator_url: str, sim: SimulatorState, signer: ProofSigner
    ) -> None:
        """Authlete is asked for the first allowed algorithm."""
        async with httpx.AsyncClient() as http:
            settings = signed_settings(simulator_url, algorithms=("PS256",))
            introspector = AuthleteStandardIntrospector(
                http,
                authlete_settings(simulator_url),
                signed=SignedResponseVerifier.remote(http, settings),
            )
            info = await introspector.introspect(issue(sim, signer), request=FACTS)
        assert info.jkt == signer.jkt

    async def test_v2_refused(self, simulator_url: str) -> None:
        settings = authlete_settings(simulator_url)
        v2 = type(settings)(
            base_url=simulator_url,
            api_version="V2",
            api_key=DEFAULT_SERVICE_ID,
            api_secret="secret",
        )
        async with httpx.AsyncClient() as http:
            verifier = SignedResponseVerifier.remote(http, signed_settings(simulator_url))
            with pytest.raises(ValueError, match="V3"):
                AuthleteStandardIntrospector(http, v2, signed=verifier)

    async def test_unsigned_by_default(
        self, simulator_url: str, sim: SimulatorState, signer: ProofSigner
    ) -> None:
        """Without ``signed`` the plain answer is read, as before."""
        async with httpx.AsyncClient() as http:
            introspector = AuthleteStandardIntrospector(http, authlete_settings(simulator_url))
            info = await introspector.introspect(issue(sim, signer), request=FACTS)
        assert info.jkt == signer.jkt


def environment(simulator_url: str, **extra: str) -> dict[str, str]:
    return {
        "DPOP_GUARD_PUBLIC_URL": ORIGIN,
        "DPOP_GUARD_INTROSPECTION": "authlete-standard",
        "AUTHLETE_BASE_URL": simulator_url,
        "AUTHLETE_SERVICE_APIKEY": DEFAULT_SERVICE_ID,
        "AUTHLETE_SERVICE_ACCESSTOKEN": DEFAULT_SERVICE_TOKEN,
        "DPOP_GUARD_INTROSPECTION_SIGNED": "required",
        "DPOP_GUARD_INTROSPECTION_ISSUER": AS_ISSUER,
        "DPOP_GUARD_INTROSPECTION_JWKS_URI": simulator_url + JWKS_PATH,
        **extra,
    }


class TestFromEnv:
    async def test_signed_end_to_end(
        self, simulator_url: str, sim: SimulatorState, signer: ProofSigner, reasons: list[str]
    ) -> None:
        guard = from_env(environ=environment(simulator_url))
        assert (
            f"introspection answers: signed (RFC 9701) by {AS_ISSUER}, keys from "
            f"{simulator_url + JWKS_PATH}, aud {ORIGIN}, alg ES256 PS256 EdDSA"
        ) in guard.describe()
        app = inner_app()
        guard.install(app)
        token = issue(sim, signer)
        async with guard.lifespan(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
                response = await call(client, token, signer)
                assert response.status_code == 200, response.text
                sim.signed_flaw = "unsigned"
                other = issue(sim, signer)
                refused = await call(client, other, signer)
                assert_rejected(refused, 503, None, "introspection_unsigned", reasons)

    @pytest.mark.parametrize(
        "extra",
        [
            {"DPOP_GUARD_INTROSPECTION": "authlete"},
            {"DPOP_GUARD_INTROSPECTION": "jwt", "DPOP_GUARD_JWT_ISSUER": AS_ISSUER},
            {"AUTHLETE_API_VERSION": "V2", "AUTHLETE_SERVICE_APISECRET": "s"},
        ],
        ids=["authlete", "jwt", "authlete-v2"],
    )
    def test_refused_where_not_read(self, simulator_url: str, extra: dict[str, str]) -> None:
        """Signed answers asked for where they cannot be had: start-up stops, naming the
        variable, instead of running unsigned."""
        with pytest.raises(ConfigurationError) as caught:
            from_env(environ=environment(simulator_url, **extra))
        assert caught.value.variable == "DPOP_GUARD_INTROSPECTION_SIGNED"

    def test_plain_authlete_still_builds(self, simulator_url: str) -> None:
        env = environment(simulator_url, DPOP_GUARD_INTROSPECTION="authlete")
        for name in [n for n in env if n.startswith("DPOP_GUARD_INTROSPECTION_")]:
            del env[name]
        guard = from_env(environ=env)
        assert isinstance(guard.upstream, AuthleteIntrospector)


class TestRFC7662Endpoint:
    """The simulator's plain RFC 7662 endpoint, for the ``rfc7662`` mode."""

    @pytest.fixture(name="rfc7662")
    async def _rfc7662(self, simulator_url: str) -> AsyncIterator[httpx.AsyncClient]:
        async with httpx.AsyncClient() as http:
            settings = signed_settings(simulator_url, audience=RS_CLIENT_ID)
            introspector = RFC7662Introspector(
                http,
                rfc7662_settings(simulator_url),
                signed=SignedResponseVerifier.remote(http, settings),
            )
            app = DPoPGuardMiddleware(
                inner_app(),
                settings=GuardSettings(public_url=ORIGIN),
                introspector=CachingIntrospector(introspector, ttl=60),
            )
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
                yield client

    async def test_bound_token(
        self, rfc7662: httpx.AsyncClient, sim: SimulatorState, signer: ProofSigner
    ) -> None:
        token = issue(sim, signer)
        for _ in range(2):
            response = await call(rfc7662, token, signer)
            assert response.status_code == 200, response.text
            assert response.json()["jkt"] == signer.jkt
        assert sim.calls["rfc7662/introspect"] == 1

    @pytest.mark.parametrize(
        ("flaw", "reason"),
        [
            ("unsigned", "introspection_unsigned"),
            ("bad_signature", "introspection_jwt_signature"),
            ("wrong_audience", "introspection_jwt_audience"),
            ("stale_iat", "introspection_jwt_iat"),
        ],
    )
    async def test_broken_answer(
        self,
        rfc7662: httpx.AsyncClient,
        sim: SimulatorState,
        signer: ProofSigner,
        reasons: list[str],
        flaw: str,
        reason: str,
    ) -> None:
        sim.signed_flaw = flaw
        response = await call(rfc7662, issue(sim, signer), signer)
        assert_rejected(response, 503, None, reason, reasons)

    async def test_plain_answer_when_not_asked(
        self, simulator_url: str, sim: SimulatorState, signer: ProofSigner
    ) -> None:
        async with httpx.AsyncClient() as http:
            introspector = RFC7662Introspector(http, rfc7662_settings(simulator_url))
            info = await introspector.introspect(issue(sim, signer), request=FACTS)
        assert info.jkt == signer.jkt

    async def test_wrong_credentials(self, simulator_url: str, sim: SimulatorState) -> None:
        settings = RFC7662Settings(
            url=simulator_url + RFC7662_PATH, client_id=RS_CLIENT_ID, client_secret="wrong"
        )
        async with httpx.AsyncClient() as http:
            introspector = RFC7662Introspector(http, settings, breaker=None)
            with pytest.raises(IntrospectionUnavailable) as caught:
                await introspector.introspect("t", request=FACTS)
        assert caught.value.reason == "introspection_credentials_refused"

    async def test_from_env(
        self, simulator_url: str, sim: SimulatorState, signer: ProofSigner
    ) -> None:
        guard = from_env(
            environ={
                "DPOP_GUARD_PUBLIC_URL": ORIGIN,
                "DPOP_GUARD_INTROSPECTION": "rfc7662",
                "DPOP_GUARD_INTROSPECTION_URL": simulator_url + RFC7662_PATH,
                "DPOP_GUARD_INTROSPECTION_CLIENT_ID": RS_CLIENT_ID,
                "DPOP_GUARD_INTROSPECTION_CLIENT_SECRET": RS_CLIENT_SECRET,
                "DPOP_GUARD_INTROSPECTION_SIGNED": "required",
                "DPOP_GUARD_INTROSPECTION_ISSUER": AS_ISSUER,
                "DPOP_GUARD_INTROSPECTION_JWKS_URI": simulator_url + JWKS_PATH,
            }
        )
        app = inner_app()
        guard.install(app)
        async with guard.lifespan(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
                response = await call(client, issue(sim, signer), signer)
        assert response.status_code == 200, response.text


def rfc7662_settings(simulator_url: str) -> RFC7662Settings:
    return RFC7662Settings(
        url=simulator_url + RFC7662_PATH, client_id=RS_CLIENT_ID, client_secret=RS_CLIENT_SECRET
    )


class TestStartUp:
    async def test_a_wrong_issuer_shows_at_start_up(
        self, simulator_url: str, sim: SimulatorState, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The start-up probe introspects a made-up token: a signed answer from another
        issuer than configured is named in the start-up warning, and readiness is 503."""
        env = environment(simulator_url, DPOP_GUARD_INTROSPECTION_ISSUER="https://other.example")
        guard = from_env(environ=env)
        async with guard.lifespan(None):
            app = inner_app()
            guard.install(app)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
                ready = await client.get("/readyz")
        assert "its answer was refused (introspection_jwt_issuer)" in caplog.text
        assert ready.status_code == 503


class TestSimulatorHook:
    async def test_flaws_over_http(
        self, simulator_url: str, sim: SimulatorState, signer: ProofSigner
    ) -> None:
        """``POST /sim/faults {"signed_flaw": ...}`` breaks the next answers until cleared;
        an unknown flaw is a 400."""
        admin = {"Authorization": f"Bearer {DEFAULT_SERVICE_TOKEN}"}
        async with httpx.AsyncClient(base_url=simulator_url, headers=admin) as hooks:
            unknown = await hooks.post("/sim/faults", json={"signed_flaw": "nonsense"})
            assert unknown.status_code == 400
            set_ = await hooks.post("/sim/faults", json={"signed_flaw": "wrong_typ"})
            assert set_.status_code == 200 and sim.signed_flaw == "wrong_typ"
            async with httpx.AsyncClient() as http:
                verifier = SignedResponseVerifier.remote(http, signed_settings(simulator_url))
                introspector = AuthleteStandardIntrospector(
                    http, authlete_settings(simulator_url), signed=verifier, breaker=None
                )
                with pytest.raises(IntrospectionUnavailable) as caught:
                    await introspector.introspect(issue(sim, signer), request=FACTS)
                assert caught.value.reason == "introspection_jwt_typ"
                cleared = await hooks.post("/sim/faults", json={"signed_flaw": None})
                assert cleared.status_code == 200 and sim.signed_flaw is None
                info = await introspector.introspect(issue(sim, signer), request=FACTS)
            assert info.jkt == signer.jkt
