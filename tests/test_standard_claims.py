"""RFC 7662, Authlete's ``/auth/introspection/standard`` and JWT access tokens: the
certificate binding (``cnf["x5t#S256"]``), step-up facts (``acr``, ``auth_time``), RFC 9396
``authorization_details``, and ``aud`` against the resources setting. One test per rule."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from types import MappingProxyType
from typing import Any

import httpx
import pytest
from joserfc import jwk as jose_jwk
from joserfc import jwt as jose_jwt

from dpop_guard.devtools.simulator import DEFAULT_SERVICE_ID, DEFAULT_SERVICE_TOKEN, SimulatorState
from dpop_guard.errors import IntrospectionUnavailable
from dpop_guard.introspection import (
    InactiveToken,
    RequestFacts,
    resources_from_env,
    validate_resources,
)
from dpop_guard.introspection.authlete import AuthleteSettings
from dpop_guard.introspection.jwt import JWTAccessTokenSettings, JWTAccessTokenValidator
from dpop_guard.introspection.rfc7662 import (
    AuthleteStandardIntrospector,
    RFC7662Introspector,
    RFC7662Settings,
)

FACTS = RequestFacts("GET", "https://rs.example.com/x", None, None, path="/x")
OURS = "https://rs.example.com"
OTHER = "https://other.example.com"
X5T = "A" * 43
DETAILS = [{"type": "account_information", "actions": ["read"]}]


def rfc7662(answer: dict[str, Any], **settings: Any) -> RFC7662Introspector:
    values: dict[str, Any] = {"url": "https://as.test/introspect", "client_id": "rs"}
    values |= {"client_secret": "s"} | settings
    handler = httpx.MockTransport(lambda r: httpx.Response(200, json=answer))
    return RFC7662Introspector(
        httpx.AsyncClient(transport=handler), RFC7662Settings(**values), breaker=None
    )


ACTIVE = {"active": True, "sub": "alice", "scope": "s", "client_id": "app"}


class TestRFC7662:
    async def test_reads_the_facts(self) -> None:
        """cnf.x5t#S256, acr, auth_time, authorization_details and aud are read."""
        answer = ACTIVE | {
            "cnf": {"x5t#S256": X5T},
            "acr": "urn:high",
            "auth_time": 1_700_000_000,
            "authorization_details": DETAILS,
            "aud": [OURS],
        }
        info = await rfc7662(answer, resources=(OURS,)).introspect("t", request=FACTS)
        assert (info.x5t_s256, info.acr, info.auth_time) == (X5T, "urn:high", 1_700_000_000)
        assert info.resources == (OURS,) and info.jkt is None
        assert info.authorization_details is not None
        assert isinstance(info.authorization_details[0], MappingProxyType)

    @pytest.mark.parametrize(
        "extra",
        [
            {"cnf": {"x5t#S256": 5}},
            {"cnf": "bound"},
            {"acr": ["a"]},
            {"auth_time": "yesterday"},
            {"auth_time": True},
            {"authorization_details": {"type": "x"}},
            {"authorization_details": [{"actions": []}]},
            {"aud": 7},
        ],
    )
    async def test_wrong_type_is_an_outage(self, extra: dict[str, Any]) -> None:
        """A member of the wrong type is the server's fault: 503, never read as unbound."""
        with pytest.raises(IntrospectionUnavailable) as info:
            await rfc7662(ACTIVE | extra).introspect("t", request=FACTS)
        assert info.value.reason == "introspection_bad_response"

    @pytest.mark.parametrize("aud", [OTHER, [OTHER, "https://third.example"], None])
    async def test_aud_outside_resources_is_inactive(self, aud: object) -> None:
        """aud naming none of the resources (or none at all) is an inactive token."""
        answer = ACTIVE | ({} if aud is None else {"aud": aud})
        with pytest.raises(InactiveToken) as info:
            await rfc7662(answer, resources=(OURS,)).introspect("t", request=FACTS)
        assert info.value.reason == "introspection_audience"

    async def test_one_matching_aud_suffices(self) -> None:
        """With several resources configured, one of them in aud is enough."""
        answer = ACTIVE | {"aud": [OTHER, OURS]}
        intro = rfc7662(answer, resources=(OURS, "https://rs.example.com/v2"))
        assert (await intro.introspect("t", request=FACTS)).resources == (OTHER, OURS)

    async def test_legacy_audience_still_works(self) -> None:
        """The older audience setting is honoured, alone or with resources."""
        answer = ACTIVE | {"aud": OTHER}
        assert await rfc7662(answer, audience=OTHER).introspect("t", request=FACTS)
        assert await rfc7662(answer, audience=OTHER, resources=(OURS,)).introspect(
            "t", request=FACTS
        )
        with pytest.raises(InactiveToken):
            await rfc7662(answer, audience=OURS).introspect("t", request=FACTS)


class TestAuthleteStandard:
    @pytest.fixture(name="standard")
    async def _standard(self, simulator_url: str) -> AsyncIterator[Any]:
        async with httpx.AsyncClient() as http:

            def make(resources: tuple[str, ...] = ()) -> AuthleteStandardIntrospector:
                settings = AuthleteSettings(
                    base_url=simulator_url,
                    api_key=DEFAULT_SERVICE_ID,
                    access_token=DEFAULT_SERVICE_TOKEN,
                    resources=resources,
                )
                return AuthleteStandardIntrospector(http, settings, breaker=None)

            yield make

    async def test_certificate_binding_and_facts(
        self, standard: Any, simulator: SimulatorState
    ) -> None:
        """The simulator's cnf.x5t#S256, acr, auth_time, aud and details reach TokenInfo."""
        token = simulator.create_token(
            subject="a",
            scopes=["s"],
            x5t_s256=X5T,
            acr="urn:high",
            auth_time=1_700_000_000,
            resources=[OURS],
            authorization_details=DETAILS,
        )
        info = await standard((OURS,)).introspect(token, request=FACTS)
        assert (info.x5t_s256, info.acr, info.auth_time) == (X5T, "urn:high", 1_700_000_000)
        assert info.resources == (OURS,)
        assert info.authorization_details is not None
        assert info.authorization_details[0]["type"] == "account_information"

    async def test_token_for_another_api_is_inactive(
        self, standard: Any, simulator: SimulatorState
    ) -> None:
        """aud checked against the same resources setting as /auth/introspection."""
        token = simulator.create_token(subject="a", scopes=["s"], resources=[OTHER])
        with pytest.raises(InactiveToken) as info:
            await standard((OURS,)).introspect(token, request=FACTS)
        assert info.value.reason == "introspection_audience"


class JWTIssuer:
    """Signs RFC 9068 tokens and serves its JWKS over MockTransport."""

    def __init__(self) -> None:
        self.key = jose_jwk.ECKey.generate_key("P-256", parameters={"kid": "k1"})
        public = self.key.as_dict(private=False)
        self.http = httpx.AsyncClient(
            transport=httpx.MockTransport(lambda r: httpx.Response(200, json={"keys": [public]}))
        )

    def token(self, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": "https://as.test", "exp": now + 300, "sub": "a", "scope": "s"}
        payload |= {"aud": OURS} | claims
        header = {"alg": "ES256", "typ": "at+jwt", "kid": "k1"}
        return jose_jwt.encode(header, payload, self.key, algorithms=["ES256"])

    def validator(self, **settings: Any) -> JWTAccessTokenValidator:
        values: dict[str, Any] = {"issuer": "https://as.test", "jwks_uri": "https://as.test/jwks"}
        values |= {"resources": (OURS,)} | settings
        return JWTAccessTokenValidator(self.http, JWTAccessTokenSettings(**values))


@pytest.fixture(name="issuer")
def _issuer() -> JWTIssuer:
    return JWTIssuer()


class TestJWT:
    async def test_reads_the_facts(self, issuer: JWTIssuer) -> None:
        """cnf.x5t#S256 (alone or beside jkt), acr, auth_time and details are read."""
        token = issuer.token(
            cnf={"x5t#S256": X5T, "jkt": "J"},
            acr="urn:high",
            auth_time=1_700_000_000,
            authorization_details=DETAILS,
        )
        info = await issuer.validator().introspect(token, request=FACTS)
        assert (info.jkt, info.x5t_s256, info.acr, info.auth_time) == (
            "J",
            X5T,
            "urn:high",
            1_700_000_000,
        )
        assert info.authorization_details is not None and info.resources == (OURS,)

    @pytest.mark.parametrize(
        "claims",
        [
            {"cnf": {"x5t#S256": ["x"]}},
            {"cnf": "x"},
            {"acr": 1},
            {"auth_time": 1.5},
            {"authorization_details": "all"},
        ],
    )
    async def test_wrong_type_is_an_invalid_token(
        self, issuer: JWTIssuer, claims: dict[str, Any]
    ) -> None:
        """A claim of the wrong type makes the token invalid (its issuer's fault)."""
        with pytest.raises(InactiveToken) as info:
            await issuer.validator().introspect(issuer.token(**claims), request=FACTS)
        assert info.value.reason == "jwt_claims"

    async def test_aud_outside_resources_is_refused(self, issuer: JWTIssuer) -> None:
        """aud must name one of the resources."""
        with pytest.raises(InactiveToken) as info:
            await issuer.validator().introspect(issuer.token(aud=[OTHER]), request=FACTS)
        assert info.value.reason == "jwt_audience"

    async def test_legacy_audience_or_resources(self, issuer: JWTIssuer) -> None:
        """audience alone still works; one of audience/resources is required."""
        token = issuer.token(aud=OTHER)
        assert await issuer.validator(audience=OTHER, resources=()).introspect(token, request=FACTS)
        with pytest.raises(ValueError, match="audience"):
            JWTAccessTokenSettings(issuer="https://as.test", jwks_uri="https://as.test/jwks")


class TestResourcesSetting:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (None, (OURS,)),
            ("none", ()),
            ("NONE", ()),
            (f" {OTHER}  {OURS} ", (OTHER, OURS)),
            ("urn:example:api", ("urn:example:api",)),
        ],
    )
    def test_read(self, value: str | None, expected: tuple[str, ...]) -> None:
        """Unset: the default; ``none``: no check; else whitespace-separated URIs."""
        env = {} if value is None else {"DPOP_GUARD_RESOURCES": value}
        assert resources_from_env(env, default=(OURS,)) == expected

    @pytest.mark.parametrize("value", ["relative/path", "https://a.example/#frag", "//host"])
    def test_refused(self, value: str) -> None:
        """Not an absolute URI without a fragment: the error names the variable."""
        with pytest.raises(ValueError, match="DPOP_GUARD_RESOURCES"):
            resources_from_env({"DPOP_GUARD_RESOURCES": value})
        with pytest.raises(ValueError):
            validate_resources([value])

    def test_builder_defaults_to_the_public_url(self) -> None:
        """from_env: unset resources become the public URL for Authlete and JWT; not for
        the RFC 7662 modes, whose aud is optional (an upgrade must not lock tokens out)."""
        import dpop_guard

        base = {
            "DPOP_GUARD_DEVELOPMENT_SIMULATOR": "1",
            "DPOP_GUARD_PUBLIC_URL": "https://api.bank.test/v1/",
        }
        guard = dpop_guard.from_env(environ=base)
        assert guard.upstream.settings.resources == ("https://api.bank.test/v1",)  # type: ignore[attr-defined]
        guard = dpop_guard.from_env(environ=base | {"DPOP_GUARD_RESOURCES": "none"})
        assert guard.upstream.settings.resources == ()  # type: ignore[attr-defined]
        jwt_env = {
            "DPOP_GUARD_INTROSPECTION": "jwt",
            "DPOP_GUARD_JWT_ISSUER": "https://as.test",
            "DPOP_GUARD_PUBLIC_URL": "https://api.bank.test",
        }
        jwt_guard = dpop_guard.from_env(environ=jwt_env)
        assert jwt_guard.upstream.settings.resources == ("https://api.bank.test",)  # type: ignore[attr-defined]
        standard = dpop_guard.from_env(
            environ=base | {"DPOP_GUARD_INTROSPECTION": "authlete-standard"}
        )
        assert standard.upstream.settings.resources == ()  # type: ignore[attr-defined]
        legacy = dpop_guard.from_env(environ=jwt_env | {"DPOP_GUARD_JWT_AUDIENCE": OTHER})
        assert legacy.upstream.settings.resources == ()  # type: ignore[attr-defined]
        assert legacy.upstream.settings.audience == OTHER  # type: ignore[attr-defined]

    def test_in_authlete_settings(self) -> None:
        """AuthleteSettings.from_env reads the variable; a bad value names it."""
        env = {
            "AUTHLETE_BASE_URL": "https://jp.authlete.com",
            "AUTHLETE_SERVICE_APIKEY": "1",
            "AUTHLETE_SERVICE_ACCESSTOKEN": "t",
        }
        assert AuthleteSettings.from_env(env | {"DPOP_GUARD_RESOURCES": OURS}).resources == (OURS,)
        with pytest.raises(ValueError, match="DPOP_GUARD_RESOURCES"):
            AuthleteSettings.from_env(env | {"DPOP_GUARD_RESOURCES": "x"})
        assert json.dumps(AuthleteSettings.from_env(env).resources) == "[]"
