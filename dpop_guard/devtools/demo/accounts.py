"""A FAPI 2.0-style accounts API protected by dpop_guard: the demo's API.

Run it with uvicorn::

    uvicorn dpop_guard.devtools.demo.accounts:app

Configuration comes from the environment, read by :func:`dpop_guard.from_env`: Authlete's
own names (``AUTHLETE_BASE_URL``, ``AUTHLETE_API_VERSION``, ``AUTHLETE_SERVICE_APIKEY``,
``AUTHLETE_SERVICE_APISECRET``, ``AUTHLETE_SERVICE_ACCESSTOKEN``) and ours
(``DPOP_GUARD_PUBLIC_URL``, ``DPOP_GUARD_INTROSPECTION=rfc7662|jwt|authlete-standard``,
``DPOP_GUARD_CACHE_TTL``, ``DPOP_GUARD_REPLAY_STORE``, ``DPOP_GUARD_NONCE``,
``DPOP_GUARD_HTTPSIG`` for RFC 9421 message signatures, ...). For a fleet::

    DPOP_GUARD_REPLAY_STORE=redis://127.0.0.1:6379/0 \\
    DPOP_GUARD_INTROSPECTION_CACHE=redis://127.0.0.1:6379/0 \\
    uvicorn dpop_guard.devtools.demo.accounts:app --workers 4

For development without Authlete, ``DPOP_GUARD_DEVELOPMENT_SIMULATOR=1`` runs it against
the embedded simulator, mounted at ``/__authlete`` so a client can mint test tokens. That
mode is never chosen for you: without it, a missing Authlete configuration stops start-up.

:func:`create_mtls_app` adds ``GET /mtls/accounts``, which takes certificate-bound tokens
(RFC 8705, ``Authorization: Bearer``) behind a TLS proxy; the demo's mTLS leg runs it
behind nginx::

    DPOP_GUARD_CLIENT_CERT_SOURCE=nginx DPOP_GUARD_CLIENT_CERT_HEADER=X-Client-Cert \\
    DPOP_GUARD_TRUSTED_PROXIES=127.0.0.1 \\
    uvicorn --factory dpop_guard.devtools.demo.accounts:create_mtls_app --no-proxy-headers
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route as HTTPRoute

from ..._json import DOCUMENT_LIMITS, JSONError, parse_object
from ...credentials import DPoPCredentials
from ...guard import from_env
from ...routes import Route

__all__ = ["ACCOUNTS", "MTLS_ROUTES", "ROUTES", "TRANSACTIONS", "create_app", "create_mtls_app"]

# The seed scenario: two customers and their accounts, keyed by the token's subject.
ACCOUNTS: dict[str, list[dict[str, str]]] = {
    "alice": [
        {"account_id": "acc-1001", "currency": "EUR", "nickname": "Current", "balance": "1520.40"},
        {"account_id": "acc-1002", "currency": "EUR", "nickname": "Savings", "balance": "9800.00"},
    ],
    "bob": [
        {"account_id": "acc-2001", "currency": "GBP", "nickname": "Main", "balance": "310.12"},
    ],
}
TRANSACTIONS: dict[str, list[dict[str, str]]] = {
    "acc-1001": [
        {"transaction_id": "tx-1", "amount": "-42.10", "description": "Groceries"},
        {"transaction_id": "tx-2", "amount": "2300.00", "description": "Salary"},
    ],
    "acc-1002": [{"transaction_id": "tx-3", "amount": "500.00", "description": "Transfer in"}],
    "acc-2001": [{"transaction_id": "tx-4", "amount": "-9.99", "description": "Streaming"}],
}

ROUTES = (
    Route("/health", public=True),
    Route("/accounts", scopes=("read:accounts",), methods=("GET",)),
    Route("/accounts/search", scopes=("read:accounts",), methods=("POST",)),
    Route("/accounts/{account_id}/transactions", scopes=("read:transactions",), methods=("GET",)),
)
# The same API with one route for certificate-bound tokens: the DPoP routes keep every DPoP
# rule, so one proxy (client certificates optional) serves both kinds of client.
MTLS_ROUTES = (
    *ROUTES,
    Route("/mtls/accounts", scopes=("read:accounts",), methods=("GET",), sender_constraint="mtls"),
)


async def health(request: Request) -> JSONResponse:
    # The worker's pid lets a load test see that every worker took part.
    return JSONResponse({"status": "ok", "worker": os.getpid()})


async def accounts(request: Request) -> JSONResponse:
    auth: DPoPCredentials = request.auth
    return JSONResponse({"subject": auth.subject, "accounts": ACCOUNTS.get(auth.subject or "", [])})


SEARCH_MAX_BYTES = 4096


async def search(request: Request) -> JSONResponse:
    """``POST /accounts/search`` with ``{"currency": "EUR"}``: a request with a body, for
    the demo's message-signing leg (its ``Content-Digest`` is checked as it streams)."""
    auth: DPoPCredentials = request.auth
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > SEARCH_MAX_BYTES:
            return JSONResponse({"error": "invalid_request"}, status_code=413)
    try:
        query = parse_object(bytes(body), DOCUMENT_LIMITS)
    except JSONError:
        return JSONResponse({"error": "invalid_request"}, status_code=400)
    currency = query.get("currency")
    found = [
        a
        for a in ACCOUNTS.get(auth.subject or "", [])
        if currency is None or a["currency"] == currency
    ]
    return JSONResponse({"subject": auth.subject, "accounts": found})


async def transactions(request: Request) -> JSONResponse:
    auth: DPoPCredentials = request.auth
    account_id = request.path_params["account_id"]
    owned = {a["account_id"] for a in ACCOUNTS.get(auth.subject or "", [])}
    if account_id not in owned:
        return JSONResponse({"error": "not_found"}, status_code=404)
    return JSONResponse({"account_id": account_id, "transactions": TRANSACTIONS[account_id]})


def create_app(environ: Mapping[str, str] | None = None, *, mtls: bool = False) -> Starlette:
    """Build the protected app from ``environ`` (default: ``os.environ``); with ``mtls``,
    also ``GET /mtls/accounts`` for certificate-bound tokens (:data:`MTLS_ROUTES`).

    :raises ValueError: the configuration is missing or invalid (named in the message; with
        ``mtls``, ``DPOP_GUARD_CLIENT_CERT_SOURCE`` must name where the certificate is).
    """
    guard = from_env(routes=MTLS_ROUTES if mtls else ROUTES, environ=environ)
    routes = [
        HTTPRoute("/health", health),
        HTTPRoute("/accounts", accounts),
        HTTPRoute("/accounts/search", search, methods=["POST"]),
        HTTPRoute("/accounts/{account_id}/transactions", transactions),
    ]
    if mtls:
        routes.append(HTTPRoute("/mtls/accounts", accounts))
    app = Starlette(
        routes=routes,
        lifespan=guard.lifespan,
    )
    guard.install(app)
    app.state.guard = guard
    return app


def create_mtls_app(environ: Mapping[str, str] | None = None) -> Starlette:
    """:func:`create_app` with the mTLS route (``uvicorn --factory``).

    :raises ValueError: as :func:`create_app`.
    """
    return create_app(environ, mtls=True)


def __getattr__(name: str) -> Any:
    # ``app`` is built on first access (``uvicorn dpop_guard.devtools.demo.accounts:app``), so that
    # importing this module reads no environment and opens nothing.
    if name == "app":
        app = create_app()
        globals()["app"] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
