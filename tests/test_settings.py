"""Configuration objects and environment reading."""

from __future__ import annotations

import re

import pytest

from dpop_guard._env import ConfigurationError
from dpop_guard.settings import (
    ENV_NAMES,
    GuardSettings,
    ProofPolicy,
    Route,
    check_env_names,
    proof_policy_from_env,
)


class TestProofPolicy:
    def test_defaults_are_fapi(self) -> None:
        """ES256, PS256 and EdDSA; Ed25519 accepted with EdDSA."""
        policy = ProofPolicy()
        assert policy.algorithms == ("ES256", "PS256", "EdDSA")
        assert policy.accepted_algorithms == {"ES256", "PS256", "EdDSA", "Ed25519"}

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"algorithms": ()}, "algorithms"),
            ({"algorithms": ("none",)}, "algorithms"),
            ({"algorithms": ("HS256",)}, "algorithms"),
            ({"max_age": 0}, "max_age"),
            ({"max_future_skew": -1}, "max_future_skew"),
            ({"max_proof_bytes": 0}, "max_proof_bytes"),
            ({"max_jti_length": 0}, "max_jti_length"),
            ({"min_rsa_bits": 512}, "min_rsa_bits"),
            ({"min_rsa_bits": 4096, "max_rsa_bits": 2048}, "min_rsa_bits"),
        ],
    )
    def test_invalid(self, kwargs: dict[str, object], field: str) -> None:
        """Each invalid value raises ValueError naming the field."""
        with pytest.raises(ValueError, match=field):
            ProofPolicy(**kwargs)  # type: ignore[arg-type]


class TestRoute:
    @pytest.mark.parametrize(
        ("pattern", "path", "matches"),
        [
            ("/accounts", "/accounts", True),
            ("/accounts", "/accounts/", False),
            ("/accounts", "/accountsX", False),
            ("/accounts/{id}/transactions", "/accounts/a1/transactions", True),
            ("/accounts/{id}/transactions", "/accounts/a/b/transactions", False),
            ("/accounts/{id}/transactions", "/accounts//transactions", False),
            ("/admin/*", "/admin/x/y", True),
            ("/admin/*", "/admin/", True),
            ("/admin/*", "/admin", False),
            ("/a.b", "/aXb", False),
        ],
    )
    def test_matching(self, pattern: str, path: str, matches: bool) -> None:
        """Placeholders match one segment; '*' matches the rest; dots are literal."""
        assert Route(pattern).matches(path, "GET") is matches

    def test_methods(self) -> None:
        """A method list restricts a rule."""
        route = Route("/x", methods=("get",))
        assert route.matches("/x", "GET") and not route.matches("/x", "POST")
        assert route.methods == ("GET",)

    @pytest.mark.parametrize("method", ["HEAD", "head", "get", "Get"])
    def test_head_and_case_fold_into_get(self, method: str) -> None:
        """HEAD is covered by a GET rule; a protected rule compares methods
        case-insensitively, so it protects every spelling a server may hand on."""
        assert Route("/x", methods=("GET",), scopes=("s",)).matches("/x", method)
        assert not Route("/x", methods=("POST",)).matches("/x", method)

    @pytest.mark.parametrize(
        ("method", "matches"),
        [("GET", True), ("HEAD", True), ("get", False), ("head", False), ("Get", False)],
    )
    def test_public_rule_compares_methods_exactly(self, method: str, matches: bool) -> None:
        """A public rule opens exactly the methods it names (RFC 9110 methods are
        case-sensitive; Starlette dispatches ``get`` past a ``GET`` route, and a server
        further on may upper-case it): ``get /health`` is then protected, the default."""
        rule = Route("/health", public=True, methods=("GET",))
        assert rule.matches("/health", method) is matches
        settings = GuardSettings(routes=(rule,))
        assert (settings.route_for("/health", method) is rule) is matches

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"pattern": "x"},
            {"pattern": "/x", "scopes": "a b"},
            {"pattern": "/x", "scopes": ("a b",)},
            {"pattern": "/x", "methods": "GET"},
            {"pattern": "/x\n"},
            {"pattern": "/x\x85"},
        ],
    )
    def test_invalid(self, kwargs: dict[str, object]) -> None:
        """Bad patterns and scope lists are refused."""
        with pytest.raises(ValueError):
            Route(**kwargs)  # type: ignore[arg-type]

    def test_first_match_wins(self) -> None:
        """Rules are tried in order; no match means protected without scopes."""
        settings = GuardSettings(routes=(Route("/a/*", public=True), Route("/a/b", scopes=("s",))))
        route = settings.route_for("/a/b", "GET")
        assert route is not None and route.public
        assert settings.route_for("/zzz", "GET") is None


class TestGuardSettings:
    def test_from_env(self) -> None:
        """DPOP_GUARD_* variables configure the guard."""
        settings = GuardSettings.from_env(
            {
                "DPOP_GUARD_ALGORITHMS": "ES256, EdDSA",
                "DPOP_GUARD_PROOF_MAX_AGE": "30",
                "DPOP_GUARD_PROOF_MAX_FUTURE_SKEW": "2",
                "DPOP_GUARD_PUBLIC_URL": "https://api.example.com/",
                "DPOP_GUARD_REALM": "bank",
                "DPOP_GUARD_ALLOW_UNBOUND_TOKENS": "true",
                "DPOP_GUARD_REPLAY_MAXSIZE": "100",
                "DPOP_GUARD_MAX_TOKEN_BYTES": "2048",
                "DPOP_GUARD_MAX_JTI_LENGTH": "64",
                "DPOP_GUARD_MAX_JSON_DEPTH": "4",
                "DPOP_GUARD_MIN_RSA_BITS": "3072",
                "DPOP_GUARD_MAX_RSA_BITS": "3072",
                "DPOP_GUARD_MAX_PROOF_BYTES": "4096",
                "UNRELATED": "x",
            }
        )
        assert settings.policy.algorithms == ("ES256", "EdDSA")
        assert settings.policy.max_age == 30 and settings.policy.max_future_skew == 2
        assert settings.policy.max_proof_bytes == 4096
        assert settings.public_url == "https://api.example.com"
        assert settings.realm == "bank" and settings.allow_unbound_tokens
        assert settings.replay_maxsize == 100
        assert settings.max_token_bytes == 2048 and settings.policy.max_jti_length == 64
        assert settings.policy.max_json_depth == 4
        assert settings.policy.min_rsa_bits == settings.policy.max_rsa_bits == 3072

    def test_repr_shows_no_secret(self) -> None:
        """A settings object printed (a log line, a debugger, an exception's locals) shows
        neither a Redis password nor the nonce secret."""
        from dpop_guard.guard import StoreSettings

        url = "rediss://user:hunter2-redis-password@redis.internal:6380/0"
        settings = GuardSettings(replay_store=url, nonce_secret=b"n" * 32)
        stores = StoreSettings(introspection_cache=url)
        for text in (repr(settings), repr(stores), str(settings), str(stores)):
            assert "hunter2" not in text and "nnnn" not in text

    def test_from_env_defaults(self) -> None:
        """An empty environment gives the defaults."""
        assert GuardSettings.from_env({}) == GuardSettings()

    @pytest.mark.parametrize(
        ("env", "message"),
        [
            ({"DPOP_GUARD_PROOF_MAX_AGE": "soon"}, "DPOP_GUARD_PROOF_MAX_AGE"),
            ({"DPOP_GUARD_IAT_WINDOW": "30"}, "DPOP_GUARD_IAT_WINDOW"),
            ({"DPOP_GUARD_ALLOW_UNBOUND_TOKENS": "maybe"}, "ALLOW_UNBOUND_TOKENS"),
            ({"DPOP_GUARD_ALGORITHMS": "none"}, "DPOP_GUARD_ALGORITHMS: unsupported"),
            ({"DPOP_GUARD_PUBLIC_URL": "api.example.com"}, "DPOP_GUARD_PUBLIC_URL must be"),
            ({"DPOP_GUARD_PUBLIC_URL": "https://a.test/?q=1"}, "DPOP_GUARD_PUBLIC_URL must have"),
            ({"DPOP_GUARD_NONCE_SECRET": "short"}, "DPOP_GUARD_NONCE_SECRET must be at least"),
            ({"DPOP_GUARD_MAX_JTI_LENGTH": "0"}, "DPOP_GUARD_MAX_JTI_LENGTH must be positive"),
        ],
    )
    def test_from_env_errors(self, env: dict[str, str], message: str) -> None:
        """Bad values raise one line naming the variable, never a field."""
        with pytest.raises(ConfigurationError, match=message) as info:
            GuardSettings.from_env(env)
        assert "\n" not in str(info.value)
        assert not re.search(r"\b[a-z]+_[a-z_]+\b", str(info.value).split("got")[0])


class TestProofPolicyFromEnv:
    """The proof policy's variables, read by the settings layer (not by the verifier)."""

    def test_read(self) -> None:
        """The DPOP_GUARD_PROOF_* names and the key switches are read."""
        policy = proof_policy_from_env(
            {
                "DPOP_GUARD_PROOF_MAX_AGE": " 30 ",
                "DPOP_GUARD_PROOF_MAX_FUTURE_SKEW": "5",
                "DPOP_GUARD_ALLOW_ED448": "true",
                "DPOP_GUARD_RSA_EXPONENT_65537_ONLY": "1",
                "DPOP_GUARD_ALGORITHMS": "ES256,EdDSA",
            }
        )
        assert (policy.max_age, policy.max_future_skew) == (30, 5)
        assert policy.allow_ed448 and policy.rsa_exponent_65537_only
        assert policy.algorithms == ("ES256", "EdDSA")
        assert proof_policy_from_env({}) == ProofPolicy()

    @pytest.mark.parametrize(
        ("env", "message"),
        [
            ({"DPOP_GUARD_IAT_WINDOW": "60"}, "DPOP_GUARD_IAT_WINDOW .*DPOP_GUARD_PROOF_MAX_AGE"),
            ({"DPOP_GUARD_IAT_LEEWAY": "5"}, "DPOP_GUARD_PROOF_MAX_FUTURE_SKEW"),
            ({"DPOP_GUARD_PROOF_MAX_AGE": "nan"}, "DPOP_GUARD_PROOF_MAX_AGE"),
            ({"DPOP_GUARD_PROOF_MAX_AGE": "0"}, "DPOP_GUARD_PROOF_MAX_AGE"),
            ({"DPOP_GUARD_PROOF_MAX_FUTURE_SKEW": "1e9"}, "DPOP_GUARD_PROOF_MAX_FUTURE_SKEW"),
            ({"DPOP_GUARD_PROOF_MAX_FUTURE_SKEW": "99999"}, "DPOP_GUARD_PROOF_MAX_FUTURE_SKEW"),
            ({"DPOP_GUARD_ALLOW_ED448": "maybe"}, "DPOP_GUARD_ALLOW_ED448"),
            ({"DPOP_GUARD_PROOF_MAX_AGE": "6\x000"}, "DPOP_GUARD_PROOF_MAX_AGE"),
            ({"DPOP_GUARD_PROOF_MAX_AGE": "6\x850"}, "DPOP_GUARD_PROOF_MAX_AGE"),  # C1 too
            ({"DPOP_GUARD_ALGORITHMS": "none"}, "DPOP_GUARD_ALGORITHMS"),
        ],
    )
    def test_errors(self, env: dict[str, str], message: str) -> None:
        """Bad or renamed variables raise one line naming the variable."""
        with pytest.raises(ConfigurationError, match=message):
            proof_policy_from_env(env)


# Every reader of a boolean, with the variable it reads: one dialect for all.
_FLAGS = [
    "DPOP_GUARD_ALLOW_ED448",
    "DPOP_GUARD_RSA_EXPONENT_65537_ONLY",
    "DPOP_GUARD_ALLOW_UNBOUND_TOKENS",
]


class TestOneDialect:
    @pytest.mark.parametrize("name", _FLAGS)
    @pytest.mark.parametrize(
        ("value", "expected"),
        [("1", True), ("true", True), ("Yes", True), ("on", True), ("0", False), ("off", False)],
    )
    def test_booleans(self, name: str, value: str, expected: bool) -> None:
        """Every boolean of GuardSettings.from_env reads the same words the same way."""
        settings = GuardSettings.from_env({name: value})
        field = {
            "DPOP_GUARD_ALLOW_ED448": settings.policy.allow_ed448,
            "DPOP_GUARD_RSA_EXPONENT_65537_ONLY": settings.policy.rsa_exponent_65537_only,
            "DPOP_GUARD_ALLOW_UNBOUND_TOKENS": settings.allow_unbound_tokens,
        }[name]
        assert field is expected

    @pytest.mark.parametrize("name", _FLAGS)
    @pytest.mark.parametrize("value", ["2", "enabled", "tru", "t\x85rue"])
    def test_booleans_refused(self, name: str, value: str) -> None:
        """Anything else is refused by every boolean alike, naming the variable."""
        with pytest.raises(ConfigurationError, match=name):
            GuardSettings.from_env({name: value})


class TestNames:
    @pytest.mark.parametrize(
        ("name", "suggestion"),
        [
            ("DPOP_GUARD_CACHE_TLL", "DPOP_GUARD_CACHE_TTL"),
            ("DPOP_GUARD_PUBLICURL", "DPOP_GUARD_PUBLIC_URL"),
            ("DPOP_GUARD_REPLAYSTORE", "DPOP_GUARD_REPLAY_STORE"),
            ("DPOP_GUARD_NONCE_SECRETS", "DPOP_GUARD_NONCE_SECRET"),
            ("DPOP_GUARD_JWT_ISSUR", "DPOP_GUARD_JWT_ISSUER"),
        ],
    )
    def test_misspelt_name_refused_with_a_suggestion(self, name: str, suggestion: str) -> None:
        """A misspelt variable stops start-up and names the closest known one."""
        with pytest.raises(ConfigurationError) as info:
            check_env_names({name: "1"})
        assert str(info.value) == f"{name} is not a dpop_guard setting; did you mean {suggestion}?"

    def test_unrelated_name_refused(self) -> None:
        """A name close to nothing is refused all the same."""
        with pytest.raises(ConfigurationError, match="DPOP_GUARD_ZZZ is not a dpop_guard"):
            check_env_names({"DPOP_GUARD_ZZZ": "1"})

    def test_known_names_and_other_prefixes_pass(self) -> None:
        """Every listed name passes, and names outside the prefix are not ours to judge."""
        check_env_names({"DPOP_GUARD_" + name: "x" for name in ENV_NAMES} | {"PATH": "/bin"})

    def test_every_name_documented(self) -> None:
        """docs/configuration.md lists every variable the guard reads."""
        from pathlib import Path

        text = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
        missing = [n for n in ENV_NAMES if f"DPOP_GUARD_{n}" not in text]
        assert missing == []


class _Recording(dict[str, str]):
    """An environment that remembers every name looked up."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return super().__contains__(key)


_PUBLIC = {"DPOP_GUARD_PUBLIC_URL": "https://rs.test"}
_AUTHLETE = {
    "AUTHLETE_BASE_URL": "https://authlete.test",
    "AUTHLETE_SERVICE_APIKEY": "715948317",
    "AUTHLETE_SERVICE_ACCESSTOKEN": "t",
}
_MODES = {
    "authlete": {**_PUBLIC, **_AUTHLETE},
    "authlete-standard": {**_PUBLIC, **_AUTHLETE, "DPOP_GUARD_INTROSPECTION": "authlete-standard"},
    "rfc7662": {
        **_PUBLIC,
        "DPOP_GUARD_INTROSPECTION": "rfc7662",
        "DPOP_GUARD_INTROSPECTION_URL": "https://as.test/introspect",
        "DPOP_GUARD_INTROSPECTION_CLIENT_ID": "rs",
        "DPOP_GUARD_INTROSPECTION_CLIENT_SECRET": "s",
    },
    "jwt+revocation": {
        **_PUBLIC,
        **_AUTHLETE,
        "DPOP_GUARD_INTROSPECTION": "jwt",
        "DPOP_GUARD_JWT_ISSUER": "https://as.test",
        "DPOP_GUARD_JWT_REVOCATION_PATHS": "/payments",
        "DPOP_GUARD_JWT_REVOCATION_INTROSPECTION": "authlete",
    },
    "simulator+mtls": {
        "DPOP_GUARD_DEVELOPMENT_SIMULATOR": "1",
        "DPOP_GUARD_CLIENT_CERT_SOURCE": "nginx",
        "DPOP_GUARD_CLIENT_CERT_HEADER": "X-Client-Cert",
    },
}


@pytest.mark.parametrize("mode", sorted(_MODES))
async def test_every_name_read_is_listed(mode: str) -> None:
    """Every DPOP_GUARD_* variable the builder reads, in every mode, is in ENV_NAMES: the
    list that refuses unknown names cannot miss one a reader uses (which would refuse a
    valid setting)."""
    from dpop_guard import from_env

    environ = _Recording(_MODES[mode])
    guard = from_env(environ=environ)
    await guard.aclose()
    read = {name for name in environ.asked if name.startswith("DPOP_GUARD_")}
    assert len(read) > 20
    former = {"DPOP_GUARD_IAT_WINDOW", "DPOP_GUARD_IAT_LEEWAY"}  # read only to be refused
    assert read - former - {"DPOP_GUARD_" + name for name in ENV_NAMES} == set()
