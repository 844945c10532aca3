"""The JWT validator against a JWKS endpoint that fails (served over real HTTP by a
uvicorn thread), and its revocation paths, matched on the routed path."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
import httpx
import pytest
from joserfc import jwk as jose_jwk
from joserfc import jws
from starlette.types import Receive, Scope, Send

from dpop_guard import DPoPGuardMiddleware, GuardSettings, ProofSigner
from dpop_guard.errors import IntrospectionUnavailable, InvalidToken
from dpop_guard.introspection import InactiveToken, RequestFacts, TokenInfo
from dpop_guard.introspection.cached import CachingIntrospector
from dpop_guard.introspection.jwt import JWTAccessTokenSettings, JWTAccessTokenValidator
from dpop_guard.testing import make_proof
from tests._support.clock import Clock
from tests._support.harness import inner_app
from tests._support.servers import ServerThread

ISSUER = "https://as.test"
AUDIENCE = "https://rs.test"
NOW = 1_800_000_000.0
FACTS = RequestFacts(method="GET", htu=AUDIENCE + "/accounts", proof="p", jkt="j", path="/accounts")
REQUESTS = 50


@dataclass
class Issuer:
    """A JWKS endpoint whose answers the test switches: ``ok`` serves the key set,
    ``500`` fails, ``garbage`` answers 200 with no key set. Counts its requests."""

    key: Any = field(default_factory=lambda: jose_jwk.ECKey.generate_key("P-256", {"kid": "k1"}))
    mode: str = "ok"
    requests: int = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            return
        self.requests += 1
        if self.mode == "ok":
            status, body = 200, json.dumps({"keys": [self.key.as_dict(private=False)]}).encode()
        elif self.mode == "garbage":
            status, body = 200, b"<html>secret-looking page</html>"
        else:
            status, body = 500, b"internal error with secret-looking details"
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def token(self, *, kid: str = "k1", jkt: str = "j", exp: float = NOW + 600) -> str:
        header = {"alg": "ES256", "typ": "at+jwt", "kid": kid}
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "exp": int(exp),
            "sub": "alice",
            "client_id": "app",
            "scope": "read:accounts",
            "cnf": {"jkt": jkt},
        }
        return jws.serialize_compact(header, json.dumps(claims).encode(), self.key)


@pytest.fixture(scope="module", name="served")
def _served() -> Iterator[tuple[Issuer, str]]:
    issuer = Issuer()
    with ServerThread(issuer) as server:
        yield issuer, server.url + "/jwks"


@pytest.fixture(name="issuer")
def _issuer(served: tuple[Issuer, str]) -> Issuer:
    issuer, _ = served
    issuer.mode, issuer.requests = "ok", 0
    return issuer


@pytest.fixture(name="http")
async def _http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


def validator(
    http: httpx.AsyncClient,
    served: tuple[Issuer, str],
    clock: Callable[[], float],
    **overrides: Any,
) -> JWTAccessTokenValidator:
    revocation = overrides.pop("revocation", None)
    settings = JWTAccessTokenSettings(
        issuer=ISSUER, audience=AUDIENCE, jwks_uri=served[1], **overrides
    )
    return JWTAccessTokenValidator(http, settings, clock=clock, revocation=revocation)


class TestFailingJWKS:
    async def test_never_fetched_fails_closed_and_rate_limited(
        self, http: httpx.AsyncClient, served: tuple[Issuer, str], issuer: Issuer
    ) -> None:
        """The JWKS endpoint fails from the start: 50 requests are 503 (never a pass, never
        a client error) and cost one fetch; after retry_interval, one more."""
        issuer.mode = "500"
        clock = Clock(NOW)
        v = validator(http, served, clock, retry_interval=5.0)
        token = issuer.token()
        for _ in range(REQUESTS):
            with pytest.raises(IntrospectionUnavailable) as caught:
                await v.introspect(token, request=FACTS)
            assert caught.value.reason == "jwks_unavailable"
        assert issuer.requests == 1 and v.attempts == 1
        clock.now += 4.999
        with pytest.raises(IntrospectionUnavailable):
            await v.introspect(token, request=FACTS)
        assert issuer.requests == 1
        clock.now += 0.001
        issuer.mode = "ok"
        assert (await v.introspect(token, request=FACTS)).jkt == "j"
        assert issuer.requests == 2

    async def test_concurrent_refreshes_are_one_fetch(
        self, http: httpx.AsyncClient, served: tuple[Issuer, str], issuer: Issuer
    ) -> None:
        """50 concurrent requests against a failing JWKS endpoint: one fetch."""
        issuer.mode = "garbage"
        v = validator(http, served, Clock(NOW))
        token = issuer.token()
        outcomes: list[str] = []

        async def one() -> None:
            try:
                await v.introspect(token, request=FACTS)
            except IntrospectionUnavailable as exc:
                outcomes.append(exc.reason)

        async with anyio.create_task_group() as tg:
            for _ in range(REQUESTS):
                tg.start_soon(one)
        assert outcomes == ["jwks_unavailable"] * REQUESTS
        assert issuer.requests == 1

    async def test_unknown_kid_against_failing_endpoint(
        self,
        http: httpx.AsyncClient,
        served: tuple[Issuer, str],
        issuer: Issuer,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Keys held, then the endpoint fails: 50 tokens naming unknown keys (after the
        refresh interval) cost one fetch, the failure is logged by type only, and tokens
        with known keys still pass on the keys held."""
        clock = Clock(NOW)
        v = validator(http, served, clock, refresh_interval=30.0, retry_interval=5.0)
        good = issuer.token()
        await v.introspect(good, request=FACTS)
        assert issuer.requests == 1
        issuer.mode = "500"
        clock.now += 31
        caplog.set_level(logging.WARNING, logger="dpop_guard.introspection")
        for i in range(REQUESTS):
            with pytest.raises(InvalidToken) as caught:
                await v.introspect(issuer.token(kid=f"rotated-{i}"), request=FACTS)
            assert caught.value.reason == "jwt_unknown_key"
            assert not isinstance(caught.value, InactiveToken)  # may pass after rotation
        assert issuer.requests == 2
        assert (await v.introspect(good, request=FACTS)).subject == "alice"
        failures = [r for r in caplog.records if getattr(r, "dpop_guard_reason", None)]
        assert [r.getMessage() for r in failures] == ["jwks fetch failed: HTTPStatusError"]
        assert "secret-looking" not in caplog.text

    async def test_stale_keys_kept_when_refresh_fails(
        self, http: httpx.AsyncClient, served: tuple[Issuer, str], issuer: Issuer
    ) -> None:
        """Past jwks_ttl with the endpoint failing: the old keys are used, and the endpoint
        is asked once per retry_interval, not on every request."""
        clock = Clock(NOW)
        v = validator(http, served, clock, jwks_ttl=60.0, retry_interval=5.0)
        token = issuer.token(exp=NOW + 3600)
        await v.introspect(token, request=FACTS)
        issuer.mode = "500"
        clock.now += 61
        for _ in range(REQUESTS):
            assert (await v.introspect(token, request=FACTS)).subject == "alice"
        assert issuer.requests == 2
        clock.now += 5
        await v.introspect(token, request=FACTS)
        assert issuer.requests == 3

    @pytest.mark.parametrize(
        "field_name", ["jwks_ttl", "refresh_interval", "retry_interval", "timeout"]
    )
    @pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf")], ids=repr)
    def test_intervals_validated(self, field_name: str, value: float) -> None:
        """Every interval is a finite number of seconds above 0."""
        values: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, field_name: value}
        with pytest.raises(ValueError, match=field_name):
            JWTAccessTokenSettings(jwks_uri=ISSUER + "/jwks", **values)


class Revocations:
    """A revocation introspector: tokens in ``revoked`` are inactive. Counts its calls."""

    def __init__(self) -> None:
        self.revoked: set[str] = set()
        self.calls: list[str] = []

    async def introspect(self, token: str, *, request: RequestFacts) -> TokenInfo:
        self.calls.append(request.path)
        if token in self.revoked:
            raise InactiveToken("introspection_inactive", "The access token is not active.")
        return TokenInfo(
            subject="alice", client_id="app", scopes=frozenset(), expires_at=None, jkt=None
        )


class TestRevocationPaths:
    @pytest.mark.parametrize(
        ("path", "sensitive"),
        [
            ("/payments", True),
            ("/payments/1", True),
            ("/payments/", True),
            ("/Payments", True),  # a case-insensitive router
            ("/PAYMENTS/1", True),
            ("//payments", True),  # a router that merges slashes
            ("/accounts/../payments", True),  # one that resolves dot segments
            ("/./payments", True),
            ("/payments-history", True),  # prefix: broader, never narrower
            ("/%70ayments", True),  # a router that decodes twice
            ("\\payments", True),  # one that reads backslashes as slashes
            ("/a/..\\payments", True),
            ("", True),  # the caller did not say: fail closed
            ("/accounts", False),
            ("/pay", False),
            ("/accounts/payments", False),
        ],
    )
    async def test_matched_on_routed_path(
        self, http: httpx.AsyncClient, served: tuple[Issuer, str], path: str, sensitive: bool
    ) -> None:
        """The routed path decides, as broadly as any router would dispatch; the htu (the
        proof's URL, with a public prefix or percent-encoding) plays no part."""
        v = validator(
            http, served, Clock(NOW), revocation_paths=("/payments",), revocation=Revocations()
        )
        htu = "https://api.test/prefix/%70ayments"  # never looked at
        assert v.requires_fresh(replace(FACTS, htu=htu, path=path)) is sensitive

    async def test_revoked_refused_on_sensitive_path_only(
        self, http: httpx.AsyncClient, served: tuple[Issuer, str], issuer: Issuer
    ) -> None:
        """A revoked token passes local checks on /accounts and is refused on /payments."""
        revocations = Revocations()
        v = validator(
            http, served, Clock(NOW), revocation_paths=("/payments",), revocation=revocations
        )
        token = issuer.token()
        revocations.revoked.add(token)
        assert (await v.introspect(token, request=FACTS)).subject == "alice"
        with pytest.raises(InactiveToken):
            await v.introspect(token, request=replace(FACTS, path="/payments"))
        assert revocations.calls == ["/payments"]

    async def test_revocation_paths_need_revocation(
        self, http: httpx.AsyncClient, served: tuple[Issuer, str]
    ) -> None:
        """Revocation paths without a revocation introspector would never be checked: the
        combination is refused at construction."""
        with pytest.raises(ValueError, match="revocation"):
            validator(http, served, Clock(NOW), revocation_paths=("/payments",))

    async def test_cache_hits_do_not_skip_revocation(
        self, http: httpx.AsyncClient, served: tuple[Issuer, str], issuer: Issuer
    ) -> None:
        """Wrapped in CachingIntrospector: /accounts is served from the cache, but every
        /payments request asks the revocation introspector, so a token revoked after being
        cached is refused there on the next request (and then everywhere)."""
        revocations = Revocations()
        clock = Clock(NOW)
        v = validator(http, served, clock, revocation_paths=("/payments",), revocation=revocations)
        cache = CachingIntrospector(v, ttl=60, clock=clock)
        token = issuer.token()
        payments = replace(FACTS, path="/payments/1")
        for _ in range(3):
            await cache.introspect(token, request=FACTS)
            await cache.introspect(token, request=payments)
        assert revocations.calls == ["/payments/1"] * 3
        revocations.revoked.add(token)
        with pytest.raises(InactiveToken):
            await cache.introspect(token, request=payments)
        with pytest.raises(InactiveToken):
            await cache.introspect(token, request=FACTS)  # the cached facts were dropped


class TestRevocationOverHTTP:
    async def test_encoded_path_and_public_prefix(
        self, http: httpx.AsyncClient, served: tuple[Issuer, str], issuer: Issuer
    ) -> None:
        """Through the middleware, behind a public URL with a path prefix: a revoked JWT is
        refused on /%70ayments (routed as /payments), and /accounts makes no revocation
        call."""
        signer = ProofSigner.generate("ES256")
        revocations = Revocations()
        v = validator(
            http, served, time.time, revocation_paths=("/payments",), revocation=revocations
        )
        public = "https://api.bank.test/v1"
        app = DPoPGuardMiddleware(
            inner_app(),
            settings=GuardSettings(public_url=public),
            introspector=CachingIntrospector(v, ttl=60),
        )
        token = issuer.token(jkt=signer.jkt, exp=time.time() + 600)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="https://api.bank.test"
        ) as client:

            async def get(path: str) -> httpx.Response:
                proof = make_proof(signer, htu=public + path, access_token=token)
                return await client.get(
                    path, headers={"Authorization": f"DPoP {token}", "DPoP": proof}
                )

            assert (await get("/accounts")).status_code == 200
            revocations.revoked.add(token)
            response = await get("/%70ayments")
            assert response.status_code == 401
            assert revocations.calls == ["/payments"]
