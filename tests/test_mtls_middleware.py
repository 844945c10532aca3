"""Certificate-bound tokens (RFC 8705) in the middleware, in-process: one test per binding
rule, asserting status, challenge scheme and ``error``, and the internal reason.

The certificate reaches the middleware as RFC 9440 ``Client-Cert`` from a trusted peer
(httpx's ASGI transport reports ``127.0.0.1``). The token facts are data: a table
introspector answers each token with the :class:`TokenInfo` a test gives it, so every
combination of bindings (none, DPoP, certificate, both) is one row. The same rules through
real nginx and HAProxy, with tokens from the simulator, are in
``tests/test_mtls_middleware_e2e.py``.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route as HTTPRoute

from dpop_guard import DPoPCredentials, DPoPGuardMiddleware, GuardSettings, ProofSigner, Route
from dpop_guard.challenges import parse_challenge
from dpop_guard.introspection import InactiveToken, RequestFacts, TokenInfo
from dpop_guard.metadata import ResourceMetadata
from dpop_guard.mtls import Rfc9440CertificateSource
from dpop_guard.replay import MemoryReplayStore
from dpop_guard.testing import make_proof

from ._support.pki import PKI, Identity

ORIGIN = "https://api.bank.test"
ROUTES = (
    Route("/dpop", scopes=("read",)),
    Route("/mtls", scopes=("read",), sender_constraint="mtls"),
    Route("/either", scopes=("read",), sender_constraint="either"),
)


@dataclass
class TableIntrospector:
    """Answers each token from a table (unknown: inactive) and keeps what it was asked."""

    table: dict[str, TokenInfo] = field(default_factory=dict)
    asked: list[RequestFacts] = field(default_factory=list)

    async def introspect(self, token: str, *, request: RequestFacts) -> TokenInfo:
        self.asked.append(request)
        info = self.table.get(token)
        if info is None:
            raise InactiveToken("introspection_inactive")
        return info


async def echo(request: Request) -> JSONResponse:
    auth: DPoPCredentials = request.auth
    return JSONResponse({"scheme": auth.scheme, "jkt": auth.jkt, "x5t_s256": auth.x5t_s256})


def _info(*, jkt: str | None = None, x5t: str | None = None) -> TokenInfo:
    return TokenInfo(
        subject="alice",
        client_id="1",
        scopes=frozenset({"read"}),
        expires_at=int(time.time()) + 3600,
        jkt=jkt,
        x5t_s256=x5t,
    )


def client_cert(identity: Identity) -> tuple[str, str]:
    return ("Client-Cert", ":" + base64.b64encode(identity.der).decode() + ":")


@pytest.fixture(scope="module", name="pki")
def _pki() -> PKI:
    return PKI.generate()


@dataclass
class MTLSHarness:
    introspector: TableIntrospector
    client: httpx.AsyncClient
    signer: ProofSigner

    async def call(
        self,
        token: str,
        path: str,
        *,
        cert: Identity | None = None,
        scheme: str = "DPoP",
        signer: ProofSigner | None = None,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> httpx.Response:
        headers = [("Authorization", f"{scheme} {token}"), *extra]
        if cert is not None:
            headers.append(client_cert(cert))
        if scheme == "DPoP":
            proof_signer = signer or self.signer
            headers.append(
                ("DPoP", make_proof(proof_signer, htu=ORIGIN + path, access_token=token))
            )
        return await self.client.get(path, headers=headers)


@pytest.fixture(name="make")
async def _make(signer: ProofSigner) -> AsyncIterator[Callable[..., MTLSHarness]]:
    clients: list[httpx.AsyncClient] = []

    def make(**settings: Any) -> MTLSHarness:
        introspector = TableIntrospector()
        app = DPoPGuardMiddleware(
            Starlette(routes=[HTTPRoute(p, echo) for p in ("/dpop", "/mtls", "/either")]),
            settings=GuardSettings(
                routes=settings.pop("routes", ROUTES),
                public_url=ORIGIN,
                trusted_proxies=("127.0.0.1",),
                proxy_headers=("x-forwarded-proto",),
                **settings,
            ),
            introspector=introspector,
            replay_store=MemoryReplayStore(epoch=int(time.time()) - 3600),
            certificate_source=Rfc9440CertificateSource(),
        )
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN)
        clients.append(client)
        return MTLSHarness(introspector, client, signer)

    yield make
    for client in clients:
        await client.aclose()


def challenges(response: httpx.Response) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for value in response.headers.get_list("www-authenticate"):
        scheme, params = parse_challenge(value)
        found[scheme] = params
    return found


def refused(
    response: httpx.Response, status: int, scheme: str, error: str | None
) -> dict[str, dict[str, str]]:
    assert response.status_code == status, response.text
    found = challenges(response)
    assert scheme in found, found
    assert found[scheme].get("error") == error
    assert response.headers["cache-control"] == "no-store"
    return found


# -- the route's constraint ------------------------------------------------------------------


async def test_mtls_route_right_certificate_on_bearer_passes(
    make: Callable[..., MTLSHarness], pki: PKI
) -> None:
    h = make()
    h.introspector.table["t"] = _info(x5t=pki.alice.x5t_s256)
    response = await h.call("t", "/mtls", cert=pki.alice, scheme="Bearer")
    assert response.status_code == 200
    assert response.json() == {"scheme": "Bearer", "jkt": None, "x5t_s256": pki.alice.x5t_s256}
    # Authlete checks the binding too on a miss: the certificate was sent along.
    facts = h.introspector.asked[-1]
    assert facts.client_certificate is not None
    assert facts.client_certificate.thumbprint == pki.alice.x5t_s256


async def test_mtls_route_other_certificate_refused(
    make: Callable[..., MTLSHarness], pki: PKI, reasons: list[str]
) -> None:
    h = make()
    h.introspector.table["t"] = _info(x5t=pki.alice.x5t_s256)
    response = await h.call("t", "/mtls", cert=pki.bob, scheme="Bearer")
    refused(response, 401, "Bearer", "invalid_token")
    assert reasons == ["certificate_mismatch"]


async def test_mtls_route_no_certificate_refused_before_introspection(
    make: Callable[..., MTLSHarness], pki: PKI, reasons: list[str]
) -> None:
    h = make()
    h.introspector.table["t"] = _info(x5t=pki.alice.x5t_s256)
    response = await h.call("t", "/mtls", scheme="Bearer")
    refused(response, 401, "Bearer", "invalid_token")
    assert reasons == ["certificate_missing"]
    assert h.introspector.asked == []


async def test_mtls_route_dpop_only_token_refused(
    make: Callable[..., MTLSHarness], pki: PKI, signer: ProofSigner, reasons: list[str]
) -> None:
    h = make()
    h.introspector.table["t"] = _info(jkt=signer.jkt)
    response = await h.call("t", "/mtls", cert=pki.alice)
    refused(response, 401, "Bearer", "invalid_token")
    assert reasons == ["token_not_certificate_bound"]


async def test_mtls_route_unbound_bearer_token_refused(
    make: Callable[..., MTLSHarness], pki: PKI, reasons: list[str]
) -> None:
    h = make()
    h.introspector.table["t"] = _info()
    response = await h.call("t", "/mtls", cert=pki.alice, scheme="Bearer")
    refused(response, 401, "Bearer", "invalid_token")
    assert reasons == ["token_not_certificate_bound"]


async def test_dpop_route_bearer_still_refused_with_certificate(
    make: Callable[..., MTLSHarness], pki: PKI, reasons: list[str]
) -> None:
    h = make()
    h.introspector.table["t"] = _info(x5t=pki.alice.x5t_s256)
    response = await h.call("t", "/dpop", cert=pki.alice, scheme="Bearer")
    refused(response, 401, "DPoP", "invalid_token")
    assert reasons == ["bearer_scheme_refused"]


async def test_dpop_route_certificate_only_token_refused(
    make: Callable[..., MTLSHarness], pki: PKI, reasons: list[str]
) -> None:
    h = make()
    h.introspector.table["t"] = _info(x5t=pki.alice.x5t_s256)
    response = await h.call("t", "/dpop", cert=pki.alice)
    refused(response, 401, "DPoP", "invalid_token")
    assert reasons == ["token_not_bound"]


# -- certificate-bound tokens everywhere -------------------------------------------------------


async def test_certificate_bound_token_needs_its_certificate_on_a_dpop_route(
    make: Callable[..., MTLSHarness], pki: PKI, signer: ProofSigner, reasons: list[str]
) -> None:
    h = make()
    h.introspector.table["t"] = _info(jkt=signer.jkt, x5t=pki.alice.x5t_s256)
    response = await h.call("t", "/dpop")
    refused(response, 401, "DPoP", "invalid_token")
    assert reasons == ["certificate_missing"]


async def test_token_bound_both_ways_passes_with_both(
    make: Callable[..., MTLSHarness], pki: PKI, signer: ProofSigner
) -> None:
    h = make()
    h.introspector.table["t"] = _info(jkt=signer.jkt, x5t=pki.alice.x5t_s256)
    for path in ("/dpop", "/mtls", "/either"):
        response = await h.call("t", path, cert=pki.alice)
        assert response.status_code == 200, (path, response.text)
        assert response.json()["x5t_s256"] == pki.alice.x5t_s256


async def test_token_bound_both_ways_needs_the_proof_key(
    make: Callable[..., MTLSHarness], pki: PKI, signer: ProofSigner, reasons: list[str]
) -> None:
    h = make()
    h.introspector.table["t"] = _info(jkt=signer.jkt, x5t=pki.alice.x5t_s256)
    other = ProofSigner.generate("ES256")
    response = await h.call("t", "/mtls", cert=pki.alice, signer=other)
    refused(response, 401, "DPoP", "invalid_dpop_proof")
    assert reasons == ["jkt_mismatch"]


async def test_token_bound_both_ways_as_bearer_refused(
    make: Callable[..., MTLSHarness], pki: PKI, signer: ProofSigner, reasons: list[str]
) -> None:
    h = make()
    h.introspector.table["t"] = _info(jkt=signer.jkt, x5t=pki.alice.x5t_s256)
    response = await h.call("t", "/mtls", cert=pki.alice, scheme="Bearer")
    refused(response, 401, "Bearer", "invalid_token")
    assert reasons == ["bound_token_as_bearer"]


async def test_dpop_bound_token_as_bearer_on_mtls_route_refused(
    make: Callable[..., MTLSHarness], pki: PKI, signer: ProofSigner, reasons: list[str]
) -> None:
    h = make()
    h.introspector.table["t"] = _info(jkt=signer.jkt)
    response = await h.call("t", "/either", cert=pki.alice, scheme="Bearer")
    refused(response, 401, "Bearer", "invalid_token")
    assert reasons == ["bound_token_as_bearer"]


async def test_cache_hit_compares_thumbprints(
    make: Callable[..., MTLSHarness], pki: PKI, reasons: list[str]
) -> None:
    # The answer is the same object on every call, as a cache hit returns it: the
    # comparison is the middleware's, on every request.
    h = make()
    h.introspector.table["t"] = _info(x5t=pki.alice.x5t_s256)
    assert (await h.call("t", "/mtls", cert=pki.alice, scheme="Bearer")).status_code == 200
    response = await h.call("t", "/mtls", cert=pki.mallory, scheme="Bearer")
    refused(response, 401, "Bearer", "invalid_token")
    assert reasons == ["certificate_mismatch"]


# -- either ------------------------------------------------------------------------------------


async def test_either_route_accepts_each_binding(
    make: Callable[..., MTLSHarness], pki: PKI, signer: ProofSigner
) -> None:
    h = make()
    h.introspector.table["dpop"] = _info(jkt=signer.jkt)
    h.introspector.table["mtls"] = _info(x5t=pki.alice.x5t_s256)
    assert (await h.call("dpop", "/either")).status_code == 200
    assert (await h.call("mtls", "/either", cert=pki.alice, scheme="Bearer")).status_code == 200
    assert (await h.call("mtls", "/either", cert=pki.alice)).status_code == 200


async def test_either_route_unbound_token_refused(
    make: Callable[..., MTLSHarness], pki: PKI, reasons: list[str]
) -> None:
    h = make()
    h.introspector.table["t"] = _info()
    response = await h.call("t", "/either", cert=pki.alice)
    refused(response, 401, "DPoP", "invalid_token")
    assert reasons == ["token_not_bound"]


async def test_either_route_unauthenticated_gets_both_challenges(
    make: Callable[..., MTLSHarness],
) -> None:
    h = make()
    response = await h.client.get("/either")
    found = challenges(response)
    assert response.status_code == 401
    assert set(found) == {"DPoP", "Bearer"}
    assert "algs" in found["DPoP"]
    assert "algs" not in found["Bearer"]


async def test_mtls_route_unauthenticated_gets_bearer_challenge(
    make: Callable[..., MTLSHarness],
) -> None:
    response = await make().client.get("/mtls")
    assert response.status_code == 401
    assert set(challenges(response)) == {"Bearer"}


# -- the certificate source --------------------------------------------------------------------


async def test_malformed_certificate_header_is_400(
    make: Callable[..., MTLSHarness], signer: ProofSigner, reasons: list[str]
) -> None:
    h = make()
    h.introspector.table["t"] = _info(jkt=signer.jkt)
    response = await h.call("t", "/dpop", extra=(("Client-Cert", ":bm90IGEgY2VydA==:"),))
    assert response.status_code == 400
    assert reasons == ["client_cert_malformed"]
    assert h.introspector.asked == []


async def test_certificate_from_untrusted_peer_ignored(
    signer: ProofSigner, pki: PKI, reasons: list[str]
) -> None:
    introspector = TableIntrospector({"t": _info(x5t=pki.alice.x5t_s256)})
    app = DPoPGuardMiddleware(
        Starlette(routes=[HTTPRoute("/mtls", echo)]),
        settings=GuardSettings(routes=ROUTES, public_url=ORIGIN),  # nobody is trusted
        introspector=introspector,
        certificate_source=Rfc9440CertificateSource(),
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN) as client:
        response = await client.get(
            "/mtls", headers=[("Authorization", "Bearer t"), client_cert(pki.alice)]
        )
    refused(response, 401, "Bearer", "invalid_token")
    assert reasons == ["certificate_missing"]


def test_mtls_route_without_certificate_source_is_a_start_up_error() -> None:
    with pytest.raises(ValueError, match="certificate_source"):
        DPoPGuardMiddleware(
            Starlette(),
            settings=GuardSettings(routes=ROUTES),
            introspector=TableIntrospector(),
        )


async def test_metadata_announces_certificate_bound_tokens(
    make: Callable[..., MTLSHarness],
) -> None:
    h = make(
        metadata=ResourceMetadata(resource=ORIGIN, authorization_servers=("https://as.bank.test",))
    )
    document = (await h.client.get("/.well-known/oauth-protected-resource")).json()
    assert document["tls_client_certificate_bound_access_tokens"] is True
    assert document["dpop_bound_access_tokens_required"] is False
