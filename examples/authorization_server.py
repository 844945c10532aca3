"""The demo's FAPI 2.0 authorization server on Authlete's APIs, as a uvicorn target::

    AUTHLETE_BASE_URL=... AUTHLETE_SERVICE_APIKEY=... AUTHLETE_SERVICE_ACCESSTOKEN=... \\
    AS_ISSUER=http://127.0.0.1:9000 uvicorn examples.authorization_server:app --port 9000

It ships in the package (:mod:`dpop_guard.devtools.demo.authorization_server`) so that the demo runs
from an installed wheel: PAR, an authorization endpoint with a consent form, a token endpoint
and RFC 8414 metadata, each a call to Authlete.
"""

from __future__ import annotations

from dpop_guard.devtools.demo.authorization_server import create_app

app = create_app()
