"""The middleware in-process (httpx.ASGITransport), against the Authlete simulator over
real HTTP. One test per rejection rule: status, challenge error, internal reason."""

from __future__ import annotations

import json
import logging
import socket
import time
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote

import anyio
import httpx
import pytest

from dpop_guard import (
    AuthleteIntrospector,
    DPoPGuardMiddleware,
    GuardSettings,
    ProofSigner,
    Route,
    TokenInfo,
)
from dpop_guard._fapi import mint_uuid
from dpop_guard._target import check_host, target_url
from dpop_guard.challenges import parse_challenge
from dpop_guard.devtools.simulator import (
    DEFAULT_SERVICE_TOKEN,
    SimulatorState,
)
from dpop_guard.introspection import RequestFacts
from dpop_guard.replay import MemoryReplayStore
from dpop_guard.testing import make_proof
from tests._support.harness import (
    ORIGIN,
    ROUTES,
    Harness,
    assert_rejected,
    authlete_settings,
    inner_app,
)


class TestSuccess:
    async def test_accepted(self, h: Harness, signer: ProofSigner) -> None:
        """A bound token with a fresh proof passes; request.auth carries the facts."""
        token = h.token(signer)
        response = await h.call(token, signer)
        assert response.status_code == 200
        body = response.json()
        assert body["subject"] == "alice" and body["jkt"] == signer.jkt
        assert body["scopes"] == ["read:accounts"] and body["scheme"] == "DPoP"
        assert body["client_id"] == "1727421520" and body["expires_at"] > 0

    @pytest.mark.parametrize("alg", ["ES256", "PS256", "EdDSA"])
    async def test_each_algorithm(
        self, h: Harness, signers: dict[str, ProofSigner], alg: str
    ) -> None:
        """Every FAPI algorithm works end to end, Authlete's check included."""
        token = h.token(signers[alg])
        assert (await h.call(token, signers[alg])).status_code == 200

    async def test_cache_counts(self, h: Harness, signer: ProofSigner) -> None:
        """Ten requests with one token make one round of Authlete calls (check + probe)."""
        token = h.token(signer)
        for _ in range(10):
            assert (await h.call(token, signer)).status_code == 200
        assert h.simulator.calls["auth/introspection"] == 2
        sent = [e for e in h.simulator.log if "dpop_sha256" in e]
        assert len(sent) == 1
        assert sent[0]["htm"] == "GET" and sent[0]["htu"] == ORIGIN + "/accounts"
        # Scopes are checked locally from the token's facts, so the cached answer serves
        # every route: no route scopes go to Authlete.
        assert "scopes" not in sent[0]

    async def test_without_cache_every_request_asks(
        self, make_harness: Callable[..., Harness], signer: ProofSigner
    ) -> None:
        """With no cache wrapper, each request introspects: the check every time, the
        binding probe once for the token (its answer is remembered)."""
        h = make_harness(cache=False)
        token = h.token(signer)
        for _ in range(3):
            assert (await h.call(token, signer)).status_code == 200
        assert h.simulator.calls["auth/introspection"] == 2 + 1 + 1

    async def test_public_route(self, h: Harness) -> None:
        """Public routes need no credentials and get no auth."""
        response = await h.call(None, path="/health")
        assert response.json() == {"status": "ok", "auth": False}

    @pytest.mark.parametrize(
        ("path", "status"),
        [
            ("/public/../accounts", 401),
            ("/public/./x", 401),
            ("/public/..", 401),
            ("/public/x.y/..z", 404),  # not a dot segment: public, and the app has no such route
        ],
    )
    async def test_dot_segments_never_public(
        self, make_harness: Callable[..., Harness], path: str, status: int
    ) -> None:
        """A public prefix never admits a path with dot segments (a traversal to a
        protected route in an app that resolves them). Sent as a raw ASGI scope, since
        HTTP clients remove dot segments themselves."""
        h = make_harness(routes=(Route("/public/*", public=True), *ROUTES))
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "GET",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "scheme": "https",
            "query_string": b"",
            "headers": [],
            "server": ("api.bank.test", 443),
        }
        await h.app(scope, receive, send)
        assert sent[0]["status"] == status

    async def test_unlisted_path_is_protected(
        self, h: Harness, signer: ProofSigner, reasons: list[str]
    ) -> None:
        """A path no rule names still requires a valid token (fail closed)."""
        assert_rejected(
            await h.call(None, path="/other"), 401, None, "authorization_missing", reasons
        )
        token = h.token(signer, scopes=())
        assert (await h.call(token, signer, path="/other")).status_code == 200

    async def test_query_string_ignored_in_htu(self, h: Harness, signer: ProofSigner) -> None:
        """The proof's htu has no query; the request may."""
        token = h.token(signer)
        proof = make_proof(signer, htu=ORIGIN + "/accounts", access_token=token)
        response = await h.client.get(
            "/accounts?page=2", headers={"Authorization": f"DPoP {token}", "DPoP": proof}
        )
        assert response.status_code == 200

    async def test_lifespan_passes_through(self) -> None:
        """Lifespan scopes reach the app untouched, with no credentials."""
        seen: list[dict[str, Any]] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            seen.append(scope)

        guard = DPoPGuardMiddleware(app, introspector=Never())
        scope = {"type": "lifespan"}
        await guard(scope, None, None)  # type: ignore[arg-type]
        assert seen == [scope] and "auth" not in scope

    @pytest.mark.parametrize("scope_type", ["webtransport", "http2", ""])
    async def test_unknown_scope_types_refused(self, scope_type: str) -> None:
        """A scope type the guard does not know never reaches the app."""

        async def app(scope: Any, receive: Any, send: Any) -> None:
            raise AssertionError("reached the app")

        guard = DPoPGuardMiddleware(app, introspector=Never())
        await guard({"type": scope_type, "path": "/accounts", "headers": []}, None, None)  # type: ignore[arg-type]


class Never:
    async def introspect(self, token: str, *, request: RequestFacts) -> TokenInfo:
        raise AssertionError("not called")


class TestHeaders:
    async def test_no_credentials(self, h: Harness, reasons: list[str]) -> None:
        """No Authorization: 401 with a bare DPoP challenge."""
        assert_rejected(await h.call(None), 401, None, "authorization_missing", reasons)

    async def test_proof_without_token(
        self, h: Harness, signer: ProofSigner, reasons: list[str]
    ) -> None:
        """A DPoP header alone is not credentials."""
        assert_rejected(await h.call(None, signer), 401, None, "authorization_missing", reasons)

    async def test_two_authorization_headers(
        self, h: Harness, signer: ProofSigner, reasons: list[str]
    ) -> None:
        """Two Authorization headers: 400."""
        token = h.token(signer)
        response = await h.call(token, signer, headers=[("Authorization", f"Bearer {token}")])
        assert_rejected(response, 400, "invalid_request", "authorization_multiple", reasons)

    async def test_unsupported_scheme(self, h: Harness, reasons: list[str]) -> None:
        """Basic: a bare challenge."""
        response = await h.call(None, headers=[("Authorization", "Basic dXNlcjpwYXNz")])
        assert_rejected(response, 401, None, "authorization_scheme_unsupported", reasons)

    async def test_malformed_token(
        self, h: Harness, signer: ProofSigner, reasons: list[str]
    ) -> None:
        """A token that is not token68."""
        response = await h.call("abc m a l f o r m e d", signer)
        assert_rejected(response, 401, "invalid_token", "token_malformed", reasons)

    async def test_token_too_long(
        self, h: Harness, signer: ProofSigner, reasons: list[str]
    ) -> None:
        """Tokens over the limit are refused before anything else."""
        response = await h.call("a" * 9000, signer)
        assert_rejected(response, 401, "invalid_token", "token_too_long", reasons)

    @pytest.mark.parametrize("gap", ["  ", " " * 100])
    async def test_more_than_one_space_after_the_scheme(
        self, h: Harness, signer: ProofSigner, gap: str
    ) -> None:
        """One or more spaces separate the scheme from the token (RFC 9110's
        ``auth-scheme 1*SP token68``), within the length bound."""
        token = h.token(signer)
        headers = [("Authorization", f"DPoP{gap}{token}")]
        proof = make_proof(signer, htm="GET", htu=ORIGIN + "/accounts", access_token=token)
        response = await h.call(None, proof=proof, headers=headers)
        assert response.status_code == 200

    async def test_a_tab_after_the_scheme(
        self, h: Harness, signer: ProofSigner, reasons: list[str]
    ) -> None:
        """Only spaces separate the scheme from the token: a tab makes it malformed."""
        token = h.token(signer)
        headers = [("Authorization", f"DPoP \t{token}")]
        response = await h.call(None, signer, headers=headers)
        assert_rejected(response, 401, "invalid_token", "token_malformed", reasons)

    @pytest.mark.parametrize("value", ["DPoP" + " " * 60_000 + "t", "DPoP " + "a" * 8300])
    async def test_authorization_longer_than_any_token(
        self, h: Harness, reasons: list[str], value: str
    ) -> None:
        """A value longer than a token within the limit could make is refused on its
        length (a run of spaces included), before anything of it is parsed or kept."""
        response = await h.call(None, headers=[("Authorization", value)])
        assert_rejected(response, 401, "invalid_token", "token_too_long", reasons)

    async def test_dpop_scheme_without_proof(
        self, h: Harness, signer: ProofSigner, reasons: list[str]
    ) -> None:
        """DPoP scheme, no DPoP header."""
        response = await h.call(h.token(signer))
        assert_rejected(response, 401, "invalid_dpop_proof", "dpop_header_missing", reasons)

    async def test_two_dpop_headers(
        self, h: Harness, signer: ProofSigner, reasons: list[str]
    ) -> None:
        """Two DPoP headers: 400."""
        token = h.token(signer)
        extra = make_proof(signer, htu=ORIGIN + "/accounts", access_token=token)
        response = await h.call(token, signer, headers=[("DPoP", extra)])
        assert_rejected(response, 400, "invalid_request", "dpop_header_multiple", reasons)

    async def test_bearer_with_proof(
        self, h: Harness, signer: ProofSigner, reasons: list[str]
    ) -> None:
        """Bearer scheme while a DPoP header is present: 400."""
        response = await h.call(h.token(signer), signer, scheme="Bearer")
        assert_rejected(response, 400, "invalid_request", "bearer_with_dpop_proof", reasons)

    async def test_bearer_refused_by_default(
        self, h: Harness, signer: ProofSigner, reasons: list[str]
    ) -> None:
        """FAPI 2.0: the Bearer scheme is refused outright (no downgrade)."""
        response = await h.call(h.token(signer), scheme="Bearer")
        assert_rejected(response, 401, "invalid_token", "bearer_scheme_refused", reasons)
        assert h.simulator.calls["auth/introspection"] == 0

    async def test_scheme_case_insensitive(self, h: Harness, signer: ProofSigner) -> None:
        """'dpop' works as well as 'DPoP'."""
        token = h.token(signer)
        assert (await h.call(token, signer, scheme="dpop")).status_code == 200


class TestProof:
    async def test_bad_proof_never_reaches_authlete(
        self, h: Harness, signer: ProofSigner, reasons: list[str]
    ) -> None:
        """A proof failing a local check costs no introspection."""
        token = h.token(signer)
        response = await h.call(token, signer, header={"typ": "JWT"})
        assert_rejected(response, 401, "invalid_dpop_proof", "typ_invalid", reasons)
        assert h.simulator.calls["auth/introspection"] == 0

    async def test_htm_mismatch(self, h: Harness, signer: ProofSigner, reasons: list[str]) -> None:
        """A GET proof on a POST."""
        token = h.token(signer)
        proof = make_proof(signer, htm="GET", htu=ORIGIN + "/accounts", access_token=token)
        response = await h.call(token, method="POST", proof=proof)
        assert_rejected(response, 401, "invalid_dpop_proof", "htm_mismatch", reasons)

    async def test_htu_other_origin(
        self, h: Harness, signer: ProofSigner, reasons: list[str]
    ) -> None:
        """A proof for another origin, even with a matching Host header."""
        token = h.token(signer)
        proof = make_proof(signer, htu="https://evil.test/accounts", access_token=token)
        response = await h.call(token, proof=proof, headers=[("Host", "evil.test")])
        assert_rejected(response, 401, "invalid_dpop_proof", "htu_mismatch", reasons)

    async def test_ath_mismatch(self, h: Harness, signer: ProofSigner, reasons: list[str]) -> None:
        """A proof made for another token."""
        token = h.token(signer)
        proof = make_proof(signer, htu=ORIGIN + "/accounts", access_token="other")
        response = await h.call(token, proof=proof)
        assert_rejected(response, 401, "invalid_dpop_proof", "ath_mismatch", reasons)

    async def test_iat_too_old(self, h: Harness, signer: ProofSigner, reasons: list[str]) -> None:
        """A stale proof."""

        response = await h.call(h.token(signer), signer, iat=time.time() - 3600)
        assert_rejected(response, 401, "invalid_dpop_proof", "iat_too_old", reasons)

    async def test_replay(self, h: Harness, signer: ProofSigner, reasons: list[str]) -> None:
        """The same proof twice: the second is refused."""
        token = h.token(signer)
        proof = make_proof(signer, htu=ORIGIN + "/accounts", access_token=token)
        assert (await h.call(token, proof=proof)).status_code == 200
        response = await h.call(token, proof=proof)
        assert_rejected(response, 401, "invalid_dpop_proof", "jti_replayed", reasons)

    async def test_replay_refused_before_introspection(
        self, h: Harness, signer: ProofSigner, reasons: list[str]
    ) -> None:
        """One junk token with one proof, resent ten times: the first is introspected
        (401 invalid_token), the others are refused as replays without an Authlete call."""
        proof = make_proof(signer, htu=ORIGIN + "/accounts", access_token="junk")
        response = await h.call("junk", proof=proof)
        assert_rejected(response, 401, "invalid_token", reasons[-1], reasons)
        calls = h.simulator.calls["auth/introspection"]
        assert calls >= 1
        for _ in range(9):
            response = await h.call("junk", proof=proof)
            assert_rejected(response, 401, "invalid_dpop_proof", "jti_replayed", reasons)
        assert h.simulator.calls["auth/introspection"] == calls

    async def test_replay_under_concurrency(self, h: Harness, signer: ProofSigner) -> None:
        """40 concurrent copies of one proof: exactly one passes, on a cold cache."""
        token = h.token(signer)
        proof = make_proof(signer, htu=ORIGIN + "/accounts", access_token=token)
        statuses: list[int] = []

        async def one() -> None:
            statuses.append((await h.call(token, proof=proof)).status_code)

        async with anyio.create_task_group() as tg:
            for _ in range(40):
                tg.start_soon(one)
        assert statuses.count(200) == 1 and statuses.count(401) == 39


class TestBinding:
    async def test_other_key_on_miss(
        self, h: Harness, signer: ProofSigner, reasons: list[str]
    ) -> None:
        """A valid proof from another key, cold cache: Authlete refuses the binding."""
        token = h.token(signer)
        thief = ProofSigner.generate("ES256")
        response = await h.call(token, thief)
        params = assert_rejected(
            response, 401, "invalid_dpop_proof", "authlete_unauthorized", reasons
        )
        assert "Thumbprint" in params["error_description"]
        assert params["error_uri"].startswith("https://docs.authlete.com/#")

    async def test_other_key_on_hit(
        self, h: Harness, signer: ProofSigner, reasons: list[str]
    ) -> None:
        """The same, warm cache: refused locally against the cached thumbprint."""
        token = h.token(signer)
        assert (await h.call(token, signer)).status_code == 200
        calls = h.simulator.calls["auth/introspection"]
        response = await h.call(token, ProofSigner.generate("EdDSA"))
        assert_rejected(response, 401, "invalid_dpop_proof", "jkt_mismatch", reasons)
        assert h.simulator.calls["auth/introspection"] == calls

    async def test_replay_after_failed_binding(
        self, h: Harness, signer: ProofSigner, reasons: list[str]
    ) -> None:
        """A proof refused for its key is refused again, as a replay (its jti was
        recorded before introspection), never accepted later, and costs no Authlete call."""
        token = h.token(signer)
        thief = ProofSigner.generate("ES256")
        proof = make_proof(thief, htu=ORIGIN + "/accounts", access_token=token)
        assert (await h.call(token, proof=proof)).status_code == 401
        assert (await h.call(token, signer)).status_code == 200
        calls = h.simulator.calls["auth/introspection"]
        response = await h.call(token, proof=proof)
        assert_rejected(response, 401, "invalid_dpop_proof", "jti_replayed", reasons)
        assert h.simulator.calls["auth/introspection"] == calls

    async def test_unbound_token_refused(
        self, h: Harness, signer: ProofSigner, reasons: list[str]
    ) -> None:
        """An unbound token with a valid proof: not sender-constrained, refused."""
        token = h.token(None)
        response = await h.call(token, signer)
        assert_rejected(response, 401, "invalid_token", "token_not_bound", reasons)
        response = await h.call(token, signer)  # the cached answer says the same
        assert_rejected(response, 401, "invalid_token", "token_not_bound", reasons)
        assert h.simulator.calls["auth/introspection"] == 2

    async def test_unbound_allowed(
        self, make_harness: Callable[..., Harness], signer: ProofSigner
    ) -> None:
        """With allow_unbound_tokens, an unbound token passes on DPoP and on Bearer; the
        credentials carry no binding either way (the proof's key binds nothing here)."""
        h = make_harness(allow_unbound_tokens=True)
        token = h.token(None)
        response = await h.call(token, signer)
        assert response.status_code == 200 and response.json()["jkt"] is None
        response = await h.call(token, scheme="Bearer")
        assert response.status_code == 200 and response.json()["jkt"] is None

    async def test_bound_token_as_bearer_on_miss(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, reasons: list[str]
    ) -> None:
        """Downgrade with unbound tokens allowed, cold cache: Authlete demands the proof."""
        h = make_harness(allow_unbound_tokens=True)
        response = await h.call(h.token(signer), scheme="Bearer")
        assert_rejected(response, 401, "invalid_token", "authlete_unauthorized", reasons)

    async def test_bound_token_as_bearer_on_hit(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, reasons: list[str]
    ) -> None:
        """The same with a warm cache: refused locally."""
        h = make_harness(allow_unbound_tokens=True)
        token = h.token(signer)
        assert (await h.call(token, signer)).status_code == 200
        response = await h.call(token, scheme="Bearer")
        assert_rejected(response, 401, "invalid_token", "bound_token_as_bearer", reasons)


class TestToken:
    async def test_unknown_token(self, h: Harness, signer: ProofSigner, reasons: list[str]) -> None:
        """A token Authlete does not know."""
        response = await h.call("no-such-token", signer)
        assert_rejected(response, 401, "invalid_token", "authlete_unauthorized", reasons)

    async def test_expired_token(self, h: Harness, signer: ProofSigner, reasons: list[str]) -> None:
        """An expired token."""
        token = h.token(signer, lifetime=-1)
        response = await h.call(token, signer)
        assert_rejected(response, 401, "invalid_token", "authlete_unauthorized", reasons)

    async def test_expired_in_cache(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, reasons: list[str]
    ) -> None:
        """Expiry is checked locally too (facts may be older than the request)."""

        class Expired:
            async def introspect(self, token: str, *, request: RequestFacts) -> TokenInfo:
                return TokenInfo(
                    subject="a",
                    client_id="c",
                    scopes=frozenset({"read:accounts"}),
                    expires_at=1,
                    jkt=signer.jkt,
                )

        h = make_harness(introspector=Expired())
        response = await h.call("tok", signer)
        assert_rejected(response, 401, "invalid_token", "token_expired", reasons)

    async def test_missing_scope_on_miss(
        self, h: Harness, signer: ProofSigner, reasons: list[str]
    ) -> None:
        """A token lacking the route's scope is refused locally (403 insufficient_scope
        naming the scope) after one introspection round, whose facts then serve every
        route."""
        token = h.token(signer)
        response = await h.call(token, signer, path="/accounts/acc-1/transactions")
        params = assert_rejected(response, 403, "insufficient_scope", "scope_missing", reasons)
        assert params["scope"] == "read:transactions"
        calls = h.simulator.calls["auth/introspection"]
        response = await h.call(token, signer, path="/accounts/acc-1/transactions")
        assert_rejected(response, 403, "insufficient_scope", "scope_missing", reasons)
        assert (await h.call(token, signer)).status_code == 200
        assert h.simulator.calls["auth/introspection"] == calls

    async def test_missing_scope_on_hit(
        self, h: Harness, signer: ProofSigner, reasons: list[str]
    ) -> None:
        """Per-route scopes are checked from cached facts too."""
        token = h.token(signer)
        assert (await h.call(token, signer)).status_code == 200
        calls = h.simulator.calls["auth/introspection"]
        response = await h.call(token, signer, path="/accounts/acc-1/transactions")
        params = assert_rejected(response, 403, "insufficient_scope", "scope_missing", reasons)
        assert params["scope"] == "read:transactions"
        assert h.simulator.calls["auth/introspection"] == calls


async def raw_call(
    app: Any,
    target: bytes,
    *,
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request as a raw ASGI scope, for targets an HTTP client would normalise."""
    messages: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        messages.append(message)

    raw, _, query = target.partition(b"?")
    scope = {
        "type": "http",
        "method": method,
        "path": unquote(raw.decode("latin-1")),
        "raw_path": raw,
        "root_path": "",
        "scheme": "https",
        "query_string": query,
        "headers": headers if headers is not None else [(b"host", b"api.bank.test")],
        "server": ("api.bank.test", 443),
    }
    await app(scope, receive, send)
    start = messages[0]
    return start["status"], dict(start["headers"]), messages[1]["body"]


class TestRequestTarget:
    @pytest.mark.parametrize(
        "target",
        [b"/accounts%0A", b"/accounts%0D", b"/accounts%00", b"/accounts%7F", b"/health%0A"],
    )
    async def test_control_character_in_path(
        self, h: Harness, reasons: list[str], target: bytes
    ) -> None:
        """A decoded path holding a control character is a 400 before any rule is tried,
        public rules included (Starlette's "$" would route "/accounts\\n" to /accounts)."""
        status, headers, body = await raw_call(h.app, target)
        assert status == 400 and headers[b"cache-control"] == b"no-store"
        assert (
            parse_challenge(headers[b"www-authenticate"].decode())[1]["error"] == "invalid_request"
        )
        assert json.loads(body)["error"] == "invalid_request"
        assert reasons[-1] == "path_control_character"

    @pytest.mark.parametrize(
        "target",
        [b"/accounts/acc-1001#/transactions", b"/accounts#", b"/acc ounts", b"/acc\xc3\xa9ounts"],
    )
    async def test_fragment_or_control_in_target(
        self, h: Harness, reasons: list[str], target: bytes
    ) -> None:
        """A request target holding "#", a space or a control byte is a 400: a proof for
        /accounts/acc-1001 never passes for /accounts/acc-1001#/transactions."""
        status, headers, _ = await raw_call(h.app, target)
        assert status == 400
        assert (
            parse_challenge(headers[b"www-authenticate"].decode())[1]["error"] == "invalid_request"
        )
        assert reasons[-1] == "request_target_invalid"

    async def test_head_covered_by_get_rule(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, reasons: list[str]
    ) -> None:
        """HEAD is checked against a rule that lists only GET (Starlette serves HEAD with
        the GET handler): 403 without the scope."""
        h = make_harness(routes=(Route("/accounts", scopes=("read:accounts",), methods=("GET",)),))
        token = h.token(signer, scopes=())
        response = await h.call(token, signer, method="HEAD")
        assert response.status_code == 403
        assert (
            parse_challenge(response.headers["www-authenticate"])[1]["error"]
            == "insufficient_scope"
        )
        assert reasons[-1] == "scope_missing"

    async def test_method_case_insensitive(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, reasons: list[str]
    ) -> None:
        """A method in lower case matches the rule for its upper-case form."""
        h = make_harness(routes=(Route("/accounts", scopes=("read:accounts",), methods=("GET",)),))
        token = h.token(signer, scopes=())
        proof = make_proof(signer, htm="get", htu=ORIGIN + "/accounts", access_token=token)
        headers = [
            (b"host", b"api.bank.test"),
            (b"authorization", f"DPoP {token}".encode()),
            (b"dpop", proof.encode()),
        ]
        status, found, _ = await raw_call(h.app, b"/accounts", method="get", headers=headers)
        assert status == 403
        assert (
            parse_challenge(found[b"www-authenticate"].decode())[1]["error"] == "insufficient_scope"
        )
        assert reasons[-1] == "scope_missing"

    async def test_introspector_gets_the_routed_path(self, signer: ProofSigner) -> None:
        """The introspector is told the decoded path the router sees (mount stripped), so
        path-sensitive policy (revocation paths) never matches on the raw htu."""
        seen: list[RequestFacts] = []

        class Recording:
            async def introspect(self, token: str, *, request: RequestFacts) -> TokenInfo:
                seen.append(request)
                return TokenInfo("alice", "c", frozenset(), None, signer.jkt)

        guard = DPoPGuardMiddleware(
            inner_app(),
            settings=GuardSettings(public_url=ORIGIN + "/bank"),
            introspector=Recording(),
        )
        proof = make_proof(signer, htu=ORIGIN + "/bank/%70ayments", access_token="tok")
        headers = [(b"authorization", b"DPoP tok"), (b"dpop", proof.encode())]
        messages: list[Any] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            messages.append(message)

        scope = {
            "type": "http",
            "method": "GET",
            "path": "/bank/payments",
            "raw_path": b"/bank/%70ayments",
            "root_path": "/bank",
            "scheme": "https",
            "query_string": b"",
            "headers": headers,
        }
        await guard(scope, receive, send)
        assert messages[0]["status"] == 404  # authenticated; the app has no such route
        assert [facts.path for facts in seen] == ["/payments"]
        assert seen[0].htu == ORIGIN + "/bank/%70ayments"


class TestHost:
    @pytest.fixture(name="hostless")
    def _hostless(self, simulator_url: str) -> Iterator[DPoPGuardMiddleware]:
        http = httpx.AsyncClient()
        yield DPoPGuardMiddleware(
            inner_app(),
            settings=GuardSettings(routes=ROUTES),
            introspector=AuthleteIntrospector(http, authlete_settings(simulator_url)),
        )

    @pytest.mark.parametrize(
        "host",
        [
            "rs.local/other",
            "rs.local?x",
            "rs.local#x",
            "user@rs.local",
            "rs.local:99999",
            "rs.local:8o",
            "rs.local:",
            "",
            "[::1",
            "[rs.local]",
            "[::1]x",
            "rs local",
            "rs.local\\x",
        ],
    )
    async def test_invalid_host(
        self, hostless: DPoPGuardMiddleware, signer: ProofSigner, reasons: list[str], host: str
    ) -> None:
        """Without a public URL, a Host that is not host[:port] is a 400: it can never
        smuggle a path into htu."""
        proof = make_proof(signer, htu="http://rs.local/other", access_token="tok")
        headers = [
            (b"host", host.encode()),
            (b"authorization", b"DPoP tok"),
            (b"dpop", proof.encode()),
        ]
        status, found, _ = await raw_call(hostless, b"/accounts", headers=headers)
        assert status == 400
        assert parse_challenge(found[b"www-authenticate"].decode())[1]["error"] == "invalid_request"
        assert reasons[-1] == "host_invalid"

    async def test_two_hosts(self, hostless: DPoPGuardMiddleware, reasons: list[str]) -> None:
        """Two Host headers are a 400 (RFC 9112 section 3.2)."""
        headers = [(b"host", b"a.test"), (b"host", b"b.test"), (b"authorization", b"DPoP tok")]
        status, _, _ = await raw_call(hostless, b"/accounts", headers=headers)
        assert status == 400 and reasons[-1] == "host_multiple"

    @pytest.mark.parametrize(
        ("scope", "expected"),
        [
            (
                {"scheme": "http", "headers": [], "server": ("::1", 8000), "raw_path": b"/a"},
                "http://[::1]:8000/a",
            ),
            (
                {"scheme": "wss", "headers": [], "server": ("10.0.0.1", 443), "path": "/a b"},
                "https://10.0.0.1:443/a%20b",
            ),
            ({"scheme": "ws", "headers": [], "server": ("h", None), "path": "/"}, "http://h/"),
            ({"scheme": "https", "headers": [], "path": "/x"}, "https://localhost/x"),
            (
                {"scheme": "http", "headers": [(b"host", b"rs.local:8080")], "raw_path": b"/a?q"},
                "http://rs.local:8080/a",
            ),
        ],
    )
    def test_target_from_parts(self, scope: dict[str, Any], expected: str) -> None:
        """Without a public URL, htu is composed from the scheme (ws as http, wss as
        https), the Host or the server address, and the target's path."""
        assert target_url(scope, public_url=None, networks=(), proxy_headers=()) == expected

    @pytest.mark.parametrize(
        "host", ["rs.local", "rs.local:8080", "10.0.0.1:1", "[::1]:65535", "[::1]"]
    )
    async def test_valid_hosts(self, host: str) -> None:
        """Names, IPv4 and bracketed IPv6 literals, with or without a port, are hosts."""
        assert check_host(host) == host


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TestOutages:
    @pytest.mark.parametrize(
        ("fault", "reason"),
        [
            ("http_500", "authlete_server_error"),
            ("http_429", "authlete_http_error"),
            ("garbage", "authlete_bad_response"),
            ("truncated", "authlete_bad_response"),
            ("internal_error", "authlete_internal_error"),
        ],
    )
    async def test_authlete_fault_then_recovery(
        self, h: Harness, signer: ProofSigner, reasons: list[str], fault: str, reason: str
    ) -> None:
        """Each Authlete fault is a 503 with no challenge; the next request recovers."""
        token = h.token(signer)
        h.simulator.set_fault(fault)
        assert_rejected(await h.call(token, signer), 503, None, reason, reasons)
        h.simulator.set_fault(None)
        assert (await h.call(token, signer)).status_code == 200

    async def test_authlete_hangs(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, reasons: list[str]
    ) -> None:
        """A hanging Authlete is cut at the timeout: 503."""
        h = make_harness(timeout=0.3)
        token = h.token(signer)
        h.simulator.set_fault("hang")
        with anyio.fail_after(5):
            response = await h.call(token, signer)
        assert_rejected(response, 503, None, "authlete_timeout", reasons)

    async def test_authlete_refuses_connections(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, reasons: list[str]
    ) -> None:
        """Nothing listening: 503."""
        h = make_harness(authlete_url=f"http://127.0.0.1:{_closed_port()}")
        response = await h.call(h.token(signer), signer)
        assert_rejected(response, 503, None, "authlete_unreachable", reasons)

    async def test_replay_store_failure(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, reasons: list[str]
    ) -> None:
        """A failing replay store: 503, never a pass."""

        class Broken:
            async def add_if_absent(self, key: str, *, ttl: int) -> bool:
                raise ConnectionError("store down")

        h = make_harness(replay_store=Broken())
        response = await h.call(h.token(signer), signer)
        assert_rejected(response, 503, None, "replay_store_error", reasons)

    async def test_replay_store_full(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, reasons: list[str]
    ) -> None:
        """A full memory store fails closed."""
        h = make_harness(replay_store=MemoryReplayStore(maxsize=1))
        token = h.token(signer)
        assert (await h.call(token, signer)).status_code == 200
        response = await h.call(token, signer)
        assert_rejected(response, 503, None, "replay_store_full", reasons)

    async def test_unexpected_error(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, reasons: list[str]
    ) -> None:
        """A bug in a dependency is a 503, not a traceback to the client."""

        class Buggy:
            async def introspect(self, token: str, *, request: RequestFacts) -> TokenInfo:
                raise KeyError("bug")

        h = make_harness(introspector=Buggy())
        response = await h.call("tok", signer)
        assert_rejected(response, 503, None, "internal_error", reasons)
        assert "bug" not in response.text and "Traceback" not in response.text

    async def test_unexpected_error_logged_without_locals(
        self,
        make_harness: Callable[..., Harness],
        signer: ProofSigner,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """The 503 path logs the exception's type and a traceback with no locals and no
        message: a token or proof held in a local, or quoted by a library in its message,
        reaches no log record, no exc_info and no formatted line."""

        class Buggy:
            async def introspect(self, token: str, *, request: RequestFacts) -> TokenInfo:
                held = {"token": token, "proof": request.proof}
                int(f"{held['token']}{held['proof']}")  # a ValueError quoting both
                raise AssertionError("unreachable")

        caplog.set_level(logging.DEBUG)
        h = make_harness(introspector=Buggy())
        token = h.token(signer)
        proof = make_proof(signer, htu=ORIGIN + "/accounts", access_token=token)
        response = await h.call(token, proof=proof)
        assert response.status_code == 503
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and errors[0].exc_info is None and errors[0].exc_text is None
        assert "ValueError" in errors[0].getMessage() and "introspect" in errors[0].getMessage()
        rendered = [
            logging.Formatter().format(r) + repr(r.__dict__) + repr(r.args) for r in caplog.records
        ]
        for secret in (token, proof, proof.split(".")[2]):
            assert all(secret not in line for line in rendered)


class TestDeployment:
    async def test_root_path_and_public_url(
        self, simulator: SimulatorState, simulator_url: str, signer: ProofSigner
    ) -> None:
        """Behind a proxy that strips /bank: htu is the public URL with the prefix."""
        http = httpx.AsyncClient()
        introspector = AuthleteIntrospector(http, authlete_settings(simulator_url))
        settings = GuardSettings(routes=ROUTES, public_url="https://public.example/bank")
        app = DPoPGuardMiddleware(inner_app(), settings=settings, introspector=introspector)
        token = simulator.create_token(subject="alice", scopes=["read:accounts"], jkt=signer.jkt)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, root_path="/bank"),
            base_url="http://internal:8000",
        ) as client:
            proof = make_proof(
                signer, htu="https://public.example/bank/accounts", access_token=token
            )
            response = await client.get(
                "/bank/accounts", headers={"Authorization": f"DPoP {token}", "DPoP": proof}
            )
            assert response.status_code == 200, response.text
            wrong = make_proof(signer, htu="http://internal:8000/bank/accounts", access_token=token)
            response = await client.get(
                "/bank/accounts", headers={"Authorization": f"DPoP {token}", "DPoP": wrong}
            )
            assert response.status_code == 401
        await http.aclose()

    async def test_host_header_used_without_public_url(
        self, simulator: SimulatorState, simulator_url: str, signer: ProofSigner
    ) -> None:
        """Without a public URL, htu is built from the scheme and Host header."""
        http = httpx.AsyncClient()
        app = DPoPGuardMiddleware(
            inner_app(),
            settings=GuardSettings(routes=ROUTES),
            introspector=AuthleteIntrospector(http, authlete_settings(simulator_url)),
        )
        token = simulator.create_token(subject="alice", scopes=["read:accounts"], jkt=signer.jkt)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://rs.local:8080"
        ) as client:
            proof = make_proof(signer, htu="http://rs.local:8080/accounts", access_token=token)
            response = await client.get(
                "/accounts", headers={"Authorization": f"DPoP {token}", "DPoP": proof}
            )
            assert response.status_code == 200, response.text
        await http.aclose()

    async def test_realm(self, make_harness: Callable[..., Harness]) -> None:
        """A configured realm appears in challenges."""
        h = make_harness(realm="bank")
        response = await h.call(None)
        assert parse_challenge(response.headers["www-authenticate"])[1]["realm"] == "bank"


UUID = "1f0c5e0e-9d2a-4c55-8b1e-5a8d9c3f2b71"


def is_uuid(value: str) -> bool:
    return str(uuid.UUID(value)) == value


class TestFapiHeaders:
    async def test_interaction_id_echoed_on_success(
        self, h: Harness, signer: ProofSigner, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A client's UUID is echoed on a 2xx, exposed as request.auth.interaction_id and
        request.state.fapi_interaction_id, and put on the decision's log record."""
        caplog.set_level(logging.DEBUG, logger="dpop_guard")
        token = h.token(signer)
        response = await h.call(token, signer, headers=[("x-fapi-interaction-id", UUID)])
        assert response.status_code == 200
        assert response.headers["x-fapi-interaction-id"] == UUID
        body = response.json()
        assert body["interaction_id"] == body["state_interaction_id"] == UUID
        decision = [r for r in caplog.records if hasattr(r, "dpop_guard_outcome")][-1]
        assert decision.dpop_guard_interaction_id == UUID  # type: ignore[attr-defined]

    async def test_interaction_id_echoed_on_error(self, h: Harness, reasons: list[str]) -> None:
        """The id is echoed on a refusal too (401, no error, authorization_missing),
        exactly as sent (upper case included)."""
        response = await h.call(None, headers=[("x-fapi-interaction-id", UUID.upper())])
        assert_rejected(response, 401, None, "authorization_missing", reasons)
        assert response.headers["x-fapi-interaction-id"] == UUID.upper()

    async def test_interaction_id_minted(self, h: Harness) -> None:
        """Without one, a UUID is minted (on a public route as well)."""
        response = await h.call(None, path="/health")
        assert response.status_code == 200
        assert is_uuid(response.headers["x-fapi-interaction-id"])

    @pytest.mark.parametrize(
        "sent",
        ["not-a-uuid", UUID + "x", "{" + UUID + "}", UUID.replace("-", ""), "a\x01b", f" {UUID}"],
    )
    async def test_non_uuid_replaced_and_logged(
        self, h: Harness, signer: ProofSigner, caplog: pytest.LogCaptureFixture, sent: str
    ) -> None:
        """A value that is not a canonical UUID is replaced by a fresh one, and the
        replacement (never the client's value) is logged."""
        caplog.set_level(logging.INFO, logger="dpop_guard")
        token = h.token(signer)
        response = await h.call(token, signer, headers=[("x-fapi-interaction-id", sent)])
        assert response.status_code == 200
        echoed = response.headers["x-fapi-interaction-id"]
        assert is_uuid(echoed) and echoed != sent and response.json()["interaction_id"] == echoed
        replaced = [r for r in caplog.records if "replaced" in r.getMessage()]
        assert [r.dpop_guard_interaction_id for r in replaced] == [echoed]  # type: ignore[attr-defined]
        assert all(sent not in r.getMessage() for r in caplog.records)

    async def test_date_header_when_asked(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, reasons: list[str]
    ) -> None:
        """With date_header, responses the server would send without a Date (the ASGI
        transport adds none) get exactly one, on a 2xx and on a refusal alike; without it,
        none is added."""
        assert "date" not in (await make_harness().call(None)).headers
        h = make_harness(date_header=True)
        refused = await h.call(None)
        assert_rejected(refused, 401, None, "authorization_missing", reasons)
        served = await h.call(h.token(signer), signer)
        assert served.status_code == 200
        for response in (refused, served):
            dates = response.headers.get_list("date")
            assert len(dates) == 1
            assert parsedate_to_datetime(dates[0]).tzinfo is not None

    def test_minted_ids_are_uuid4(self) -> None:
        """Minted ids are distinct version-4 RFC 4122 UUIDs in canonical form."""
        minted = [mint_uuid() for _ in range(2000)]
        assert len(set(minted)) == len(minted)
        for value in minted:
            parsed = uuid.UUID(value)
            assert str(parsed) == value and parsed.version == 4
            assert parsed.variant == uuid.RFC_4122

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("x-fapi-customer-ip-address", "2001:db8::1"),
            ("x-fapi-customer-ip-address", "198.51.100.7"),
            ("x-fapi-customer-ip-address", "[2001:db8::1]"),
            ("x-fapi-auth-date", "Tue, 11 Sep 2012 19:43:31 GMT"),
            ("x-fapi-auth-date", "garbage"),
        ],
    )
    async def test_fapi_customer_headers_never_refused(
        self, h: Harness, signer: ProofSigner, name: str, value: str
    ) -> None:
        """x-fapi-customer-ip-address (IPv6 too) and x-fapi-auth-date never cause a
        refusal."""
        token = h.token(signer)
        assert (await h.call(token, signer, headers=[(name, value)])).status_code == 200


class TestNoLeaks:
    async def test_tokens_and_proofs_never_logged(
        self, h: Harness, signer: ProofSigner, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Across successes, rejections and outages, no token or proof reaches the log or
        a response body."""
        caplog.set_level(logging.DEBUG)
        token = h.token(signer)
        proof = make_proof(signer, htu=ORIGIN + "/accounts", access_token=token)
        bodies = [
            (await h.call(token, proof=proof)).text,
            (await h.call(token, proof=proof)).text,
            (await h.call(token, ProofSigner.generate("ES256"))).text,
        ]
        h.simulator.set_fault("http_500")
        bodies.append((await h.call(h.token(signer), signer)).text)
        logged = caplog.text + json.dumps([str(r.__dict__) for r in caplog.records])
        for secret in (token, proof, proof.split(".")[2], DEFAULT_SERVICE_TOKEN):
            assert secret not in logged
            assert all(secret not in body for body in bodies)

    @pytest.mark.parametrize("cache", [True, False])
    async def test_app_traceback_frames_hold_no_token_or_proof(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, cache: bool
    ) -> None:
        """When the protected app raises, no frame of the guard's in the traceback holds
        the token, the proof or a header value as a local (locals-rendering loggers print
        them): the request is handed on from a frame holding only scope, receive, send."""
        raised: list[BaseException] = []

        async def failing(scope: Any, receive: Any, send: Any) -> None:
            raise RuntimeError("the app failed")

        h = make_harness(cache=cache)
        guard: DPoPGuardMiddleware = h.app

        async def capture(scope: Any, receive: Any, send: Any) -> None:
            try:
                await guard(scope, receive, send)
            except RuntimeError as exc:
                raised.append(exc)
                await send({"type": "http.response.start", "status": 500, "headers": []})
                await send({"type": "http.response.body", "body": b""})

        guard.app = failing
        h.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=capture), base_url=ORIGIN)
        token = h.token(signer)
        proof = make_proof(signer, htu=ORIGIN + "/accounts", access_token=token)
        for _ in range(2):  # a miss, then (with the cache) a hit
            proof = make_proof(signer, htu=ORIGIN + "/accounts", access_token=token)
            assert (await h.call(token, proof=proof)).status_code == 500
        frames = [
            tb.tb_frame
            for exc in raised
            for tb in _walk(exc.__traceback__)
            if tb.tb_frame.f_globals.get("__name__", "").startswith("dpop_guard")
        ]
        assert frames, "the guard's own frame is in the traceback"
        for frame in frames:
            assert set(frame.f_locals) <= {"self", "scope", "receive", "send", "kind", "handed"}
            held = [v for k, v in frame.f_locals.items() if k != "scope"]
            for secret in (token, proof, proof.split(".")[2]):
                assert all(secret not in repr(value) for value in held)


def _walk(tb: Any) -> Iterator[Any]:
    while tb is not None:
        yield tb
        tb = tb.tb_next


class TestDeclaredSeams:
    async def test_a_subclass_overriding_cached_sync_sees_every_request(
        self, make_harness: Callable[..., Harness], signer: ProofSigner
    ) -> None:
        """The memory-hit seam is declared (SyncTokenLookup): a cache subclass that wants
        every call intercepted overrides ``cached_sync`` too, and then sees each request
        through ``introspect``, hits included."""
        from dpop_guard.introspection.cached import CachingIntrospector

        seen: list[str] = []

        class Audited(CachingIntrospector):
            def cached_sync(
                self, token: str, request: RequestFacts | None = None
            ) -> TokenInfo | None:
                return None

            async def introspect(self, token: str, *, request: RequestFacts) -> TokenInfo:
                seen.append(token)
                return await super().introspect(token, request=request)

        plain = make_harness()
        audited = make_harness(introspector=Audited(plain.introspector.inner, ttl=60))
        token = audited.token(signer)
        for _ in range(3):
            assert (await audited.call(token, signer)).status_code == 200
        assert seen == [token] * 3

    def test_a_subclass_overriding_introspect_alone_is_refused(self) -> None:
        """A cache subclass that adds a check to ``introspect`` only would be skipped on
        every hit (the middleware answers hits through ``cached_sync``): refused when the
        class is defined."""
        from dpop_guard.introspection.cached import CachingIntrospector

        with pytest.raises(TypeError, match="overrides introspect but not cached_sync"):

            class Revoking(CachingIntrospector):
                async def introspect(self, token: str, *, request: RequestFacts) -> TokenInfo:
                    return await super().introspect(token, request=request)


class TestWebsocketExpiry:
    """``close_websockets_at_expiry``: an accepted websocket is closed (1008) at its
    token's expiry, by the guard's (injected) clock."""

    async def _session(
        self, make_harness: Callable[..., Harness], signer: ProofSigner, *, close: bool
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """A websocket whose app sends, lets the clock reach the token's expiry, then
        receives and sends again: what the server was sent, and what the app received."""
        now = [time.time()]
        h = make_harness(clock=lambda: now[0], close_websockets_at_expiry=close)
        received: list[dict[str, Any]] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            received.append(await receive())  # websocket.connect
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": "before"})
            now[0] = scope["auth"].expires_at  # the token expires now
            received.append(await receive())
            await send({"type": "websocket.send", "text": "after"})

        h.app.app = app
        token = h.token(signer)
        proof = make_proof(signer, htm="GET", htu=ORIGIN + "/ws", access_token=token)
        scope = {
            "type": "websocket",
            "scheme": "wss",
            "path": "/ws",
            "raw_path": b"/ws",
            "headers": [
                (b"host", b"api.bank.test"),
                (b"authorization", f"DPoP {token}".encode()),
                (b"dpop", proof.encode()),
            ],
        }
        from_client = [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "hi"}]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return from_client.pop(0)

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(dict(message))

        await h.app(scope, receive, send)
        return sent, received

    async def test_closed_at_expiry(
        self, make_harness: Callable[..., Harness], signer: ProofSigner
    ) -> None:
        """At the expiry the server is sent a close (1008), the app's receive gets a
        disconnect (1008), and what the app sends afterwards never goes out."""
        sent, received = await self._session(make_harness, signer, close=True)
        assert [m["type"] for m in sent] == [
            "websocket.accept",
            "websocket.send",
            "websocket.close",
        ]
        assert sent[1]["text"] == "before"
        assert sent[2]["code"] == 1008
        assert received[1] == {"type": "websocket.disconnect", "code": 1008}

    async def test_send_after_expiry_closes(
        self, make_harness: Callable[..., Harness], signer: ProofSigner
    ) -> None:
        """A message sent after the expiry closes the connection instead."""
        from dpop_guard._websocket import close_at_expiry

        sent: list[dict[str, Any]] = []

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(dict(message))

        async def receive() -> dict[str, Any]:
            raise AssertionError("not read")

        _, wrapped = close_at_expiry(receive, send, 100, lambda: 100.0)
        await wrapped({"type": "websocket.send", "text": "late"})
        await wrapped({"type": "websocket.send", "text": "later"})
        assert sent == [{"type": "websocket.close", "code": 1008, "reason": "token expired"}]

    async def test_left_open_by_default(
        self, make_harness: Callable[..., Harness], signer: ProofSigner
    ) -> None:
        """Without the option the guard does not touch an accepted websocket: the app
        must check ``websocket.auth.expires_at`` itself (docs/hardening.md)."""
        sent, received = await self._session(make_harness, signer, close=False)
        assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.send"]
        assert received[1] == {"type": "websocket.receive", "text": "hi"}
