"""Step-up authentication (RFC 9470) and Authlete's nonces, from the middleware's side.

A route's ``acr_values``/``max_age`` go to the introspector (Authlete checks them on a
miss) and are checked here from the token's ``acr``/``auth_time`` on every request, with
the request's clock. The token facts are data (a table introspector), the clock injected.
The nonce tests stand an introspector in for Authlete's ``dpopNonceRequired`` answers:
``UseDPoPNonce`` with its nonce, and the next nonce on ``Lookup.dpop_nonce``.
"""

from __future__ import annotations

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
from dpop_guard.errors import UseDPoPNonce
from dpop_guard.introspection import InactiveToken, RequestFacts, TokenInfo
from dpop_guard.replay import MemoryReplayStore
from dpop_guard.starlette import requires_dpop
from dpop_guard.testing import make_proof

ORIGIN = "https://api.bank.test"
NOW = 1_900_000_000
GOLD = "urn:bank:acr:gold"
SILVER = "urn:bank:acr:silver"
ROUTES = (
    Route("/payments", acr_values=(GOLD,)),
    Route("/fresh", max_age=300),
    Route("/both", acr_values=(GOLD, SILVER), max_age=60),
    Route("/plain"),
)


@dataclass
class TableIntrospector:
    """Answers each token from a table; optionally acts as Authlete with nonces."""

    table: dict[str, TokenInfo] = field(default_factory=dict)
    asked: list[RequestFacts] = field(default_factory=list)
    demand_nonce: str | None = None
    next_nonce: str | None = None

    async def introspect(self, token: str, *, request: RequestFacts) -> TokenInfo:
        self.asked.append(request)
        if self.demand_nonce is not None:
            raise UseDPoPNonce("authlete_unauthorized", nonce=self.demand_nonce)
        info = self.table.get(token)
        if info is None:
            raise InactiveToken("introspection_inactive")
        request.lookup.dpop_nonce = self.next_nonce
        return info


async def echo(request: Request) -> JSONResponse:
    auth: DPoPCredentials = request.auth
    return JSONResponse(
        {
            "acr": auth.acr,
            "auth_time": auth.auth_time,
            "grant_id": auth.grant_id,
            "authorization_details": auth.authorization_details,
            "consented_claims": list(auth.consented_claims),
            "client_id_alias": auth.client_id_alias,
            "resources": list(auth.resources),
        }
    )


@requires_dpop(acr_values=(GOLD,), max_age=60)
async def endpoint_step_up(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


def _info(signer: ProofSigner, **facts: Any) -> TokenInfo:
    return TokenInfo(
        subject="alice",
        client_id="1",
        scopes=frozenset(),
        expires_at=NOW + 3600,
        jkt=signer.jkt,
        **facts,
    )


@dataclass
class Harness:
    introspector: TableIntrospector
    client: httpx.AsyncClient
    signer: ProofSigner

    async def call(self, path: str, token: str = "t") -> httpx.Response:  # noqa: S107
        proof = make_proof(self.signer, htu=ORIGIN + path, access_token=token, iat=NOW)
        return await self.client.get(
            path, headers=[("Authorization", f"DPoP {token}"), ("DPoP", proof)]
        )


@pytest.fixture(name="make")
async def _make(signer: ProofSigner) -> AsyncIterator[Callable[..., Harness]]:
    clients: list[httpx.AsyncClient] = []

    def make(**settings: Any) -> Harness:
        introspector = TableIntrospector()
        paths = ("/payments", "/fresh", "/both", "/plain")
        app = DPoPGuardMiddleware(
            Starlette(
                routes=[
                    *(HTTPRoute(p, echo) for p in paths),
                    HTTPRoute("/endpoint", endpoint_step_up),
                ]
            ),
            settings=GuardSettings(routes=ROUTES, public_url=ORIGIN, **settings),
            introspector=introspector,
            replay_store=MemoryReplayStore(epoch=NOW - 3600),
            clock=lambda: NOW,
        )
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN)
        clients.append(client)
        return Harness(introspector, client, signer)

    yield make
    for client in clients:
        await client.aclose()


def step_up_challenge(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 401, response.text
    assert response.headers["cache-control"] == "no-store"
    scheme, params = parse_challenge(response.headers["www-authenticate"])
    assert scheme == "DPoP"
    assert params["error"] == "insufficient_user_authentication"
    return params


# -- acr_values --------------------------------------------------------------------------------


async def test_acr_satisfied_passes(make: Callable[..., Harness], signer: ProofSigner) -> None:
    h = make()
    h.introspector.table["t"] = _info(signer, acr=GOLD)
    response = await h.call("/payments")
    assert response.status_code == 200
    assert response.json()["acr"] == GOLD


async def test_acr_too_weak_refused(
    make: Callable[..., Harness], signer: ProofSigner, reasons: list[str]
) -> None:
    h = make()
    h.introspector.table["t"] = _info(signer, acr=SILVER)
    params = step_up_challenge(await h.call("/payments"))
    assert params["acr_values"] == GOLD
    assert "max_age" not in params
    assert reasons == ["acr_not_satisfied"]


async def test_acr_unknown_refused(
    make: Callable[..., Harness], signer: ProofSigner, reasons: list[str]
) -> None:
    h = make()
    h.introspector.table["t"] = _info(signer)
    step_up_challenge(await h.call("/payments"))
    assert reasons == ["acr_not_satisfied"]


async def test_route_requirement_is_sent_to_the_introspector(
    make: Callable[..., Harness], signer: ProofSigner
) -> None:
    h = make()
    h.introspector.table["t"] = _info(signer, acr=GOLD, auth_time=NOW)
    assert (await h.call("/both")).status_code == 200
    facts = h.introspector.asked[-1]
    assert facts.acr_values == (GOLD, SILVER)
    assert facts.max_age == 60


# -- max_age -----------------------------------------------------------------------------------


async def test_recent_authentication_passes(
    make: Callable[..., Harness], signer: ProofSigner
) -> None:
    h = make()
    h.introspector.table["t"] = _info(signer, auth_time=NOW - 300)  # exactly max_age
    assert (await h.call("/fresh")).status_code == 200


async def test_old_authentication_refused(
    make: Callable[..., Harness], signer: ProofSigner, reasons: list[str]
) -> None:
    h = make()
    h.introspector.table["t"] = _info(signer, auth_time=NOW - 301)
    params = step_up_challenge(await h.call("/fresh"))
    assert params["max_age"] == "300"
    assert "acr_values" not in params
    assert reasons == ["auth_too_old"]


async def test_auth_time_unknown_refused(
    make: Callable[..., Harness], signer: ProofSigner, reasons: list[str]
) -> None:
    h = make()
    h.introspector.table["t"] = _info(signer)
    step_up_challenge(await h.call("/fresh"))
    assert reasons == ["auth_time_missing"]


async def test_both_requirements_in_the_challenge(
    make: Callable[..., Harness], signer: ProofSigner
) -> None:
    h = make()
    h.introspector.table["t"] = _info(signer, acr=GOLD, auth_time=NOW - 61)
    params = step_up_challenge(await h.call("/both"))
    assert params["acr_values"] == f"{GOLD} {SILVER}"
    assert params["max_age"] == "60"


async def test_endpoint_level_step_up(make: Callable[..., Harness], signer: ProofSigner) -> None:
    h = make()
    # The endpoint checks with the wall clock: auth_time is set relative to it.
    h.introspector.table["old"] = _info(signer, acr=GOLD, auth_time=int(time.time()) - 3600)
    h.introspector.table["new"] = _info(signer, acr=GOLD, auth_time=int(time.time()))
    params = step_up_challenge(await h.call("/endpoint", token="old"))
    assert params["max_age"] == "60"
    assert (await h.call("/endpoint", token="new")).status_code == 200


# -- rich facts --------------------------------------------------------------------------------


async def test_rich_facts_reach_request_auth(
    make: Callable[..., Harness], signer: ProofSigner
) -> None:
    h = make()
    details = ({"type": "account_information", "actions": ("read",)},)
    h.introspector.table["t"] = _info(
        signer,
        acr=GOLD,
        auth_time=NOW - 5,
        resources=("https://api.bank.test",),
        authorization_details=details,
        grant_id="grant-1",
        consented_claims=("name",),
        client_id_alias="tpp",
    )
    body = (await h.call("/plain")).json()
    assert body == {
        "acr": GOLD,
        "auth_time": NOW - 5,
        "grant_id": "grant-1",
        "authorization_details": [{"type": "account_information", "actions": ["read"]}],
        "consented_claims": ["name"],
        "client_id_alias": "tpp",
        "resources": ["https://api.bank.test"],
    }


def test_credentials_are_read_only() -> None:
    credentials = DPoPCredentials(
        token=TokenInfo("a", "c", frozenset(), None, None), scheme="DPoP", interaction_id=None
    )
    with pytest.raises(AttributeError):
        credentials.grant_id = "other"  # type: ignore[misc]


# -- Authlete's nonces ---------------------------------------------------------------------


async def test_authlete_nonce_challenge_has_exactly_one_nonce(
    make: Callable[..., Harness], signer: ProofSigner, reasons: list[str]
) -> None:
    h = make()
    h.introspector.demand_nonce = "authlete-nonce-1"
    response = await h.call("/plain")
    assert response.status_code == 401
    assert response.headers.get_list("dpop-nonce") == ["authlete-nonce-1"]
    _, params = parse_challenge(response.headers["www-authenticate"])
    assert params["error"] == "use_dpop_nonce"
    assert reasons == ["authlete_unauthorized"]


async def test_authlete_next_nonce_relayed_on_success(
    make: Callable[..., Harness], signer: ProofSigner
) -> None:
    h = make()
    h.introspector.table["t"] = _info(signer)
    h.introspector.next_nonce = "authlete-nonce-2"
    response = await h.call("/plain")
    assert response.status_code == 200
    assert response.headers.get_list("dpop-nonce") == ["authlete-nonce-2"]


async def test_own_nonces_take_precedence(
    make: Callable[..., Harness], signer: ProofSigner
) -> None:
    # With our own nonces required, ours checked the proof and only ours is relayed:
    # never two DPoP-Nonce headers.
    h = make(nonce="required", nonce_secret=b"0123456789abcdef", nonce_step=60)
    h.introspector.table["t"] = _info(signer)
    h.introspector.next_nonce = "authlete-nonce-3"
    first = await h.call("/plain")
    assert first.status_code == 401
    ours = first.headers.get_list("dpop-nonce")
    assert len(ours) == 1 and ours != ["authlete-nonce-3"]
    proof = make_proof(
        signer, htu=ORIGIN + "/plain", access_token="t", iat=NOW, claims={"nonce": ours[0]}
    )
    response = await h.client.get("/plain", headers=[("Authorization", "DPoP t"), ("DPoP", proof)])
    assert response.status_code == 200
    assert "authlete-nonce-3" not in response.headers.get_list("dpop-nonce")
    assert len(response.headers.get_list("dpop-nonce")) <= 1


async def test_fastapi_security_step_up(signer: ProofSigner) -> None:
    from fastapi import FastAPI, Security

    from dpop_guard.fastapi import DPoPSecurity

    gold = DPoPSecurity(acr_values=(GOLD,))
    api = FastAPI()

    @api.get("/plain")
    async def plain(auth: DPoPCredentials = Security(gold, scopes=[])) -> dict[str, str | None]:  # noqa: B008
        return {"acr": auth.acr}

    introspector = TableIntrospector(
        {"gold": _info(signer, acr=GOLD), "silver": _info(signer, acr=SILVER)}
    )
    app = DPoPGuardMiddleware(
        api,
        settings=GuardSettings(public_url=ORIGIN),
        introspector=introspector,
        replay_store=MemoryReplayStore(epoch=NOW - 3600),
        clock=lambda: NOW,
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN) as c:
        h = Harness(introspector, c, signer)
        assert (await h.call("/plain", token="gold")).json() == {"acr": GOLD}
        params = step_up_challenge(await h.call("/plain", token="silver"))
    assert params["acr_values"] == GOLD
