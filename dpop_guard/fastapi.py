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

A refusal is :class:`~dpop_guard.starlette.DPoPRefusal`, which ``guard.install(app)``
answers exactly as the middleware does: the same status, ``WWW-Authenticate`` challenge,
``Cache-Control: no-store`` and body ``{"error": ..., "error_description": ...}`` (not
FastAPI's ``{"detail": ...}``). ``guard.install(app)`` also makes FastAPI's documentation
routes (``openapi_url``, ``docs_url``, ``swagger_ui_oauth2_redirect_url``, ``redoc_url``)
public, and :func:`document_refusals` declares the ``401`` and ``403`` of every operation
that uses a ``DPoP`` scheme in OpenAPI, with the body's schema. Swagger UI cannot send
DPoP proofs (it would need the client's private key to sign one per request): ``/docs``
shows the API, and its "Try it out" is refused.

On a websocket route the same dependency refuses the handshake before ``accept`` with a
close (1008), which the server answers 403; the middleware has already answered any
unauthenticated handshake with its challenge.
A token that is not sender-constrained is refused unless ``allow_unbound=True``.

Needs the ``fastapi`` extra.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from ._extras import missing_extra

try:
    from fastapi import FastAPI, WebSocketException
    from fastapi.openapi.models import HTTPBase
    from fastapi.security import SecurityScopes
    from fastapi.security.base import SecurityBase
except ModuleNotFoundError as _exc:  # pragma: no cover - depends on the install
    raise missing_extra("fastapi", "dpop_guard.fastapi") from _exc
from starlette.requests import HTTPConnection

from .challenges import ERROR_BODY_SCHEMA
from .credentials import DPoPCredentials
from .errors import DPoPGuardError
from .routes import check_acr_values, check_max_age
from .settings import DEFAULT_ALGORITHMS
from .starlette import DPoPRefusal, check_scopes

__all__ = ["REFUSAL_RESPONSES", "DPoPSecurity", "document_refusals"]

_ERROR_SCHEMA_NAME = "DPoPError"
_HEADERS = {
    "WWW-Authenticate": {
        "description": "The challenge (RFC 9449 section 7.1, RFC 6750 section 3): "
        'DPoP error="...", error_description="...", algs="..."; no error when no '
        "credentials were sent.",
        "schema": {"type": "string"},
    },
    "Cache-Control": {"description": "no-store", "schema": {"type": "string"}},
}


def _refusal(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": _HEADERS,
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{_ERROR_SCHEMA_NAME}"}}
        },
    }


REFUSAL_RESPONSES: dict[str, dict[str, Any]] = {
    "401": _refusal(
        "No credentials (authentication_required), or an invalid token, proof or nonce "
        "(invalid_token, invalid_dpop_proof, use_dpop_nonce, "
        "insufficient_user_authentication)."
    ),
    "403": _refusal("The token does not cover the operation's scopes (insufficient_scope)."),
}
"""The OpenAPI responses :func:`document_refusals` adds to each protected operation."""

_DOCUMENTED: weakref.WeakSet[FastAPI] = weakref.WeakSet()


def document_refusals(app: FastAPI) -> None:
    """Declare, in ``app``'s OpenAPI, the ``401`` and ``403`` (:data:`REFUSAL_RESPONSES`)
    of every operation whose security names an HTTP ``DPoP`` scheme (a
    :class:`DPoPSecurity`), with the error body's schema as ``components.schemas.DPoPError``.
    A response the operation declares itself is kept. ``guard.install(app)`` calls this;
    calling it again does nothing.

    It wraps ``app.openapi`` (FastAPI's documented way to extend the schema), so the
    operations are read when the schema is first built, after every route is added.
    """
    if app in _DOCUMENTED:
        return
    _DOCUMENTED.add(app)
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        schema = build()
        if fresh:
            _add_refusals(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_refusals(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {})
    dpop = {
        name
        for name, scheme in components.get("securitySchemes", {}).items()
        if scheme.get("type") == "http" and str(scheme.get("scheme", "")).lower() == "dpop"
    }
    protected = False
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            if not any(
                name in requirement
                for requirement in operation.get("security", ())
                for name in dpop
            ):
                continue
            responses = operation.setdefault("responses", {})
            for status, response in REFUSAL_RESPONSES.items():
                responses.setdefault(status, copy.deepcopy(response))
            protected = True
    if protected:
        components.setdefault("schemas", {}).setdefault(
            _ERROR_SCHEMA_NAME, copy.deepcopy(ERROR_BODY_SCHEMA)
        )


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
        "Authorization: DPoP <token> and a DPoP proof header, signed by the client's key "
        "for each request. Swagger UI cannot sign proofs, so its requests are refused.",
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
        return DPoPRefusal(exc, algs=self.algs, realm=self.realm)

    async def __call__(
        self, conn: HTTPConnection, security_scopes: SecurityScopes
    ) -> DPoPCredentials:
        """Check the connection (a request or a websocket handshake: FastAPI supplies an
        ``HTTPConnection`` for both) against the route's scopes.

        :raises DPoPRefusal: the challenge, on a request.
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
