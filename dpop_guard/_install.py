"""What ``guard.install(app)`` does to a Starlette or FastAPI app besides adding the
middleware: the framework's own public paths, and the endpoints marked with
:func:`dpop_guard.starlette.public`, become public rules (so they are declared once, in the
app), refusals raised inside the app get the middleware's answer, and a FastAPI app's
OpenAPI declares the 401 and 403 of its protected operations.

A learned rule never opens more than the router serves at that path: only a literal path
is learned, and only when the router itself would dispatch it, for each of the route's
methods, to the marked endpoint (an earlier route that also matches it, such as
``/{page}`` or a ``Mount``, refuses start-up).
"""

from __future__ import annotations

import dataclasses
import re
import sys
from typing import Any

from .routes import PUBLIC_MARK, Route
from .settings import GuardSettings

__all__ = ["framework_public_routes", "marked_public_routes", "prepare_app"]

# FastAPI serves its documentation itself, at the URLs given to FastAPI(...); Swagger UI
# cannot send DPoP proofs, so these pages are useless behind the guard.
_FASTAPI_DOC_URLS = ("openapi_url", "docs_url", "swagger_ui_oauth2_redirect_url", "redoc_url")
_PATTERN_CHARACTERS = re.compile(r"[{}*]")


def framework_public_routes(app: Any) -> tuple[Route, ...]:
    """The paths the framework itself serves as public documentation, as ``GET`` rules:
    FastAPI's ``openapi_url``, ``docs_url``, ``swagger_ui_oauth2_redirect_url`` and
    ``redoc_url``, each only where the app's router really has that route (FastAPI adds
    none of them when ``openapi_url`` is ``None``). A plain Starlette app has none.

    :raises ValueError: such a URL holds ``{``, ``}`` or ``*``, which a rule would read as
        a pattern, wider than the literal path the router serves.
    """
    served = {getattr(route, "path", None) for route in getattr(app, "routes", ())}
    learned: list[Route] = []
    for attribute in _FASTAPI_DOC_URLS:
        url = getattr(app, attribute, None)
        if isinstance(url, str) and url in served:
            # The router serves the URL literally; a rule would read "{name}" as any
            # segment and a trailing "*" as any remainder, and open more than is served.
            if _PATTERN_CHARACTERS.search(url):
                raise ValueError(
                    f"FastAPI's {attribute} {url!r} holds '{{', '}}' or '*', which a "
                    "public rule would widen; choose a plain path"
                )
            learned.append(Route(url, public=True, methods=("GET",)))
    return tuple(learned)


def marked_public_routes(app: Any) -> tuple[Route, ...]:
    """The app router's own routes whose endpoint is marked
    :func:`~dpop_guard.starlette.public`, as public rules for their methods (a websocket
    route: ``GET``, the handshake). Routes inside a ``Mount`` are not walked: such an
    endpoint stays protected until a rule in the guard's settings makes it public.

    :raises ValueError: a marked route's path holds a parameter (``{``), or an earlier
        route of the router would be dispatched that path and method instead.
    """
    from starlette.routing import WebSocketRoute

    routes = list(getattr(app, "routes", ()))
    learned: list[Route] = []
    for route in routes:
        if not getattr(getattr(route, "endpoint", None), PUBLIC_MARK, False):
            continue
        path = route.path
        if _PATTERN_CHARACTERS.search(path):
            raise ValueError(
                f"the public endpoint at {path!r} has a path parameter: a public rule would "
                "open every value of it; declare the path in the guard's routes instead"
            )
        if isinstance(route, WebSocketRoute):
            # The rule opens the handshake, which is a GET: no HTTP route may serve it.
            methods: tuple[str, ...] = ("GET",)
            served = {"websocket": route, "http": None}
        else:
            methods = tuple(sorted(route.methods or ("GET",)))
            served = {"http": route}
        for kind, expected in served.items():
            for method in methods:
                first = _first_match(routes, kind, path, method)
                if first is not expected:
                    raise ValueError(
                        f"the public endpoint at {method} {path!r} is shadowed: the router "
                        f"dispatches that {kind} request to {_describe(first)}, which the "
                        "public rule would open; make the public route the first to match"
                    )
        learned.append(Route(path, public=True, methods=methods))
    return tuple(learned)


def _first_match(routes: list[Any], kind: str, path: str, method: str) -> Any:
    """The route the router dispatches ``kind`` ``method path`` to (its first full match),
    or ``None``."""
    from starlette.routing import Match

    scope = {
        "type": kind,
        "method": method,
        "path": path,
        "root_path": "",
        "query_string": b"",
        "headers": [],
    }
    for route in routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return route
    return None


def _describe(route: Any) -> str:
    return f"{type(route).__name__}({getattr(route, 'path', '?')!r})"


def prepare_app(app: Any, settings: GuardSettings) -> GuardSettings:
    """Register :func:`~dpop_guard.starlette.refusal_handler`, document a FastAPI app's
    refusals in its OpenAPI, and return ``settings`` with :func:`framework_public_routes`
    and :func:`marked_public_routes` in front of the configured rules."""
    from .starlette import DPoPRefusal, refusal_handler

    app.add_exception_handler(DPoPRefusal, refusal_handler)
    fastapi = sys.modules.get("fastapi")
    if fastapi is not None and isinstance(app, fastapi.FastAPI):
        from .fastapi import document_refusals

        document_refusals(app)
    found = (*framework_public_routes(app), *marked_public_routes(app))
    learned = [r for r in found if r not in settings.routes]
    if not learned:
        return settings
    return dataclasses.replace(settings, routes=(*learned, *settings.routes))
