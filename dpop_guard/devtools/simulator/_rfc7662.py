"""A plain RFC 7662 introspection endpoint on the simulator, ``POST /oauth/introspect``, for
the ``rfc7662`` introspection mode: what an authorization server (not Authlete's API) exposes
to its resource servers, backed by the same tokens as the Authlete APIs.

The resource server authenticates with ``client_secret_basic`` as :data:`RS_CLIENT_ID` /
:data:`RS_CLIENT_SECRET` (public: development only). Asked with
``Accept: application/token-introspection+jwt`` it answers RFC 9701 JWTs signed ES256 with
the keys published at ``/.well-known/jwks.json``, ``aud`` the calling client's id (as panva's
oidc-provider does) and ``iss`` the simulated authorization server's issuer; otherwise plain
JSON. :attr:`SimulatorState.signed_flaw` breaks the signed answers as on the standard API.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._signed import JWT_RESPONSE_TYPE

if TYPE_CHECKING:
    from ._app import _Simulator

__all__ = ["RFC7662_PATH", "RS_CLIENT_ID", "RS_CLIENT_SECRET", "rfc7662_introspection"]

RFC7662_PATH: Final = "/oauth/introspect"
RS_CLIENT_ID: Final = "sim-rs"
RS_CLIENT_SECRET: Final = "sim-rs-secret-not-for-production"  # noqa: S105
_EXPECTED: Final = base64.b64encode(f"{RS_CLIENT_ID}:{RS_CLIENT_SECRET}".encode())
_NO_STORE: Final = {"Cache-Control": "no-store"}


def _authenticated(request: Request) -> bool:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        supplied = base64.b64encode(base64.b64decode(credentials, validate=True))
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(supplied, _EXPECTED)


def rfc7662_introspection(sim: _Simulator) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint, over the simulator's state and signer."""

    async def introspect(request: Request) -> Response:
        if not _authenticated(request):
            return JSONResponse(
                {"error": "invalid_client"},
                status_code=401,
                headers={**_NO_STORE, "WWW-Authenticate": 'Basic realm="introspection"'},
            )
        state = sim.state
        state.calls["rfc7662/introspect"] += 1
        if state.latency:
            await anyio.sleep(state.latency)
        body = await sim._body(request)
        token = body.get("token") if body is not None else None
        if not isinstance(token, str) or not token:
            return JSONResponse({"error": "invalid_request"}, status_code=400, headers=_NO_STORE)
        content = sim.standard_content(token, None)
        flaw = state.signed_flaw
        if JWT_RESPONSE_TYPE not in request.headers.get("accept", "") or flaw == "unsigned":
            return JSONResponse(content, headers=_NO_STORE)
        jwt = sim.signer.sign(
            content,
            alg="ES256",
            issuer=sim.auth.service.issuer,
            audience=RS_CLIENT_ID,
            now=int(state.clock()),
            flaw=flaw,
        )
        return Response(jwt, media_type=JWT_RESPONSE_TYPE, headers=_NO_STORE)

    return introspect
