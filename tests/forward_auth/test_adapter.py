"""The forward-auth adapter in process: the original request rebuilt per proxy (vectors as
data, including the exact check requests Traefik and Envoy send, from their documentation),
the trust rule, refusals of what a proxy reports, and the answers. The guard behind it is
the real middleware, the Authlete simulator over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.types import Receive, Scope, Send

from dpop_guard._env import ConfigurationError
from dpop_guard.challenges import parse_challenge
from dpop_guard.client import ProofSigner
from dpop_guard.devtools.simulator import SimulatorState
from dpop_guard.forward_auth import (
    MAX_TARGET_BYTES,
    ForwardAuth,
    ForwardAuthSettings,
    create_app,
)
from dpop_guard.settings import GuardSettings
from dpop_guard.testing import make_proof

from ._support import ROUTES, environment

PUBLIC = "https://api.bank.test"
PROXY_PEER = ("127.0.0.1", 40000)

# What each proxy sends for the original request "GET https://api.bank.test/accounts?x=1".
CHECK_REQUESTS: dict[str, dict[str, Any]] = {
    # deploy/forward-auth/nginx.conf: GET to the auth location, four headers set.
    "nginx": {
        "method": "GET",
        "path": "/__dpop_guard_auth",
        "headers": {
            "X-Original-Method": "GET",
            "X-Original-URI": "/accounts?x=1",
            "X-Forwarded-Host": "api.bank.test",
            "X-Forwarded-Proto": "https",
        },
    },
    # Caddy's forward_auth: GET to `uri`, X-Forwarded-Method/-Uri, and reverse_proxy's
    # X-Forwarded-For/-Proto/-Host.
    "caddy": {
        "method": "GET",
        "path": "/__dpop_guard_auth",
        "headers": {
            "X-Forwarded-Method": "GET",
            "X-Forwarded-Uri": "/accounts?x=1",
            "X-Forwarded-Host": "api.bank.test",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-For": "203.0.113.9",
        },
    },
    # Traefik ForwardAuth (pkg/middlewares/auth/forward.go): GET to `address`, the client's
    # headers, then X-Forwarded-Method/-Proto/-Host/-Uri/-For.
    "traefik": {
        "method": "GET",
        "path": "/",
        "headers": {
            "X-Forwarded-Method": "GET",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "api.bank.test",
            "X-Forwarded-Uri": "/accounts?x=1",
            "X-Forwarded-For": "203.0.113.9",
        },
    },
    # Envoy ext_authz HTTP service: the original method, path_prefix + the original path,
    # Host (the original :authority), and allowed_headers (DPoP, x-forwarded-proto).
    "envoy": {
        "method": "GET",
        "path": "/check/accounts?x=1",
        "headers": {"Host": "api.bank.test", "X-Forwarded-Proto": "https", "Content-Length": "0"},
    },
}


class Recorder:
    """The app behind the adapter in the scope vectors: it keeps the scope it was given."""

    def __init__(self) -> None:
        self.scopes: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def _adapter(proxy: str, public_url: str | None = None) -> tuple[ForwardAuth, Recorder]:
    recorder = Recorder()
    prefix = "/check" if proxy == "envoy" else ""
    adapter = ForwardAuth(
        recorder,
        settings=GuardSettings(
            public_url=public_url, trusted_proxies=("127.0.0.1",), proxy_headers=("x-forwarded",)
        ),
        forward=ForwardAuthSettings(proxy=proxy, path_prefix=prefix),  # type: ignore[arg-type]
        certificate_headers=(b"x-client-cert",),
    )
    return adapter, recorder


async def _send(
    app: Any,
    proxy: str,
    extra: Mapping[str, str | bytes] | list[tuple[str, str]] = (),  # type: ignore[assignment]
    *,
    peer: tuple[str, int] = PROXY_PEER,
    drop: tuple[str, ...] = (),
    path: str | None = None,
) -> httpx.Response:
    request = CHECK_REQUESTS[proxy]
    headers = [(k, v) for k, v in request["headers"].items() if k not in drop]
    headers += list(extra.items()) if isinstance(extra, Mapping) else list(extra)
    transport = httpx.ASGITransport(app=app, client=peer)
    async with httpx.AsyncClient(transport=transport, base_url="http://auth.internal") as c:
        return await c.request(request["method"], path or request["path"], headers=headers)


class TestRebuiltScope:
    @pytest.mark.parametrize("proxy", sorted(CHECK_REQUESTS))
    async def test_each_proxy_names_the_original_request(self, proxy: str) -> None:
        """Method, target, host and scheme come from the proxy's own headers; of the
        client's headers only those the guard reads are handed on."""
        adapter, recorder = _adapter(proxy)
        client_headers = {
            "Authorization": "DPoP t",
            "DPoP": "p",
            "X-Client-Cert": "c",
            "Cookie": "session=1",
            "Forwarded": "host=evil.example",
        }
        assert (await _send(adapter, proxy, client_headers)).status_code == 204
        scope = recorder.scopes[0]
        assert (scope["method"], scope["path"], scope["raw_path"]) == (
            "GET",
            "/accounts",
            b"/accounts",
        )
        assert (scope["query_string"], scope["scheme"], scope["root_path"]) == (b"x=1", "https", "")
        headers = dict(scope["headers"])
        assert headers[b"host"] == b"api.bank.test"
        assert {n for n, _ in scope["headers"]} == {
            b"host",
            b"authorization",
            b"dpop",
            b"x-client-cert",
        }
        assert scope["client"] == PROXY_PEER

    @pytest.mark.parametrize(
        ("target", "path", "raw", "query"),
        [
            ("/accounts/a%20b?x=1&y=%2F", "/accounts/a b", b"/accounts/a%20b", b"x=1&y=%2F"),
            ("/a%20b", "/a b", b"/a%20b", b""),
            ("/accounts?", "/accounts", b"/accounts", b""),
            ("/%C3%A5", "/\u00e5", b"/%C3%A5", b""),
        ],
    )
    async def test_target_is_decoded_as_servers_do(
        self, target: str, path: str, raw: bytes, query: bytes
    ) -> None:
        adapter, recorder = _adapter("caddy")
        await _send(adapter, "caddy", {"X-Forwarded-Uri": target}, drop=("X-Forwarded-Uri",))
        scope = recorder.scopes[0]
        assert (scope["path"], scope["raw_path"], scope["query_string"]) == (path, raw, query)

    async def test_with_a_public_url_host_and_scheme_are_not_required(self) -> None:
        adapter, recorder = _adapter("nginx", public_url=PUBLIC)
        drop = ("X-Forwarded-Host", "X-Forwarded-Proto")
        assert (await _send(adapter, "nginx", drop=drop)).status_code == 204
        assert b"host" not in dict(recorder.scopes[0]["headers"])


# (proxy, headers to add, headers to drop, check-request path) -> (status, reason)
REFUSALS: list[tuple[str, str, dict[str, str | bytes], tuple[str, ...], str | None, int, str]] = [
    ("missing URI", "caddy", {}, ("X-Forwarded-Uri",), None, 503, "forward_auth_header_missing"),
    ("missing method", "traefik", {}, ("X-Forwarded-Method",), None, 503, "forward_auth_header_missing"),
    ("missing host", "caddy", {}, ("X-Forwarded-Host",), None, 503, "forward_auth_header_missing"),
    ("missing proto", "caddy", {}, ("X-Forwarded-Proto",), None, 503, "forward_auth_header_missing"),
    ("empty URI", "caddy", {"X-Forwarded-Uri": " "}, ("X-Forwarded-Uri",), None, 503, "forward_auth_header_missing"),
    ("envoy without prefix", "envoy", {}, (), "/accounts", 503, "forward_auth_header_missing"),
    ("envoy prefix look-alike", "envoy", {}, (), "/checkx/accounts", 503, "forward_auth_header_missing"),
    ("envoy bare prefix", "envoy", {}, (), "/check", 503, "forward_auth_header_missing"),
    ("URI twice", "caddy", {"X-Forwarded-Uri": "/health"}, (), None, 400, "forward_auth_header_invalid"),
    ("method twice", "caddy", {"X-Forwarded-Method": "POST"}, (), None, 400, "forward_auth_header_invalid"),
    ("method not a token", "caddy", {"X-Forwarded-Method": "GE T"}, ("X-Forwarded-Method",), None, 400, "forward_auth_header_invalid"),
    ("method too long", "caddy", {"X-Forwarded-Method": "G" * 33}, ("X-Forwarded-Method",), None, 400, "forward_auth_header_invalid"),
    ("proto not http(s)", "caddy", {"X-Forwarded-Proto": "ftp"}, ("X-Forwarded-Proto",), None, 400, "forward_auth_header_invalid"),
    ("URI over the cap", "caddy", {"X-Forwarded-Uri": "/" + "a" * MAX_TARGET_BYTES}, ("X-Forwarded-Uri",), None, 400, "forward_auth_header_invalid"),
    ("absolute-form URI", "caddy", {"X-Forwarded-Uri": "http://evil.example/health"}, ("X-Forwarded-Uri",), None, 400, "request_target_invalid"),
    ("asterisk-form URI", "traefik", {"X-Forwarded-Uri": "*"}, ("X-Forwarded-Uri",), None, 400, "request_target_invalid"),
    ("fragment in URI", "caddy", {"X-Forwarded-Uri": "/health#x"}, ("X-Forwarded-Uri",), None, 400, "request_target_invalid"),
    ("space in URI", "caddy", {"X-Forwarded-Uri": "/health /x"}, ("X-Forwarded-Uri",), None, 400, "request_target_invalid"),
    ("encoded LF in path", "caddy", {"X-Forwarded-Uri": "/health%0A"}, ("X-Forwarded-Uri",), None, 400, "path_control_character"),
    ("URI with a leading space", "caddy", {"X-Forwarded-Uri": " /health"}, ("X-Forwarded-Uri",), None, 400, "request_target_invalid"),
    ("method with a space", "caddy", {"X-Forwarded-Method": "GET "}, ("X-Forwarded-Method",), None, 400, "forward_auth_header_invalid"),
    ("raw CRLF in URI", "caddy", {"X-Forwarded-Uri": "/health\r\nX-Auth-Subject: a"}, ("X-Forwarded-Uri",), None, 400, "path_control_character"),
    ("raw NUL in URI", "caddy", {"X-Forwarded-Uri": "/health\x00"}, ("X-Forwarded-Uri",), None, 400, "path_control_character"),
    ("CRLF in method", "caddy", {"X-Forwarded-Method": "GET\r\n"}, ("X-Forwarded-Method",), None, 400, "forward_auth_header_invalid"),
    ("relative URI", "caddy", {"X-Forwarded-Uri": "health"}, ("X-Forwarded-Uri",), None, 400, "request_target_invalid"),
    ("path parameter", "caddy", {"X-Forwarded-Uri": "/accounts;jsessionid=1"}, ("X-Forwarded-Uri",), None, 400, "forward_auth_target_ambiguous"),
    ("dot-dot with parameter", "caddy", {"X-Forwarded-Uri": "/health/..;/accounts"}, ("X-Forwarded-Uri",), None, 400, "forward_auth_target_ambiguous"),
    ("dot segments", "caddy", {"X-Forwarded-Uri": "/health/../accounts"}, ("X-Forwarded-Uri",), None, 400, "forward_auth_target_ambiguous"),
    ("encoded dot segments", "caddy", {"X-Forwarded-Uri": "/health/%2e%2E/accounts"}, ("X-Forwarded-Uri",), None, 400, "forward_auth_target_ambiguous"),
    ("single dot", "caddy", {"X-Forwarded-Uri": "/./accounts"}, ("X-Forwarded-Uri",), None, 400, "forward_auth_target_ambiguous"),
    ("empty segment", "caddy", {"X-Forwarded-Uri": "//accounts"}, ("X-Forwarded-Uri",), None, 400, "forward_auth_target_ambiguous"),
    ("encoded slash", "caddy", {"X-Forwarded-Uri": "/health%2F..%2Faccounts"}, ("X-Forwarded-Uri",), None, 400, "forward_auth_target_ambiguous"),
    ("encoded backslash", "caddy", {"X-Forwarded-Uri": "/health%5c..%5caccounts"}, ("X-Forwarded-Uri",), None, 400, "forward_auth_target_ambiguous"),
    ("backslash", "caddy", {"X-Forwarded-Uri": "/health\\..\\accounts"}, ("X-Forwarded-Uri",), None, 400, "forward_auth_target_ambiguous"),
    ("double encoding", "caddy", {"X-Forwarded-Uri": "/health/%252e%252e/accounts"}, ("X-Forwarded-Uri",), None, 400, "forward_auth_target_ambiguous"),
    ("envoy dot segments", "envoy", {}, (), "/check/health/%2e%2e/accounts", 400, "forward_auth_target_ambiguous"),
    ("envoy asterisk-form", "envoy", {}, (), "/check*", 400, "request_target_invalid"),
    ("encoded question mark", "caddy", {"X-Forwarded-Uri": "/admin%3F"}, ("X-Forwarded-Uri",), None, 400, "forward_auth_target_ambiguous"),
    ("encoded hash", "caddy", {"X-Forwarded-Uri": "/admin%23"}, ("X-Forwarded-Uri",), None, 400, "forward_auth_target_ambiguous"),
    ("trailing space", "caddy", {"X-Forwarded-Uri": "/admin%20"}, ("X-Forwarded-Uri",), None, 400, "forward_auth_target_ambiguous"),
    ("trailing dot", "caddy", {"X-Forwarded-Uri": "/admin."}, ("X-Forwarded-Uri",), None, 400, "forward_auth_target_ambiguous"),
    ("dots and a space", "caddy", {"X-Forwarded-Uri": "/health/..%20/accounts"}, ("X-Forwarded-Uri",), None, 400, "forward_auth_target_ambiguous"),
    ("three dots", "caddy", {"X-Forwarded-Uri": "/health/.../accounts"}, ("X-Forwarded-Uri",), None, 400, "forward_auth_target_ambiguous"),
    ("overlong dots", "caddy", {"X-Forwarded-Uri": "/health/%C0%AE%C0%AE/accounts"}, ("X-Forwarded-Uri",), None, 400, "forward_auth_target_ambiguous"),
    ("percent-u dots (IIS)", "caddy", {"X-Forwarded-Uri": "/health/%u002e%u002e/accounts"}, ("X-Forwarded-Uri",), None, 400, "forward_auth_target_ambiguous"),
    ("a lone percent sign", "caddy", {"X-Forwarded-Uri": "/health%"}, ("X-Forwarded-Uri",), None, 400, "forward_auth_target_ambiguous"),
    ("raw octets not UTF-8", "caddy", {"X-Forwarded-Uri": b"/health/\xc0\xae\xc0\xae/accounts"}, ("X-Forwarded-Uri",), None, 400, "forward_auth_target_ambiguous"),
    ("fullwidth dots", "caddy", {"X-Forwarded-Uri": "/health/%EF%BC%8E%EF%BC%8E/accounts"}, ("X-Forwarded-Uri",), None, 400, "forward_auth_target_ambiguous"),
    ("host with a path", "caddy", {"X-Forwarded-Host": "evil.example/x", "Authorization": "DPoP t", "DPoP": "a.b.c"}, ("X-Forwarded-Host",), None, 400, "host_invalid"),
]  # fmt: skip


@pytest.fixture(name="make_app")
async def _make_app(simulator_url: str) -> AsyncIterator[Callable[..., Any]]:
    """Forward-auth servers for the simulator, their clients closed afterwards."""
    made: list[Any] = []

    def make(proxy: str, public_url: str, **extra: str) -> Any:
        env = environment(simulator_url, proxy, public_url, **extra)
        made.append(create_app(routes=ROUTES, environ=env))
        return made[-1]

    yield make
    for app in made:
        await app.guard.aclose()


@pytest.fixture(name="app")
def _app(make_app: Callable[..., Any]) -> Any:
    """The forward-auth server (Caddy's contract), htu from the proxy's host and scheme."""
    return make_app("caddy", "request")


@pytest.fixture(name="envoy_app")
def _envoy_app(make_app: Callable[..., Any]) -> Any:
    return make_app("envoy", PUBLIC)


def _refused(response: httpx.Response, status: int, reason: str, reasons: list[str]) -> None:
    assert response.status_code == status, response.text
    assert response.headers["cache-control"] == "no-store"
    assert reasons[-1] == reason
    if status == 503:
        assert response.json()["error"] == "temporarily_unavailable"
        assert "www-authenticate" not in response.headers
        return
    _, params = parse_challenge(response.headers["www-authenticate"])
    assert params["error"] == "invalid_request" == response.json()["error"]


class TestRefusals:
    @pytest.mark.parametrize(
        ("proxy", "add", "drop", "path", "status", "reason"),
        [r[1:] for r in REFUSALS],
        ids=[r[0] for r in REFUSALS],
    )
    async def test_what_the_proxy_reports_is_checked(
        self,
        make_app: Callable[..., Any],
        reasons: list[str],
        proxy: str,
        add: dict[str, str | bytes],
        drop: tuple[str, ...],
        path: str | None,
        status: int,
        reason: str,
    ) -> None:
        """A header of the contract missing is the proxy's fault (503, fail closed); one
        twice, oversized or malformed is refused (400); the target itself goes through the
        middleware's own rules. Never a pass, whatever the path names."""
        app = make_app(proxy, PUBLIC if proxy == "envoy" else "request")
        response = await _send(app, proxy, add, drop=drop, path=path)
        _refused(response, status, reason, reasons)

    @pytest.mark.parametrize("peer", ["10.0.0.1", "127.0.0.2", "::1", "192.168.1.1"])
    async def test_a_peer_that_is_not_a_trusted_proxy_is_refused(
        self, app: Any, reasons: list[str], peer: str
    ) -> None:
        """Whatever it sends, even a well-formed check request for a public path."""
        drop = ("X-Forwarded-Uri",)
        response = await _send(
            app, "caddy", {"X-Forwarded-Uri": "/health"}, drop=drop, peer=(peer, 1)
        )
        assert response.status_code == 403
        assert reasons[-1] == "forward_auth_peer_untrusted"
        assert response.headers["cache-control"] == "no-store"
        assert "x-auth-subject" not in response.headers


class TestAnswers:
    async def test_allow_carries_the_identity(
        self, app: Any, simulator: SimulatorState, signer: ProofSigner
    ) -> None:
        token = simulator.create_token(subject="alice", scopes=["read:accounts"], jkt=signer.jkt)
        proof = make_proof(signer, htu=PUBLIC + "/accounts", access_token=token)
        response = await _send(app, "caddy", {"Authorization": f"DPoP {token}", "DPoP": proof})
        assert response.status_code == 200, response.text
        assert response.headers["x-auth-subject"] == "alice"
        assert response.headers["x-auth-scope"] == "read:accounts"
        assert (
            response.headers["x-auth-interaction-id"] == response.headers["x-fapi-interaction-id"]
        )
        assert response.headers["x-dpop-guard-nonce"] == ""
        assert response.headers["cache-control"] == "no-store"

    async def test_identity_values_cannot_split_a_header(
        self, app: Any, simulator: SimulatorState, signer: ProofSigner
    ) -> None:
        """What the authorization server returns is percent-encoded outside visible ASCII."""
        subject = "\u00e5lice\r\nX-Auth-Scope: admin%"
        token = simulator.create_token(subject=subject, scopes=["read:accounts"], jkt=signer.jkt)
        proof = make_proof(signer, htu=PUBLIC + "/accounts", access_token=token)
        response = await _send(app, "caddy", {"Authorization": f"DPoP {token}", "DPoP": proof})
        assert response.headers["x-auth-subject"] == quote(subject, safe=" :-")
        assert response.headers["x-auth-scope"] == "read:accounts"

    async def test_public_path_allows_with_empty_identity(self, app: Any) -> None:
        drop = ("X-Forwarded-Uri",)
        response = await _send(app, "caddy", {"X-Forwarded-Uri": "/health"}, drop=drop)
        assert response.status_code == 200
        for name in ("subject", "client-id", "scope", "interaction-id"):
            assert response.headers[f"x-auth-{name}"] == ""

    @pytest.mark.parametrize("method", ["GET", "HEAD"])
    async def test_metadata_path_goes_on_to_the_api(
        self, make_app: Callable[..., Any], method: str
    ) -> None:
        """The RFC 9728 document's path is public here (GET, HEAD) and goes on to the API
        with empty identity headers: the forward-auth server never answers the document
        itself (a check request's answer does not reach the client, and the check request
        is a GET whatever the original method)."""
        app = make_app("caddy", PUBLIC, authorization_servers="https://as.bank.test")
        path = "/.well-known/oauth-protected-resource"
        extra = {"X-Forwarded-Uri": path, "X-Forwarded-Method": method}
        response = await _send(app, "caddy", extra, drop=("X-Forwarded-Uri", "X-Forwarded-Method"))
        assert response.status_code == 200, response.text
        assert "resource" not in response.text
        for name in ("subject", "client-id", "scope", "interaction-id"):
            assert response.headers[f"x-auth-{name}"] == ""

    async def test_htu_is_the_original_url(
        self, app: Any, simulator: SimulatorState, signer: ProofSigner, reasons: list[str]
    ) -> None:
        """A proof for the auth server's own URL does not pass for the original one."""
        token = simulator.create_token(subject="alice", scopes=["read:accounts"], jkt=signer.jkt)
        proof = make_proof(signer, htu="http://auth.internal/__dpop_guard_auth", access_token=token)
        response = await _send(app, "caddy", {"Authorization": f"DPoP {token}", "DPoP": proof})
        assert response.status_code == 401 and reasons[-1] == "htu_mismatch"

    async def test_envoy_check_request(
        self, envoy_app: Any, simulator: SimulatorState, signer: ProofSigner
    ) -> None:
        """Envoy keeps the original method: a DELETE proof for a DELETE check request."""
        token = simulator.create_token(subject="alice", scopes=["read:accounts"], jkt=signer.jkt)
        proof = make_proof(signer, htm="DELETE", htu=PUBLIC + "/accounts", access_token=token)
        transport = httpx.ASGITransport(app=envoy_app, client=PROXY_PEER)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.bank.test") as c:
            headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
            response = await c.delete("/check/accounts?x=1", headers=headers)
            assert response.status_code == 200, response.text
            assert response.headers["x-auth-subject"] == "alice"
            get = make_proof(signer, htu=PUBLIC + "/accounts", access_token=token)
            wrong = await c.delete("/check/accounts", headers=headers | {"DPoP": get})
            assert wrong.status_code == 401

    async def test_nginx_gets_every_refusal_as_401_with_its_status(
        self, make_app: Callable[..., Any], simulator: SimulatorState, signer: ProofSigner
    ) -> None:
        """auth_request passes 401 and 403 only: the status and body ride in headers."""
        app = make_app("nginx", PUBLIC)
        token = simulator.create_token(subject="alice", scopes=["read:accounts"], jkt=signer.jkt)
        simulator.set_fault("http_500")
        proof = make_proof(signer, htu=PUBLIC + "/accounts", access_token=token)
        down = await _send(app, "nginx", {"Authorization": f"DPoP {token}", "DPoP": proof})
        assert down.status_code == 401
        assert down.headers["x-dpop-guard-status"] == "503"
        assert down.headers["x-dpop-guard-body"] == down.text
        assert "www-authenticate" not in down.headers
        simulator.set_fault(None)
        path = "/accounts/acc-1/transactions"
        drop = ("X-Original-URI",)
        proof = make_proof(signer, htu=PUBLIC + path, access_token=token)
        extra = {"Authorization": f"DPoP {token}", "DPoP": proof, "X-Original-URI": path}
        scope = await _send(app, "nginx", extra, drop=drop)
        assert scope.status_code == 401 and scope.headers["x-dpop-guard-status"] == "403"
        assert (
            parse_challenge(scope.headers["www-authenticate"])[1]["error"] == "insufficient_scope"
        )


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    target=st.binary(max_size=64)
    | st.text(alphabet="/%?#.aAz09\t :\\@", max_size=40).map(str.encode),
    method=st.binary(max_size=12),
)
async def test_any_reported_request_is_a_decision_never_a_crash(
    app: Any, target: bytes, method: bytes
) -> None:
    """Whatever a proxy reports as method and target: 200 only for the public path,
    otherwise a refusal the middleware makes (never a 5xx but a missing header's 503)."""
    headers = [(b"x-forwarded-uri", target), (b"x-forwarded-method", method)]
    base = [
        (k.lower().encode(), v.encode())
        for k, v in CHECK_REQUESTS["caddy"]["headers"].items()
        if k not in ("X-Forwarded-Uri", "X-Forwarded-Method")
    ]
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/__dpop_guard_auth",
        "raw_path": b"/__dpop_guard_auth",
        "query_string": b"",
        "headers": base + headers,
        "client": PROXY_PEER,
        "server": ("127.0.0.1", 9000),
        "scheme": "http",
        "http_version": "1.1",
        "asgi": {"version": "3.0"},
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = sent[0]["status"]
    if not target.strip() or not method.strip():
        assert status in (400, 503)
    elif status == 200:
        assert target.partition(b"?")[0] in (b"/health", b"/health/")
    else:
        assert status in (400, 401), (target, method, status)


class TestConfiguration:
    @pytest.mark.parametrize(
        ("env", "variable"),
        [
            ({"FORWARD_AUTH_PROXY": ""}, "DPOP_GUARD_FORWARD_AUTH_PROXY"),
            ({"FORWARD_AUTH_PROXY": "haproxy"}, "DPOP_GUARD_FORWARD_AUTH_PROXY"),
            ({"FORWARD_AUTH_PROXY": "envoy", "FORWARD_AUTH_PATH_PREFIX": ""}, "DPOP_GUARD_FORWARD_AUTH_PATH_PREFIX"),
            ({"FORWARD_AUTH_PROXY": "envoy", "FORWARD_AUTH_PATH_PREFIX": "check"}, "DPOP_GUARD_FORWARD_AUTH_PATH_PREFIX"),
            ({"FORWARD_AUTH_PROXY": "nginx", "FORWARD_AUTH_PATH_PREFIX": "/check"}, "DPOP_GUARD_FORWARD_AUTH_PATH_PREFIX"),
            ({"FORWARD_AUTH_UNMATCHED": "allow"}, "DPOP_GUARD_FORWARD_AUTH_UNMATCHED"),
            ({"FORWARD_AUTH_IDENTITY_HEADERS": "subject"}, "DPOP_GUARD_FORWARD_AUTH_IDENTITY_HEADERS"),
            ({"FORWARD_AUTH_IDENTITY_HEADERS": "password=X-P"}, "DPOP_GUARD_FORWARD_AUTH_IDENTITY_HEADERS"),
            ({"FORWARD_AUTH_IDENTITY_HEADERS": "subject=X-A,scope=x-a"}, "DPOP_GUARD_FORWARD_AUTH_IDENTITY_HEADERS"),
            ({"FORWARD_AUTH_IDENTITY_HEADERS": "subject=X:A"}, "DPOP_GUARD_FORWARD_AUTH_IDENTITY_HEADERS"),
            ({"TRUSTED_PROXIES": ""}, "DPOP_GUARD_TRUSTED_PROXIES"),
            ({"CLIENT_CERT_SOURCE": "asgi-tls"}, "DPOP_GUARD_CLIENT_CERT_SOURCE"),
            ({"FORWARD_AUTH_PROXY": "envoy", "FORWARD_AUTH_PATH_PREFIX": "/x", "READINESS_PATH": "/x/ready"}, "DPOP_GUARD_FORWARD_AUTH_PATH_PREFIX"),
        ],
    )  # fmt: skip
    def test_refused_at_start_up(
        self, simulator_url: str, env: dict[str, str], variable: str
    ) -> None:
        base = dict(environment(simulator_url, "caddy", PUBLIC))
        base.pop("DPOP_GUARD_FORWARD_AUTH_PATH_PREFIX", None)
        base.update({f"DPOP_GUARD_{k}": v for k, v in env.items()})
        with pytest.raises(ConfigurationError) as info:
            create_app(routes=ROUTES, environ=base)
        assert info.value.variable == variable

    async def test_identity_headers_are_configurable(
        self, make_app: Callable[..., Any], simulator: SimulatorState, signer: ProofSigner
    ) -> None:
        app = make_app("caddy", PUBLIC, forward_auth_identity_headers="subject=X-User jkt=X-Key")
        token = simulator.create_token(subject="bob", scopes=["read:accounts"], jkt=signer.jkt)
        proof = make_proof(signer, htu=PUBLIC + "/accounts", access_token=token)
        response = await _send(app, "caddy", {"Authorization": f"DPoP {token}", "DPoP": proof})
        assert response.headers["x-user"] == "bob" and response.headers["x-key"] == signer.jkt
        assert "x-auth-subject" not in response.headers


class TestUnmatchedPaths:
    @pytest.mark.parametrize(
        ("setting", "target", "status"),
        [
            # The middleware's rule: a path no rule covers needs a valid token, no scope.
            ("protect", "/ACCOUNTS/acc-1/transactions", 200),
            ("protect", "/accounts/acc-1/transactions/", 200),
            # Refused: a router that ignores case or a trailing slash cannot be reached
            # without the scope of the rule it would pick.
            ("refuse", "/ACCOUNTS/acc-1/transactions", 403),
            ("refuse", "/accounts/acc-1/transactions/", 403),
            ("refuse", "/accounts", 200),
        ],
    )
    async def test_a_path_no_rule_covers(
        self,
        make_app: Callable[..., Any],
        simulator: SimulatorState,
        signer: ProofSigner,
        reasons: list[str],
        setting: str,
        target: str,
        status: int,
    ) -> None:
        app = make_app("caddy", PUBLIC, forward_auth_unmatched=setting)
        token = simulator.create_token(subject="alice", scopes=["read:accounts"], jkt=signer.jkt)
        proof = make_proof(signer, htu=PUBLIC + target, access_token=token)
        extra = {"Authorization": f"DPoP {token}", "DPoP": proof, "X-Forwarded-Uri": target}
        response = await _send(app, "caddy", extra, drop=("X-Forwarded-Uri",))
        assert response.status_code == status, response.text
        if status == 403:
            assert reasons[-1] == "forward_auth_path_unmatched"
            assert "x-auth-subject" not in response.headers

    async def test_refuse_lets_public_paths_through(self, make_app: Callable[..., Any]) -> None:
        app = make_app("caddy", PUBLIC, forward_auth_unmatched="refuse")
        response = await _send(
            app, "caddy", {"X-Forwarded-Uri": "/health"}, drop=("X-Forwarded-Uri",)
        )
        assert response.status_code == 200
