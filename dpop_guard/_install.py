"""What ``guard.install(app)`` does to a Starlette or FastAPI app besides adding the
middleware: the framework's own public paths become public rules (so they are declared
once, in the framework), refusals raised inside the app get the middleware's answer, and a
FastAPI app's OpenAPI declares the 401 and 403 of its protected operations."""

from __future__ import annotations

import dataclasses
import re
import sys
from typing import Any

from .routes import Route
from .settings import GuardSettings

__all__ = ["framework_public_routes", "prepare_app"]

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


def prepare_app(app: Any, settings: GuardSettings) -> GuardSettings:
    """Register :func:`~dpop_guard.starlette.refusal_handler`, document a FastAPI app's
    refusals in its OpenAPI, and return ``settings`` with :func:`framework_public_routes`
    in front of the configured rules."""
    from .starlette import DPoPRefusal, refusal_handler

    app.add_exception_handler(DPoPRefusal, refusal_handler)
    fastapi = sys.modules.get("fastapi")
    if fastapi is not None and isinstance(app, fastapi.FastAPI):
        from .fastapi import document_refusals

        document_refusals(app)
    learned = [r for r in framework_public_routes(app) if r not in settings.routes]
    if not learned:
        return settings
    return dataclasses.replace(settings, routes=(*learned, *settings.routes))
