"""Configuration objects and environment reading."""

from __future__ import annotations

import pytest

from dpop_guard.settings import GuardSettings, ProofPolicy, Route


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
        """HEAD is covered by a GET rule, and methods compare case-insensitively, as the
        routers this guards dispatch them."""
        assert Route("/x", methods=("GET",)).matches("/x", method)
        assert not Route("/x", methods=("POST",)).matches("/x", method)

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

    def test_from_env_defaults(self) -> None:
        """An empty environment gives the defaults."""
        assert GuardSettings.from_env({}) == GuardSettings()

    @pytest.mark.parametrize(
        ("env", "message"),
        [
            ({"DPOP_GUARD_PROOF_MAX_AGE": "soon"}, "DPOP_GUARD_PROOF_MAX_AGE"),
            ({"DPOP_GUARD_IAT_WINDOW": "30"}, "DPOP_GUARD_IAT_WINDOW"),
            ({"DPOP_GUARD_ALLOW_UNBOUND_TOKENS": "maybe"}, "ALLOW_UNBOUND_TOKENS"),
            ({"DPOP_GUARD_ALGORITHMS": "none"}, "algorithms"),
            ({"DPOP_GUARD_PUBLIC_URL": "api.example.com"}, "public_url"),
            ({"DPOP_GUARD_PUBLIC_URL": "https://api.example.com/?q=1"}, "public_url"),
        ],
    )
    def test_from_env_errors(self, env: dict[str, str], message: str) -> None:
        """Bad values raise ValueError naming the variable or field."""
        with pytest.raises(ValueError, match=message):
            GuardSettings.from_env(env)
