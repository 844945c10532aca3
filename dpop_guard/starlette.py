"""Endpoint-level scope enforcement for plain Starlette: the documented way to require
scopes, and the replacement for Starlette's ``@requires``.

The middleware authenticates (proof, introspection, binding, replay) and sets
``request.auth``; :func:`requires_dpop` then checks, where dispatch happened, that the
token covers the endpoint's scopes. Path rules in
:class:`~dpop_guard.settings.GuardSettings` remain for public paths and as a second layer,
but a second copy of the router can disagree with the real one; the endpoint cannot.

For example::

    @requires_dpop("read:accounts")
    async def accounts(request: Request) -> Response: ...

    app = Starlette(routes=[Route("/accounts", accounts)])

A refusal is the same DPoP challenge the middleware sends: ``401`` with no error when the
request was not authenticated (the middleware is missing, or a rule made the path public),
``403 insufficient_scope`` naming the scopes otherwise. On a websocket endpoint the
handshake is refused before ``accept``.

Both refuse a token that is not sender-constrained (neither DPoP- nor certificate-bound),
which the middleware passes under ``Bearer`` when ``allow_unbound_tokens`` is on: that
switch serves legacy clients where the operator chose it, but an endpoint that requires
DPoP must not silently accept a bearer token. An endpoint that may serve them says so with
``allow_unbound=True``.

Starlette's own ``@requires("read:accounts")`` also works on ``request.auth.scopes``, but
it is not equivalent: a shortfall is a plain-text ``403 Forbidden`` (``{"detail":
"Forbidden"}`` in FastAPI) with no ``WWW-Authenticate`` challenge and no
``Cache-Control: no-store``, and it serves an unbound bearer token. Use
:func:`requires_dpop` instead.

Public endpoints are declared once, where they are routed: mark them with :func:`public`
and ``guard.install(app)`` learns their paths from the router::

    @public
    async def health(request: Request) -> Response: ...

    app = Starlette(routes=[Route("/health", health), Route("/accounts", accounts)])
    guard.install(app)  # /health needs no token; /accounts does

Code of your own that refuses inside an endpoint raises :class:`DPoPRefusal`;
``guard.install(app)`` registers :func:`refusal_handler`, which answers it with the
middleware's response.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from ._binding import check_sender_constrained
from ._decision import log_refusal
from ._respond import as_response, refuse_websocket
from .challenges import ErrorResponse, challenge_for
from .credentials import DPoPCredentials, check_granted_scopes, check_step_up
from .errors import AuthenticationRequired, DPoPGuardError
from .routes import PUBLIC_MARK, check_acr_values, check_max_age
from .settings import DEFAULT_ALGORITHMS

__all__ = [
    "DPoPRefusal",
    "check_scopes",
    "denial_response_supported",
    "public",
    "refusal_handler",
    "requires_dpop",
]

_Endpoint = Callable[..., Any]
_Wrapped = Callable[..., Awaitable[Any]]
_E = TypeVar("_E", bound=_Endpoint)


def public(endpoint: _E) -> _E:
    """Mark a Starlette endpoint as public: ``guard.install(app)`` makes the path of the
    app's route to it public for that route's methods, with no second declaration in the
    guard's settings. Only literal paths of the app's own router are learned (not inside
    a ``Mount``), and only where the router dispatches that path to this endpoint;
    otherwise ``install`` refuses to start (see :mod:`dpop_guard._install`). Returns the
    endpoint itself, marked.
    """
    setattr(endpoint, PUBLIC_MARK, True)
    return endpoint


def check_scopes(
    conn: HTTPConnection,
    scopes: Sequence[str],
    *,
    acr_values: tuple[str, ...] = (),
    max_age: int | None = None,
    now: int | None = None,
    allow_unbound: bool = False,
) -> DPoPCredentials:
    """The credentials of an authenticated request that covers ``scopes`` and, where
    stated, the step-up requirement ``acr_values``/``max_age`` (RFC 9470), checked from
    ``request.auth``'s ``acr`` and ``auth_time``.

    :param now: epoch seconds for the ``max_age`` check (default: the clock).
    :param allow_unbound: accept a token bound to neither a DPoP key nor a certificate
        (only where the middleware's ``allow_unbound_tokens`` let one through).
    :raises AuthenticationRequired: the middleware did not authenticate this request
        (reason ``not_authenticated``).
    :raises InvalidToken: the token is not sender-constrained and ``allow_unbound`` is
        off (reason ``token_not_bound``).
    :raises InsufficientScope: the token lacks one of ``scopes`` (reason ``scope_missing``).
    :raises InsufficientUserAuthentication: see :func:`~dpop_guard.credentials.check_step_up`.
    """
    auth = conn.scope.get("auth")
    if not isinstance(auth, DPoPCredentials):
        raise AuthenticationRequired("not_authenticated")
    if not allow_unbound:
        check_sender_constrained(auth.jkt, auth.x5t_s256)
    if scopes:
        check_granted_scopes(auth.scopes, tuple(scopes))
    if acr_values or max_age is not None:
        check_step_up(
            auth.acr,
            auth.auth_time,
            now=int(time.time()) if now is None else now,
            acr_values=acr_values,
            max_age=max_age,
        )
    return auth


def requires_dpop(
    *scopes: str,
    algs: Sequence[str] = DEFAULT_ALGORITHMS,
    realm: str | None = None,
    acr_values: Sequence[str] = (),
    max_age: int | None = None,
    allow_unbound: bool = False,
) -> Callable[[_Endpoint], _Wrapped]:
    """Decorate a Starlette endpoint (``request`` or ``websocket`` first) so that it runs
    only for a request the middleware authenticated with a token covering ``scopes``.

    :param scopes: the scopes the endpoint requires (all of them).
    :param algs: the algorithms to advertise in challenges (the middleware's allow-list).
    :param realm: the optional ``realm`` challenge parameter.
    :param acr_values: step-up (RFC 9470): the token's ``acr`` must be one of these.
    :param max_age: step-up (RFC 9470): the user authenticated at most this long ago.
    :param allow_unbound: serve a token that is not sender-constrained (see
        :func:`check_scopes`); off by default.
    :raises ValueError: a scope name that is empty or holds a space; an acr value that is
        not a token; a ``max_age`` that is not a bounded non-negative int.
    :raises TypeError: an endpoint without a ``request`` or ``websocket`` parameter.
    """
    for scope in scopes:
        if not scope or " " in scope:
            raise ValueError(f"invalid scope name {scope!r}")
    algs = tuple(algs)
    acr = check_acr_values(acr_values)
    check_max_age(max_age)

    def check(conn: HTTPConnection) -> None:
        check_scopes(conn, scopes, acr_values=acr, max_age=max_age, allow_unbound=allow_unbound)

    def decorate(endpoint: _Endpoint) -> _Wrapped:
        names = list(inspect.signature(endpoint).parameters)
        if "websocket" in names:
            index, websocket = names.index("websocket"), True
        elif "request" in names:
            index, websocket = names.index("request"), False
        else:
            raise TypeError(f"{endpoint.__qualname__} has no 'request' or 'websocket' parameter")
        is_async = inspect.iscoroutinefunction(endpoint)

        def refusal(exc: DPoPGuardError, conn: HTTPConnection) -> ErrorResponse:
            response = challenge_for(exc, algs=algs, realm=realm)
            log_refusal(exc, response, conn.scope)  # as the middleware logs its own
            return response

        if websocket:

            @functools.wraps(endpoint)
            async def ws_wrapper(*args: Any, **kwargs: Any) -> None:
                conn: WebSocket = kwargs["websocket"] if "websocket" in kwargs else args[index]
                try:
                    check(conn)
                except DPoPGuardError as exc:
                    await _deny_websocket(conn, refusal(exc, conn))
                    return
                await endpoint(*args, **kwargs)

            return ws_wrapper

        @functools.wraps(endpoint)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            request: Request = kwargs["request"] if "request" in kwargs else args[index]
            try:
                check(request)
            except DPoPGuardError as exc:
                return as_response(refusal(exc, request))
            if is_async:
                return await endpoint(*args, **kwargs)
            return await run_in_threadpool(endpoint, *args, **kwargs)

        return wrapper

    return decorate


class DPoPRefusal(HTTPException):
    """A refusal raised inside the app (by :class:`~dpop_guard.fastapi.DPoPSecurity`, or by
    your own code), answered by :func:`refusal_handler` with the same status, challenge,
    ``Cache-Control: no-store`` and JSON body the middleware sends.

    :param exc: the error; its response is built by
        :func:`~dpop_guard.challenges.challenge_for`.
    :param algs: the algorithms to advertise in the challenge (the middleware's allow-list).
    :param realm: the optional ``realm`` challenge parameter.

    It is an ``HTTPException``, so an app where the handler is not registered still answers
    with the right status and headers (``WWW-Authenticate`` values joined into one field,
    RFC 9110 section 11.6.1), only with the framework's own body (Starlette: the
    description as text; FastAPI: ``{"detail": description}``).
    """

    def __init__(
        self, exc: DPoPGuardError, *, algs: Sequence[str], realm: str | None = None
    ) -> None:
        self.error = exc
        self.response = challenge_for(exc, algs=algs, realm=realm)
        headers: dict[str, str] = {}
        for name, value in self.response.headers:
            key = name.decode("latin-1")
            if key != "content-type":
                text = value.decode("latin-1")
                headers[key] = f"{headers[key]}, {text}" if key in headers else text
        super().__init__(self.response.status, detail=exc.description, headers=headers)


async def refusal_handler(request: Request, exc: Exception) -> Response:
    """The exception handler for :class:`DPoPRefusal` (``guard.install(app)`` registers
    it; by hand: ``app.add_exception_handler(DPoPRefusal, refusal_handler)``): the
    response over HTTP; on a websocket handshake, the same response where the server can
    send one before ``accept``, else a close (1008)."""
    if not isinstance(exc, DPoPRefusal):  # registered for DPoPRefusal only
        raise exc
    log_refusal(exc.error, exc.response, request.scope)
    return as_response(exc.response)


def denial_response_supported(conn: HTTPConnection) -> bool:
    """Whether the server can answer this websocket handshake with an HTTP response (the
    ASGI ``websocket.http.response`` extension); otherwise a refusal is a close (1008)
    before ``accept``, which the server answers 403."""
    return "websocket.http.response" in (conn.scope.get("extensions") or {})


async def _deny_websocket(websocket: WebSocket, error: ErrorResponse) -> None:
    await refuse_websocket(error, websocket.scope, websocket.receive, websocket.send)
