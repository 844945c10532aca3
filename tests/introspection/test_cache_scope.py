"""Two APIs sharing one real Redis never serve each other's tokens (issue 19 section 1).

Each API has its own audience (RFC 8707 resources, ``aud``) and its own caching
introspector with the same Redis as shared level, in every mode: Authlete V2 and V3 and
Authlete's RFC 7662 API (the simulator, over real HTTP), a standard RFC 7662 server, and
RFC 9068 JWTs. A token issued for one API, used there first (so its facts sit in the
shared Redis), is refused by the other with the audience refusal its own miss would give,
in both directions; so is a token of another Authlete service. The rule behind it: every
shared key lives under the configuration's namespace (:class:`CacheScope`), and the
audience is checked again on every answer that comes from memory or Redis.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from joserfc import jwk as jose_jwk
from joserfc import jwt as jose_jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route as HTTPRoute
from starlette.types import Receive, Scope, Send

from dpop_guard import CachingIntrospector, DPoPGuardMiddleware, GuardSettings, ProofSigner, Route
from dpop_guard.devtools.simulator import (
    DEFAULT_API_SECRET,
    DEFAULT_SERVICE_ID,
    DEFAULT_SERVICE_TOKEN,
    SimulatorState,
    create_simulator_app,
)
from dpop_guard.introspection import (
    Audience,
    InactiveToken,
    Introspector,
    ScopedIntrospector,
    TokenInfo,
)
from dpop_guard.introspection.authlete import AuthleteIntrospector, AuthleteSettings
from dpop_guard.introspection.jwt import JWTAccessTokenSettings, JWTAccessTokenValidator
from dpop_guard.introspection.redis_cache import RedisTokenCache
from dpop_guard.introspection.rfc7662 import (
    AuthleteStandardIntrospector,
    RFC7662Introspector,
    RFC7662Settings,
)
from dpop_guard.replay import MemoryReplayStore
from dpop_guard.testing import make_proof
from tests._support.harness import assert_rejected
from tests._support.servers import ServerThread

A = "https://a.api.test"
B = "https://b.api.test"
OTHER = {A: B, B: A}
SECRET = "fleet-secret-for-tests-0123456789abcdef"
ISSUER = "https://as.test"


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"subject": request.auth.subject})


@dataclass
class API:
    """One guarded API: its origin, its cache, and a client into it."""

    origin: str
    cache: CachingIntrospector
    client: httpx.AsyncClient

    async def call(self, token: str, signer: ProofSigner) -> httpx.Response:
        proof = make_proof(signer, htu=self.origin + "/x", access_token=token)
        return await self.client.get(
            "/x", headers={"Authorization": f"DPoP {token}", "DPoP": proof}
        )


@pytest.fixture(name="http")
async def _http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


@pytest.fixture(name="make_api")
async def _make_api(redis_url: str) -> AsyncIterator[Callable[[str, Introspector], API]]:
    made: list[API] = []

    def make(origin: str, inner: Introspector) -> API:
        cache = CachingIntrospector(
            inner, ttl=60, shared=RedisTokenCache.from_url(redis_url, secret=SECRET)
        )
        app = DPoPGuardMiddleware(
            Starlette(routes=[HTTPRoute("/x", echo)]),
            settings=GuardSettings(routes=(Route("/x", scopes=("s",)),), public_url=origin),
            introspector=cache,
            replay_store=MemoryReplayStore(epoch=int(time.time()) - 3600),
        )
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=origin)
        made.append(API(origin, cache, client))
        return made[-1]

    yield make
    for api in made:
        await api.client.aclose()
        assert api.cache.shared is not None
        await api.cache.shared.aclose()  # type: ignore[attr-defined]


# -- the modes ------------------------------------------------------------------------


class RFC7662Server:
    """A standard RFC 7662 endpoint (ASGI, reached through httpx) answering from a table
    of tokens, each with its ``aud``; it counts the calls."""

    def __init__(self) -> None:
        self.tokens: dict[str, dict[str, Any]] = {}
        self.calls = 0
        app = Starlette(routes=[HTTPRoute("/introspect", self.introspect, methods=["POST"])])
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))

    async def introspect(self, request: Request) -> JSONResponse:
        self.calls += 1
        token = parse_qs((await request.body()).decode()).get("token", [""])[0]
        return JSONResponse(self.tokens.get(token, {"active": False}))

    def token(self, aud: str, jkt: str) -> str:
        token = f"opaque-{len(self.tokens)}"
        exp = int(time.time()) + 600
        self.tokens[token] = {"active": True, "scope": "s", "aud": aud, "exp": exp}
        self.tokens[token]["cnf"] = {"jkt": jkt}
        return token

    def introspector(self, origin: str) -> RFC7662Introspector:
        settings = RFC7662Settings(
            url=ISSUER + "/introspect", client_id="rs", client_secret="x", resources=(origin,)
        )
        return RFC7662Introspector(self.http, settings)


class JWTIssuer:
    """Signs RFC 9068 access tokens; its JWKS is served over MockTransport."""

    def __init__(self) -> None:
        self.key = jose_jwk.ECKey.generate_key("P-256", parameters={"kid": "k1"})
        public = self.key.as_dict(private=False)
        self.http = httpx.AsyncClient(
            transport=httpx.MockTransport(lambda r: httpx.Response(200, json={"keys": [public]}))
        )

    def token(self, aud: str, jkt: str) -> str:
        now = int(time.time())
        payload = {"iss": ISSUER, "exp": now + 300, "sub": "alice", "scope": "s", "aud": aud}
        payload["cnf"] = {"jkt": jkt}
        header = {"alg": "ES256", "typ": "at+jwt", "kid": "k1"}
        return jose_jwt.encode(header, payload, self.key, algorithms=["ES256"])

    def introspector(self, origin: str) -> JWTAccessTokenValidator:
        settings = JWTAccessTokenSettings(
            issuer=ISSUER, jwks_uri=ISSUER + "/jwks", resources=(origin,)
        )
        return JWTAccessTokenValidator(self.http, settings)


def authlete_settings(base_url: str, version: str, origin: str) -> AuthleteSettings:
    if version == "V2":
        return AuthleteSettings(
            base_url=base_url,
            api_version="V2",
            api_key=DEFAULT_SERVICE_ID,
            api_secret=DEFAULT_API_SECRET,
            resources=(origin,),
        )
    return AuthleteSettings(
        base_url=base_url,
        api_version="V3",
        api_key=DEFAULT_SERVICE_ID,
        access_token=DEFAULT_SERVICE_TOKEN,
        resources=(origin,),
    )


@dataclass
class Mode:
    """How to make a token for one API, an introspector for an API, and count calls."""

    token: Callable[[str, str], str]
    introspector: Callable[[str], Introspector]
    calls: Callable[[], int]
    reason: str  # the refusal of a token for another API, on a miss


@pytest.fixture(name="modes")
async def _modes(simulator: SimulatorState, simulator_url: str) -> AsyncIterator[dict[str, Mode]]:
    http = httpx.AsyncClient()
    rfc7662, jwt = RFC7662Server(), JWTIssuer()

    def authlete_token(aud: str, jkt: str) -> str:
        return simulator.create_token(subject="alice", scopes=["s"], jkt=jkt, resources=[aud])

    def authlete_calls() -> int:
        return sum(simulator.calls.values())

    yield {
        "authlete-v2": Mode(
            authlete_token,
            lambda o: AuthleteIntrospector(http, authlete_settings(simulator_url, "V2", o)),
            authlete_calls,
            "authlete_resource_mismatch",
        ),
        "authlete-v3": Mode(
            authlete_token,
            lambda o: AuthleteIntrospector(http, authlete_settings(simulator_url, "V3", o)),
            authlete_calls,
            "authlete_resource_mismatch",
        ),
        "authlete-standard": Mode(
            authlete_token,
            lambda o: AuthleteStandardIntrospector(http, authlete_settings(simulator_url, "V3", o)),
            authlete_calls,
            "introspection_audience",
        ),
        "rfc7662": Mode(
            rfc7662.token, rfc7662.introspector, lambda: rfc7662.calls, "introspection_audience"
        ),
        "jwt": Mode(jwt.token, jwt.introspector, lambda: 0, "jwt_audience"),
    }
    await http.aclose()
    await rfc7662.http.aclose()
    await jwt.http.aclose()


# The modes a shared Redis level serves. JWT mode has none: its answers rest on keys a
# JWKS refresh can withdraw, which the fleet's level would not hear of
# (test_jwt_validator_refuses_a_shared_level).
MODES = ["authlete-v2", "authlete-v3", "authlete-standard", "rfc7662"]


async def test_jwt_validator_refuses_a_shared_level(modes: dict[str, Mode], redis_url: str) -> None:
    """Built in code as from_env refuses it from the environment: a JWT validator behind a
    cache with a shared level is refused when the cache is made."""
    shared = RedisTokenCache.from_url(redis_url, secret=SECRET)
    with pytest.raises(ValueError, match="shared cache level"):
        CachingIntrospector(modes["jwt"].introspector(A), ttl=60, shared=shared)
    await shared.aclose()


class TestTwoAPIsOneRedis:
    @pytest.mark.parametrize("mode", MODES)
    @pytest.mark.parametrize("first", [A, B])
    async def test_token_cached_by_one_api_is_refused_by_the_other(
        self,
        modes: dict[str, Mode],
        make_api: Callable[[str, Introspector], API],
        signer: ProofSigner,
        reasons: list[str],
        mode: str,
        first: str,
    ) -> None:
        """A token for one API, used there (its facts now in the shared Redis), is
        refused by the other API with 401 invalid_token and its own audience reason,
        and stays valid where it belongs."""
        m = modes[mode]
        apis = {origin: make_api(origin, m.introspector(origin)) for origin in (A, B)}
        owner, other = apis[first], apis[OTHER[first]]
        token = m.token(first, signer.jkt)
        assert (await owner.call(token, signer)).status_code == 200
        response = await other.call(token, signer)
        assert_rejected(response, 401, "invalid_token", m.reason, reasons)
        assert other.cache.shared_hits == 0
        assert (await owner.call(token, signer)).status_code == 200

    @pytest.mark.parametrize("mode", MODES)
    async def test_same_configuration_still_shares(
        self,
        modes: dict[str, Mode],
        make_api: Callable[[str, Introspector], API],
        signer: ProofSigner,
        mode: str,
    ) -> None:
        """Two instances of one API (one configuration) share entries: the second
        instance's first use of a token costs no upstream call."""
        m = modes[mode]
        first, second = make_api(A, m.introspector(A)), make_api(A, m.introspector(A))
        token = m.token(A, signer.jkt)
        assert (await first.call(token, signer)).status_code == 200
        calls = m.calls()
        assert (await second.call(token, signer)).status_code == 200
        assert second.cache.shared_hits == 1 and m.calls() == calls

    async def test_entry_naming_another_api_is_refused_on_a_shared_hit(
        self,
        simulator: SimulatorState,
        simulator_url: str,
        make_api: Callable[[str, Introspector], API],
        signer: ProofSigner,
        reasons: list[str],
        http: httpx.AsyncClient,
    ) -> None:
        """An entry in this API's own namespace, validly signed, whose facts name another
        API's resources (another writer's answer) is refused on the hit with this API's
        audience reason, without an upstream call: the audience is checked on every hit,
        not only on a miss."""
        b = make_api(B, AuthleteIntrospector(http, authlete_settings(simulator_url, "V3", B)))
        token = simulator.create_token(subject="alice", scopes=["s"], jkt=signer.jkt)
        facts = TokenInfo(
            subject="alice",
            client_id="1",
            scopes=frozenset({"s"}),
            expires_at=int(time.time()) + 600,
            jkt=signer.jkt,
            resources=(A,),
        )
        assert b.cache.scope is not None and b.cache.shared is not None
        key = b.cache.scope.namespace + hashlib.sha256(token.encode()).digest()
        await b.cache.shared.set(key, facts, time.time() + 60, 60)
        simulator.reset_counters()
        response = await b.call(token, signer)
        assert_rejected(response, 401, "invalid_token", "authlete_resource_mismatch", reasons)
        assert sum(simulator.calls.values()) == 0


# -- two Authlete services behind one base URL ----------------------------------------

SERVICES = ("1111", "2222")


class ByService:
    """Two simulated Authlete services behind one base URL, told apart by the V3 path's
    service id (``/api/{service_id}/...``), as one Authlete cluster serves many."""

    def __init__(self, states: dict[str, SimulatorState]) -> None:
        self.apps = {sid: create_simulator_app(state) for sid, state in states.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            first = next(iter(self.apps.values()))
            await first(scope, receive, send)
            return
        parts = scope["path"].split("/")
        app = self.apps.get(parts[2] if len(parts) > 2 else "", next(iter(self.apps.values())))
        await app(scope, receive, send)


@pytest.fixture(scope="module", name="services")
def _services() -> Iterator[tuple[str, dict[str, SimulatorState]]]:
    states = {
        sid: SimulatorState(service_id=sid, service_token=f"service-token-{sid}")
        for sid in SERVICES
    }
    with ServerThread(ByService(states)) as server:
        yield server.url, states


@pytest.mark.e2e
@pytest.mark.parametrize("first", SERVICES)
async def test_two_authlete_services_one_redis(
    services: tuple[str, dict[str, SimulatorState]],
    make_api: Callable[[str, Introspector], API],
    signer: ProofSigner,
    reasons: list[str],
    http: httpx.AsyncClient,
    first: str,
) -> None:
    """Two APIs with the same base URL, API version and resources but different Authlete
    services: a token of one service, cached by its API, is unknown to the other service,
    and the other API says so (401, ``authlete_unauthorized``), in both directions."""
    base_url, states = services

    def api(sid: str) -> API:
        settings = AuthleteSettings(
            base_url=base_url,
            api_version="V3",
            api_key=sid,
            access_token=f"service-token-{sid}",
            resources=(A,),
        )
        return make_api(A, AuthleteIntrospector(http, settings))

    apis = {sid: api(sid) for sid in SERVICES}
    second = SERVICES[1] if first == SERVICES[0] else SERVICES[0]
    token = states[first].create_token(subject="alice", scopes=["s"], jkt=signer.jkt)
    assert (await apis[first].call(token, signer)).status_code == 200
    response = await apis[second].call(token, signer)
    assert_rejected(response, 401, "invalid_token", "authlete_unauthorized", reasons)
    assert apis[second].cache.shared_hits == 0


# -- the namespace itself -------------------------------------------------------------


def _authlete(**changes: Any) -> ScopedIntrospector:
    values: dict[str, Any] = {
        "base_url": "https://authlete.test",
        "api_version": "V3",
        "api_key": "1111",
        "access_token": "token-one",
        "resources": (A,),
    } | changes
    return AuthleteIntrospector(httpx.AsyncClient(), AuthleteSettings(**values))


def _rfc7662(**changes: Any) -> ScopedIntrospector:
    values: dict[str, Any] = {
        "url": ISSUER + "/introspect",
        "client_id": "rs",
        "client_secret": "one",
        "resources": (A,),
    } | changes
    return RFC7662Introspector(httpx.AsyncClient(), RFC7662Settings(**values))


def _jwt(**changes: Any) -> ScopedIntrospector:
    values: dict[str, Any] = {
        "issuer": ISSUER,
        "jwks_uri": ISSUER + "/jwks",
        "resources": (A,),
    } | changes
    return JWTAccessTokenValidator(httpx.AsyncClient(), JWTAccessTokenSettings(**values))


# (builder, a change that decides answers) -> the namespace differs
DECIDING: list[tuple[str, Callable[..., ScopedIntrospector], dict[str, Any]]] = [
    ("authlete base URL", _authlete, {"base_url": "https://other.authlete.test"}),
    ("authlete service", _authlete, {"api_key": "2222"}),
    ("authlete resources", _authlete, {"resources": (B,)}),
    ("authlete no resources", _authlete, {"resources": ()}),
    (
        "authlete version",
        _authlete,
        {"api_version": "V2", "api_key": "1111", "api_secret": "s", "access_token": None},
    ),
    ("rfc7662 endpoint", _rfc7662, {"url": ISSUER + "/other"}),
    ("rfc7662 client", _rfc7662, {"client_id": "rs2"}),
    ("rfc7662 audience", _rfc7662, {"resources": (B,)}),
    ("rfc7662 legacy audience", _rfc7662, {"audience": B}),
    ("jwt issuer", _jwt, {"issuer": "https://as2.test", "jwks_uri": ISSUER + "/jwks"}),
    ("jwt key set", _jwt, {"jwks_uri": ISSUER + "/jwks2"}),
    ("jwt audience", _jwt, {"resources": (B,)}),
    ("jwt algorithms", _jwt, {"algorithms": ("ES256",)}),
]


@pytest.mark.parametrize(("case", "build", "change"), DECIDING, ids=[c[0] for c in DECIDING])
def test_every_deciding_setting_changes_the_namespace(
    case: str, build: Callable[..., ScopedIntrospector], change: dict[str, Any]
) -> None:
    """Two configurations that may answer differently never share a namespace."""
    assert build().cache_scope.namespace != build(**change).cache_scope.namespace


@pytest.mark.parametrize(
    ("build", "change"),
    [
        (_authlete, {"access_token": "token-two"}),
        (_rfc7662, {"client_secret": "two"}),
    ],
)
def test_secrets_do_not_enter_the_namespace(
    build: Callable[..., ScopedIntrospector], change: dict[str, Any]
) -> None:
    """A rotated credential keeps the namespace (the answers are the same), so a secret
    never influences, and never reaches, the shared store's keys."""
    assert build().cache_scope.namespace == build(**change).cache_scope.namespace
    assert len(build().cache_scope.namespace) == 16


def test_a_shared_cache_needs_a_scope() -> None:
    """An inner introspector that states no scope cannot use a shared level: its
    entries would mix with other configurations'."""

    class Unscoped:
        async def introspect(self, token: str, *, request: Any) -> TokenInfo:
            raise AssertionError

    shared = RedisTokenCache.from_url("redis://127.0.0.1:1/0", secret=SECRET)  # never used
    with pytest.raises(ValueError, match="cache_scope"):
        CachingIntrospector(Unscoped(), shared=shared)


# -- the audience rule, as data -------------------------------------------------------

# accepted, required, aud -> admitted
AUDIENCE_CASES: list[tuple[str, frozenset[str], bool, object, bool]] = [
    ("nothing configured", frozenset(), True, ["https://x.test"], True),
    ("string names ours", frozenset({A}), True, A, True),
    ("string names another", frozenset({A}), True, B, False),
    ("list with ours", frozenset({A}), True, [B, A], True),
    ("tuple with ours (cached facts)", frozenset({A}), True, (A,), True),
    ("tuple without ours (cached facts)", frozenset({A}), False, (B,), False),
    ("none named, required", frozenset({A}), True, None, False),
    ("none named, not required", frozenset({A}), False, None, True),
    ("empty list, required", frozenset({A}), True, [], False),
    ("empty tuple, not required", frozenset({A}), False, (), True),
    ("a number", frozenset({A}), False, 5, False),
    ("an object", frozenset({A}), False, {"aud": A}, False),
    ("unhashable member, ours too", frozenset({A}), True, [[1], A], True),
    ("unhashable member only", frozenset({A}), True, ([1],), False),
    ("non-string member only", frozenset({A}), False, [1], False),
]


@pytest.mark.parametrize(
    ("case", "accepted", "required", "aud", "admitted"),
    AUDIENCE_CASES,
    ids=[c[0] for c in AUDIENCE_CASES],
)
def test_audience_rule(
    case: str, accepted: frozenset[str], required: bool, aud: object, admitted: bool
) -> None:
    """One rule for a server's raw ``aud`` and for cached ``resources``."""
    audience = Audience(accepted, required, "jwt_audience")
    if admitted:
        audience.check(aud)
        return
    with pytest.raises(InactiveToken) as refused:
        audience.check(aud)
    assert refused.value.reason == "jwt_audience"
