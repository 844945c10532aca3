"""Apps the load benchmark serves besides ``examples.accounts``.

- ``bare``: the accounts app without the guard: its routes, in its order, and for
  ``/accounts`` the body it answers the benchmark's token (alice's accounts), so that a
  guarded scenario differs from it by the guard alone (every scenario also receives the
  same request bytes, ``Authorization`` and ``DPoP`` included: ``load.py``).
- ``ceiling``: the bare app plus one raw ES256 verify per request (``cryptography``
  directly, a fixed key and signature, no parsing): the true ceiling of any DPoP guard on
  this stack, since every request must verify one signature.
- ``delegated``: the "Authlete helper" model, no local check and no cache: every request
  is introspected with ``dpop``, ``htm`` and ``htu`` and Authlete decides, as Authlete's
  own ``AccessTokenValidator`` does. It is the baseline dpop_guard is compared with.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dpop_guard.devtools.demo.accounts import ACCOUNTS as _BY_SUBJECT
from dpop_guard.introspection.authlete import AuthleteSettings

# What the accounts app answers the benchmark's token (minted for alice).
ACCOUNTS = {"subject": "alice", "accounts": _BY_SUBJECT["alice"]}


async def _accounts(request: Request) -> JSONResponse:
    return JSONResponse(ACCOUNTS)


async def _health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok", "worker": os.getpid()})


async def _transactions(request: Request) -> JSONResponse:
    return JSONResponse({"error": "not_found"}, status_code=404)  # never asked for here


def _routes(accounts: Callable[[Request], Awaitable[Response]]) -> list[Route]:
    """The accounts app's routes, in its order (route matching costs the same)."""
    return [
        Route("/health", _health),
        Route("/accounts", accounts),
        Route("/accounts/{account_id}/transactions", _transactions),
    ]


bare = Starlette(routes=_routes(_accounts))


def _ceiling() -> Starlette:
    key = ec.generate_private_key(ec.SECP256R1())
    public, algorithm = key.public_key(), ec.ECDSA(hashes.SHA256())
    data = b"x" * 600  # about a DPoP proof's signing input
    signature = key.sign(data, algorithm)

    async def accounts(request: Request) -> JSONResponse:
        public.verify(signature, data, algorithm)
        return JSONResponse(ACCOUNTS)

    return Starlette(routes=_routes(accounts))


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

    return Starlette(routes=_routes(accounts), lifespan=lifespan)


delegated = _delegated()
