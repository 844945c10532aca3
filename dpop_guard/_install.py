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

__all__ = [
    "check_still_served",
    "framework_public_routes",
    "learned_public_routes",
    "marked_public_routes",
    "prepare_app",
]

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
        a pattern, wider than the literal path the router serves; or the router would
        dispatch a request the rule covers elsewhere (:func:`_check_served`).
    """
    routes = list(getattr(app, "routes", ()))
    learned: list[Route] = []
    for attribute in _FASTAPI_DOC_URLS:
        url = getattr(app, attribute, None)
        route = next((r for r in routes if getattr(r, "path", None) == url), None)
        if not isinstance(url, str) or route is None:
            continue
        # The router serves the URL literally; a rule would read "{name}" as any segment
        # and a trailing "*" as any remainder, and open more than is served.
        if _PATTERN_CHARACTERS.search(url):
            raise ValueError(
                f"FastAPI's {attribute} {url!r} holds '{{', '}}' or '*', which a public "
                "rule would widen; choose a plain path"
            )
        rule = Route(url, public=True, methods=("GET",))
        _check_served(routes, route, rule)
        learned.append(rule)
    return tuple(learned)


def marked_public_routes(app: Any) -> tuple[Route, ...]:
    """The app router's own routes whose endpoint is marked
    :func:`~dpop_guard.starlette.public` (on the endpoint itself: a subclass of a marked
    endpoint class is not), as public rules for their methods (a websocket route: ``GET``,
    the handshake). Routes inside a ``Mount`` are not walked: such an endpoint stays
    protected until a rule in the guard's settings makes it public. Routes added after
    ``install`` are not seen.

    :raises ValueError: a marked route's path holds a parameter, or the router would
        dispatch a request the rule covers elsewhere (:func:`_check_served`).
    """
    from starlette.routing import WebSocketRoute

    routes = list(getattr(app, "routes", ()))
    learned: list[Route] = []
    for route in routes:
        endpoint = getattr(route, "endpoint", None)
        if not getattr(endpoint, "__dict__", {}).get(PUBLIC_MARK, False):
            continue
        path = route.path
        if _PATTERN_CHARACTERS.search(path):
            raise ValueError(
                f"the public endpoint at {path!r} has a path parameter: a public rule would "
                "open every value of it; declare the path in the guard's routes instead"
            )
        if isinstance(route, WebSocketRoute):
            methods: tuple[str, ...] = ("GET",)  # the handshake
        else:
            methods = tuple(sorted(route.methods or ("GET",)))
        rule = Route(path, public=True, methods=methods)
        _check_served(routes, route, rule)
        learned.append(rule)
    return tuple(learned)


def _check_served(routes: list[Any], route: Any, rule: Route) -> None:
    """Refuse ``rule`` unless every request it opens reaches ``route`` or nothing.

    The guard treats a websocket handshake as a ``GET`` and a rule naming ``GET`` also
    covers ``HEAD``; a router dispatches each (kind, method) to its first route that
    matches fully, and a request that ``route`` matches only partly (a method it does not
    serve) falls through to later routes. So for every (``http``, method) and, where
    ``GET`` is covered, (``websocket``, ``GET``) the rule covers, the router's first full
    match must be ``route`` or none (then nothing runs: a 404 or a 405). A route whose
    matching this cannot evaluate (a ``Host``, any custom route) on the way refuses too.

    :raises ValueError: naming the request and the route it would reach.
    """
    from starlette.routing import Match, Mount, WebSocketRoute
    from starlette.routing import Route as RouterRoute

    covered = {m for m in rule.methods or ()}
    if "GET" in covered:
        covered.add("HEAD")
    requests = [("http", method) for method in sorted(covered)]
    if "GET" in covered:
        requests.append(("websocket", "GET"))
    for kind, method in requests:
        scope = {
            "type": kind,
            "method": method,
            "path": rule.pattern,
            "root_path": "",
            "query_string": b"",
            "headers": [],
        }
        for candidate in routes:
            if not isinstance(candidate, (RouterRoute, WebSocketRoute, Mount)):
                raise ValueError(
                    f"the public rule for {rule.pattern!r} is refused: the router reaches "
                    f"{_describe(candidate)} first, whose matching depends on more than the "
                    "path (a Host, or a custom route); put the public route before it, or "
                    "declare the rule in the guard's routes"
                )
            match, _ = candidate.matches(scope)
            if match != Match.FULL:
                continue
            if candidate is not route:
                raise ValueError(
                    f"the public endpoint at {rule.pattern!r} is shadowed: the router "
                    f"dispatches a {kind} {method} request for it to {_describe(candidate)}, "
                    "which the public rule would open; make the public route the first "
                    "to match, or declare the rule in the guard's routes"
                )
            break


def _describe(route: Any) -> str:
    return f"{type(route).__name__}({getattr(route, 'path', '?')!r})"


def learned_public_routes(app: Any) -> tuple[Route, ...]:
    """:func:`framework_public_routes` and :func:`marked_public_routes` of ``app`` as its
    router is now."""
    return (*framework_public_routes(app), *marked_public_routes(app))


def check_still_served(app: Any, learned: tuple[Route, ...]) -> None:
    """At start-up, against the router as it is then: every rule learned at ``install``
    still reaches only its route (a route added after ``install`` could take its
    requests), and no public endpoint was added after ``install`` (it would stay
    protected, against its mark).

    :raises ValueError: naming the route, as :func:`learned_public_routes` does.
    """
    added = [rule for rule in learned_public_routes(app) if rule not in learned]
    if added:
        raise ValueError(
            f"public routes were added after guard.install(app): "
            f"{', '.join(rule.pattern for rule in added)}; call install() after adding routes"
        )


def prepare_app(app: Any, settings: GuardSettings) -> tuple[GuardSettings, tuple[Route, ...]]:
    """Register :func:`~dpop_guard.starlette.refusal_handler`, document a FastAPI app's
    refusals in its OpenAPI, and return ``settings`` with the
    :func:`learned_public_routes` in front of the configured rules, and those rules (for
    :func:`check_still_served` at start-up)."""
    from .starlette import DPoPRefusal, refusal_handler

    app.add_exception_handler(DPoPRefusal, refusal_handler)
    fastapi = sys.modules.get("fastapi")
    if fastapi is not None and isinstance(app, fastapi.FastAPI):
        from .fastapi import document_refusals

        document_refusals(app)
    found = learned_public_routes(app)
    learned = [r for r in found if r not in settings.routes]
    if not learned:
        return settings, found
    return dataclasses.replace(settings, routes=(*learned, *settings.routes)), found
