"""FastAPI integration: a security dependency that enforces per-route scopes and shows the
``DPoP`` scheme in OpenAPI.

The middleware authenticates (proof, introspection, binding, replay) and sets
``request.auth``; :class:`DPoPSecurity` then checks the scopes a route declares with
``Security(dpop, scopes=[...])`` against the token's, from cached facts too, and returns the
:class:`~dpop_guard.credentials.DPoPCredentials`.

For example::

    dpop = DPoPSecurity()

    @app.get("/accounts")
    async def accounts(auth: DPoPCredentials = Security(dpop, scopes=["read:accounts"])): ...

On a websocket route the same dependency refuses the handshake before ``accept`` with a
close (1008), which the server answers 403; the middleware has already answered any
unauthenticated handshake with its challenge.
A token that is not sender-constrained is refused unless ``allow_unbound=True``.

Needs the ``fastapi`` extra.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ._extras import missing_extra

try:
    from fastapi import HTTPException, WebSocketException
    from fastapi.openapi.models import HTTPBase
    from fastapi.security import SecurityScopes
    from fastapi.security.base import SecurityBase
except ModuleNotFoundError as _exc:  # pragma: no cover - depends on the install
    raise missing_extra("fastapi", "dpop_guard.fastapi") from _exc
from starlette.requests import HTTPConnection

from .challenges import challenge_for
from .credentials import DPoPCredentials
from .errors import DPoPGuardError
from .routes import check_acr_values, check_max_age
from .settings import DEFAULT_ALGORITHMS
from .starlette import check_scopes

__all__ = ["DPoPSecurity"]


class DPoPSecurity(SecurityBase):
    """A FastAPI security dependency for routes behind :class:`DPoPGuardMiddleware`.

    :param algs: the algorithms to advertise in challenges (the middleware's allow-list).
    :param realm: the optional ``realm`` challenge parameter.
    :param description: shown in the OpenAPI security scheme.
    :param acr_values: step-up (RFC 9470): the token's ``acr`` must be one of these.
    :param max_age: step-up (RFC 9470): the user authenticated at most this long ago.
    :param allow_unbound: serve a token that is not sender-constrained (see
        :func:`~dpop_guard.starlette.check_scopes`); off by default.
    :raises ValueError: an acr value that is not a token, or a bad ``max_age``.

    One instance per requirement: ``DPoPSecurity(acr_values=("urn:mace:incommon:iap:silver",))``
    for the routes that need a stronger login, scopes per route with ``Security``.
    """

    def __init__(
        self,
        *,
        algs: Sequence[str] = DEFAULT_ALGORITHMS,
        realm: str | None = None,
        scheme_name: str = "DPoP",
        description: str = "A DPoP-bound access token (RFC 9449): "
        "Authorization: DPoP <token> and a DPoP proof header.",
        acr_values: Sequence[str] = (),
        max_age: int | None = None,
        allow_unbound: bool = False,
    ) -> None:
        self.model = HTTPBase(scheme="DPoP", description=description)
        self.scheme_name = scheme_name
        self.algs = tuple(algs)
        self.realm = realm
        self.acr_values = check_acr_values(acr_values)
        check_max_age(max_age)
        self.max_age = max_age
        self.allow_unbound = allow_unbound

    def _refuse(self, exc: DPoPGuardError, conn: HTTPConnection) -> Exception:
        if conn.scope["type"] == "websocket":
            # Close before accept (the server answers 403). Only Starlette releases newer
            # than our floor (0.40) turn an HTTPException on a websocket into a denial
            # response; older ones answer 500. The middleware has already answered every
            # unauthenticated handshake with its challenge; what is refused here is a
            # scope or step-up shortfall of an authenticated one.
            return WebSocketException(code=1008, reason=exc.error)
        response = challenge_for(exc, algs=self.algs, realm=self.realm)
        headers = {k.decode(): v.decode() for k, v in response.headers if k != b"content-type"}
        return HTTPException(response.status, detail=json.loads(response.body), headers=headers)

    async def __call__(
        self, conn: HTTPConnection, security_scopes: SecurityScopes
    ) -> DPoPCredentials:
        """Check the connection (a request or a websocket handshake: FastAPI supplies an
        ``HTTPConnection`` for both) against the route's scopes.

        :raises HTTPException: the challenge, on a request.
        :raises WebSocketException: close code 1008, on a websocket handshake.
        """
        try:
            # Unauthenticated (the middleware is missing, or a rule made the path public):
            # refused rather than served.
            return check_scopes(
                conn,
                security_scopes.scopes,
                acr_values=self.acr_values,
                max_age=self.max_age,
                allow_unbound=self.allow_unbound,
            )
        except DPoPGuardError as exc:
            raise self._refuse(exc, conn) from None
