"""The accounts API in FastAPI: ``uvicorn dpop_guard.devtools.demo.fastapi_accounts:app``.

The middleware authenticates every request but ``/health`` and the docs (``/docs`` and
``/openapi.json`` are public because FastAPI serves them: ``guard.install(app)`` learns them
from the app, no second declaration); each route declares its scopes with ``Security``
(checked from cached token facts too), and ``/docs`` shows the DPoP scheme and each
operation's 401 and 403. Configuration as in :mod:`dpop_guard.devtools.demo.accounts`
(Authlete's environment names and ``DPOP_GUARD_*``, read by :func:`dpop_guard.from_env`);
``DPOP_GUARD_DEVELOPMENT_SIMULATOR=1`` runs it against the embedded simulator.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Security

from dpop_guard import DPoPCredentials, Route, from_env
from dpop_guard.fastapi import DPoPSecurity

from .accounts import ACCOUNTS, TRANSACTIONS

ROUTES = (Route("/health", public=True),)
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
    guard = from_env(routes=ROUTES, environ=environ)
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

    guard.install(app)
    app.state.guard = guard
    return app


def __getattr__(name: str) -> Any:
    # ``app`` is built on first access
    # (``uvicorn dpop_guard.devtools.demo.fastapi_accounts:app``), so that importing the
    # module reads no environment.
    if name == "app":
        globals()["app"] = app = create_app()
        return app
    raise AttributeError(name)
