"""The ASGI middleware: a thin shell around the pure verifier and the I/O seams.

Every scope type is handled on purpose: ``lifespan`` passes, ``http`` and ``websocket``
are authenticated, anything else is refused. Per protected request, in order:
``Authorization`` -> exactly one ``DPoP`` header -> the target URL -> local proof
verification -> ``jti`` record (so a replay never costs an introspection) ->
introspection (cached) -> binding (proof key == token key) -> expiry and scopes, checked
locally. The first failure becomes one response through
:func:`~dpop_guard.challenges.challenge_for`. The body is never read, so streaming stays
intact.

A websocket handshake is authenticated like the HTTP ``GET`` it is: ``htm`` is ``GET``
and ``htu`` the ``http``/``https`` form of the ``ws``/``wss`` URL. A refused handshake is
answered with the HTTP error response where the server offers the
``websocket.http.response`` extension, and otherwise closed before ``accept`` (the
server then answers 403).
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._authorization import parse_authorization
from ._decision import DecisionLog, Trace, log_unexpected
from ._defaults import default_nonce_source, default_replay_store
from ._fapi import DateHeader, interaction_id, stamp_responses
from ._memo import Public, RouteDecisions, TargetPaths
from ._proxy import parse_networks
from ._respond import refuse_websocket, send_response
from ._target import target_url
from .challenges import challenge_for
from .credentials import DPoPCredentials, DPoPUser, credentials_for
from .errors import (
    DPoPGuardError,
    InvalidDPoPProof,
    InvalidRequest,
    InvalidToken,
    ServiceUnavailable,
)
from .introspection import InactiveToken, Introspector, RequestFacts, TokenInfo
from .metadata import metadata_endpoint
from .metrics import Metrics
from .nonce import NonceSource
from .proof import ProofVerifier, select_proof
from .replay import ReplayStore
from .replay._guard import ReplayGuard
from .routes import Route, route_path
from .settings import GuardSettings

__all__ = ["DPoPCredentials", "DPoPGuardMiddleware", "DPoPUser"]

logger = logging.getLogger("dpop_guard")


def _sync_lookup(introspector: Introspector) -> Callable[[str], TokenInfo | None] | None:
    """The introspector's ``cached_sync`` (a memory hit without a coroutine:
    :meth:`CachingIntrospector.cached_sync`), if the class that defines it also defines
    the ``introspect`` in use: a subclass that overrides ``introspect`` (to log, to add a
    check) is then always called through it."""
    kind = type(introspector)
    owner = next((k for k in kind.__mro__ if "cached_sync" in vars(k)), None)
    if owner is None or vars(owner).get("introspect") is not getattr(kind, "introspect", None):
        return None
    lookup = getattr(introspector, "cached_sync", None)
    return lookup if callable(lookup) else None


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
        self._cached_sync = _sync_lookup(introspector)
        self.replay_store = default_replay_store(settings, replay_store)
        self.replay_guard = ReplayGuard(self.replay_store)
        self._record_sync = self.replay_guard.record_sync if self.replay_guard.is_sync else None
        self.nonce_source = default_nonce_source(settings, nonce_source)
        self.metrics = metrics
        self.decisions = DecisionLog(metrics)
        self.verifier = ProofVerifier(settings.policy)
        self._clock = clock
        self._dates = DateHeader(clock) if settings.date_header else None
        self._networks = parse_networks(settings.trusted_proxies)
        self._metadata = metadata_endpoint(settings)
        self._routes = RouteDecisions(settings.routes)
        self._targets = TargetPaths()
        meta = settings.metadata
        self._challenge_params = {} if meta is None else {"resource_metadata": meta.url}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, receive, send)
            return
        if kind not in ("http", "websocket"):
            # A scope type this guard does not know could carry anything: never pass it.
            logger.warning("dpop_guard: refusing an ASGI scope of type %r", kind)
            return
        interaction = interaction_id(scope)
        scope.setdefault("state", {})["fapi_interaction_id"] = interaction
        send = stamp_responses(send, interaction, self._dates)
        websocket = kind == "websocket"
        method: str = "GET" if websocket else scope["method"]
        path = route_path(scope)
        if not websocket and self._metadata is not None and self._metadata.serves(path, method):
            await self._metadata(send, method)
            return
        trace = Trace(interaction_id=interaction)
        try:
            next_nonce = await self._admit(scope, method, path, trace)
        except DPoPGuardError as exc:
            await self._reject(exc, scope, receive, send, trace)
            return
        except Exception as exc:
            # A bug or an unexpected dependency failure: fail closed. Logged without locals
            # and messages, which may hold the token or the proof.
            log_unexpected(exc)
            await self._reject(ServiceUnavailable("internal_error"), scope, receive, send, trace)
            return
        if next_nonce is None:
            await self.app(scope, receive, send)
            return
        start = "websocket.accept" if websocket else "http.response.start"
        nonce = next_nonce.encode("ascii")

        async def send_with_nonce(message: Message) -> None:
            # Only the response head is touched; the body streams through untouched.
            if message["type"] == start:
                # A websocket accept may carry no headers list at all.
                message["headers"] = [*message.get("headers", ()), (b"dpop-nonce", nonce)]
            await send(message)

        await self.app(scope, receive, send_with_nonce)

    async def _admit(self, scope: Scope, method: str, path: str, trace: Trace) -> str | None:
        """Decide one request: return the ``DPoP-Nonce`` to send (or ``None``), having set
        ``scope["auth"]`` and ``scope["user"]`` on a protected one; raise to refuse."""
        # A control character in the path: 400 (no rule can be trusted to cover it);
        # "/public/../private" is protected (see _memo.RouteDecisions).
        route = self._routes.decide(path, method)
        target = self._targets.path(scope)  # "#" or control characters in the target: 400
        if isinstance(route, Public):
            return None
        credentials, next_nonce = await self._authenticate(
            scope, method, path, route, trace, target
        )
        self.decisions.observe("accepted", None, None, trace)
        scope["auth"] = credentials
        scope["user"] = DPoPUser(credentials)
        return next_nonce

    async def _authenticate(
        self,
        scope: Scope,
        method: str,
        path: str,
        route: Route | None,
        trace: Trace,
        target: str | None = None,
    ) -> tuple[DPoPCredentials, str | None]:
        authorization: list[str] = []
        dpop: list[str] = []
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization.append(value.decode("latin-1"))
            elif name == b"dpop":
                dpop.append(value.decode("latin-1"))
        header = parse_authorization(authorization, max_token_bytes=self.settings.max_token_bytes)
        htu = target_url(
            scope,
            public_url=self.settings.public_url,
            networks=self._networks,
            proxy_headers=self.settings.proxy_headers,
            target=target,
        )
        now = int(self._clock())
        if header.scheme == "Bearer":
            if dpop:
                raise InvalidRequest(
                    "bearer_with_dpop_proof", "A DPoP proof requires the DPoP authorization scheme."
                )
            if not self.settings.allow_unbound_tokens:
                raise InvalidToken(
                    "bearer_scheme_refused", "A DPoP-bound access token is required."
                )
            facts = RequestFacts(
                method=method, htu=htu, proof=None, jkt=None, path=path, lookup=trace.lookup
            )
            info = await self._introspect(header.token, facts, trace)
            if info.jkt is not None:
                raise InvalidToken(
                    "bound_token_as_bearer", "A DPoP-bound access token requires the DPoP scheme."
                )
            jkt = next_nonce = None
        else:
            raw = select_proof(dpop)
            nonces = self.nonce_source if self.settings.nonce_required(route) else None
            timed = self.metrics is not None  # the timings go to metrics only
            started = time.perf_counter() if timed else 0.0
            try:
                proof = self.verifier.verify(
                    raw, method=method, url=htu, access_token=header.token, now=now, nonces=nonces
                )
            finally:
                if timed:
                    trace.verification_seconds = time.perf_counter() - started
            # Before introspection: a replayed proof must never cost an Authlete call.
            if self._record_sync is not None:
                self._record_sync(proof, now=now)  # the memory store: no coroutine
            else:
                await self.replay_guard.record(proof, now=now)
            # A memory hit is answered without a coroutine and without building the
            # request facts; every check below runs on a hit exactly as on a miss.
            hit = (
                None if self._cached_sync is None else self._cached_hit(header.token, trace, timed)
            )
            if hit is not None:
                info = hit
            else:
                # Send the proof's own htu: it already matched the request URL locally,
                # and it spares the server a second, possibly different, normalisation.
                facts = RequestFacts(
                    method=method,
                    htu=proof.htu,
                    proof=raw,
                    jkt=proof.jkt,
                    path=path,
                    lookup=trace.lookup,
                )
                info = await self._introspect(header.token, facts, trace)
            if info.jkt is None:
                if not self.settings.allow_unbound_tokens:
                    raise InvalidToken("token_not_bound", "The access token is not DPoP-bound.")
            elif not hmac.compare_digest(info.jkt, proof.jkt):
                raise InvalidDPoPProof(
                    "jkt_mismatch", "The DPoP proof key does not match the access token."
                )
            jkt, next_nonce = proof.jkt, proof.next_nonce
        required = route.scopes if route is not None else ()
        credentials = credentials_for(
            info,
            now=now,
            required=required,
            jkt=jkt,
            scheme=header.scheme,
            interaction_id=trace.interaction_id,
        )
        return credentials, next_nonce

    def _cached_hit(self, token: str, trace: Trace, timed: bool) -> TokenInfo | None:
        """The cache's answer from memory, without a coroutine, or ``None`` for a miss
        (then :meth:`_introspect`). The same facts a hit of ``introspect`` returns, and
        the same ``InactiveToken`` for a remembered dead token."""
        assert self._cached_sync is not None
        started = time.perf_counter() if timed else 0.0
        try:
            info = self._cached_sync(token)
        except InactiveToken:
            trace.lookup.cache_hit = True
            raise
        if info is not None:
            trace.lookup.cache_hit = True
            if timed:
                trace.introspection_seconds = time.perf_counter() - started
        return info

    async def _introspect(self, token: str, facts: RequestFacts, trace: Trace) -> TokenInfo:
        started = time.perf_counter()
        try:
            return await self.introspector.introspect(token, request=facts)
        finally:
            trace.introspection_seconds = time.perf_counter() - started

    async def _reject(
        self, exc: DPoPGuardError, scope: Scope, receive: Receive, send: Send, trace: Trace
    ) -> None:
        response = challenge_for(
            exc,
            algs=self.settings.policy.algorithms,
            realm=self.settings.realm,
            extra_params=self._challenge_params,
        )
        self.decisions.observe("rejected", exc.reason, response.status, trace)
        if scope["type"] == "websocket":
            await refuse_websocket(response, scope, receive, send)
        else:
            await send_response(response, send, "http.response")
