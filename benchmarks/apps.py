"""Apps the load benchmark serves besides ``examples.accounts``.

- ``bare``: one Starlette route and nothing else: the ceiling for this server and machine.
- ``ceiling``: the bare route plus one raw ES256 verify per request (``cryptography``
  directly, a fixed key and signature, no parsing): the true ceiling of any DPoP guard on
  this stack, since every request must verify one signature.
- ``delegated``: the "Authlete helper" model, no local check and no cache: every request
  is introspected with ``dpop``, ``htm`` and ``htu`` and Authlete decides, as Authlete's
  own ``AccessTokenValidator`` does. It is the baseline dpop_guard is compared with.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dpop_guard.introspection.authlete import AuthleteSettings

ACCOUNTS = {"accounts": [{"account_id": "acc-1001", "currency": "EUR", "balance": "1520.40"}]}


async def _accounts(request: Request) -> JSONResponse:
    return JSONResponse(ACCOUNTS)


bare = Starlette(routes=[Route("/accounts", _accounts), Route("/health", _accounts)])


def _ceiling() -> Starlette:
    key = ec.generate_private_key(ec.SECP256R1())
    public, algorithm = key.public_key(), ec.ECDSA(hashes.SHA256())
    data = b"x" * 600  # about a DPoP proof's signing input
    signature = key.sign(data, algorithm)

    async def accounts(request: Request) -> JSONResponse:
        public.verify(signature, data, algorithm)
        return JSONResponse(ACCOUNTS)

    return Starlette(routes=[Route("/accounts", accounts), Route("/health", _accounts)])


ceiling = _ceiling()


def _delegated() -> Starlette:
    settings = (
        AuthleteSettings.from_env(os.environ) if os.environ.get("AUTHLETE_BASE_URL") else None
    )
    client = httpx.AsyncClient(limits=httpx.Limits(max_connections=200))
    public_url = os.environ.get("DPOP_GUARD_PUBLIC_URL", "http://127.0.0.1")

    async def accounts(request: Request) -> Response:
        assert settings is not None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        proof = request.headers.get("dpop")
        if scheme.lower() != "dpop" or not token or not proof:
            return Response(status_code=401, headers={"WWW-Authenticate": "DPoP"})
        response = await client.post(
            settings.introspection_url,
            headers={"Authorization": settings.authorization},
            json={
                "token": token,
                "scopes": ["read:accounts"],
                "dpop": proof,
                "htm": request.method,
                "htu": public_url + request.url.path,
            },
        )
        data = response.json()
        status = {"OK": 200, "BAD_REQUEST": 400, "UNAUTHORIZED": 401, "FORBIDDEN": 403}.get(
            data.get("action"), 500
        )
        if status != 200:
            return Response(
                status_code=status,
                headers={
                    "WWW-Authenticate": data.get("responseContent", "DPoP"),
                    "Cache-Control": "no-store",
                },
            )
        return JSONResponse(ACCOUNTS)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    return Starlette(
        routes=[Route("/accounts", accounts), Route("/health", _accounts)], lifespan=lifespan
    )


delegated = _delegated()
