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

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import quote, unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._env import ConfigurationError, EnvReader
from ._fapi import INTERACTION_ID
from ._proxy import Network, parse_networks, peer_is_trusted
from ._respond import send_response
from .challenges import challenge_for
from .credentials import DPoPCredentials
from .errors import DPoPGuardError, InvalidRequest, ServiceUnavailable
from .replay import ReplayStore
from .routes import has_dot_segments, route_for, route_path
from .settings import ENV_PREFIX, GuardSettings, Route

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

logger = logging.getLogger("dpop_guard")

Flavour = Literal["nginx", "caddy", "traefik", "envoy"]
FLAVOURS: Final[tuple[Flavour, ...]] = ("nginx", "caddy", "traefik", "envoy")
Unmatched = Literal["protect", "refuse"]
UNMATCHED: Final[tuple[Unmatched, ...]] = ("protect", "refuse")
MAX_TARGET_BYTES: Final = 8192
"""Bytes in the original request target (nginx's default large header buffer)."""
_MAX_METHOD_BYTES: Final = 32
_METHOD: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,32}")
# In a raw path: path parameters, a backslash, an encoded separator or percent sign.
_AMBIGUOUS: Final = re.compile(rb"[;\\]|%(?:2[fF]|5[cC]|25)")
_STATUS_HEADER: Final = b"x-dpop-guard-status"
_BODY_HEADER: Final = b"x-dpop-guard-body"
_NONCE_HEADER: Final = b"x-dpop-guard-nonce"
_MAX_BODY_HEADER: Final = 1024


@dataclass(frozen=True, slots=True)
class ProxyContract:
    """The headers one proxy sets on its check request (lower-case names).

    :param method: names the original method; ``None``: the check request's own method.
    :param target: holds the original request target (path and query); ``None``: the
        check request's own target, below the configured path prefix.
    :param host: holds the original ``Host``.
    :param proto: holds the original scheme.
    """

    method: bytes | None
    target: bytes | None
    host: bytes
    proto: bytes


_X_FORWARDED: Final = ProxyContract(
    b"x-forwarded-method", b"x-forwarded-uri", b"x-forwarded-host", b"x-forwarded-proto"
)
CONTRACTS: Final[Mapping[Flavour, ProxyContract]] = {
    # Set by deploy/forward-auth/nginx.conf with proxy_set_header (replacing a client's).
    "nginx": ProxyContract(
        b"x-original-method", b"x-original-uri", b"x-forwarded-host", b"x-forwarded-proto"
    ),
    # Caddy's forward_auth and Traefik's ForwardAuth set these four themselves.
    "caddy": _X_FORWARDED,
    "traefik": _X_FORWARDED,
    # Envoy's ext_authz HTTP service keeps the method and prefixes the path.
    "envoy": ProxyContract(None, None, b"host", b"x-forwarded-proto"),
}
"""What each supported proxy sends, from its documentation (docs/forward-auth.md)."""

IDENTITY_FACTS: Final = (
    "subject",
    "client_id",
    "scope",
    "interaction_id",
    "jkt",
    "x5t_s256",
    "expires_at",
    "acr",
    "auth_time",
    "scheme",
    "grant_id",
)
"""The credentials' facts an identity header may carry."""
DEFAULT_IDENTITY_HEADERS: Final = (
    ("subject", "X-Auth-Subject"),
    ("client_id", "X-Auth-Client-Id"),
    ("scope", "X-Auth-Scope"),
    ("interaction_id", "X-Auth-Interaction-Id"),
)
_CERTIFICATE_HEADERS: Final[Mapping[str, tuple[bytes, ...]]] = {
    "rfc9440": (b"client-cert", b"client-cert-chain"),
    "envoy-xfcc": (b"x-forwarded-client-cert",),
    "aws-alb": (b"x-amzn-mtls-clientcert-leaf",),
}
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Visible ASCII and space, "%" excepted: what an identity value keeps as it is.
_SAFE: Final = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


@dataclass(frozen=True, kw_only=True, slots=True)
class ForwardAuthSettings:
    """What the adapter reads besides the guard's settings.

    :param proxy: which proxy's contract to believe (:data:`CONTRACTS`).
    :param path_prefix: Envoy's ``path_prefix``: the check request's path is this prefix
        followed by the original path (required for ``envoy``, refused for the others).
    :param identity_headers: ``(fact, header name)`` pairs the allow answer carries.
    :param unmatched: a path no route rule matches: ``protect`` (the middleware's rule: a
        valid token, no scope) or ``refuse`` (403 ``forward_auth_path_unmatched``, for an
        API whose router reads paths more broadly than the rules: case-insensitive, or
        ignoring a trailing slash).
    :raises ValueError: naming the field that is wrong.
    """

    proxy: Flavour
    path_prefix: str = ""
    identity_headers: tuple[tuple[str, str], ...] = DEFAULT_IDENTITY_HEADERS
    unmatched: Unmatched = "protect"

    def __post_init__(self) -> None:
        if self.proxy not in FLAVOURS:
            raise ValueError(f"proxy must be one of {', '.join(FLAVOURS)}, got {self.proxy!r}")
        if self.unmatched not in UNMATCHED:
            raise ValueError(f"unmatched must be one of {', '.join(UNMATCHED)}")
        prefix = self.path_prefix
        if self.proxy == "envoy":
            if not re.fullmatch(r"(/[A-Za-z0-9._~\-]+)+", prefix):
                raise ValueError(
                    "path_prefix is required for envoy (its ext_authz path_prefix, e.g. "
                    f"/check): without one a client's path could name a probe; got {prefix!r}"
                )
        elif prefix:
            raise ValueError("path_prefix applies only to envoy")
        names: set[str] = set()
        for fact, header in self.identity_headers:
            if fact not in IDENTITY_FACTS:
                raise ValueError(
                    f"identity_headers: {fact!r} is not one of {', '.join(IDENTITY_FACTS)}"
                )
            if not _TOKEN.fullmatch(header) or header.lower() in names:
                raise ValueError(f"identity_headers: {header!r} is not a new header name")
            names.add(header.lower())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ForwardAuthSettings:
        """``DPOP_GUARD_FORWARD_AUTH_PROXY`` (required), ``..._PATH_PREFIX``,
        ``..._IDENTITY_HEADERS`` (``fact=Header-Name`` items, e.g.
        ``subject=X-User jkt=X-Dpop-Jkt``; default: subject, client id, scope and
        interaction id as ``X-Auth-*``), ``..._UNMATCHED`` (``protect`` or ``refuse``).

        :raises ConfigurationError: naming the variable that is wrong.
        """
        env = EnvReader(environ, ENV_PREFIX)
        proxy = env.text("FORWARD_AUTH_PROXY")
        if proxy is None:
            raise ConfigurationError(
                ENV_PREFIX + "FORWARD_AUTH_PROXY",
                "is not set",
                f"set it to the proxy in front: {', '.join(FLAVOURS)}",
            )
        pairs: list[tuple[str, str]] = []
        for item in env.items("FORWARD_AUTH_IDENTITY_HEADERS"):
            fact, sep, header = item.partition("=")
            if not sep:
                raise ConfigurationError(
                    ENV_PREFIX + "FORWARD_AUTH_IDENTITY_HEADERS",
                    f"{item!r} is not fact=Header-Name",
                )
            pairs.append((fact.strip().lower(), header.strip()))
        flavour = env.choice("FORWARD_AUTH_PROXY", FLAVOURS, "nginx")
        prefix = env.text("FORWARD_AUTH_PATH_PREFIX", "") or ""
        unmatched = env.choice("FORWARD_AUTH_UNMATCHED", UNMATCHED, "protect")
        try:
            return cls(
                proxy=flavour,  # type: ignore[arg-type]
                unmatched=unmatched,  # type: ignore[arg-type]
                path_prefix=prefix,
                identity_headers=tuple(pairs) or DEFAULT_IDENTITY_HEADERS,
            )
        except ValueError as exc:
            field = "PATH_PREFIX" if "path_prefix" in str(exc) else "IDENTITY_HEADERS"
            raise ConfigurationError(ENV_PREFIX + "FORWARD_AUTH_" + field, str(exc)) from None


def _identity_value(value: object) -> bytes:
    """A fact as a header value: text percent-encoded outside visible ASCII (and ``%``),
    so that nothing an authorization server returns can split or fold a header."""
    return quote(str(value), safe=_SAFE).encode("ascii")


class IdentityApp:
    """The app behind the guard: ``200`` with the identity headers built from
    ``scope["auth"]`` (a public path: all empty), empty body."""

    def __init__(self, identity_headers: Sequence[tuple[str, str]]) -> None:
        self._headers = [(fact, header.lower().encode()) for fact, header in identity_headers]

    def headers(self, credentials: DPoPCredentials | None) -> list[tuple[bytes, bytes]]:
        """The identity headers for ``credentials``: every configured one, empty where
        the fact has no value (a public path: all empty). A proxy that copies a header
        whether or not the answer has it (Caddy 2.6 writes its unresolved placeholder)
        then copies an empty value, never the client's or a placeholder."""
        found: list[tuple[bytes, bytes]] = []
        for fact, name in self._headers:
            value: object = None
            if credentials is None:
                pass
            elif fact == "scope":
                value = " ".join(sorted(credentials.scopes))
            else:
                value = getattr(credentials, fact)
            found.append((name, b"" if value is None else _identity_value(value)))
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        headers = [
            (b"cache-control", b"no-store"),
            (b"content-length", b"0"),
            *self.headers(scope.get("auth")),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


async def _lifespan(receive: Receive, send: Send) -> None:
    """The lifespan protocol, completed: the server then sends shutdown, on which the
    guard's clients are closed (:class:`~dpop_guard.guard.OperationsMiddleware`)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


@dataclass(frozen=True, slots=True)
class _Original:
    """The original request, as the proxy reported it (each part still bytes)."""

    method: bytes
    target: bytes
    host: bytes | None
    proto: bytes | None


class ForwardAuth:
    """The adapter: a check request from a trusted proxy becomes the original request's
    scope, handed to ``guard`` (a :class:`~dpop_guard.middleware.DPoPGuardMiddleware`).

    :param guard: the middleware, wrapping :class:`IdentityApp`.
    :param settings: the guard's settings (trusted proxies, public URL, policy).
    :param forward: this adapter's settings.
    :param certificate_headers: the client-certificate headers to hand on (lower case).
    """

    def __init__(
        self,
        guard: ASGIApp,
        *,
        settings: GuardSettings,
        forward: ForwardAuthSettings,
        certificate_headers: Sequence[bytes] = (),
    ) -> None:
        if not settings.trusted_proxies:
            raise ValueError(
                "the forward-auth server needs trusted_proxies: the addresses its proxies "
                "connect from (every other peer is refused)"
            )
        self.guard = guard
        self.settings = settings
        self.forward = forward
        self.contract = CONTRACTS[forward.proxy]
        self._networks: tuple[Network, ...] = parse_networks(settings.trusted_proxies)
        self._prefix = forward.path_prefix.encode()
        self._hand_on = frozenset(
            {b"authorization", b"dpop", INTERACTION_ID.encode(), *certificate_headers}
        )
        # With a public URL the guard never reads the host or scheme: neither is asked for.
        self._needs_origin = settings.public_url is None
        self._refuse_unmatched = forward.unmatched == "refuse"

    def _unmatched(self, scope: Scope) -> bool:
        """Whether no route rule covers the rebuilt request (the middleware's own matcher)."""
        return route_for(self.settings.routes, route_path(scope), scope["method"]) is None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.guard(scope, receive, send)
            return
        if kind != "http":
            logger.warning("dpop_guard forward-auth: refusing an ASGI scope of type %r", kind)
            return
        send = _for_nginx(send) if self.forward.proxy == "nginx" else _with_next_nonce(send)
        try:
            if not peer_is_trusted(scope, self._networks):
                raise InvalidRequest(
                    "forward_auth_peer_untrusted",
                    "This service answers its proxies only.",
                    status=403,
                )
            original = self.original(scope)
            rebuilt = self.rebuild(scope, original)
            if self._refuse_unmatched and self._unmatched(rebuilt):
                raise InvalidRequest(
                    "forward_auth_path_unmatched", "No rule covers this request.", status=403
                )
        except DPoPGuardError as exc:
            await self._refuse(exc, send)
            return
        await self.guard(rebuilt, receive, send)

    def original(self, scope: Scope) -> _Original:
        """The original request's parts, from only the contract's headers.

        :raises ServiceUnavailable: ``forward_auth_header_missing``, the proxy did not send
            a header its contract names (a misconfigured proxy: fail closed).
        :raises InvalidRequest: ``forward_auth_header_invalid``: a contract header sent
            twice, a method that is not an HTTP token, a target over
            :data:`MAX_TARGET_BYTES`.
        """
        contract = self.contract
        wanted = {contract.method, contract.target}
        if self._needs_origin:
            wanted |= {contract.host, contract.proto}
        wanted.discard(None)
        found: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if name in wanted:
                if name in found:
                    raise _invalid()
                if len(value) > MAX_TARGET_BYTES:
                    raise _invalid()
                found[name] = value
        if contract.method is None:
            method: bytes = scope["method"].encode("latin-1")
        else:
            method = _required(found, contract.method)
        if not _METHOD.fullmatch(method):
            raise _invalid()
        if contract.target is None:
            target = self._below_prefix(scope)
        else:
            target = _required(found, contract.target)
        host = proto = None
        if self._needs_origin:
            host = _required(found, contract.host)
            proto = _required(found, contract.proto).lower()
            if proto not in (b"http", b"https"):
                raise _invalid()
        return _Original(method, target, host, proto)

    def _below_prefix(self, scope: Scope) -> bytes:
        """Envoy: the check request's own target, with the configured prefix cut off."""
        raw: bytes = scope.get("raw_path") or quote(scope["path"]).encode()
        query: bytes = scope.get("query_string", b"")
        prefix = self._prefix
        if not raw.startswith(prefix) or raw[len(prefix) : len(prefix) + 1] != b"/":
            raise ServiceUnavailable(
                "forward_auth_header_missing", "The service is temporarily unavailable."
            )
        target = raw[len(prefix) :] + (b"?" + query if query else b"")
        if len(target) > MAX_TARGET_BYTES:
            raise _invalid()
        return target

    def rebuild(self, scope: Scope, original: _Original) -> Scope:
        """The ASGI scope of the original request: method, path (decoded as servers do),
        raw path, query, scheme, and only the headers the guard reads.

        :raises InvalidRequest: ``forward_auth_target_ambiguous``, a path that routers read
            differently (see the module's docstring).
        """
        raw_path, _, query = original.target.partition(b"?")
        path = unquote(raw_path.decode("latin-1"))
        # (A target that is not origin-form is the middleware's to refuse, by its own rule.)
        origin_form = raw_path.startswith(b"/")
        if origin_form and (_AMBIGUOUS.search(raw_path) or "//" in path or has_dot_segments(path)):
            raise InvalidRequest(
                "forward_auth_target_ambiguous", "The request target is not valid."
            )
        headers = [(n, v) for n, v in scope["headers"] if n in self._hand_on]
        if original.host is not None:
            headers.append((b"host", original.host))
        proto = original.proto
        return {
            "type": "http",
            "asgi": scope.get("asgi", {"version": "3.0"}),
            "http_version": scope.get("http_version", "1.1"),
            "method": original.method.decode("ascii"),
            "scheme": proto.decode("ascii") if proto is not None else scope.get("scheme", "http"),
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": headers,
            "client": scope.get("client"),
            "server": scope.get("server"),
            "state": {},
            "extensions": {},
        }

    async def _refuse(self, exc: DPoPGuardError, send: Send) -> None:
        settings = self.settings
        response = challenge_for(exc, algs=settings.policy.algorithms, realm=settings.realm)
        logger.info(
            "dpop_guard rejected a request: %s (%s)",
            exc.reason,
            response.status,
            extra={
                "dpop_guard_outcome": "rejected",
                "dpop_guard_reason": exc.reason,
                "dpop_guard_status": response.status,
            },
        )
        await send_response(response, send, "http.response")


def _required(found: Mapping[bytes, bytes], name: bytes) -> bytes:
    """The value of a contract header, as sent (never trimmed into another value).

    :raises ServiceUnavailable: ``forward_auth_header_missing``, absent or blank.
    """
    value = found.get(name)
    if value is None or not value.strip():
        raise ServiceUnavailable(
            "forward_auth_header_missing", "The service is temporarily unavailable."
        )
    return value


def _invalid() -> InvalidRequest:
    return InvalidRequest("forward_auth_header_invalid", "The request is not valid.")


def _for_nginx(send: Send) -> Send:
    """``send`` for nginx's ``auth_request``, which passes 2xx, 401 and 403 only: every
    refusal travels as a 401 carrying its real status and (small) body in headers
    (``deploy/forward-auth/nginx.conf`` answers the client with the status and body those
    headers name)."""
    start: Message | None = None
    body = b""

    async def send_for_nginx(message: Message) -> None:
        nonlocal start, body
        if message["type"] == "http.response.start":
            if message["status"] < 300:
                await send(message)
            else:
                start = message  # held until the body is known
            return
        if start is None or message["type"] != "http.response.body":
            await send(message)
            return
        body += message.get("body", b"")
        if message.get("more_body", False):
            return
        status: int = start["status"]
        headers = [*start.get("headers", ()), (_STATUS_HEADER, str(status).encode())]
        if len(body) <= _MAX_BODY_HEADER and all(0x20 <= b < 0x7F for b in body):
            headers.append((_BODY_HEADER, body))
        # 401 whatever the status: nginx then also copies WWW-Authenticate (the only
        # header it passes back itself), which the configuration cannot add without
        # doubling it.
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        start = None

    return send_for_nginx


def _with_next_nonce(send: Send) -> Send:
    """``send`` adding ``X-Dpop-Guard-Nonce`` to an allow answer: the next nonce, or empty.
    A proxy that copies a header onto the request whether or not the answer has it (Caddy
    2.6 writes its unresolved placeholder) copies an empty value instead."""

    async def send_with_next_nonce(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] < 300:
            headers = list(message.get("headers", ()))
            nonce = next((v for n, v in headers if n == b"dpop-nonce"), b"")
            message["headers"] = [*headers, (_NONCE_HEADER, nonce)]
        await send(message)

    return send_with_next_nonce


def _certificate_headers(environ: Mapping[str, str]) -> tuple[bytes, ...]:
    """The client-certificate headers the configured source reads (handed on as sent).

    :raises ConfigurationError: ``asgi-tls``, whose certificate is the proxy's connection's.
    """
    env = EnvReader(environ, ENV_PREFIX)
    source = env.text("CLIENT_CERT_SOURCE")
    if source is None:
        return ()
    if source == "nginx":
        header = env.text("CLIENT_CERT_HEADER")
        return (header.lower().encode(),) if header else ()
    if source == "asgi-tls":
        raise ConfigurationError(
            ENV_PREFIX + "CLIENT_CERT_SOURCE",
            "is asgi-tls, but behind a proxy the TLS connection is the proxy's",
            "set it to the header the proxy passes the client's certificate in",
        )
    return _CERTIFICATE_HEADERS.get(source, ())


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

    from .guard import OperationsMiddleware, StoreSettings, from_env
    from .middleware import DPoPGuardMiddleware

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
    certificate_headers = _certificate_headers(env)
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
    options: dict[str, Any] = guard.middleware_options
    if clock is not None:
        options["clock"] = clock
    if replay_store is not None:
        options["replay_store"] = replay_store
    middleware = DPoPGuardMiddleware(IdentityApp(forward.identity_headers), **options)
    adapter = ForwardAuth(
        middleware,
        settings=guard.settings,
        forward=forward,
        certificate_headers=certificate_headers,
    )
    return OperationsMiddleware(adapter, guard)
