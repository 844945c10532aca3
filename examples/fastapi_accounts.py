"""The accounts API in FastAPI, as a uvicorn target::

    DPOP_GUARD_DEVELOPMENT_SIMULATOR=1 uvicorn examples.fastapi_accounts:app

The middleware authenticates every request but ``/health`` and the docs (``/docs`` and
``/openapi.json`` are public because FastAPI serves them: ``guard.install(app)`` learns them
from the app); each route declares its scopes with ``Security`` (checked from cached token
facts too), and ``/docs`` shows the DPoP scheme and each operation's 401 and 403 (Swagger UI
cannot sign DPoP proofs, so its "Try it out" is refused). The app itself ships in the
package (:mod:`dpop_guard.devtools.demo.fastapi_accounts`, about 80 lines), so the tests
exercise the same code without importing an example.
"""

from __future__ import annotations

from dpop_guard.devtools.demo.fastapi_accounts import create_app

app = create_app()
