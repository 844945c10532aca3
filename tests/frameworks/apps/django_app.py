"""Django (ASGI): the middleware around ``get_asgi_application()``, ``request.scope["auth"]``
in the view, and a one-line Django middleware that sets ``request.user``. Django has no
websockets of its own and no ASGI lifespan: the wrapper below answers the lifespan so the
guard's connections are opened and closed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import django
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from starlette.types import Receive, Scope, Send

from dpop_guard import DPoPCredentials, DPoPGuard, DPoPGuardMiddleware

from .._cases import build_guard


def dpop_user(get_response: Callable[[HttpRequest], Any]) -> Callable[[HttpRequest], Any]:
    """Django middleware: ``request.user`` is the middleware's ``DPoPUser``."""

    def middleware(request: HttpRequest) -> Any:
        request.user = request.scope["user"]
        return get_response(request)

    return middleware


async def accounts(request: ASGIRequest) -> HttpResponse:
    auth: DPoPCredentials = request.scope["auth"]
    assert request.user.is_authenticated  # set by dpop_user
    return JsonResponse({"subject": auth.subject})


urlpatterns = [path("accounts", accounts), path("accounts/transactions", accounts)]


class WithLifespan:
    """The guarded Django app, with the ASGI lifespan Django does not speak."""

    def __init__(self, app: DPoPGuardMiddleware, guard: DPoPGuard) -> None:
        self.app, self.guard = app, guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.guard.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.guard.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(environ: Mapping[str, str] | None = None) -> WithLifespan:
    if not settings.configured:
        settings.configure(
            ROOT_URLCONF=__name__,
            ALLOWED_HOSTS=["127.0.0.1", "localhost"],
            MIDDLEWARE=[f"{__name__}.dpop_user"],
            SECRET_KEY="tests-only",
            INSTALLED_APPS=[],
        )
        django.setup()
    from django.core.asgi import get_asgi_application

    guard = build_guard(environ, "middleware")
    return WithLifespan(
        DPoPGuardMiddleware(get_asgi_application(), **guard.middleware_options), guard
    )
