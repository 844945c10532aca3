"""Endpoint-level scope enforcement for plain Starlette: the documented way to require
scopes.

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
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from .challenges import ErrorResponse, challenge_for
from .credentials import DPoPCredentials, check_step_up
from .errors import AuthenticationRequired, DPoPGuardError, InsufficientScope
from .routes import check_acr_values, check_max_age
from .settings import DEFAULT_ALGORITHMS

__all__ = ["check_scopes", "requires_dpop"]

_Endpoint = Callable[..., Any]
_Wrapped = Callable[..., Awaitable[Any]]


def check_scopes(
    conn: HTTPConnection,
    scopes: Sequence[str],
    *,
    acr_values: tuple[str, ...] = (),
    max_age: int | None = None,
    now: int | None = None,
) -> DPoPCredentials:
    """The credentials of an authenticated request that covers ``scopes`` and, where
    stated, the step-up requirement ``acr_values``/``max_age`` (RFC 9470), checked from
    ``request.auth``'s ``acr`` and ``auth_time``.

    :param now: epoch seconds for the ``max_age`` check (default: the clock).
    :raises AuthenticationRequired: the middleware did not authenticate this request
        (reason ``not_authenticated``).
    :raises InsufficientScope: the token lacks one of ``scopes`` (reason ``scope_missing``).
    :raises InsufficientUserAuthentication: see :func:`~dpop_guard.credentials.check_step_up`.
    """
    auth = conn.scope.get("auth")
    if not isinstance(auth, DPoPCredentials):
        raise AuthenticationRequired("not_authenticated")
    if scopes and not auth.scopes.issuperset(scopes):
        raise InsufficientScope("scope_missing", scope=" ".join(scopes))
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
) -> Callable[[_Endpoint], _Wrapped]:
    """Decorate a Starlette endpoint (``request`` or ``websocket`` first) so that it runs
    only for a request the middleware authenticated with a token covering ``scopes``.

    :param scopes: the scopes the endpoint requires (all of them).
    :param algs: the algorithms to advertise in challenges (the middleware's allow-list).
    :param realm: the optional ``realm`` challenge parameter.
    :param acr_values: step-up (RFC 9470): the token's ``acr`` must be one of these.
    :param max_age: step-up (RFC 9470): the user authenticated at most this long ago.
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
        check_scopes(conn, scopes, acr_values=acr, max_age=max_age)

    def decorate(endpoint: _Endpoint) -> _Wrapped:
        names = list(inspect.signature(endpoint).parameters)
        if "websocket" in names:
            index, websocket = names.index("websocket"), True
        elif "request" in names:
            index, websocket = names.index("request"), False
        else:
            raise TypeError(f"{endpoint.__qualname__} has no 'request' or 'websocket' parameter")
        is_async = inspect.iscoroutinefunction(endpoint)

        def refusal(exc: DPoPGuardError) -> ErrorResponse:
            return challenge_for(exc, algs=algs, realm=realm)

        if websocket:

            @functools.wraps(endpoint)
            async def ws_wrapper(*args: Any, **kwargs: Any) -> None:
                conn: WebSocket = kwargs["websocket"] if "websocket" in kwargs else args[index]
                try:
                    check(conn)
                except DPoPGuardError as exc:
                    await _deny_websocket(conn, refusal(exc))
                    return
                await endpoint(*args, **kwargs)

            return ws_wrapper

        @functools.wraps(endpoint)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            request: Request = kwargs["request"] if "request" in kwargs else args[index]
            try:
                check(request)
            except DPoPGuardError as exc:
                return _response(refusal(exc))
            if is_async:
                return await endpoint(*args, **kwargs)
            return await run_in_threadpool(endpoint, *args, **kwargs)

        return wrapper

    return decorate


def _response(error: ErrorResponse) -> Response:
    response = Response(error.body, status_code=error.status)
    response.raw_headers.extend(error.headers)
    return response


async def _deny_websocket(websocket: WebSocket, error: ErrorResponse) -> None:
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(_response(error))
    else:
        await websocket.close(code=1008)
