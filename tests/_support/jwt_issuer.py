"""An authorization server of JWT access tokens (RFC 9068) for the JWT-mode tests: an ASGI
JWKS endpoint whose published keys a test switches (key rotation), the tokens it signs, and
the guarded app in ``jwt`` mode in front of the same inner app as the Authlete harness
(``harness.py``), reached in process over ``httpx.ASGITransport``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
from joserfc import jwk as jose_jwk
from joserfc import jws
from starlette.types import Receive, Scope, Send

from dpop_guard import DPoPGuardMiddleware, GuardSettings, ProofSigner
from dpop_guard.introspection import Introspector
from dpop_guard.introspection.cached import CachingIntrospector
from dpop_guard.introspection.jwt import JWTAccessTokenSettings, JWTAccessTokenValidator
from dpop_guard.replay import MemoryReplayStore
from dpop_guard.routes import Route
from dpop_guard.testing import make_proof
from tests._support.harness import ORIGIN, ROUTES, inner_app

ISSUER = "https://as.bank.test"
JWKS_URI = ISSUER + "/jwks"


class JWTIssuer:
    """Signs JWT access tokens and serves its JWKS (an ASGI app). ``published`` names the
    keys the JWKS holds; :meth:`rotate` replaces a key under its ``kid``."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.keys: dict[str, Any] = {}
        self.published: list[str] = []
        self.requests = 0
        for kid in ("k1", "k2"):
            self.rotate(kid)
        self.published = ["k1"]

    def rotate(self, kid: str) -> None:
        """A new key under ``kid`` (published if ``kid`` was)."""
        self.keys[kid] = jose_jwk.ECKey.generate_key("P-256", {"kid": kid}, private=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        self.requests += 1
        keys = [self.keys[kid].as_dict(private=False) for kid in self.published]
        body = json.dumps({"keys": keys}).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def create_token(
        self,
        *,
        subject: str = "alice",
        scopes: Sequence[str] = ("read:accounts",),
        jkt: str | None = None,
        lifetime: float = 3600,
        kid: str = "k1",
        audience: str = ORIGIN,
        **claims: Any,
    ) -> str:
        """A token signed by key ``kid`` (the Authlete simulator's ``create_token``
        arguments, so the hostile corpus mints either kind)."""
        payload: dict[str, Any] = {
            "iss": ISSUER,
            "aud": audience,
            "exp": int(self.clock() + lifetime),
            "sub": subject,
            "client_id": "app",
            "scope": " ".join(scopes),
        }
        if jkt is not None:
            payload["cnf"] = {"jkt": jkt}
        payload |= claims
        header = {"alg": "ES256", "typ": "at+jwt", "kid": kid}
        return jws.serialize_compact(header, json.dumps(payload).encode(), self.keys[kid])


class JWTHarness:
    """The guarded app in ``jwt`` mode: the validator (its JWKS fetched from ``issuer`` in
    process) behind the binding-safe cache, unless ``cache=False``."""

    def __init__(
        self,
        issuer: JWTIssuer,
        *,
        clock: Callable[[], float] = time.time,
        cache: bool = True,
        ttl: float = 60.0,
        routes: tuple[Route, ...] = ROUTES,
        revocation: Introspector | None = None,
        revocation_paths: tuple[str, ...] = (),
    ) -> None:
        self.simulator = issuer  # the name the hostile corpus mints tokens through
        self.jwks = httpx.AsyncClient(transport=httpx.ASGITransport(app=issuer))
        settings = JWTAccessTokenSettings(
            issuer=ISSUER, audience=ORIGIN, jwks_uri=JWKS_URI, revocation_paths=revocation_paths
        )
        self.validator = JWTAccessTokenValidator(
            self.jwks, settings, clock=clock, revocation=revocation
        )
        self.cache = CachingIntrospector(self.validator, ttl=ttl, clock=clock) if cache else None
        self.introspector: Introspector = self.validator if self.cache is None else self.cache
        self.app = DPoPGuardMiddleware(
            inner_app(),
            settings=GuardSettings(routes=routes, public_url=ORIGIN),
            introspector=self.introspector,
            clock=clock,
            # Up for an hour already (a new store refuses proofs older than itself).
            replay_store=MemoryReplayStore(epoch=int(clock()) - 3600, clock=clock),
        )
        self.clock = clock
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url=ORIGIN
        )

    def token(
        self, signer: ProofSigner | None, scopes: tuple[str, ...] = ("read:accounts",), **kw: Any
    ) -> str:
        return self.simulator.create_token(scopes=scopes, jkt=signer.jkt if signer else None, **kw)

    async def call(
        self, token: str, signer: ProofSigner, *, path: str = "/accounts"
    ) -> httpx.Response:
        proof = make_proof(signer, htu=ORIGIN + path, access_token=token, iat=self.clock())
        return await self.client.get(
            path, headers={"Authorization": f"DPoP {token}", "DPoP": proof}
        )

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.jwks.aclose()
