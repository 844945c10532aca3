"""The ASGI middleware: a thin shell around the pure verifier and the I/O seams.

Every scope type is handled on purpose: ``lifespan`` passes, ``http`` and ``websocket``
are authenticated, anything else is refused. Per protected request, in order (each a named
stage of :meth:`DPoPGuardMiddleware._authenticate`): read the headers -> the request's
shape (route, policy, target: :mod:`dpop_guard._memo`) -> ``Authorization`` -> the
target URL -> local proof verification -> ``jti`` record (so a replay never costs an
introspection) -> look up the token (a memory hit, else the introspector) -> binding
(:func:`~dpop_guard._binding.check_binding`: proof key == token key, client certificate ==
token certificate, the route's sender constraint) -> expiry, scopes and step-up
(:func:`~dpop_guard.credentials.credentials_for`) -> hand on. It awaits only where a store
or the introspector does I/O. The first failure becomes one response through
:func:`~dpop_guard.challenges.challenge_for`. The body is never read, so streaming stays
intact. The request is handed on from :meth:`~DPoPGuardMiddleware.__call__`, whose frame
holds only ``scope``, ``receive`` and ``send``: a traceback from the app, rendered with its
locals, shows no token, proof or header value of the guard's.

A websocket handshake is authenticated like the HTTP ``GET`` it is: ``htm`` is ``GET``
and ``htu`` the ``http``/``https`` form of the ``ws``/``wss`` URL. A refused handshake is
answered with the HTTP error response where the server offers the
``websocket.http.response`` extension, and otherwise closed before ``accept`` (the
server then answers 403). An accepted one can be closed at its token's expiry
(:mod:`dpop_guard._websocket`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from time import perf_counter
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from ._binding import Policies, check_bearer, check_binding
from ._decision import NO_TRACE, DecisionLog, Trace, log_unexpected
from ._defaults import default_nonce_source, default_replay_store
from ._fapi import DateHeader, stamp_responses
from ._memo import Authorizations, RequestShapes, Shape
from ._proxy import parse_networks, peer_is_trusted
from ._request import facts_for, read_headers, with_nonce
from ._respond import refuse_websocket, send_response
from ._target import target_url
from ._websocket import close_at_expiry
from .challenges import DPOP_SCHEME, challenge_for
from .credentials import DPoPCredentials, DPoPUser, credentials_for
from .errors import DPoPGuardError, ServiceUnavailable
from .introspection import Introspector, SyncTokenLookup
from .metadata import metadata_endpoint
from .metrics import Metrics
from .nonce import NonceSource
from .proof import ProofVerifier, select_proof
from .replay import ReplayStore
from .replay._guard import ReplayGuard
from .routes import route_path
from .settings import GuardSettings

if TYPE_CHECKING:  # certificates are parsed by the source, which the app passes in
    from .mtls import ClientCertificate, ClientCertificateSource

__all__ = ["DPoPCredentials", "DPoPGuardMiddleware", "DPoPUser"]

logger = logging.getLogger("dpop_guard")

Handed = tuple[Receive, Send]
"""What the app is called with besides the scope."""


class DPoPGuardMiddleware:
    """Protect an ASGI app with DPoP-bound access tokens.

    :param app: the ASGI app to protect.
    :param settings: routes, proof policy, public URL, realm.
    :param introspector: where tokens are checked; wrap it in
        :class:`~dpop_guard.introspection.cached.CachingIntrospector` to cache (a
        :class:`~dpop_guard.introspection.SyncTokenLookup`: memory hits are answered
        without a coroutine).
    :param replay_store: where used proofs are recorded; defaults to
        ``settings.replay_store``: a :class:`~dpop_guard.replay.MemoryReplayStore` of
        ``settings.replay_maxsize`` (safe for a single process only) or a Redis store.
    :param nonce_source: issues and checks server nonces where a route requires them;
        defaults to an :class:`~dpop_guard.nonce.HMACNonceSource` on
        ``settings.nonce_secret``.
    :param metrics: receives a :class:`~dpop_guard.metrics.Decision` per protected request
        (e.g. :class:`~dpop_guard.prometheus.PrometheusMetrics`).
    :param clock: wall-clock seconds, read once per request.
    :param certificate_source: where the client's TLS certificate comes from
        (:mod:`dpop_guard.mtls`), for certificate-bound tokens (RFC 8705). Required when a
        route's ``sender_constraint`` is ``mtls`` or ``either``. When set, it is read on
        every protected request, and a token bound to a certificate must come with it.
    :param serve_metadata: answer the RFC 9728 document (``settings.metadata``) itself;
        ``False`` where this middleware does not answer the client (the forward-auth
        server), so the document's path is routed like any other and the challenges still
        name its URL.
    :param close_websockets_at_expiry: close an accepted websocket (code 1008) when its
        token expires (:mod:`dpop_guard._websocket`); otherwise the app must.
    :raises ValueError: a route accepts mTLS but no ``certificate_source`` is given.

    For example::

        app = DPoPGuardMiddleware(app, settings=GuardSettings(routes=(
            Route("/health", public=True), Route("/accounts", scopes=("read:accounts",)))),
            introspector=CachingIntrospector(AuthleteIntrospector(client, authlete)))
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
        certificate_source: ClientCertificateSource | None = None,
        close_websockets_at_expiry: bool = False,
        serve_metadata: bool = True,
    ) -> None:
        self.app = app
        self.settings = settings = settings or GuardSettings()
        self.introspector = introspector
        # The declared seam for memory hits (no MRO sniffing): see SyncTokenLookup.
        self._lookup = introspector if isinstance(introspector, SyncTokenLookup) else None
        self.replay_store = default_replay_store(settings, replay_store)
        self.replay_guard = ReplayGuard(self.replay_store, fleet_skew=settings.replay_fleet_skew)
        self._record_sync = self.replay_guard.record_sync if self.replay_guard.is_sync else None
        self.nonce_source = default_nonce_source(settings, nonce_source)
        self.metrics = metrics
        self.decisions = DecisionLog(metrics)
        self.verifier = ProofVerifier(settings.policy)
        self._clock = clock
        self._dates = DateHeader(clock) if settings.date_header else None
        self._networks = parse_networks(settings.trusted_proxies)
        self.certificate_source = certificate_source
        self._close_at_expiry = close_websockets_at_expiry
        mtls_routes = settings.certificate_routes
        if mtls_routes and certificate_source is None:
            raise ValueError(
                "routes accept certificate-bound tokens but no certificate_source is "
                f"configured: {', '.join(mtls_routes)}"
            )
        self._policies = Policies(settings)
        self._metadata = (
            metadata_endpoint(settings, mtls=bool(mtls_routes)) if serve_metadata else None
        )
        self._allow_unbound = settings.allow_unbound_tokens
        self._shapes = RequestShapes(
            settings.routes,
            self._policies,
            public_url=settings.public_url,
            serves_metadata=None if self._metadata is None else self._metadata.serves,
        )
        self._authorizations = Authorizations(settings.max_token_bytes)
        meta = settings.metadata
        self._challenge_params = {} if meta is None else {"resource_metadata": meta.url}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" or kind == "websocket":
            handed = await self._authenticate(scope, receive, send)
            if handed is None:
                return  # answered here: a refusal, or the metadata document
            receive, send = handed
        elif kind != "lifespan":
            # A scope type this guard does not know could carry anything: never pass it.
            logger.warning("dpop_guard: refusing an ASGI scope of type %r", kind)
            return
        # Handed on from this frame, which holds only scope, receive and send.
        await self.app(scope, receive, send)

    async def _authenticate(self, scope: Scope, receive: Receive, send: Send) -> Handed | None:
        """The request's story: what to hand the app (``receive`` and ``send``, wrapped
        where needed), or ``None`` when the guard answered itself."""
        websocket = scope["type"] == "websocket"
        method: str = "GET" if websocket else scope["method"]
        authorization, authorizations, dpop, proofs, sent_id = read_headers(scope["headers"])
        interaction, send = stamp_responses(send, sent_id, self._dates, websocket)
        listening = self.metrics is not None or logger.isEnabledFor(logging.INFO)
        # The clock is read only for a listener: nobody reads the start time of NO_TRACE.
        trace = Trace(interaction, perf_counter(), scope) if listening else NO_TRACE
        try:
            state = scope.get("state")  # uvicorn and hypercorn send one
            if state is None:
                state = scope["state"] = {}
            # (A state that is not a mapping is a server's bug: 503, like any other.)
            state["fapi_interaction_id"] = interaction
            shape = self._shapes.shape(scope, method, websocket)  # 400 on a bad request line
            policy = shape.policy
            if policy is None:
                return await self._unprotected(shape, receive, send, method)
            header = self._authorizations.header(authorization, authorizations)
            # Before the proof: a malformed certificate header (a proxy bug) is a 400
            # whatever else the request holds.
            certificate = None if self.certificate_source is None else self._certificate(scope)
            htu = shape.htu or self._target_url(scope, shape)
            now = int(self._clock())
            next_nonce: str | None = None
            if header.scheme == "Bearer":
                check_bearer(proofs > 0, policy, certificate, self._allow_unbound)
                facts = facts_for(method, htu, None, None, shape, certificate)
                info = await trace.introspect(self.introspector, header.token, facts)
                check_binding(info, policy, None, certificate, self._allow_unbound)
            else:
                # Verify locally; record the jti before any lookup (a replayed proof
                # never costs an introspection); a memory hit needs no coroutine.
                raw = dpop if proofs == 1 else select_proof([dpop] * proofs)
                nonces = self.nonce_source if policy.nonce else None
                proof = trace.verify(self.verifier, raw, method, htu, header.token, now, nonces)
                if self._record_sync is not None:
                    self._record_sync(proof, now)
                else:
                    await self.replay_guard.record(proof, now=now)
                hit = None if self._lookup is None else trace.look_up(self._lookup, header.token)
                if hit is not None:
                    info = hit
                else:
                    # The proof's own htu: it matched the request URL locally.
                    proof_text = raw.decode("ascii")
                    facts = facts_for(method, proof.htu, proof_text, proof.jkt, shape, certificate)
                    info = await trace.introspect(self.introspector, header.token, facts)
                    next_nonce = facts.lookup.dpop_nonce  # the authorization server's
                check_binding(info, policy, proof.jkt, certificate, self._allow_unbound)
                if nonces is not None:
                    next_nonce = proof.next_nonce  # our own nonces: only ours is relayed
            credentials = credentials_for(
                info,
                now,
                policy.scopes,
                header.scheme,
                interaction,
                policy.acr_values,
                policy.max_age,
            )
            scope["auth"] = credentials
            scope["user"] = DPoPUser(credentials)
            trace.accepted(self.decisions)
        except DPoPGuardError as exc:
            schemes = self._policies.schemes(route_path(scope), method)
            await self._reject(exc, scope, receive, send, trace, schemes)
            return None
        except Exception as exc:
            # A bug or an unexpected dependency failure: fail closed. Logged without locals
            # and messages, which may hold the token or the proof.
            log_unexpected(exc)
            await self._reject(ServiceUnavailable("internal_error"), scope, receive, send, trace)
            return None
        if next_nonce is None and not websocket:
            return receive, send  # the common case: nothing to wrap
        return self._hand_on(receive, send, websocket, next_nonce, info.expires_at)

    async def _unprotected(
        self, shape: Shape, receive: Receive, send: Send, method: str
    ) -> Handed | None:
        """A public path is handed on untouched; the RFC 9728 document is answered."""
        if shape.kind == "public":
            return receive, send
        assert self._metadata is not None  # a metadata shape needs the document
        await self._metadata(send, method)
        return None

    def _hand_on(
        self,
        receive: Receive,
        send: Send,
        websocket: bool,
        next_nonce: str | None,
        expires_at: int | None,
    ) -> Handed:
        """``receive`` and ``send`` for the app: ``DPoP-Nonce`` on the response head when
        there is a next nonce, and a websocket closed at its token's expiry if asked."""
        if next_nonce is not None:
            send = with_nonce(send, next_nonce, websocket)
        if websocket and self._close_at_expiry and expires_at is not None:
            return close_at_expiry(receive, send, expires_at, self._clock)
        return receive, send

    def _target_url(self, scope: Scope, shape: Shape) -> str:
        """``htu`` from ``Host`` and the trusted proxies' headers (no public URL)."""
        return target_url(
            scope,
            public_url=self.settings.public_url,
            networks=self._networks,
            proxy_headers=self.settings.proxy_headers,
            target=shape.target,
        )

    def _certificate(self, scope: Scope) -> ClientCertificate | None:
        """The client certificate of this request, or ``None`` (no source, or none sent).

        :raises InvalidRequest: ``client_cert_malformed`` from the source.
        """
        source = self.certificate_source
        if source is None:
            return None
        return source.certificate(scope, trusted_peer=peer_is_trusted(scope, self._networks))

    async def _reject(
        self,
        exc: DPoPGuardError,
        scope: Scope,
        receive: Receive,
        send: Send,
        trace: Trace,
        schemes: Sequence[str] = (DPOP_SCHEME,),
    ) -> None:
        response = challenge_for(
            exc,
            algs=self.settings.policy.algorithms,
            realm=self.settings.realm,
            extra_params=self._challenge_params,
            schemes=schemes,
        )
        self.decisions.observe("rejected", exc.reason, response.status, trace, response)
        if scope["type"] == "websocket":
            await refuse_websocket(response, scope, receive, send)
        else:
            await send_response(response, send, "http.response")
