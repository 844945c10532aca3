"""dpop_guard.from_env: the environment becomes a guard, and the development simulator is
never a silent fallback (issue 9 section 7)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import httpx
import pytest
import redis.asyncio as aioredis

from dpop_guard import DPoPGuard, from_env
from dpop_guard._env import ConfigurationError
from dpop_guard.devtools.demo.accounts import create_app
from dpop_guard.devtools.simulator import (
    DEFAULT_API_SECRET,
    DEFAULT_SERVICE_ID,
    DEFAULT_SERVICE_TOKEN,
    SimulatorState,
)
from dpop_guard.introspection.authlete import AuthleteIntrospector
from dpop_guard.introspection.cached import CachingIntrospector
from dpop_guard.introspection.jwt import JWTAccessTokenValidator
from dpop_guard.introspection.redis_cache import RedisTokenCache
from dpop_guard.introspection.rfc7662 import AuthleteStandardIntrospector, RFC7662Introspector
from dpop_guard.replay import MemoryReplayStore
from dpop_guard.replay.redis import RedisReplayStore

DEV = {"DPOP_GUARD_DEVELOPMENT_SIMULATOR": "1"}
PUBLIC = {"DPOP_GUARD_PUBLIC_URL": "https://rs.test"}
JWT = {
    **PUBLIC,
    "DPOP_GUARD_INTROSPECTION": "jwt",
    "DPOP_GUARD_JWT_ISSUER": "https://as.test",
    "DPOP_GUARD_JWT_AUDIENCE": "https://rs.test",
}
RFC7662 = {
    **PUBLIC,
    "DPOP_GUARD_INTROSPECTION": "rfc7662",
    "DPOP_GUARD_INTROSPECTION_URL": "https://as.test/introspect",
    "DPOP_GUARD_INTROSPECTION_CLIENT_ID": "rs",
    "DPOP_GUARD_INTROSPECTION_CLIENT_SECRET": "s",
}


def authlete(url: str = "https://authlete.test", **extra: str) -> dict[str, str]:
    return {
        **PUBLIC,
        "AUTHLETE_BASE_URL": url,
        "AUTHLETE_SERVICE_APIKEY": DEFAULT_SERVICE_ID,
        "AUTHLETE_SERVICE_ACCESSTOKEN": DEFAULT_SERVICE_TOKEN,
        **extra,
    }


class TestModes:
    @pytest.mark.parametrize(
        ("env", "inner"),
        [
            (authlete(), AuthleteIntrospector),
            (authlete(DPOP_GUARD_INTROSPECTION="authlete-standard"), AuthleteStandardIntrospector),
            (
                authlete(DPOP_GUARD_INTROSPECTION=" Authlete-Standard "),
                AuthleteStandardIntrospector,
            ),
            (RFC7662, RFC7662Introspector),
        ],
    )
    async def test_introspector_chain(self, env: dict[str, str], inner: type) -> None:
        """Each mode builds its introspector, behind the binding-safe cache."""
        guard = from_env(environ=env)
        assert isinstance(guard.introspector, CachingIntrospector)
        assert isinstance(guard.upstream, inner) and guard.introspector.inner is guard.upstream
        assert isinstance(guard.replay_store, MemoryReplayStore) and guard.simulator is None
        await guard.aclose()

    async def test_jwt_is_cached_in_memory(self) -> None:
        """JWT access tokens are checked locally (no Authlete setting is needed), behind
        the binding-safe cache, which has no shared level in this mode."""
        guard = from_env(environ=JWT)
        assert isinstance(guard.introspector, CachingIntrospector)
        assert isinstance(guard.upstream, JWTAccessTokenValidator)
        assert guard.introspector.inner is guard.upstream and guard.introspector.shared is None
        await guard.aclose()

    async def test_jwt_without_cache(self) -> None:
        """DPOP_GUARD_CACHE_TTL=0 verifies every JWT access token."""
        guard = from_env(environ={**JWT, "DPOP_GUARD_CACHE_TTL": "0"})
        assert isinstance(guard.introspector, JWTAccessTokenValidator)
        await guard.aclose()

    def test_jwt_refuses_a_shared_cache(self) -> None:
        """A Redis introspection cache in jwt mode would do nothing: start-up says so."""
        env = {**JWT, "DPOP_GUARD_INTROSPECTION_CACHE": "redis://127.0.0.1:6379/0"}
        with pytest.raises(ConfigurationError, match="DPOP_GUARD_INTROSPECTION_CACHE"):
            from_env(environ=env)

    async def test_cache_off(self) -> None:
        """DPOP_GUARD_CACHE_TTL=0 leaves the introspector uncached."""
        guard = from_env(environ=authlete(DPOP_GUARD_CACHE_TTL="0"))
        assert isinstance(guard.introspector, AuthleteIntrospector)
        await guard.aclose()

    @pytest.mark.parametrize(
        "mode", ["authlete_standard", "oauth", "rfc-7662", "jwt,authlete", "simulator"]
    )
    def test_unknown_mode_refused(self, mode: str) -> None:
        """An unknown DPOP_GUARD_INTROSPECTION stops start-up, naming the variable."""
        with pytest.raises(ValueError, match="DPOP_GUARD_INTROSPECTION must be one of"):
            from_env(environ=authlete(DPOP_GUARD_INTROSPECTION=mode))

    @pytest.mark.parametrize(
        ("env", "variable"),
        [
            ({"DPOP_GUARD_CACHE_TTL": "nan"}, "DPOP_GUARD_CACHE_TTL"),
            ({"DPOP_GUARD_CACHE_TTL": "inf"}, "DPOP_GUARD_CACHE_TTL"),
            ({"DPOP_GUARD_CACHE_TTL": "-1"}, "DPOP_GUARD_CACHE_TTL must not be negative"),
            ({"DPOP_GUARD_CACHE_MAXSIZE": "1.5"}, "DPOP_GUARD_CACHE_MAXSIZE"),
            ({"DPOP_GUARD_REPLAY_STORE": "memcached://x"}, "DPOP_GUARD_REPLAY_STORE must be"),
            ({"DPOP_GUARD_READINESS_TIMEOUT": "0"}, "DPOP_GUARD_READINESS_TIMEOUT must be"),
            ({"DPOP_GUARD_LIVENESS_PATH": "livez"}, "DPOP_GUARD_LIVENESS_PATH must be a path"),
            ({"DPOP_GUARD_REALM": "a\nb"}, "DPOP_GUARD_REALM"),
        ],
    )
    def test_bad_values_named(self, env: dict[str, str], variable: str) -> None:
        """Every bad value is one ValueError naming what is wrong."""
        with pytest.raises(ValueError, match=variable):
            from_env(environ=authlete(**env))


class TestNoSilentSimulator:
    @pytest.mark.parametrize(
        ("env", "fragment"),
        [
            ({}, "AUTHLETE_BASE_URL is not set"),
            ({"AUTHLETE_BASE_URL": "   "}, "AUTHLETE_BASE_URL is not set"),
            ({"DPOP_GUARD_INTROSPECTION": "authlete-standard"}, "AUTHLETE_BASE_URL is not set"),
            ({"DPOP_GUARD_INTROSPECTION": "authlete-standard "}, "AUTHLETE_BASE_URL is not set"),
            ({"DPOP_GUARD_DEVELOPMENT_SIMULATOR": "0"}, "AUTHLETE_BASE_URL is not set"),
            ({"AUTHLETE_BASEURL": "https://a.test"}, "did you mean AUTHLETE_BASE_URL"),
        ],
    )
    def test_missing_authlete_stops_start_up(self, env: dict[str, str], fragment: str) -> None:
        """Without the explicit setting, a missing Authlete configuration is an error that
        names the variable; it never falls back to the simulator."""
        with pytest.raises(ValueError, match=fragment):
            from_env(environ=env)

    def test_production_error_does_not_suggest_the_simulator(self) -> None:
        """A production configuration error names the variable and its fix, never the
        development simulator (issue 21)."""
        with pytest.raises(ValueError) as info:
            from_env(environ={})
        assert "SIMULATOR" not in str(info.value) and "simulator" not in str(info.value)
        assert str(info.value).startswith("AUTHLETE_BASE_URL is not set; set it to")

    @pytest.mark.parametrize("value", ["2", "1x", "01", "enabled"])
    def test_flag_is_strict(self, value: str) -> None:
        """The one boolean dialect: anything else stops start-up, named."""
        with pytest.raises(ValueError, match="DPOP_GUARD_DEVELOPMENT_SIMULATOR must be true"):
            from_env(environ={"DPOP_GUARD_DEVELOPMENT_SIMULATOR": value})

    @pytest.mark.parametrize("value", ["true", "yes", "on", "1"])
    async def test_flag_dialect(self, value: str) -> None:
        """The flag reads as every other boolean does."""
        guard = from_env(environ={"DPOP_GUARD_DEVELOPMENT_SIMULATOR": value})
        assert guard.simulator is not None
        await guard.aclose()

    def test_flag_with_a_real_authlete(self) -> None:
        """The simulator never hides a configured Authlete: both set is an error."""
        with pytest.raises(ValueError, match="is set together with AUTHLETE_BASE_URL"):
            from_env(environ=authlete(**DEV))

    @pytest.mark.parametrize("env", [JWT, RFC7662])
    def test_flag_with_another_mode(self, env: dict[str, str]) -> None:
        """The simulator speaks Authlete's API only."""
        with pytest.raises(ValueError, match="cannot serve DPOP_GUARD_INTROSPECTION"):
            from_env(environ={**env, **DEV})

    async def test_flag_builds_the_embedded_simulator(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """With the flag, the guard runs against the embedded simulator, and says so."""
        guard = from_env(environ=DEV)
        assert isinstance(guard.simulator, SimulatorState)
        assert "development only" in caplog.text
        await guard.aclose()


def _basic() -> str:
    import base64

    return (
        "Basic " + base64.b64encode(f"{DEFAULT_SERVICE_ID}:{DEFAULT_API_SECRET}".encode()).decode()
    )


class TestSimulatorNeverReachable:
    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("POST", "/__authlete/api/auth/token/create"),
            ("POST", f"/__authlete/api/{DEFAULT_SERVICE_ID}/auth/token/create"),
            ("GET", "/__authlete/sim/stats"),
            ("POST", "/__authlete/sim/faults"),
            ("POST", "/__authlete/api/auth/introspection"),
        ],
    )
    async def test_not_mounted_without_the_flag(
        self, simulator: SimulatorState, simulator_url: str, method: str, path: str
    ) -> None:
        """An app started against a real Authlete (here the simulator over HTTP) serves no
        simulator endpoint: the path is protected like any other, and nothing is minted."""
        app = create_app(authlete(simulator_url))
        tokens = len(simulator.tokens)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://rs.test"
        ) as client:
            response = await client.request(
                method, path, headers={"Authorization": _basic()}, json={"subject": "x"}
            )
        assert response.status_code == 401
        assert "accessToken" not in response.text and len(simulator.tokens) == tokens
        await app.state.guard.aclose()

    async def test_mounted_with_the_flag(self) -> None:
        """With the flag, the simulator mints tokens at /__authlete, for development."""
        app = create_app(DEV)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://rs.test"
        ) as client:
            response = await client.post(
                "/__authlete/api/auth/token/create",
                headers={"Authorization": _basic()},
                json={"subject": "alice", "scopes": ["read:accounts"]},
            )
        assert response.status_code == 200 and response.json()["accessToken"]
        await app.state.guard.aclose()


class TestLifespan:
    async def test_redis_clients_closed(self, redis_url: str) -> None:
        """A Redis replay store and shared cache built from URLs are closed with the
        app's lifespan (they used to be left open)."""
        guard = from_env(
            environ=authlete(
                DPOP_GUARD_REPLAY_STORE=redis_url,
                DPOP_GUARD_INTROSPECTION_CACHE=redis_url,
                DPOP_GUARD_START_DEGRADED="1",  # authlete.test does not resolve
            )
        )
        store, shared = guard.replay_store, guard.shared_cache
        assert isinstance(store, RedisReplayStore) and isinstance(shared, RedisTokenCache)
        async with guard.lifespan(None):
            await store.add_if_absent("k", ttl=5)
            await shared.get(b"k")
            assert isinstance(store.client, aioredis.Redis)  # not a redis+cluster:// URL
            assert isinstance(shared.client, aioredis.Redis)
            pools = [store.client.connection_pool, shared.client.connection_pool]
            connections = [c for p in pools for c in p._available_connections]
            assert connections and all(c.is_connected for c in connections)
        assert not any(c.is_connected for c in connections)

    async def test_aclose_twice(self) -> None:
        """Closing is idempotent."""
        guard: DPoPGuard = from_env(environ=authlete())
        await guard.aclose()
        await guard.aclose()


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=False
    )


class TestMissingExtras:
    def test_redis_replay_store(self) -> None:
        """A redis:// replay store without redis-py fails with one line naming the extra."""
        result = _python(
            """
            import sys
            sys.modules["redis"] = None
            from dpop_guard import from_env
            try:
                from_env(environ={"DPOP_GUARD_REPLAY_STORE": "redis://127.0.0.1:1/0",
                                  "DPOP_GUARD_DEVELOPMENT_SIMULATOR": "1"})
            except ModuleNotFoundError as exc:
                print(exc)
            """
        )
        assert result.stdout.strip() == (
            "DPOP_GUARD_REPLAY_STORE=redis://... needs the 'redis' extra: "
            "pip install 'dpop_guard[redis]'"
        ), result.stderr

    @pytest.mark.parametrize(
        ("module", "dependency", "extra"),
        [
            ("dpop_guard.replay.redis", "redis", "redis"),
            ("dpop_guard.introspection.redis_cache", "redis", "redis"),
            ("dpop_guard.prometheus", "prometheus_client", "prometheus"),
            ("dpop_guard.otel", "opentelemetry", "otel"),
            ("dpop_guard.fastapi", "fastapi", "fastapi"),
        ],
    )
    def test_modules(self, module: str, dependency: str, extra: str) -> None:
        """Importing a module whose extra is missing says which extra to install."""
        result = _python(
            f"""
            import sys
            sys.modules[{dependency!r}] = None
            try:
                import {module}
            except ModuleNotFoundError as exc:
                print(exc)
            """
        )
        assert f"pip install 'dpop_guard[{extra}]'" in result.stdout, result.stderr


class TestCertificateSource:
    def _env(self, **extra: str) -> dict[str, str]:
        return {
            **PUBLIC,
            "AUTHLETE_BASE_URL": "http://127.0.0.1:9",
            "AUTHLETE_SERVICE_APIKEY": DEFAULT_SERVICE_ID,
            "AUTHLETE_SERVICE_ACCESSTOKEN": DEFAULT_SERVICE_TOKEN,
            **extra,
        }

    async def test_from_env_builds_the_source_and_hands_it_to_the_middleware(self) -> None:
        from dpop_guard.mtls import Rfc9440CertificateSource

        guard = from_env(environ=self._env(DPOP_GUARD_CLIENT_CERT_SOURCE="rfc9440"))
        try:
            assert isinstance(guard.certificate_source, Rfc9440CertificateSource)
            assert guard.middleware_options["certificate_source"] is guard.certificate_source
        finally:
            await guard.aclose()

    async def test_no_source_by_default(self) -> None:
        guard = from_env(environ=self._env())
        try:
            assert guard.certificate_source is None
            assert "certificate_source" not in guard.middleware_options
        finally:
            await guard.aclose()

    def test_mtls_route_without_a_source_refused(self) -> None:
        from dpop_guard import Route

        with pytest.raises(ValueError, match="DPOP_GUARD_CLIENT_CERT_SOURCE"):
            from_env(routes=(Route("/a", sender_constraint="mtls"),), environ=self._env())
