"""htu behind reverse proxies: trusted-proxy headers, common layouts, forged headers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from dpop_guard import (
    AuthleteIntrospector,
    AuthleteSettings,
    DPoPGuardMiddleware,
    GuardSettings,
    ProofSigner,
)
from dpop_guard._proxy import forwarded_origin, parse_networks
from dpop_guard.simulator import (
    DEFAULT_SERVICE_ID,
    DEFAULT_SERVICE_TOKEN,
    SimulatorState,
)
from dpop_guard.testing import make_proof

from .test_middleware import inner_app

TRUSTED = ("10.0.0.0/8", "192.168.1.1")


@pytest.fixture(name="call")
async def _call(simulator: SimulatorState, simulator_url: str) -> AsyncIterator[Callable[..., Any]]:
    http = httpx.AsyncClient()
    clients: list[httpx.AsyncClient] = []

    async def call(
        signer: ProofSigner,
        htu: str,
        *,
        peer: str,
        headers: dict[str, str],
        path: str = "/accounts",
        root_path: str = "",
    ) -> int:
        settings = GuardSettings(trusted_proxies=TRUSTED)
        app = DPoPGuardMiddleware(
            inner_app(),
            settings=settings,
            introspector=AuthleteIntrospector(
                http,
                AuthleteSettings(
                    base_url=simulator_url,
                    api_key=DEFAULT_SERVICE_ID,
                    access_token=DEFAULT_SERVICE_TOKEN,
                ),
            ),
        )
        token = simulator.create_token(subject="a", scopes=[], jkt=signer.jkt)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(peer, 40000), root_path=root_path),
            base_url="http://internal:8000",
        )
        clients.append(client)
        proof = make_proof(signer, htu=htu, access_token=token)
        response = await client.get(
            path, headers=headers | {"Authorization": f"DPoP {token}", "DPoP": proof}
        )
        return response.status_code

    yield call
    for client in clients:
        await client.aclose()
    await http.aclose()


class TestLayouts:
    async def test_nginx_single_proxy(self, call: Callable[..., Any], signer: ProofSigner) -> None:
        """One trusted proxy terminating TLS: X-Forwarded-Proto and -Host give the origin."""
        headers = {
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "api.bank.test",
            "X-Forwarded-For": "203.0.113.9",
        }
        assert (
            await call(signer, "https://api.bank.test/accounts", peer="10.1.2.3", headers=headers)
            == 200
        )

    async def test_forwarded_header(self, call: Callable[..., Any], signer: ProofSigner) -> None:
        """RFC 7239 Forwarded is understood (and wins over X-Forwarded-*)."""
        headers = {
            "Forwarded": 'for=203.0.113.9;proto=https;host="api.bank.test"',
            "X-Forwarded-Host": "other.test",
        }
        assert (
            await call(signer, "https://api.bank.test/accounts", peer="10.1.2.3", headers=headers)
            == 200
        )

    async def test_two_hops_right_most_untrusted(
        self, call: Callable[..., Any], signer: ProofSigner
    ) -> None:
        """CDN then load balancer: the hop describing the untrusted client counts, and an
        entry forged by the client on the left is not."""
        headers = {
            "Forwarded": "for=198.51.100.7;proto=http;host=evil.test, "
            "for=203.0.113.9;proto=https;host=api.bank.test, "
            "for=10.0.0.2;proto=http;host=lb.internal"
        }
        assert (
            await call(signer, "https://api.bank.test/accounts", peer="10.0.0.3", headers=headers)
            == 200
        )
        assert (
            await call(signer, "http://evil.test/accounts", peer="10.0.0.3", headers=headers) == 401
        )

    async def test_prefix_stripping_proxy(
        self, call: Callable[..., Any], signer: ProofSigner
    ) -> None:
        """A proxy that strips /bank and says so in X-Forwarded-Prefix."""
        headers = {
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "api.bank.test",
            "X-Forwarded-Prefix": "/bank",
        }
        assert (
            await call(
                signer, "https://api.bank.test/bank/accounts", peer="10.1.2.3", headers=headers
            )
            == 200
        )

    async def test_untrusted_peer_headers_ignored(
        self, call: Callable[..., Any], signer: ProofSigner
    ) -> None:
        """A client sending the headers itself gains nothing: htu is the request's own."""
        headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.bank.test"}
        assert (
            await call(
                signer, "https://api.bank.test/accounts", peer="203.0.113.9", headers=headers
            )
            == 401
        )
        assert (
            await call(signer, "http://internal:8000/accounts", peer="203.0.113.9", headers=headers)
            == 200
        )


class TestParsing:
    nets = parse_networks(TRUSTED)

    @pytest.mark.parametrize(
        ("headers", "expected"),
        [
            ({b"x-forwarded-proto": ["ftp"], b"x-forwarded-host": ["a b"]}, (None, None, "")),
            ({b"x-forwarded-prefix": ["/a/../b"]}, (None, None, "")),
            ({b"x-forwarded-prefix": ["//evil"]}, (None, None, "")),
            ({b"x-forwarded-prefix": ["/bank/"]}, (None, None, "/bank")),
            (
                {
                    b"x-forwarded-for": ["203.0.113.9, 10.0.0.1"],
                    b"x-forwarded-host": ["a.test, b.test"],
                },
                (None, "a.test", ""),
            ),
            (
                {b"x-forwarded-for": ["1.1.1.1, 2.2.2.2, 10.0.0.1"], b"x-forwarded-host": ["x, y"]},
                (None, None, ""),
            ),
            ({b"forwarded": ["for=unknown;proto=https"]}, ("https", None, "")),
            (
                {b"forwarded": ['for="[2001:db8::1]:4711";host="[::1]:8443"']},
                (None, "[::1]:8443", ""),
            ),
        ],
    )
    def test_values(
        self, headers: dict[bytes, list[str]], expected: tuple[str | None, str | None, str]
    ) -> None:
        """Only well-formed schemes, hosts and prefixes are taken; misaligned lists are not."""
        origin = forwarded_origin("10.9.9.9", headers, self.nets)
        assert origin is not None
        assert (origin.scheme, origin.host, origin.prefix) == expected

    @pytest.mark.parametrize("peer", [None, "", "203.0.113.9", "not-an-ip"])
    def test_untrusted(self, peer: str | None) -> None:
        """No origin from untrusted or unknown peers."""
        assert forwarded_origin(peer, {b"x-forwarded-host": ["a"]}, self.nets) is None

    def test_bad_network(self) -> None:
        """A bad entry is named."""
        with pytest.raises(ValueError, match="trusted_proxies"):
            GuardSettings(trusted_proxies=("10.0.0.0/33",))

    def test_from_env(self) -> None:
        """DPOP_GUARD_TRUSTED_PROXIES, space- or comma-separated."""
        settings = GuardSettings.from_env({"DPOP_GUARD_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1"})
        assert settings.trusted_proxies == ("10.0.0.0/8", "127.0.0.1")
