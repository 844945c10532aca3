"""The ASGI middleware: a thin shell around the pure verifier and the I/O seams.

Every scope type is handled on purpose: ``lifespan`` passes, ``http`` and ``websocket``
are authenticated, anything else is refused. Per protected request, in order:
``Authorization`` -> exactly one ``DPoP`` header -> the target URL -> local proof
verification -> ``jti`` record (so a replay never costs an introspection) ->
introspection (cached) -> binding (:func:`~dpop_guard._binding.check_binding`: proof key == token
key, client certificate == token certificate, the route's sender constraint) -> expiry,
scopes and step-up (``acr``/``auth_time``), checked locally. The first failure becomes one
response through :func:`~dpop_guard.challenges.challenge_for`. The body is never read, so
streaming stays intact.

A websocket handshake is authenticated like the HTTP ``GET`` it is: ``htm`` is ``GET``
and ``htu`` the ``http``/``https`` form of the ``ws``/``wss`` URL. A refused handshake is
answered with the HTTP error response where the server offers the
``websocket.http.response`` extension, and otherwise closed before ``accept`` (the
server then answers 403).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from logging import DEBUG
from time import perf_counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._binding import Policy, check_binding, policy_for
from ._decision import DecisionLog, Trace, log_unexpected
from ._defaults import default_nonce_source, default_replay_store
from ._fapi import INTERACTION_ID, DateHeader, stamp_responses
from ._memo import Authorizations, RequestShapes, Shape
from ._proxy import parse_networks
from ._respond import refuse_websocket, send_response
from ._target import target_url
from .challenges import DPOP_SCHEME, challenge_for
from .credentials import DPoPCredentials, DPoPUser, credentials_for
from .errors import (
    DPoPGuardError,
    InvalidRequest,
    InvalidToken,
    ServiceUnavailable,
)
from .introspection import InactiveToken, Introspector, RequestFacts, TokenInfo
from .metadata import metadata_endpoint
from .metrics import Metrics
from .mtls import ClientCertificate, ClientCertificateSource, peer_is_trusted
from .nonce import NonceSource
from .proof import ProofVerifier, VerifiedProof, select_proof
from .replay import ReplayStore
from .replay._guard import ReplayGuard
from .routes import Route, route_for, route_path
from .settings import GuardSettings

__all__ = ["DPoPCredentials", "DPoPGuardMiddleware", "DPoPUser"]

logger = logging.getLogger("dpop_guard")

_INTERACTION_ID = INTERACTION_ID.encode()
_new_object = object.__new__


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


def _with_nonce(send: Send, next_nonce: str, websocket: bool) -> Send:
    """``send`` with ``DPoP-Nonce: next_nonce`` on the response head (the body streams
    through untouched)."""
    start = "websocket.accept" if websocket else "http.response.start"
    nonce = next_nonce.encode("ascii")

    async def send_with_nonce(message: Message) -> None:
        if message["type"] == start:
            # A websocket accept may carry no headers list at all.
            message["headers"] = [*message.get("headers", ()), (b"dpop-nonce", nonce)]
        await send(message)

    return send_with_nonce


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
    :param certificate_source: where the client's TLS certificate comes from
        (:mod:`dpop_guard.mtls`), for certificate-bound tokens (RFC 8705). Required when a
        route's ``sender_constraint`` is ``mtls`` or ``either``. When set, it is read on
        every protected request, and a token bound to a certificate must come with it.
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
    ) -> None:
        self.app = app
        self.settings = settings = settings or GuardSettings()
        self.introspector = introspector
        self._cached_sync = _sync_lookup(introspector)
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
        mtls_routes = [r.pattern for r in settings.routes if r.sender_constraint != "dpop"]
        if mtls_routes and certificate_source is None:
            raise ValueError(
                "routes accept certificate-bound tokens but no certificate_source is "
                f"configured: {', '.join(mtls_routes)}"
            )
        # One precomputed policy per rule (keyed by identity: rules are frozen and held by
        # the settings), and one for paths no rule matches.
        self._policies = {id(r): policy_for(r, settings) for r in settings.routes}
        self._default_policy = policy_for(None, settings)
        self._metadata = metadata_endpoint(settings, mtls=bool(mtls_routes))
        self._allow_unbound = settings.allow_unbound_tokens
        self._shapes = RequestShapes(
            settings.routes,
            self._policy_for,
            public_url=settings.public_url,
            serves_metadata=None if self._metadata is None else self._metadata.serves,
        )
        self._authorizations = Authorizations(settings.max_token_bytes)
        meta = settings.metadata
        self._challenge_params = {} if meta is None else {"resource_metadata": meta.url}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            if kind == "lifespan":
                await self.app(scope, receive, send)
                return
            # A scope type this guard does not know could carry anything: never pass it.
            logger.warning("dpop_guard: refusing an ASGI scope of type %r", kind)
            return
        # One pass over the headers (the only one: ASGI allows them to be any iterable)
        # for everything the guard reads from them: a value of each, and how many of
        # Authorization and DPoP came (none or several is refused, whatever the values:
        # no lists per request, about 600 instructions fewer).
        sent_id: bytes | None = None
        authorization = dpop = b""  # read only when exactly one came
        authorizations = proofs = 0
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
                authorizations += 1
            elif name == b"dpop":
                dpop = value
                proofs += 1
            elif name == _INTERACTION_ID and sent_id is None:
                sent_id = value
        websocket = kind == "websocket"
        interaction, send = stamp_responses(send, sent_id, self._dates, websocket)
        method: str = "GET" if websocket else scope["method"]
        # What a request cost, for logs and metrics: built up front only when someone
        # listens to accepted requests (otherwise on a miss or a refusal, when needed).
        listening = self.metrics is not None or logger.isEnabledFor(DEBUG)
        trace = Trace(interaction) if listening else None
        started = perf_counter() if trace is None else trace.started
        cache_hit = False
        try:
            # uvicorn and hypercorn send a state dict: none to build then. (A state that
            # is not a mapping is a server's bug: 503, like any other, not a traceback.)
            state = scope.get("state")
            if state is None:
                state = scope["state"] = {}
            state["fapi_interaction_id"] = interaction
            # The memo's key (RequestShapes.key_of) built here: a hit is a lookup in C.
            shape = self._shapes[
                (
                    scope["path"],
                    scope.get("root_path", ""),
                    method,
                    scope.get("raw_path"),
                    websocket,
                )
            ]  # 400 on a bad request line
            if shape.policy is not None:
                # The protected path, inline: one coroutine per request, and an await only
                # where a store or the introspector really does I/O (the shell pass in
                # benchmarks/README.md says what each step of this shape saved).
                policy = shape.policy
                header = (
                    self._authorizations[authorization]  # the memo: a lookup in C
                    if authorizations == 1
                    # None or several: refused by their number alone.
                    else self._authorizations.parse([authorization] * authorizations)
                )
                # Before the proof: a malformed certificate header (a proxy bug) is a 400
                # whatever else the request holds.
                certificate = None if self.certificate_source is None else self._certificate(scope)
                htu = shape.htu or self._target_url(scope, shape)
                now = int(self._clock())
                if header.scheme == "Bearer":
                    trace = trace or Trace(interaction, started)
                    info = await self._bearer(
                        header.token, proofs > 0, method, htu, shape, certificate, trace
                    )
                    jkt = next_nonce = None
                else:
                    # The header's octets go to the verifier as they are (text only on
                    # a miss, for the introspector: two copies of the proof fewer).
                    # None or several: refused by their number alone.
                    raw = dpop if proofs == 1 else select_proof([dpop] * proofs)
                    nonces = self.nonce_source if policy.nonce else None
                    timed = trace is not None and self.metrics is not None  # for metrics only
                    if not timed:
                        proof = self.verifier.verify(
                            raw,
                            method=method,
                            url=htu,
                            access_token=header.token,
                            now=now,
                            nonces=nonces,
                        )
                    else:
                        assert trace is not None
                        proof = self._timed_verify(
                            raw, method, htu, header.token, now, nonces, trace
                        )
                    # Before introspection: a replayed proof must never cost an Authlete call.
                    if self._record_sync is not None:
                        self._record_sync(proof, now)  # the memory store: no coroutine
                    else:
                        await self.replay_guard.record(proof, now=now)
                    # A memory hit is answered without a coroutine and without building the
                    # request facts; every check below runs on a hit exactly as on a miss.
                    hit = None
                    if self._cached_sync is not None:
                        looked_up = perf_counter() if timed else 0.0
                        try:
                            hit = self._cached_sync(header.token)
                        except InactiveToken:
                            cache_hit = True  # a remembered dead token
                            if trace is not None:
                                trace.lookup.cache_hit = True
                            raise
                    if hit is not None:
                        info = hit
                        cache_hit = True
                        if trace is not None:
                            trace.lookup.cache_hit = True
                            if timed:
                                trace.introspection_seconds = perf_counter() - looked_up
                        next_nonce = None  # an authorization server's nonce comes on a miss
                    else:
                        trace = trace or Trace(interaction, started)
                        # Send the proof's own htu: it already matched the request URL
                        # locally, and it spares the server a second, possibly different,
                        # normalisation.
                        facts = self._facts(
                            method,
                            proof.htu,
                            raw.decode("ascii"),
                            proof.jkt,
                            shape,
                            trace,
                            certificate,
                        )
                        info = await self._introspect(header.token, facts, trace)
                        next_nonce = trace.lookup.dpop_nonce
                    check_binding(info, policy, proof.jkt, certificate, self._allow_unbound)
                    # Only a binding that holds: the proof key when the token is bound to it
                    # (then equal, check_binding checked), None for an unbound token under
                    # the DPoP scheme.
                    jkt = info.jkt
                    # Nonce precedence: where this route requires our own (HMAC) nonces,
                    # they checked the proof, on a hit as on a miss, and only ours is
                    # relayed; otherwise the authorization server's (Authlete's dpopNonce,
                    # from a miss) is.
                    if nonces is not None:
                        next_nonce = proof.next_nonce
                credentials = credentials_for(  # by position: see credentials_for
                    info,
                    now,
                    policy.scopes,
                    jkt,
                    header.scheme,
                    interaction,
                    policy.acr_values,
                    policy.max_age,
                )
                scope["auth"] = credentials
                # DPoPUser(credentials) without the call of its __init__, which only sets
                # this one slot (tests/test_credentials.py): about 430 instructions fewer.
                user = _new_object(DPoPUser)
                user.credentials = credentials
                scope["user"] = user
                if trace is not None:
                    self.decisions.observe("accepted", None, None, trace)
        except DPoPGuardError as exc:
            trace = self._trace_of_refusal(trace, interaction, started, cache_hit)
            await self._reject(exc, scope, receive, send, trace, self._schemes(scope, method))
            return
        except Exception as exc:
            # A bug or an unexpected dependency failure: fail closed. Logged without locals
            # and messages, which may hold the token or the proof.
            log_unexpected(exc)
            trace = self._trace_of_refusal(trace, interaction, started, cache_hit)
            await self._reject(ServiceUnavailable("internal_error"), scope, receive, send, trace)
            return
        if shape.policy is None:
            if shape.kind == "metadata":
                assert self._metadata is not None  # a metadata shape needs the document
                await self._metadata(send, method)
            else:
                await self.app(scope, receive, send)
            return
        if next_nonce is None:
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, _with_nonce(send, next_nonce, websocket))

    async def _bearer(
        self,
        token: str,
        dpop: bool,
        method: str,
        htu: str,
        shape: Shape,
        certificate: ClientCertificate | None,
        trace: Trace,
    ) -> TokenInfo:
        """The ``Bearer`` scheme: only a certificate-bound token may ride on it (where the
        route accepts mTLS), or any token where unbound tokens are allowed.

        :param dpop: whether the request carries a ``DPoP`` header.
        """
        if dpop:
            raise InvalidRequest(
                "bearer_with_dpop_proof", "A DPoP proof requires the DPoP authorization scheme."
            )
        assert shape.policy is not None
        unbound = self._allow_unbound
        if not shape.policy.bearer and not unbound:
            raise InvalidToken("bearer_scheme_refused", "A DPoP-bound access token is required.")
        if certificate is None and not unbound:
            # Only a certificate-bound token may ride on Bearer here: without a certificate
            # none can pass, so no introspection is spent on it.
            raise InvalidToken(
                "certificate_missing", "The access token requires a client certificate."
            )
        facts = self._facts(method, htu, None, None, shape, trace, certificate)
        info = await self._introspect(token, facts, trace)
        check_binding(info, shape.policy, None, certificate, unbound)
        return info

    def _timed_verify(
        self,
        raw: bytes,
        method: str,
        htu: str,
        token: str,
        now: int,
        nonces: NonceSource | None,
        trace: Trace,
    ) -> VerifiedProof:
        """The proof's verification, timed for the metrics."""
        started = perf_counter()
        try:
            return self.verifier.verify(
                raw, method=method, url=htu, access_token=token, now=now, nonces=nonces
            )
        finally:
            trace.verification_seconds = perf_counter() - started

    def _target_url(self, scope: Scope, shape: Shape) -> str:
        """``htu`` from ``Host`` and the trusted proxies' headers (no public URL)."""
        return target_url(
            scope,
            public_url=self.settings.public_url,
            networks=self._networks,
            proxy_headers=self.settings.proxy_headers,
            target=shape.target,
        )

    @staticmethod
    def _trace_of_refusal(
        trace: Trace | None, interaction: str, started: float, cache_hit: bool
    ) -> Trace:
        """The refusal's trace: the request's own, or one made now (no listener asked for
        it up front), with what the request got to (a cache hit)."""
        if trace is None:
            trace = Trace(interaction, started)
            if cache_hit:
                trace.lookup.cache_hit = True
        return trace

    def _policy_for(self, route: Route | None) -> Policy:
        """The precomputed policy of ``route`` (``None``: no rule matched)."""
        if route is None:
            return self._default_policy
        return self._policies.get(id(route)) or policy_for(route, self.settings)

    def _schemes(self, scope: Scope, method: str) -> tuple[str, ...]:
        """The challenge schemes for a refused request (on the refusal path only, so the
        route is matched again rather than carried through the hot path)."""
        route = route_for(self.settings.routes, route_path(scope), method)
        if route is None or route.public:
            return self._default_policy.schemes
        return self._policy_for(route).schemes

    def _certificate(self, scope: Scope) -> ClientCertificate | None:
        """The client certificate of this request, or ``None`` (no source, or none sent).

        :raises InvalidRequest: ``client_cert_malformed`` from the source.
        """
        source = self.certificate_source
        if source is None:
            return None
        return source.certificate(scope, trusted_peer=peer_is_trusted(scope, self._networks))

    @staticmethod
    def _facts(
        method: str,
        htu: str,
        proof: str | None,
        jkt: str | None,
        shape: Shape,
        trace: Trace,
        certificate: ClientCertificate | None,
    ) -> RequestFacts:
        policy = shape.policy
        assert policy is not None
        return RequestFacts(
            method=method,
            htu=htu,
            proof=proof,
            jkt=jkt,
            scopes=policy.scopes,
            path=shape.path,
            lookup=trace.lookup,
            client_certificate=certificate,
            acr_values=policy.acr_values,
            max_age=policy.max_age,
        )

    async def _introspect(self, token: str, facts: RequestFacts, trace: Trace) -> TokenInfo:
        started = perf_counter()
        try:
            return await self.introspector.introspect(token, request=facts)
        finally:
            trace.introspection_seconds = perf_counter() - started

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
        self.decisions.observe("rejected", exc.reason, response.status, trace)
        if scope["type"] == "websocket":
            await refuse_websocket(response, scope, receive, send)
        else:
            await send_response(response, send, "http.response")
