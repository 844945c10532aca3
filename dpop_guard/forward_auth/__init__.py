"""The forward-auth server: dpop_guard as the authorization service behind nginx
(``auth_request``), Caddy (``forward_auth``), Traefik (``ForwardAuth``) and Envoy
(``ext_authz``, HTTP service).

An adapter, not a second guard. For each check request from the proxy it

1. refuses any peer outside the trusted proxy networks (``DPOP_GUARD_TRUSTED_PROXIES``):
   403, whatever the request holds;
2. rebuilds the *original* request as an ASGI scope from only the headers the configured
   proxy sets (:data:`CONTRACTS`): its method, request target, host and scheme, and the
   client's ``Authorization``, ``DPoP``, ``x-fapi-interaction-id`` and the configured
   client-certificate header. Nothing else the client sent reaches the guard;
3. hands that scope to :class:`~dpop_guard.middleware.DPoPGuardMiddleware`, which decides
   exactly as it does in process (routes, proof, replay, introspection and its cache,
   binding, scopes, step-up, nonces), in front of :class:`IdentityApp`, which answers
   ``200`` with the identity headers the proxy copies onto the upstream request.

A refusal is the middleware's own answer (status, ``WWW-Authenticate``, ``DPoP-Nonce``,
``Cache-Control: no-store``, JSON body). nginx's ``auth_request`` only passes 2xx, 401 and
403 (anything else becomes its own 500), and passes back no header but a 401's
``WWW-Authenticate``, so for nginx every refusal travels as a 401 whose
``X-Dpop-Guard-Status`` names the real status, and the body rides in
``X-Dpop-Guard-Body``; the shipped configuration answers the client with both
(``deploy/forward-auth/nginx.conf``).

What the proxy says is checked before it costs anything: a header named by the contract
that is missing is the proxy's misconfiguration (503, fail closed); one sent twice, over
:data:`MAX_TARGET_BYTES`, or a method that is not an HTTP token is refused (400); the
request target itself is checked by the middleware's own rule (origin form, no ``#``, no
control characters: ``request_target_invalid``).

The route rules decide on the path as this server decodes it, and the API behind the proxy
routes on its own reading of the same target, in any language. So a target that routers
read differently is refused (400, ``forward_auth_target_ambiguous``) rather than decided on
one reading: path parameters (``;``: Tomcat, Jetty and Spring drop them), a backslash (a
separator on Windows servers), an encoded ``/``, backslash or ``%`` (decoded once more by some),
a dot segment (``.``, ``..``, also encoded) or an empty segment (``//``, merged by many).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from starlette.types import ASGIApp

from .._env import ConfigurationError, EnvReader
from ..replay import ReplayStore
from ..settings import ENV_PREFIX, Route
from ._adapter import MAX_TARGET_BYTES, ForwardAuth
from ._answers import IdentityApp
from ._settings import (
    CONTRACTS,
    DEFAULT_IDENTITY_HEADERS,
    FLAVOURS,
    IDENTITY_FACTS,
    UNMATCHED,
    ForwardAuthSettings,
    ProxyContract,
    certificate_headers,
)

__all__ = [
    "CONTRACTS",
    "DEFAULT_IDENTITY_HEADERS",
    "FLAVOURS",
    "IDENTITY_FACTS",
    "MAX_TARGET_BYTES",
    "UNMATCHED",
    "ForwardAuth",
    "ForwardAuthSettings",
    "IdentityApp",
    "ProxyContract",
    "create_app",
]


def create_app(
    *,
    routes: Sequence[Route] = (),
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] | None = None,
    replay_store: ReplayStore | None = None,
) -> ASGIApp:
    """The forward-auth server from the environment: :func:`dpop_guard.from_env` (the
    builder the in-process guard uses) plus :class:`ForwardAuthSettings`. Readiness and
    liveness are answered on the check request's own path (before the peer check) and the
    start-up probes run in its lifespan, as for an app.

    :param routes: the path rules of the original requests (as for the middleware).
    :param clock: for tests; the middleware's default otherwise.
    :param replay_store: instead of the one ``DPOP_GUARD_REPLAY_STORE`` names (as the
        middleware's own parameter).
    :raises ConfigurationError: one line naming the variable that is wrong.
    """
    import os

    from ..guard import OperationsMiddleware, StoreSettings, from_env
    from ..middleware import DPoPGuardMiddleware

    env: Mapping[str, str] = os.environ if environ is None else environ
    forward = ForwardAuthSettings.from_env(env)
    reader = EnvReader(env, ENV_PREFIX)
    if not reader.is_set("TRUSTED_PROXIES"):
        raise ConfigurationError(
            ENV_PREFIX + "TRUSTED_PROXIES",
            "is not set: the forward-auth server answers its proxies only",
            "set it to the addresses the proxies connect from, e.g. 127.0.0.1",
        )
    if not reader.is_set("PROXY_HEADERS"):
        # The original host and scheme come from the contract's headers, which the adapter
        # rebuilds into the scope's own Host and scheme: no X-Forwarded-* reaches the guard.
        env = {**env, ENV_PREFIX + "PROXY_HEADERS": "x-forwarded-host,x-forwarded-proto"}
    cert_headers = certificate_headers(env)
    # Before any client is opened: a prefix that covers a probe path would let a client's
    # request (prefixed by Envoy) name the probe, which answers 200.
    stores = StoreSettings.from_env(env)
    prefix = forward.path_prefix
    for path in (stores.readiness_path, stores.liveness_path):
        if prefix and path is not None and (path == prefix or path.startswith(prefix + "/")):
            raise ConfigurationError(
                ENV_PREFIX + "FORWARD_AUTH_PATH_PREFIX",
                f"covers the probe path {path}: a client's request could name it",
            )
    guard = from_env(routes=routes, environ=env)
    settings = guard.settings
    if settings.metadata is not None:
        # The RFC 9728 document cannot reach the client through a check request (the
        # proxy answers with the API's response): its path is public here, the API (or the
        # proxy, as a file) serves it, and the challenges still name its URL.
        document = Route(settings.metadata.path, public=True, methods=("GET",))
        settings = dataclasses.replace(settings, routes=(document, *settings.routes))
    options: dict[str, Any] = guard.middleware_options | {"settings": settings}
    if clock is not None:
        options["clock"] = clock
    if replay_store is not None:
        options["replay_store"] = replay_store
    middleware = DPoPGuardMiddleware(
        IdentityApp(forward.identity_headers), serve_metadata=False, **options
    )
    adapter = ForwardAuth(
        middleware,
        settings=settings,
        forward=forward,
        certificate_headers=cert_headers,
    )
    return OperationsMiddleware(adapter, guard)
