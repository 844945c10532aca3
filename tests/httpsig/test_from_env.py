"""RFC 9421 message signing switched on from the environment (``DPOP_GUARD_HTTPSIG`` and its
siblings): :func:`dpop_guard.from_env` builds it and :meth:`DPoPGuard.install` puts it behind
the DPoP middleware, with the guard's replay store and the token's ``client_id`` for
per-client keys. Driven through the installed app against the embedded simulator."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from joserfc import jwk as jose_jwk
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dpop_guard import ProofSigner, from_env
from dpop_guard._env import ConfigurationError
from dpop_guard.devtools.simulator import DEFAULT_CLIENT_ID
from dpop_guard.httpsig import Message, SigningKey, StaticJWKS, verify_response
from dpop_guard.testing import make_proof

from ._support import CLIENT_KEY, sign

HOST = "rs.example"
ORIGIN = f"http://{HOST}"
SERVER = jose_jwk.ECKey.generate_key("P-256", parameters={"kid": "rs-env-1"})
CLIENTS = json.dumps({"keys": [CLIENT_KEY.public_jwk()]})
COVERED = ("@method", "@target-uri", "authorization", "dpop")
Build = Callable[[dict[str, str]], Awaitable[tuple[httpx.AsyncClient, list[tuple[str, str]]]]]


def environment(**extra: str) -> dict[str, str]:
    env = {
        "DPOP_GUARD_DEVELOPMENT_SIMULATOR": "1",
        "DPOP_GUARD_HTTPSIG": "required",
        "DPOP_GUARD_HTTPSIG_CLIENT_JWKS": CLIENTS,
        **extra,
    }
    return {k: v for k, v in env.items() if v}


async def accounts(request: Request) -> JSONResponse:
    return JSONResponse({"subject": request.auth.subject})


@pytest.fixture(name="guarded")
async def _guarded() -> AsyncIterator[Build]:
    """Builds the guard from an environment, installs it on an app, and gives a client into
    it and the DPoP headers of a valid request (a token from the embedded simulator)."""
    opened: list[Any] = []

    async def build(env: dict[str, str]) -> tuple[httpx.AsyncClient, list[tuple[str, str]]]:
        guard = from_env(environ=env)
        app = Starlette(routes=[Route("/accounts", accounts)])
        guard.install(app)
        assert guard.simulator is not None
        signer = ProofSigner.generate("ES256")
        token = guard.simulator.create_token(subject="alice", scopes=[], jkt=signer.jkt)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN)
        opened.append((client, guard))
        proof = make_proof(signer, htu=ORIGIN + "/accounts", access_token=token, htm="GET")
        return client, [("authorization", f"DPoP {token}"), ("dpop", proof)]

    yield build
    for client, guard in opened:
        await client.aclose()
        await guard.aclose()


def signed(dpop: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The request's headers with a FAPI request signature made now (the middleware reads
    the wall clock), covering the DPoP header too."""
    return sign("GET", "/accounts", dpop, components=COVERED, created=int(time.time()))


async def get(client: httpx.AsyncClient, headers: list[tuple[str, str]]) -> httpx.Response:
    return await client.get("/accounts", headers=[h for h in headers if h[0] != "host"])


def reason(caplog: pytest.LogCaptureFixture) -> str | None:
    for record in reversed(caplog.records):
        found = getattr(record, "dpop_guard_reason", None)
        if found is not None and record.name == "dpop_guard.httpsig":
            return str(found)
    return None


class TestInstalled:
    async def test_signed_request_passes_and_the_response_is_signed(self, guarded: Build) -> None:
        key = json.dumps(SERVER.as_dict(private=True))
        env = environment(DPOP_GUARD_HTTPSIG_SIGNING_KEY=key)
        described = from_env(environ=env)
        info = "message signatures (RFC 9421): required; responses signed with keyid rs-env-1"
        assert info in described.describe()
        await described.aclose()
        client, dpop = await guarded(env)
        headers = signed(dpop)
        response = await get(client, headers)
        assert response.status_code == 200, response.text
        assert response.json() == {"subject": "alice"}
        request = Message(
            "GET",
            "http",
            HOST,
            "/accounts",
            None,
            tuple((k.encode(), v.encode()) for k, v in headers),
        )
        answer = Message(
            "GET",
            "http",
            HOST,
            "/accounts",
            None,
            tuple((k.encode(), v.encode()) for k, v in response.headers.multi_items()),
            status=200,
            request=request,
        )
        public = SigningKey(SERVER.private_key, "rs-env-1").public_jwk()  # type: ignore[arg-type]
        verified = await verify_response(
            answer,
            key_source=StaticJWKS({"keys": [public]}),
            now=int(time.time()),
            has_body=True,
            request_label="sig1",
        )
        assert verified.keyid == "rs-env-1"

    async def test_unsigned_request_refused(
        self, guarded: Build, caplog: pytest.LogCaptureFixture
    ) -> None:
        client, dpop = await guarded(environment())
        response = await get(client, dpop)
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_signature"
        assert response.headers["cache-control"] == "no-store"
        assert "accept-signature" in response.headers
        assert reason(caplog) == "signature_missing"

    async def test_a_route_left_off(self, guarded: Build) -> None:
        client, dpop = await guarded(environment(DPOP_GUARD_HTTPSIG="/payments=required /=off"))
        response = await get(client, dpop)
        assert response.status_code == 200, response.text
        assert "signature-input" not in response.headers

    async def test_per_client_keys(self, guarded: Build, caplog: pytest.LogCaptureFixture) -> None:
        """``{client_id: JWK Set}``: the key must belong to the token's client."""
        mine = json.dumps({str(DEFAULT_CLIENT_ID): json.loads(CLIENTS)})
        client, dpop = await guarded(environment(DPOP_GUARD_HTTPSIG_CLIENT_JWKS=mine))
        assert (await get(client, signed(dpop))).status_code == 200
        other = json.dumps({"someone-else": json.loads(CLIENTS)})
        client, dpop = await guarded(environment(DPOP_GUARD_HTTPSIG_CLIENT_JWKS=other))
        response = await get(client, signed(dpop))
        assert response.status_code == 401
        assert reason(caplog) == "signature_key_unknown"


PRIVATE = SERVER.as_dict(private=True)


@pytest.mark.parametrize(
    ("extra", "variable"),
    [
        ({"DPOP_GUARD_HTTPSIG": "sometimes"}, "DPOP_GUARD_HTTPSIG"),
        ({"DPOP_GUARD_HTTPSIG": "/a=required payments=off"}, "DPOP_GUARD_HTTPSIG"),
        ({"DPOP_GUARD_HTTPSIG_CLIENT_JWKS": ""}, "DPOP_GUARD_HTTPSIG_CLIENT_JWKS"),
        ({"DPOP_GUARD_HTTPSIG_CLIENT_JWKS": "[]"}, "DPOP_GUARD_HTTPSIG_CLIENT_JWKS"),
        (
            {"DPOP_GUARD_HTTPSIG_CLIENT_JWKS": '{"keys": [{"kty": "oct", "k": "AA"}]}'},
            "DPOP_GUARD_HTTPSIG_CLIENT_JWKS",
        ),
        (
            {"DPOP_GUARD_HTTPSIG_SIGNING_KEY": json.dumps(CLIENT_KEY.public_jwk())},
            "DPOP_GUARD_HTTPSIG_SIGNING_KEY",
        ),
        (
            {"DPOP_GUARD_HTTPSIG_SIGNING_KEY": json.dumps({**PRIVATE, "kid": ""})},
            "DPOP_GUARD_HTTPSIG_SIGNING_KEY",
        ),
        ({"DPOP_GUARD_HTTPSIG_MAX_BODY_BYTES": "-1"}, "DPOP_GUARD_HTTPSIG_MAX_BODY_BYTES"),
        (
            {"DPOP_GUARD_HTTPSIG_UNSIGNED_RESPONSES": "events"},
            "DPOP_GUARD_HTTPSIG_UNSIGNED_RESPONSES",
        ),
        ({"DPOP_GUARD_HTTPSIG": "off"}, "DPOP_GUARD_HTTPSIG_CLIENT_JWKS"),
    ],
)
def test_refused_at_start_up(extra: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        from_env(environ=environment(**extra))
    assert caught.value.variable == variable


def test_off_by_default() -> None:
    guard = from_env(environ={"DPOP_GUARD_DEVELOPMENT_SIMULATOR": "1"})
    assert guard.httpsig is None
