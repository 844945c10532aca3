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

Needs the ``fastapi`` extra.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ._extras import missing_extra

try:
    from fastapi import HTTPException
    from fastapi.openapi.models import HTTPBase
    from fastapi.security import SecurityScopes
    from fastapi.security.base import SecurityBase
except ModuleNotFoundError as _exc:  # pragma: no cover - depends on the install
    raise missing_extra("fastapi", "dpop_guard.fastapi") from _exc
from starlette.requests import Request

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
    ) -> None:
        self.model = HTTPBase(scheme="DPoP", description=description)
        self.scheme_name = scheme_name
        self.algs = tuple(algs)
        self.realm = realm
        self.acr_values = check_acr_values(acr_values)
        check_max_age(max_age)
        self.max_age = max_age

    def _refuse(self, exc: DPoPGuardError) -> HTTPException:
        response = challenge_for(exc, algs=self.algs, realm=self.realm)
        headers = {k.decode(): v.decode() for k, v in response.headers if k != b"content-type"}
        return HTTPException(response.status, detail=json.loads(response.body), headers=headers)

    async def __call__(self, request: Request, security_scopes: SecurityScopes) -> DPoPCredentials:
        try:
            # Unauthenticated (the middleware is missing, or a rule made the path public):
            # refused rather than served.
            return check_scopes(
                request,
                security_scopes.scopes,
                acr_values=self.acr_values,
                max_age=self.max_age,
            )
        except DPoPGuardError as exc:
            raise self._refuse(exc) from None
