"""The accounts API protected by dpop_guard, as a uvicorn target::

    AUTHLETE_BASE_URL=... AUTHLETE_SERVICE_APIKEY=... AUTHLETE_SERVICE_ACCESSTOKEN=... \\
    uvicorn examples.accounts:app

or, for development without Authlete::

    DPOP_GUARD_DEVELOPMENT_SIMULATOR=1 uvicorn examples.accounts:app

The app itself ships in the package (:mod:`dpop_guard.devtools.demo.accounts`, about 60 lines): a
Starlette app whose guard is built by ``dpop_guard.from_env(routes=ROUTES)``, installed with
``guard.install(app)`` and closed by ``lifespan=guard.lifespan``.
"""

from __future__ import annotations

from dpop_guard.devtools.demo.accounts import create_app

app = create_app()
