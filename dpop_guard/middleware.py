"""The ASGI middleware: a thin shell around the pure verifier and the I/O seams.

Per protected request, in order (after node-oidc-provider's ``access_token.js``):
``Authorization`` -> exactly one ``DPoP`` header -> local proof verification ->
introspection (cached) -> binding (proof key == token key) -> expiry and scopes ->
atomic ``jti`` record. The first failure becomes one response through
:func:`~dpop_guard.challenges.challenge_for`. The body is never read, so streaming stays
intact; lifespan and websocket scopes pass straight through.
"""

from __future__ import annotations

import hmac
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

from starlette.authentication import BaseUser
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._proxy import forwarded_origin, parse_networks
from .authorization import parse_authorization
from .challenges import challenge_for
from .errors import (
    DPoPGuardError,
    InsufficientScope,
    InvalidDPoPProof,
    InvalidRequest,
    InvalidToken,
    ReplayStoreUnavailable,
    ServiceUnavailable,
)
from .introspection import Introspector, RequestFacts, TokenInfo
from .metrics import CACHE_HIT, Decision, Metrics
from .nonce import HMACNonceSource, NonceSource
from .proof import ProofVerifier, VerifiedProof, select_proof
from .replay import MemoryReplayStore, ReplayStore, replay_store_from_url
from .settings import GuardSettings, Route

__all__ = ["DPoPCredentials", "DPoPGuardMiddleware", "DPoPUser"]

logger = logging.getLogger("dpop_guard")
_VERIFICATION_SECONDS: ContextVar[float | None] = ContextVar("dpop_guard_verify_s", default=None)
_INTROSPECTION_SECONDS: ContextVar[float | None] = ContextVar(
    "dpop_guard_introspection_s", default=None
)

_PROXY_HEADERS = frozenset(
    {
        b"forwarded",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-prefix",
    }
)


class DPoPUser(BaseUser):
    """``request.user`` for a request that passed: authenticated, named by its subject (or,
    for a client-credentials token, its client id)."""

    __slots__ = ("credentials",)

    def __init__(self, credentials: DPoPCredentials) -> None:
        self.credentials = credentials

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.credentials.subject or self.credentials.client_id or ""

    @property
    def identity(self) -> str:
        return self.display_name


@dataclass(frozen=True, slots=True)
class DPoPCredentials:
    """What a request proved, set as ``scope["auth"]`` (``request.auth`` in Starlette and
    FastAPI; ``request.user`` is a :class:`DPoPUser`). ``scopes`` makes Starlette's
    ``@requires`` work unchanged."""

    subject: str | None
    client_id: str | None
    scopes: frozenset[str]
    jkt: str | None
    """The proof key's thumbprint; ``None`` only for an allowed unbound Bearer token."""
    expires_at: int | None
    scheme: str


class DPoPGuardMiddleware:
    """Protect an ASGI app with DPoP-bound access tokens.

    :param app: the ASGI app to protect.
    :param settings: routes, proof policy, public URL, realm.
    :param introspector: where tokens are checked; wrap it in
        :class:`~dpop_guard.introspection.cached.CachingIntrospector` to cache.
    :param replay_store: where used proofs are recorded; defaults to
        ``settings.replay_store``: a :class:`~dpop_guard.replay.MemoryReplayStore` of
        ``settings.replay_maxsize`` (safe for a single process only) or a Redis store.
    :param nonce_source: issues and checks server nonces where a route requires them;
        defaults to an :class:`~dpop_guard.nonce.HMACNonceSource` on
        ``settings.nonce_secret``.
    :param metrics: receives a :class:`~dpop_guard.metrics.Decision` per protected request
        (e.g. :class:`~dpop_guard.prometheus.PrometheusMetrics`).
    :param clock: wall-clock seconds, read once per request.

    >>> app = DPoPGuardMiddleware(app, settings=GuardSettings(routes=(
    ...     Route("/health", public=True), Route("/accounts", scopes=("read:accounts",)))),
    ...     introspector=CachingIntrospector(AuthleteIntrospector(client, authlete)))
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        introspector: Introspector,
        settings: GuardSettings | None = None,
        replay_store: ReplayStore | None = None,
        nonce_source: NonceSource | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.settings = settings = settings or GuardSettings()
        self.introspector = introspector
        # "is None", not "or": an empty store has len() 0 and is falsy.
        if replay_store is None:
            replay_store = replay_store_from_url(
                settings.replay_store, maxsize=settings.replay_maxsize
            )
        self.replay_store: ReplayStore = replay_store
        if isinstance(replay_store, MemoryReplayStore) and _several_processes():
            logger.warning(
                "dpop_guard: the in-memory replay store is per process, and this process "
                "looks like one of several workers: a proof replayed to another worker "
                "would be accepted. Set DPOP_GUARD_REPLAY_STORE=redis://... for a fleet."
            )
        if nonce_source is None and settings.nonce_routes:
            if settings.nonce_secret is None:
                logger.warning(
                    "dpop_guard: DPOP_GUARD_NONCE_SECRET is not set; nonces are valid only "
                    "in the process that issued them."
                )
                nonce_source = HMACNonceSource.ephemeral(step=settings.nonce_step)
            else:
                nonce_source = HMACNonceSource(settings.nonce_secret, step=settings.nonce_step)
        self.nonce_source = nonce_source
        self._store_failed_at: int | None = None
        self.metrics = metrics
        self.verifier = ProofVerifier(settings.policy)
        self._clock = clock
        self._algs = settings.policy.algorithms
        self._max_token = settings.max_token_bytes
        self._public_url = settings.public_url
        self._networks = parse_networks(settings.trusted_proxies)
        self._metadata_path: str | None = None
        self._challenge_params: dict[str, str] = {}
        if settings.metadata is not None:
            meta = settings.metadata
            scopes = meta.scopes_supported
            if scopes is None:
                scopes = tuple(sorted({s for r in settings.routes for s in r.scopes}))
            document = {
                "resource": meta.resource,
                "authorization_servers": list(meta.authorization_servers),
                "scopes_supported": list(scopes),
                "bearer_methods_supported": ["header"],
                "dpop_signing_alg_values_supported": list(settings.policy.algorithms),
                "dpop_bound_access_tokens_required": not settings.allow_unbound_tokens,
            }
            if meta.resource_name:
                document["resource_name"] = meta.resource_name
            self._metadata_path = meta.path
            self._metadata_body = json.dumps(document).encode()
            self._challenge_params = {"resource_metadata": meta.url}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        path = _route_path(scope)
        if path == self._metadata_path and method in ("GET", "HEAD"):
            await self._send_metadata(send, method)
            return
        route = self.settings.route_for(path, method)
        if route is not None and route.public:
            if not _has_dot_segments(path):
                await self.app(scope, receive, send)
                return
            # "/public/../private" must not ride on a public prefix into an app (or a
            # framework) that resolves dot segments after us: protect it.
            route = None
        started = time.perf_counter()
        CACHE_HIT.set(None)
        _INTROSPECTION_SECONDS.set(None)
        _VERIFICATION_SECONDS.set(None)
        try:
            credentials, next_nonce = await self._authenticate(scope, method, route)
            scope["auth"] = credentials
            scope["user"] = DPoPUser(credentials)
        except DPoPGuardError as exc:
            await self._reject(exc, send, started)
            return
        except Exception:
            # A bug or an unexpected dependency failure: fail closed, keep the trace in
            # the log (it holds no token: none of our messages carry one).
            logger.exception("dpop_guard: unexpected error; answering 503")
            await self._reject(ServiceUnavailable("internal_error"), send, started)
            return
        self._observe("accepted", None, None, started)
        if next_nonce is None:
            await self.app(scope, receive, send)
            return

        async def send_with_nonce(message: Message) -> None:
            # Only the response head is touched; the body streams through untouched.
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("DPoP-Nonce", next_nonce)
            await send(message)

        await self.app(scope, receive, send_with_nonce)

    def _htu(self, scope: Scope, host: str | None, forwarded: dict[bytes, list[str]]) -> str:
        """The URL the client addressed: the configured public URL, else what trusted
        proxies report, else the request's own scheme and ``Host``."""
        raw = scope.get("raw_path")
        raw_path = raw.decode("latin-1").partition("?")[0] if raw else quote(scope["path"])
        if self._public_url is not None:
            root = quote(scope.get("root_path", ""))
            if root and raw_path.startswith(root):
                raw_path = raw_path[len(root) :]
            return self._public_url + raw_path
        scheme = scope.get("scheme", "http")
        if self._networks:
            client = scope.get("client")
            origin = forwarded_origin(
                client[0] if client else None,
                forwarded,
                self._networks,
                proxy_headers=self.settings.proxy_headers,
            )
            if origin is not None:
                scheme = origin.scheme or scheme
                host = origin.host or host
                if origin.prefix and not (raw_path + "/").startswith(origin.prefix + "/"):
                    raw_path = origin.prefix + raw_path
        if host is None:
            server = scope.get("server")
            host = f"{server[0]}:{server[1]}" if server else "localhost"
        return f"{scheme}://{host}{raw_path}"

    async def _authenticate(
        self, scope: Scope, method: str, route: Route | None
    ) -> tuple[DPoPCredentials, str | None]:
        authorization: list[str] = []
        dpop: list[str] = []
        host: str | None = None
        forwarded: dict[bytes, list[str]] = {}
        watch_proxies = bool(self._networks) and self._public_url is None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization.append(value.decode("latin-1"))
            elif name == b"dpop":
                dpop.append(value.decode("latin-1"))
            elif name == b"host":
                host = value.decode("latin-1")
            elif watch_proxies and name in _PROXY_HEADERS:
                forwarded.setdefault(name, []).append(value.decode("latin-1"))
        header = parse_authorization(authorization, max_token_bytes=self._max_token)
        required = route.scopes if route is not None else ()
        htu = self._htu(scope, host, forwarded)
        now = int(self._clock())
        proof: VerifiedProof | None = None
        if header.scheme == "Bearer":
            if dpop:
                raise InvalidRequest(
                    "bearer_with_dpop_proof", "A DPoP proof requires the DPoP authorization scheme."
                )
            if not self.settings.allow_unbound_tokens:
                raise InvalidToken(
                    "bearer_scheme_refused", "A DPoP-bound access token is required."
                )
            info = await self._introspect(
                header.token, RequestFacts(method, htu, None, None, required)
            )
            if info.jkt is not None:
                raise InvalidToken(
                    "bound_token_as_bearer", "A DPoP-bound access token requires the DPoP scheme."
                )
        else:
            raw = select_proof(dpop)
            nonces = self.nonce_source if self.settings.nonce_required(route) else None
            started = time.perf_counter()
            try:
                proof = self.verifier.verify(
                    raw, method=method, url=htu, access_token=header.token, now=now, nonces=nonces
                )
            finally:
                _VERIFICATION_SECONDS.set(time.perf_counter() - started)
            # Send the proof's own htu: it already matched the request URL locally, and
            # it spares the server a second, possibly different, normalisation.
            info = await self._introspect(
                header.token, RequestFacts(method, proof.htu, raw, proof.jkt, required)
            )
            if info.jkt is None:
                if not self.settings.allow_unbound_tokens:
                    raise InvalidToken("token_not_bound", "The access token is not DPoP-bound.")
            elif not hmac.compare_digest(info.jkt, proof.jkt):
                raise InvalidDPoPProof(
                    "jkt_mismatch", "The DPoP proof key does not match the access token."
                )
        self._check_token(info, now, required)
        if proof is not None:
            await self._record(proof, now)
        credentials = DPoPCredentials(
            subject=info.subject,
            client_id=info.client_id,
            scopes=info.scopes,
            jkt=proof.jkt if proof else None,
            expires_at=info.expires_at,
            scheme=header.scheme,
        )
        return credentials, proof.next_nonce if proof else None

    async def _introspect(self, token: str, facts: RequestFacts) -> TokenInfo:
        started = time.perf_counter()
        try:
            return await self.introspector.introspect(token, request=facts)
        finally:
            _INTROSPECTION_SECONDS.set(time.perf_counter() - started)

    async def _record(self, proof: VerifiedProof, now: int) -> None:
        """Record the proof's jti atomically; a second use is a replay."""
        try:
            first = await self.replay_store.add_if_absent(proof.replay_key, ttl=proof.replay_ttl)
        except Exception as exc:
            self._store_failed_at = now
            logger.warning(
                "dpop_guard: replay store failed: %s",
                type(exc).__name__,
                extra={"dpop_guard_reason": "replay_store_error"},
            )
            raise ReplayStoreUnavailable("replay_store_error") from exc
        if not first:
            raise InvalidDPoPProof("jti_replayed", "The DPoP proof has been used before.")
        failed_at = self._store_failed_at
        if failed_at is not None:
            if now - failed_at > proof.replay_ttl:
                self._store_failed_at = None
            elif proof.iat <= failed_at:
                # The store failed after this proof was made. A store that lost its
                # records meanwhile (a Redis restarted without persistence) cannot vouch
                # that the proof was not used before, so only proofs made since pass.
                raise InvalidDPoPProof(
                    "replay_state_uncertain", "The DPoP proof is too old; send a fresh one."
                )

    @staticmethod
    def _check_token(info: TokenInfo, now: int, required: tuple[str, ...]) -> None:
        # Checked here as well as by the server, because a cached answer is older than the
        # request, and a cached answer for one route says nothing of another's scopes.
        if info.expires_at is not None and info.expires_at <= now:
            raise InvalidToken("token_expired", "The access token has expired.")
        if required and not info.scopes.issuperset(required):
            raise InsufficientScope("scope_missing", scope=" ".join(required))

    async def _send_metadata(self, send: Send, method: str) -> None:
        body = self._metadata_body
        headers = [
            (b"content-type", b"application/json"),
            (b"cache-control", b"public, max-age=3600"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body if method == "GET" else b""})

    def _observe(
        self,
        outcome: Literal["accepted", "rejected"],
        reason: str | None,
        status: int | None,
        started: float,
    ) -> None:
        seconds = time.perf_counter() - started
        cache_hit = CACHE_HIT.get()
        level = logging.INFO if outcome == "rejected" else logging.DEBUG
        if logger.isEnabledFor(level):
            extra = {
                "dpop_guard_outcome": outcome,
                "dpop_guard_reason": reason,
                "dpop_guard_status": status,
                "dpop_guard_latency_ms": round(seconds * 1000, 3),
                "dpop_guard_cache_hit": cache_hit,
            }
            if outcome == "rejected":
                logger.info("dpop_guard rejected a request: %s (%s)", reason, status, extra=extra)
            else:
                logger.debug("dpop_guard accepted a request", extra=extra)
        if self.metrics is not None:
            self.metrics.observe(
                Decision(
                    outcome,
                    reason,
                    status,
                    seconds,
                    introspection_seconds=_INTROSPECTION_SECONDS.get(),
                    verification_seconds=_VERIFICATION_SECONDS.get(),
                    cache_hit=cache_hit,
                )
            )

    async def _reject(self, exc: DPoPGuardError, send: Send, started: float) -> None:
        response = challenge_for(
            exc, algs=self._algs, realm=self.settings.realm, extra_params=self._challenge_params
        )
        self._observe("rejected", exc.reason, response.status, started)
        headers = [*response.headers, (b"content-length", str(len(response.body)).encode())]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})


def _several_processes() -> bool:
    """Whether this process looks like one worker of several (uvicorn ``--workers`` spawns
    its workers with multiprocessing; gunicorn and uvicorn read ``WEB_CONCURRENCY``)."""
    try:
        concurrency = int(os.environ.get("WEB_CONCURRENCY", "1"))
    except ValueError:
        concurrency = 1
    return concurrency > 1 or multiprocessing.parent_process() is not None


def _has_dot_segments(path: str) -> bool:
    return "/." in path and any(seg in (".", "..") for seg in path.split("/"))


def _route_path(scope: Scope) -> str:
    """The path relative to the app's mount point, as Starlette routes it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :] or "/"
    return path
