"""The shared breaker option, POST helper and the strict environment readers of the
introspection settings."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from dpop_guard.introspection import RequestFacts
from dpop_guard.introspection._breaker import CircuitBreaker
from dpop_guard.introspection.authlete import AuthleteIntrospector, AuthleteSettings
from dpop_guard.introspection.jwt import JWTAccessTokenSettings
from dpop_guard.introspection.rfc7662 import (
    AuthleteStandardIntrospector,
    RFC7662Introspector,
    RFC7662Settings,
)

AUTHLETE = AuthleteSettings(
    base_url="https://authlete.test", api_key="1", access_token="t", retries=0
)
RFC7662 = RFC7662Settings(url="https://as.test/introspect", client_id="rs", client_secret="s")
FACTS = RequestFacts("GET", "https://rs.test/a", None, None)


def _down(request: httpx.Request) -> httpx.Response:
    return httpx.Response(500)


def _build(kind: str, breaker: Any) -> Any:
    client = httpx.AsyncClient(transport=httpx.MockTransport(_down))
    if kind == "authlete":
        return AuthleteIntrospector(client, AUTHLETE, **breaker)
    if kind == "standard":
        return AuthleteStandardIntrospector(client, AUTHLETE, **breaker)
    return RFC7662Introspector(client, RFC7662, **breaker)


KINDS = ("authlete", "standard", "rfc7662")


class TestBreakerOption:
    @pytest.mark.parametrize("kind", KINDS)
    def test_default_is_a_new_breaker(self, kind: str) -> None:
        """Left out, each introspector gets its own breaker with the defaults."""
        a, b = _build(kind, {}), _build(kind, {})
        assert isinstance(a.breaker, CircuitBreaker) and a.breaker is not b.breaker

    @pytest.mark.parametrize("kind", KINDS)
    async def test_none_disables(self, kind: str) -> None:
        """breaker=None means no breaker for every introspector: ten outages in a row, and
        every call still goes out."""
        calls: list[int] = []

        def handler(request: httpx.Request) -> httpx.Response:
            calls.append(1)
            return httpx.Response(500)

        client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        intro: Any
        if kind == "authlete":
            intro = AuthleteIntrospector(client, AUTHLETE, breaker=None)
        elif kind == "standard":
            intro = AuthleteStandardIntrospector(client, AUTHLETE, breaker=None)
        else:
            intro = RFC7662Introspector(client, RFC7662, breaker=None)
        assert intro.breaker is None
        for _ in range(10):
            with pytest.raises(Exception, match="server_error"):
                await intro.introspect("tok", request=FACTS)
        assert len(calls) == 10

    @pytest.mark.parametrize("kind", KINDS)
    def test_given_breaker_is_used(self, kind: str) -> None:
        """An instance is used as given, so introspectors can share one."""
        breaker = CircuitBreaker(threshold=2)
        assert _build(kind, {"breaker": breaker}).breaker is breaker


V3 = {
    "AUTHLETE_BASE_URL": " https://jp.authlete.com \n",
    "AUTHLETE_SERVICE_APIKEY": " 715948317 ",
    "AUTHLETE_SERVICE_ACCESSTOKEN": " at \t",
}


class TestEnvironmentReaders:
    def test_authlete_strips_secrets(self) -> None:
        """Authlete's secrets are stripped like every other value."""
        s = AuthleteSettings.from_env(V3)
        assert s.authorization == "Bearer at" and s.api_key == "715948317"
        v2 = AuthleteSettings.from_env(
            {
                "AUTHLETE_BASE_URL": "https://a.test",
                "AUTHLETE_API_VERSION": " v2 ",
                "AUTHLETE_SERVICE_APIKEY": "k",
                "AUTHLETE_SERVICE_APISECRET": " s ",
            }
        )
        assert v2.authorization == "Basic azpz"

    def test_authlete_header_injection(self) -> None:
        """A secret holding CR/LF is refused by name, never sent as a header."""
        env = dict(V3, AUTHLETE_SERVICE_ACCESSTOKEN="at\nX-Injected: yes")
        with pytest.raises(ValueError, match="AUTHLETE_SERVICE_ACCESSTOKEN") as info:
            AuthleteSettings.from_env(env)
        assert "X-Injected" not in str(info.value)

    @pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
    def test_authlete_timeout(self, value: str) -> None:
        """The timeout must be a finite positive number."""
        with pytest.raises(ValueError, match=r"TIMEOUT|timeout"):
            AuthleteSettings.from_env(dict(V3, DPOP_GUARD_AUTHLETE_TIMEOUT=value))

    def test_rfc7662_strips(self) -> None:
        """RFC 7662 settings are stripped, secret included."""
        s = RFC7662Settings.from_env(
            {
                "DPOP_GUARD_INTROSPECTION_URL": " https://as.test/i ",
                "DPOP_GUARD_INTROSPECTION_CLIENT_ID": " rs ",
                "DPOP_GUARD_INTROSPECTION_CLIENT_SECRET": " x\n",
                "DPOP_GUARD_INTROSPECTION_TIMEOUT": " 2 ",
            }
        )
        assert (s.url, s.client_id, s.client_secret, s.timeout) == (
            "https://as.test/i",
            "rs",
            "x",
            2.0,
        )

    @pytest.mark.parametrize("value", ["nan", "inf"])
    def test_rfc7662_timeout_finite(self, value: str) -> None:
        """nan is not a timeout."""
        with pytest.raises(ValueError, match="DPOP_GUARD_INTROSPECTION_TIMEOUT"):
            RFC7662Settings.from_env(
                {
                    "DPOP_GUARD_INTROSPECTION_URL": "https://as.test/i",
                    "DPOP_GUARD_INTROSPECTION_CLIENT_ID": "rs",
                    "DPOP_GUARD_INTROSPECTION_CLIENT_SECRET": "x",
                    "DPOP_GUARD_INTROSPECTION_TIMEOUT": value,
                }
            )

    def test_jwt_control_character(self) -> None:
        """A JWT setting with a control character is named."""
        with pytest.raises(ValueError, match="DPOP_GUARD_JWT_AUDIENCE"):
            JWTAccessTokenSettings.from_env(
                {"DPOP_GUARD_JWT_ISSUER": "https://as.test", "DPOP_GUARD_JWT_AUDIENCE": "a\x00"}
            )
