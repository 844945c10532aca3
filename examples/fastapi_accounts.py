"""The accounts API in FastAPI: ``uvicorn examples.fastapi_accounts:app``.

The middleware authenticates every request but ``/health`` and the docs; each route declares
its scopes with ``Security`` (checked from cached token facts too), and ``/docs`` shows the
DPoP scheme. Configuration as in
:mod:`examples.accounts` (Authlete's environment names and ``DPOP_GUARD_*``); without
``AUTHLETE_BASE_URL`` the embedded simulator is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from fastapi import FastAPI, HTTPException, Security

from dpop_guard import DPoPCredentials, DPoPGuardMiddleware, Route
from dpop_guard.fastapi import DPoPSecurity
from examples.accounts import ACCOUNTS, TRANSACTIONS, build_guard

ROUTES = (
    Route("/health", public=True),
    Route("/docs", public=True),
    Route("/openapi.json", public=True),
    Route("/__authlete/*", public=True),  # exists only with the embedded simulator
)
dpop = DPoPSecurity()
ReadAccounts = Annotated[DPoPCredentials, Security(dpop, scopes=["read:accounts"])]
ReadBalances = Annotated[DPoPCredentials, Security(dpop, scopes=["read:balances"])]


def _owned(auth: DPoPCredentials, account_id: str) -> dict[str, str]:
    for account in ACCOUNTS.get(auth.subject or "", []):
        if account["account_id"] == account_id:
            return account
    raise HTTPException(404, detail={"error": "not_found"})


def create_app(environ: Mapping[str, str] | None = None) -> FastAPI:
    """Build the FastAPI app from ``environ`` (default: ``os.environ``)."""
    guard = build_guard(environ, ROUTES)
    app = FastAPI(title="Accounts (FAPI 2.0, DPoP)", lifespan=guard.lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/accounts")
    async def accounts(auth: ReadAccounts) -> dict[str, object]:
        return {"subject": auth.subject, "accounts": ACCOUNTS.get(auth.subject or "", [])}

    @app.get("/accounts/{account_id}")
    async def account(account_id: str, auth: ReadAccounts) -> dict[str, str]:
        return _owned(auth, account_id)

    @app.get("/accounts/{account_id}/balances")
    async def balances(account_id: str, auth: ReadBalances) -> dict[str, object]:
        account = _owned(auth, account_id)
        return {
            "account_id": account_id,
            "balances": [
                {
                    "amount": account["balance"],
                    "currency": account["currency"],
                    "type": "closingAvailable",
                }
            ],
            "transactions": len(TRANSACTIONS.get(account_id, [])),
        }

    if guard.simulator_app is not None:
        app.mount("/__authlete", guard.simulator_app)
    app.add_middleware(DPoPGuardMiddleware, **guard.middleware_options)
    app.state.guard = guard
    return app


app = create_app()
