"""RFC 9728 Protected Resource Metadata."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from dpop_guard import DPoPGuardMiddleware, GuardSettings, ResourceMetadata, Route, TokenInfo
from dpop_guard.challenges import parse_challenge
from dpop_guard.introspection import RequestFacts


class Never:
    async def introspect(self, token: str, *, request: RequestFacts) -> TokenInfo:
        raise AssertionError("not called")


async def app(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("the metadata is served by the middleware")


def client_for(settings: GuardSettings) -> httpx.AsyncClient:
    guard = DPoPGuardMiddleware(app, settings=settings, introspector=Never())
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=guard), base_url="https://api.bank.test"
    )


class TestResourceMetadata:
    async def test_document_and_challenge(self) -> None:
        """The document lists the resource, its servers, scopes and DPoP requirements, and
        every challenge points at it."""
        settings = GuardSettings(
            routes=(
                Route("/accounts", scopes=("read:accounts",)),
                Route("/balances", scopes=("read:balances", "read:accounts")),
            ),
            metadata=ResourceMetadata(
                resource="https://api.bank.test",
                authorization_servers=("https://as.bank.test",),
                resource_name="Accounts",
            ),
        )
        async with client_for(settings) as client:
            response = await client.get("/.well-known/oauth-protected-resource")
            assert response.status_code == 200
            assert response.json() == {
                "resource": "https://api.bank.test",
                "authorization_servers": ["https://as.bank.test"],
                "scopes_supported": ["read:accounts", "read:balances"],
                "bearer_methods_supported": ["header"],
                "dpop_signing_alg_values_supported": ["ES256", "PS256", "EdDSA"],
                "dpop_bound_access_tokens_required": True,
                "resource_name": "Accounts",
            }
            head = await client.head("/.well-known/oauth-protected-resource")
            assert head.status_code == 200 and head.content == b""
            refused = await client.get("/accounts")
        _, params = parse_challenge(refused.headers["www-authenticate"])
        assert params["resource_metadata"] == (
            "https://api.bank.test/.well-known/oauth-protected-resource"
        )

    async def test_resource_with_path(self) -> None:
        """A resource with a path has its document under the well-known prefix + path."""
        meta = ResourceMetadata(resource="https://api.bank.test/bank/", scopes_supported=("a",))
        assert meta.path == "/.well-known/oauth-protected-resource/bank"
        async with client_for(GuardSettings(metadata=meta)) as client:
            response = await client.get("/.well-known/oauth-protected-resource/bank")
            assert response.json()["scopes_supported"] == ["a"]
            assert (await client.get("/.well-known/oauth-protected-resource")).status_code == 401

    def test_from_env(self) -> None:
        """DPOP_GUARD_AUTHORIZATION_SERVERS turns it on for the public URL."""
        settings = GuardSettings.from_env(
            {
                "DPOP_GUARD_PUBLIC_URL": "https://api.bank.test",
                "DPOP_GUARD_AUTHORIZATION_SERVERS": "https://as1.test https://as2.test",
            }
        )
        assert settings.metadata == ResourceMetadata(
            resource="https://api.bank.test",
            authorization_servers=("https://as1.test", "https://as2.test"),
        )
        assert GuardSettings.from_env({"DPOP_GUARD_PUBLIC_URL": "https://x.test"}).metadata is None

    @pytest.mark.parametrize("resource", ["api.bank.test", "https://api.bank.test/?q=1"])
    def test_invalid(self, resource: str) -> None:
        """The resource must be an absolute URL without query."""
        with pytest.raises(ValueError):
            ResourceMetadata(resource=resource)


def test_document_announces_certificate_bound_tokens_only_with_mtls() -> None:
    from dpop_guard.metadata import metadata_document

    meta = ResourceMetadata(resource="https://api.bank.test")
    plain = metadata_document(meta, routes=(), algorithms=("ES256",), bound_tokens_required=True)
    assert "tls_client_certificate_bound_access_tokens" not in plain
    assert plain["dpop_bound_access_tokens_required"] is True
    mtls = metadata_document(
        meta, routes=(), algorithms=("ES256",), bound_tokens_required=True, mtls=True
    )
    assert mtls["tls_client_certificate_bound_access_tokens"] is True
    assert mtls["dpop_bound_access_tokens_required"] is False
