"""The dpop-guard command line."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from dpop_guard.cli import _check, main
from dpop_guard.devtools.demo import free_port
from dpop_guard.devtools.simulator import (
    DEFAULT_SERVICE_ID,
    DEFAULT_SERVICE_TOKEN,
    SimulatorState,
)
from dpop_guard.proof import verify_proof


class TestProof:
    def test_new_key_then_proof(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--new-key writes a private JWK (0600); --key signs proofs our verifier accepts."""
        key = tmp_path / "key.json"
        assert main(["proof", "--new-key", str(key), "--htu", "https://rs/a"]) == 0
        assert key.stat().st_mode & 0o777 == 0o600
        first = capsys.readouterr().out.strip()
        assert (
            main(
                [
                    "proof",
                    "--key",
                    str(key),
                    "--htu",
                    "https://rs/a",
                    "--htm",
                    "POST",
                    "--token",
                    "tok",
                    "--nonce",
                    "n",
                ]
            )
            == 0
        )
        second = capsys.readouterr().out.strip()
        a = verify_proof(
            first, method="GET", url="https://rs/a", access_token=None, now=int(time.time())
        )
        b = verify_proof(
            second, method="POST", url="https://rs/a", access_token="tok", now=int(time.time())
        )
        assert a.jkt == b.jkt and b.nonce == "n"

    def test_needs_a_key(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Without a key, a usage error."""
        assert main(["proof", "--htu", "https://rs/a"]) == 2


def authlete_env(url: str, **extra: str) -> dict[str, str]:
    return {
        "AUTHLETE_BASE_URL": url,
        "AUTHLETE_SERVICE_APIKEY": DEFAULT_SERVICE_ID,
        "AUTHLETE_SERVICE_ACCESSTOKEN": DEFAULT_SERVICE_TOKEN,
        "DPOP_GUARD_PUBLIC_URL": "https://api.bank.test",
        **extra,
    }


class TestCheckConfig:
    async def test_ok(self, simulator: SimulatorState, simulator_url: str, redis_url: str) -> None:
        """Valid settings, a reachable Authlete and Redis: no problem."""
        assert await _check(authlete_env(simulator_url, DPOP_GUARD_REPLAY_STORE=redis_url)) == []

    @pytest.mark.parametrize(
        ("env", "fragment"),
        [
            ({"DPOP_GUARD_IAT_WINDOW": "x"}, "DPOP_GUARD_IAT_WINDOW"),
            (
                {"AUTHLETE_SERVICE_ACCESSTOKEN": "wrong"},
                "AUTHLETE_SERVICE_APIKEY/AUTHLETE_SERVICE_ACCESSTOKEN (http://127.0.0.1:",
            ),
            (
                {"DPOP_GUARD_REPLAY_STORE": f"redis://127.0.0.1:{free_port()}/0"},
                "replay_store unusable, the connection was refused or reset [connect]",
            ),
            ({"DPOP_GUARD_CACHE_TLL": "30"}, "did you mean DPOP_GUARD_CACHE_TTL?"),
            ({"AUTHLETE_API_VERSION": "v4"}, "AUTHLETE_API_VERSION must be V2 or V3"),
            ({"DPOP_GUARD_PUBLIC_URL": ""}, "Host header"),
            ({"DPOP_GUARD_PUBLIC_URL": "request"}, "DPOP_GUARD_PUBLIC_URL=request and"),
            ({"DPOP_GUARD_NONCE": "required"}, "NONCE_SECRET"),
        ],
    )
    async def test_problems(self, simulator_url: str, env: dict[str, str], fragment: str) -> None:
        """Each kind of problem is reported in words."""
        problems = await _check(authlete_env(simulator_url, **env))
        assert any(fragment in p for p in problems), problems

    async def test_unreachable(self) -> None:
        """Nothing listening."""
        port = free_port()
        problems = await _check(authlete_env(f"http://127.0.0.1:{port}"))
        assert problems == [
            f"AUTHLETE_BASE_URL (http://127.0.0.1:{port}): introspection unusable, "
            "the connection was refused or reset [connect]"
        ]

    async def test_unresolvable(self) -> None:
        """A name that does not resolve is told apart from a refused connection."""
        problems = await _check(authlete_env("https://authlete.invalid"))
        assert problems == [
            "AUTHLETE_BASE_URL (https://authlete.invalid): introspection unusable, "
            "its host name does not resolve (DNS) [dns]"
        ]

    async def test_lower_case_version_accepted(self, simulator_url: str) -> None:
        """AUTHLETE_API_VERSION is read case-insensitively: v3 is V3."""
        assert await _check(authlete_env(simulator_url, AUTHLETE_API_VERSION="v3")) == []

    async def test_jwt_mode_needs_no_authlete(self) -> None:
        """With DPOP_GUARD_INTROSPECTION=jwt, no Authlete variable is asked for; the JWKS
        endpoint is what must answer (here nothing listens)."""
        issuer = f"http://127.0.0.1:{free_port()}"
        problems = await _check(
            {
                "DPOP_GUARD_INTROSPECTION": "jwt",
                "DPOP_GUARD_JWT_ISSUER": issuer,
                "DPOP_GUARD_JWT_AUDIENCE": "https://api.bank.test",
                "DPOP_GUARD_PUBLIC_URL": "https://api.bank.test",
            }
        )
        assert problems == [
            f"DPOP_GUARD_JWT_JWKS_URI ({issuer}/jwks): jwks unusable, "
            "the connection was refused or reset [connect]"
        ]

    async def test_same_builder_as_the_app(self) -> None:
        """check-config refuses exactly what start-up refuses: an unknown mode, or a
        missing Authlete configuration (no simulator fallback)."""
        problems = await _check({"DPOP_GUARD_INTROSPECTION": "authlete_standard"})
        assert len(problems) == 1 and "DPOP_GUARD_INTROSPECTION must be one of" in problems[0]
        problems = await _check({"DPOP_GUARD_PUBLIC_URL": "https://api.bank.test"})
        assert len(problems) == 1 and "AUTHLETE_BASE_URL is not set" in problems[0]

    async def test_development_simulator_is_a_problem(self) -> None:
        """The development simulator is reported: it must not reach production."""
        problems = await _check(
            {"DPOP_GUARD_DEVELOPMENT_SIMULATOR": "1", "DPOP_GUARD_PUBLIC_URL": "https://a.test"}
        )
        assert problems == [
            "DPOP_GUARD_DEVELOPMENT_SIMULATOR=1: requests are checked against the embedded "
            "development simulator, whose credentials are public"
        ]


class TestSimulate:
    @pytest.mark.parametrize(
        "command",
        [["dpop_guard.cli", "simulate"], ["dpop_guard.devtools.simulator"]],
        ids=["cli", "module"],
    )
    def test_serves_seeded_tokens(self, tmp_path: Path, command: list[str]) -> None:
        """dpop-guard simulate and python -m dpop_guard.devtools.simulator (one code path) serve
        Authlete's API with the tokens from a file."""
        tokens = tmp_path / "tokens.json"
        tokens.write_text(
            json.dumps(
                [{"token": "fixed-token-1", "subject": "alice", "scopes": ["read:accounts"]}]
            )
        )
        port = free_port()
        proc = subprocess.Popen(  # noqa: S603 - our own module
            [
                sys.executable,
                "-m",
                *command,
                "--port",
                str(port),
                "--tokens",
                str(tokens),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert proc.stdout is not None
            assert json.loads(proc.stdout.readline())["token"] == "fixed-token-1"
            url = f"http://127.0.0.1:{port}/api/{DEFAULT_SERVICE_ID}/auth/introspection"
            for _ in range(100):
                try:
                    answer = httpx.post(
                        url,
                        json={"token": "fixed-token-1"},
                        headers={"Authorization": f"Bearer {DEFAULT_SERVICE_TOKEN}"},
                    )
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            assert answer.json()["subject"] == "alice"
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()


class TestCheckConfigCertificates:
    async def test_reports_the_certificate_source(self, simulator_url: str) -> None:
        from dpop_guard.cli import _report

        env = authlete_env(
            simulator_url,
            DPOP_GUARD_CLIENT_CERT_SOURCE="rfc9440",
            DPOP_GUARD_TRUSTED_PROXIES="127.0.0.1",
            DPOP_GUARD_PROXY_HEADERS="x-forwarded-proto",
        )
        info, problems = await _report(env)
        assert problems == []
        assert info == ["client certificates: rfc9440 (believed from trusted proxies only)"]
        info, _ = await _report(authlete_env(simulator_url))
        assert info == ["client certificates: none (DPoP-bound tokens only)"]

    async def test_header_source_without_trusted_proxies_is_a_problem(
        self, simulator_url: str
    ) -> None:
        problems = await _check(
            authlete_env(
                simulator_url,
                DPOP_GUARD_CLIENT_CERT_SOURCE="nginx",
                DPOP_GUARD_CLIENT_CERT_HEADER="X-Client-Cert",
            )
        )
        assert any("no certificate will ever be believed" in p for p in problems), problems

    async def test_asgi_tls_needs_no_proxy(self, simulator_url: str) -> None:
        problems = await _check(
            authlete_env(simulator_url, DPOP_GUARD_CLIENT_CERT_SOURCE="asgi-tls")
        )
        assert problems == []


class TestHelp:
    def test_version(self, capsys: pytest.CaptureFixture[str]) -> None:
        """dpop-guard --version prints the package's version."""
        import dpop_guard

        with pytest.raises(SystemExit) as info:
            main(["--version"])
        assert info.value.code == 0
        assert capsys.readouterr().out.strip() == f"dpop-guard {dpop_guard.__version__}"

    @pytest.mark.parametrize(
        ("command", "words"),
        [
            ("check-config", "DPOP_GUARD_PUBLIC_URL is set"),
            ("conformance", "total deadline"),
            ("proof", "Sign a DPoP proof"),
            ("simulate", "never use it in"),
        ],
    )
    def test_every_subcommand_explains_itself(
        self, command: str, words: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--help on each subcommand says what it does, not only its options."""
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
        assert words in " ".join(capsys.readouterr().out.split())
