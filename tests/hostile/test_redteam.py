"""Red-team review of round 2: one test per finding, each named by its finding id.

Findings whose fix belongs to another part of the package are strict ``xfail`` with the
finding id as the reason: the suite stays green, and the fix flips the test (strict, so a
fixed finding must drop its marker). Findings fixed on this branch are plain tests.

Each test drives the real part: the demo's authorization server and the simulator as ASGI
apps over ``httpx.ASGITransport``, the FAPI client against a hostile authorization server
(a real Starlette app), and the pure functions (``target_url``, the environment readers)
directly.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, MutableMapping
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as HTTPRoute

from dpop_guard._env import EnvReader
from dpop_guard._proxy import parse_networks
from dpop_guard._target import target_url
from dpop_guard.client import (
    MAX_METADATA_BYTES,
    PKCE,
    AuthorizationServerMetadata,
    FAPIClient,
    OAuthError,
    ProofSigner,
    PushedAuthorization,
)
from dpop_guard.devtools.demo.authorization_server import Config
from dpop_guard.devtools.demo.authorization_server import create_app as create_authorization_server
from dpop_guard.devtools.simulator import DEFAULT_SERVICE_ID, DEFAULT_SERVICE_TOKEN, SimulatorState
from dpop_guard.devtools.simulator._app import create_simulator_app
from dpop_guard.errors import DPoPGuardError
from dpop_guard.guard import from_env
from dpop_guard.introspection.authlete import AuthleteSettings
from dpop_guard.routes import Route

ISSUER = "https://as.test"
METADATA: dict[str, Any] = {
    "issuer": ISSUER,
    "authorization_endpoint": f"{ISSUER}/authorize",
    "token_endpoint": f"{ISSUER}/token",
    "pushed_authorization_request_endpoint": f"{ISSUER}/par",
    "authorization_response_iss_parameter_supported": True,
    "dpop_signing_alg_values_supported": ["ES256"],
}


# -- RT-1: X-Forwarded-Prefix makes two routed paths share one htu -------------------------


def _forwarded_scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "scheme": "http",
        "headers": [
            (b"host", b"api.bank.test"),
            (b"x-forwarded-proto", b"https"),
            (b"x-forwarded-prefix", b"/api"),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


def test_rt1_forwarded_prefix_keeps_routed_paths_apart() -> None:
    """Behind a trusted proxy that strips ``/api`` and says so in ``X-Forwarded-Prefix``,
    the app routes ``/accounts`` (public ``/api/accounts``) and ``/api/accounts`` (public
    ``/api/api/accounts``) to different endpoints. Their ``htu`` must differ too, or a
    proof made for one endpoint is accepted at the other. Today the prefix is prepended
    only when the path does not already start with it, so both are
    ``https://api.bank.test/api/accounts``."""
    networks = parse_networks(["127.0.0.1"])
    headers = ("x-forwarded-proto", "x-forwarded-prefix")

    def htu(path: str) -> str:
        return target_url(
            _forwarded_scope(path), public_url=None, networks=networks, proxy_headers=headers
        )

    assert htu("/accounts") == "https://api.bank.test/api/accounts"
    assert htu("/api/accounts") == "https://api.bank.test/api/api/accounts"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api", "https://api.bank.test/api/api"),  # the routed path is the prefix itself
        ("/", "https://api.bank.test/api/"),
        ("/apix", "https://api.bank.test/api/apix"),  # shares the prefix's characters only
    ],
)
def test_rt1_forwarded_prefix_is_always_prepended(path: str, expected: str) -> None:
    """The neighbours of RT-1: whatever the routed path looks like, the public path is the
    reported prefix followed by it."""
    htu = target_url(
        _forwarded_scope(path),
        public_url=None,
        networks=parse_networks(["127.0.0.1"]),
        proxy_headers=("x-forwarded-proto", "x-forwarded-prefix"),
    )
    assert htu == expected


# -- RT-2, RT-6: the demo's authorization server -------------------------------------------

AS_ENV = {
    "AUTHLETE_BASE_URL": "http://127.0.0.1:9",  # never reached by these tests
    "AUTHLETE_SERVICE_APIKEY": DEFAULT_SERVICE_ID,
    "AUTHLETE_SERVICE_ACCESSTOKEN": DEFAULT_SERVICE_TOKEN,
    "AS_ISSUER": "http://127.0.0.1:9100",
}


async def test_rt2_consent_decision_with_many_fields_is_a_400() -> None:
    """``POST /authorize/decision`` with nine form fields: ``parse_qs(...,
    max_num_fields=8)`` raises ``ValueError`` and the server answers 500 with a traceback,
    before any Authlete call. Client input must be a 400."""
    app = create_authorization_server(AS_ENV)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=AS_ENV["AS_ISSUER"]) as http:
        body = "&".join(f"f{i}=x" for i in range(9))
        response = await http.post(
            "/authorize/decision",
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    "body",
    [
        "&".join(f"f{i}=x" for i in range(100)),
        "&".join(["ticket=t"] * 9),  # repeated fields count too
    ],
)
async def test_rt2_consent_decision_field_bound(body: str) -> None:
    """The neighbours of RT-2: any body over the field bound is a 400, never a 500."""
    app = create_authorization_server(AS_ENV)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=AS_ENV["AS_ISSUER"]) as http:
        response = await http.post(
            "/authorize/decision",
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


@pytest.mark.e2e  # a hostile Authlete under uvicorn
@pytest.mark.parametrize(
    "answer",
    [
        b"[" * 100_000,  # json: RecursionError
        b"not json",
        b'{"action": "INTERACTION"}',  # no ticket: was KeyError
        b'{"action": "INTERACTION", "ticket": "t", "client": [1], "scopes": "ab"}',
        b'{"action": "LOCATION"}',  # no responseContent: was KeyError
        b'{"action": "OK", "action": "LOCATION"}',
        b" " * (2 << 20) + b"{}",  # over the answer cap
    ],
)
async def test_rt2_authlete_answer_that_cannot_be_read_is_a_503(answer: bytes) -> None:
    """The same class on the upstream side: an Authlete answer the server cannot read
    (too deep, not JSON, a member missing or of another type, too large) is the fail-closed
    503, never a 500 with a traceback, and never a page built from half an answer."""
    from tests._support.servers import ServerThread

    hostile = Starlette(
        routes=[
            HTTPRoute(
                f"/api/{DEFAULT_SERVICE_ID}/auth/authorization",
                lambda _request: Response(answer, media_type="application/json"),
                methods=["POST"],
            )
        ]
    )
    with ServerThread(hostile) as authlete:
        app = create_authorization_server({**AS_ENV, "AUTHLETE_BASE_URL": authlete.url})
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with (
            app.router.lifespan_context(app),  # closes the server's Authlete client
            httpx.AsyncClient(transport=transport, base_url=AS_ENV["AS_ISSUER"]) as http,
        ):
            response = await http.get("/authorize?client_id=c1")
    if b'"scopes": "ab"' in answer:  # readable enough: the page leaves the odd members out
        assert response.status_code == 200
    else:
        assert response.status_code == 503
        assert response.json()["error"] == "temporarily_unavailable"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AUTHLETE_SERVICE_ACCESSTOKEN", "token\nX-Injected: yes"),
        ("AUTHLETE_BASE_URL", "https://api.authlete.test/\r\nHost: evil"),
        ("AS_ISSUER", "https://as.test/\x00"),
    ],
)
def test_rt6_demo_authorization_server_reads_the_environment_strictly(
    name: str, value: str
) -> None:
    """The demo's authorization server has its own environment reader that strips but
    refuses nothing: a control character in a secret or a URL reaches an HTTP header or
    the issuer. Every reader refuses it, naming the variable (the ``EnvReader`` rule)."""
    environ = {**AS_ENV, name: value}
    with pytest.raises(ValueError, match=name):
        Config.from_env(environ)


@pytest.mark.parametrize(
    ("environ", "name"),
    [
        ({**AS_ENV, "AUTHLETE_API_VERSION": "V9"}, "AUTHLETE_API_VERSION"),
        ({**AS_ENV, "AUTHLETE_API_VERSION": "v2"}, "AUTHLETE_SERVICE_APISECRET"),  # V2 needs it
        ({**AS_ENV, "AS_ISSUER": "   "}, "AS_ISSUER"),
        (
            {**AS_ENV, "AUTHLETE_API_VERSION": "V2", "AUTHLETE_SERVICE_APISECRET": "s\x7f"},
            "AUTHLETE_SERVICE_APISECRET",
        ),
    ],
)
def test_rt6_demo_authorization_server_names_the_variable(
    environ: dict[str, str], name: str
) -> None:
    """The neighbours of RT-6: a bad choice, a missing or blank value, DEL in a secret:
    each refused naming its variable."""
    with pytest.raises(ValueError, match=name):
        Config.from_env(environ)


# -- RT-3: AUTHLETE_BASE_URL ----------------------------------------------------------------


@pytest.mark.parametrize(
    "base_url",
    [
        "https://api.authlete.test#fragment",  # the API path lands in the fragment
        "https://api.authlete.test?x=1",  # ... or in the query
        "https://user:password@api.authlete.test",  # a second credential in the URL
        "http://api.authlete.test",  # the service token in clear text off loopback
    ],
)
def test_rt3_authlete_base_url_is_an_origin(base_url: str) -> None:
    """``AUTHLETE_BASE_URL=https://api.authlete.test#fragment`` is accepted, and the
    introspection URL becomes ``https://api.authlete.test#fragment/api/<id>/auth/
    introspection``: every call goes to ``/`` of the host. A query, user info, or plain
    ``http`` to a host that is not loopback are accepted too. Start-up must refuse them,
    naming the variable."""
    environ = {
        "AUTHLETE_BASE_URL": base_url,
        "AUTHLETE_SERVICE_APIKEY": "123",
        "AUTHLETE_SERVICE_ACCESSTOKEN": "service-token",
    }
    with pytest.raises(ValueError, match="AUTHLETE_BASE_URL"):
        AuthleteSettings.from_env(environ)


@pytest.mark.parametrize(
    "base_url",
    [
        "https://api.authlete.test/",
        "https://api.authlete.test/prefix",
        "https://api.authlete.test:8443",
        "http://127.0.0.1:8080",
        "http://127.9.9.9",
        "http://[::1]:8080/prefix",
        "http://localhost:8080",
    ],
)
def test_rt3_neighbours_origin_and_path_accepted(base_url: str) -> None:
    """The neighbours of RT-3 that must keep working: an origin with a port or a path,
    and plain ``http`` to loopback (development servers, sidecars)."""
    environ = {
        "AUTHLETE_BASE_URL": base_url,
        "AUTHLETE_SERVICE_APIKEY": "123",
        "AUTHLETE_SERVICE_ACCESSTOKEN": "service-token",
    }
    settings = AuthleteSettings.from_env(environ)
    assert settings.introspection_url == base_url.rstrip("/") + "/api/123/auth/introspection"


@pytest.mark.parametrize(
    "base_url",
    [
        "https://api.authlete.test?",  # an empty query is still a query
        "https://api.authlete.test/#",
        "https://:secret@api.authlete.test",  # a password without a user name
        "http://127.0.0.1.nip.io",  # a name that resolves to loopback is still a name
        "http://localhost.example",
        "https://api.authlete.test:99999",
        "https://api.authlete.tést",
        "https://api.authlete.test/a b",
    ],
)
def test_rt3_neighbours_refused_without_echoing_user_info(base_url: str) -> None:
    """The neighbours of RT-3: an empty query or fragment, a password alone, a DNS name
    that only looks local, a bad port, non-ASCII, a space: all refused naming the
    variable, and a password never appears in the message."""
    environ = {
        "AUTHLETE_BASE_URL": base_url,
        "AUTHLETE_SERVICE_APIKEY": "123",
        "AUTHLETE_SERVICE_ACCESSTOKEN": "service-token",
    }
    with pytest.raises(ValueError, match="AUTHLETE_BASE_URL") as refused:
        AuthleteSettings.from_env(environ)
    assert "secret" not in str(refused.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [("access_token", "tök€n"), ("access_token", "t\r\nX: y"), ("api_secret", "s€cret")],
)
def test_rt3_neighbours_secrets_fit_in_a_header(field: str, value: str) -> None:
    """A credential that is not latin-1 (or holds a control character) cannot be sent in
    a header: refused at start-up, naming the field, never echoing the value."""
    v2 = field == "api_secret"
    kwargs: dict[str, Any] = (
        {"api_version": "V2", "api_secret": "s"} if v2 else {"access_token": "t"}
    )
    kwargs[field] = value
    with pytest.raises(ValueError, match=field) as refused:
        AuthleteSettings(base_url="https://api.authlete.test", api_key="123", **kwargs)
    assert value not in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://as.test/introspect?x=1",
        "https://as.test/introspect#x",
        "https://u:pw@as.test/introspect",
        "http://as.test/introspect",
    ],
)
def test_rt3_neighbours_rfc7662_and_jwt_urls(url: str) -> None:
    """The same rule for the RFC 7662 endpoint, the JWKS URI and the JWT issuer."""
    from dpop_guard.introspection.jwt import JWTAccessTokenSettings
    from dpop_guard.introspection.rfc7662 import RFC7662Settings

    with pytest.raises(ValueError, match="url") as refused:
        RFC7662Settings(url=url, client_id="rs", client_secret="s")
    assert "pw" not in str(refused.value)
    with pytest.raises(ValueError, match="jwks_uri"):
        JWTAccessTokenSettings(issuer=ISSUER, audience="https://api.bank.test", jwks_uri=url)
    with pytest.raises(ValueError, match="issuer"):
        JWTAccessTokenSettings(
            issuer=url, audience="https://api.bank.test", jwks_uri=f"{ISSUER}/jwks"
        )


# -- RT-4: the environment reader (fixed here) ----------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "[" * 100_000,  # json.loads: RecursionError, which escaped as such
        '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"kty": "EC", "x": NaN}',
        '{"kty": "EC", "kty": "RSA"}',  # which member a reader takes is not defined
        '{"kid": "\\ud800"}',
    ],
)
def test_rt4_json_setting_is_parsed_strictly(value: str) -> None:
    """A JSON setting (``DPOP_GUARD_INTROSPECTION_PRIVATE_KEY``) is parsed like every
    other JSON we read: deep nesting is a ``ValueError`` naming the variable (it was a
    bare ``RecursionError``), and ``NaN``, repeated members and lone surrogates are
    refused (they were accepted)."""
    env = EnvReader({"DPOP_GUARD_KEY": value}, prefix="DPOP_GUARD_")
    with pytest.raises(ValueError, match="DPOP_GUARD_KEY must be a JWK"):
        env.json_object("KEY", what="a JWK")


@pytest.mark.parametrize(
    "value",
    # Arabic-Indic 12, full-width 30, Arabic-Indic 3.5: escaped so the source stays ASCII.
    ["\u0661\u0662", "1_0", "\uff13\uff10", "\u0663.\u0665"],
)
def test_rt4_number_setting_is_ascii_decimal(value: str) -> None:
    """``float()`` reads ``1_0`` as 10 and Arabic-Indic or full-width digits as numbers:
    an Arabic-Indic ``12`` in ``DPOP_GUARD_CACHE_TTL`` was a 12 s cache. Only ASCII decimal notation is a
    number."""
    env = EnvReader({"DPOP_GUARD_CACHE_TTL": value}, prefix="DPOP_GUARD_")
    with pytest.raises(ValueError, match="DPOP_GUARD_CACHE_TTL must be a number"):
        env.number("CACHE_TTL", 60.0)


def test_rt4_number_setting_still_reads_decimals() -> None:
    """The usual spellings still read."""
    for text, number in (("30", 30.0), (" 2.5 ", 2.5), ("1e3", 1000.0), (".5", 0.5)):
        assert EnvReader({"T": text}).number("T", 1.0) == number


# -- RT-5: the FAPI client against a hostile authorization server (fixed here) -------------


def _hostile_server(
    answers: dict[str, Callable[[Request], Response]],
) -> Starlette:
    async def endpoint(request: Request) -> Response:
        return answers[request.url.path](request)

    return Starlette(
        routes=[HTTPRoute(path, endpoint, methods=["GET", "POST"]) for path in answers]
    )


@pytest.fixture(name="hostile")
async def _hostile() -> AsyncIterator[Callable[..., FAPIClient]]:
    clients: list[httpx.AsyncClient] = []

    def make(answers: dict[str, Callable[[Request], Response]]) -> FAPIClient:
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=_hostile_server(answers)))
        clients.append(http)
        return FAPIClient(
            http,
            AuthorizationServerMetadata.from_document(METADATA, issuer=ISSUER),
            client_id="c1",
            client_key=ProofSigner.generate("ES256"),
            dpop_key=ProofSigner.generate("ES256"),
            redirect_uri="https://app.test/cb",
        )

    yield make
    for http in clients:
        await http.aclose()


def _raw(
    body: bytes, status: int = 200, headers: dict[str, str] | None = None
) -> Callable[[Request], Response]:
    return lambda _request: Response(body, status, headers=headers, media_type="application/json")


_PUSHED = PushedAuthorization(
    "urn:r", 60, f"{ISSUER}/authorize?x", "s" * 22, PKCE.from_verifier("v" * 43)
)
_CALLBACK = f"https://app.test/cb?code=c&state={'s' * 22}&iss={ISSUER}"


@pytest.mark.parametrize(
    "body",
    [
        b"<html>not json</html>",  # was json.JSONDecodeError, not OAuthError
        b'["request_uri", "expires_in"]',  # was AttributeError: 'list' has no 'get'
        b'{"request_uri": "urn:r", "expires_in": true}',  # a bool passed as an int
        b'{"request_uri": "urn:r", "expires_in": 60, "expires_in": 1}',
    ],
)
async def test_rt5_par_answer_that_is_not_a_par_response(
    hostile: Callable[..., FAPIClient], body: bytes
) -> None:
    """Any PAR answer that is not a JSON object with ``request_uri`` and a whole-number
    ``expires_in`` is ``OAuthError("invalid_response")``, never another exception."""
    client = hostile({"/par": _raw(body, 201)})
    with pytest.raises(OAuthError) as caught:
        await client.push_authorization_request(scope="read:accounts")
    assert caught.value.error == "invalid_response"


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b'{"access_token": "t", "token_type": "DPoP", "a": NaN}'],
)
async def test_rt5_token_answer_that_is_not_an_object(
    hostile: Callable[..., FAPIClient], body: bytes
) -> None:
    """The token endpoint's 200 that is not a strict JSON object is ``invalid_response``
    (it raised ``JSONDecodeError`` or ``AttributeError``)."""
    client = hostile({"/token": _raw(body)})
    with pytest.raises(OAuthError) as caught:
        await client.exchange_code(_CALLBACK, _PUSHED)
    assert caught.value.error == "invalid_response"


@pytest.mark.parametrize("path", ["/par", "/token"])
async def test_rt5_answers_are_bounded_while_read(
    hostile: Callable[..., FAPIClient], path: str
) -> None:
    """An answer over the cap is refused (the metadata cap was checked only after the
    whole body was in memory, and PAR and token answers had none)."""
    client = hostile({path: _raw(b" " * (MAX_METADATA_BYTES + 1) + b"{}")})
    with pytest.raises(OAuthError, match="too large"):
        if path == "/par":
            await client.push_authorization_request(scope="read:accounts")
        else:
            await client.exchange_code(_CALLBACK, _PUSHED)


async def test_rt5_compressed_answer_is_refused(hostile: Callable[..., FAPIClient]) -> None:
    """Compression is declined, and a compressed answer refused: a decoder would expand a
    small chunk a thousandfold before any cap could look at it."""
    import gzip

    bomb = gzip.compress(b" " * (8 * MAX_METADATA_BYTES))
    client = hostile({"/token": _raw(bomb, headers={"Content-Encoding": "gzip"})})
    with pytest.raises(OAuthError, match="compressed"):
        await client.exchange_code(_CALLBACK, _PUSHED)


@pytest.mark.parametrize("algs", ["ES256", {"ES256": True}, 7, [1, 2]])
def test_rt5_metadata_algorithm_list_is_a_list_of_names(algs: object) -> None:
    """``dpop_signing_alg_values_supported: "ES256"`` became the algorithms
    ``("E", "S", "2", "5", "6")``, and ``7`` raised ``TypeError``."""
    with pytest.raises(OAuthError):
        AuthorizationServerMetadata.from_document(
            {**METADATA, "dpop_signing_alg_values_supported": algs}, issuer=ISSUER
        )


@pytest.mark.parametrize(
    "query",
    [
        f"code=c&state={'s' * 22}&iss=https://evil.test&iss={ISSUER}",
        f"code=evil&code=c&state={'s' * 22}&iss={ISSUER}",
        f"code=c&state=x&state={'s' * 22}&iss={ISSUER}",
    ],
)
def test_rt5_callback_with_a_repeated_parameter(query: str) -> None:
    """A callback that repeats ``iss``, ``state`` or ``code`` is refused (RFC 6749 §3.1):
    the last copy won, so the mix-up check could read a value another component ignores."""
    client = FAPIClient(
        httpx.AsyncClient(),  # never used: the callback is checked locally
        AuthorizationServerMetadata.from_document(METADATA, issuer=ISSUER),
        client_id="c1",
        client_key=ProofSigner.generate("ES256"),
        dpop_key=ProofSigner.generate("ES256"),
        redirect_uri="https://app.test/cb",
    )
    with pytest.raises(OAuthError, match="repeated"):
        client.code_from_callback(f"https://app.test/cb?{query}", _PUSHED)


# -- RT-7: JWT revocation paths from the environment ---------------------------------------


def test_rt7_jwt_revocation_paths_from_the_environment() -> None:
    """README and SECURITY.md document ``DPOP_GUARD_JWT_REVOCATION_PATHS``, but
    :func:`from_env` never builds the revocation introspector, so setting it stops
    start-up with ``revocation_paths needs a revocation introspector``, a message that
    names no variable. Either wire the revocation introspector from the environment (then
    this builds) or name what is missing."""
    environ = {
        "DPOP_GUARD_INTROSPECTION": "jwt",
        "DPOP_GUARD_JWT_ISSUER": "https://as.test",
        "DPOP_GUARD_JWT_AUDIENCE": "https://api.bank.test",
        "DPOP_GUARD_JWT_REVOCATION_PATHS": "/payments",
    }
    try:
        from_env(routes=(Route("/health", public=True),), environ=environ)
    except ValueError as exc:
        assert "DPOP_GUARD_JWT_REVOCATION_PATHS" in str(exc)


_JWT_ENV = {
    "DPOP_GUARD_INTROSPECTION": "jwt",
    "DPOP_GUARD_JWT_ISSUER": "https://as.test",
    "DPOP_GUARD_JWT_AUDIENCE": "https://api.bank.test",
    "DPOP_GUARD_PUBLIC_URL": "https://api.bank.test",
}


@pytest.mark.parametrize(
    ("kind", "extra", "expected"),
    [
        (
            "rfc7662",
            {
                "DPOP_GUARD_INTROSPECTION_URL": "https://as.test/introspect",
                "DPOP_GUARD_INTROSPECTION_CLIENT_ID": "rs",
                "DPOP_GUARD_INTROSPECTION_CLIENT_SECRET": "secret",
            },
            "RFC7662Introspector",
        ),
        (
            "authlete",
            {
                "AUTHLETE_BASE_URL": "https://api.authlete.test",
                "AUTHLETE_SERVICE_APIKEY": "123",
                "AUTHLETE_SERVICE_ACCESSTOKEN": "service-token",
            },
            "AuthleteIntrospector",
        ),
        (
            "Authlete-Standard",
            {
                "AUTHLETE_BASE_URL": "https://api.authlete.test",
                "AUTHLETE_SERVICE_APIKEY": "123",
                "AUTHLETE_SERVICE_ACCESSTOKEN": "service-token",
            },
            "AuthleteStandardIntrospector",
        ),
    ],
)
async def test_rt7_revocation_introspector_is_built_from_the_environment(
    kind: str, extra: dict[str, str], expected: str
) -> None:
    """With ``DPOP_GUARD_JWT_REVOCATION_INTROSPECTION`` the revocation paths get the
    introspector of that mode, from that mode's own variables."""
    environ = {
        **_JWT_ENV,
        "DPOP_GUARD_JWT_REVOCATION_PATHS": "/payments",
        "DPOP_GUARD_JWT_REVOCATION_INTROSPECTION": kind,
        **extra,
    }
    guard = from_env(routes=(Route("/health", public=True),), environ=environ)
    try:
        validator: Any = guard.upstream
        assert type(validator.revocation).__name__ == expected
        assert validator.settings.revocation_paths == ("/payments",)
    finally:
        await guard.aclose()


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"DPOP_GUARD_JWT_REVOCATION_PATHS": "/payments"}, "JWT_REVOCATION_INTROSPECTION"),
        (
            {
                "DPOP_GUARD_JWT_REVOCATION_PATHS": "/payments",
                "DPOP_GUARD_JWT_REVOCATION_INTROSPECTION": "ldap",
            },
            "DPOP_GUARD_JWT_REVOCATION_INTROSPECTION",
        ),
        (
            {
                "DPOP_GUARD_JWT_REVOCATION_PATHS": "/payments",
                "DPOP_GUARD_JWT_REVOCATION_INTROSPECTION": "authlete",
            },
            "AUTHLETE_",  # the mode's own variables are missing
        ),
        (
            {
                "DPOP_GUARD_JWT_REVOCATION_PATHS": "/payments",
                "DPOP_GUARD_JWT_REVOCATION_INTROSPECTION": "rfc7662",
            },
            "DPOP_GUARD_INTROSPECTION_",
        ),
        ({"DPOP_GUARD_JWT_REVOCATION_INTROSPECTION": "rfc7662"}, "JWT_REVOCATION_PATHS"),
    ],
)
def test_rt7_revocation_settings_that_cannot_be_built_name_the_variable(
    extra: dict[str, str], named: str
) -> None:
    """Every way the revocation introspector cannot be built stops start-up naming the
    variable to set or fix."""
    with pytest.raises(ValueError, match=named):
        from_env(routes=(Route("/health", public=True),), environ={**_JWT_ENV, **extra})


# -- RT-8: the simulator's API bodies --------------------------------------------------------


@pytest.mark.parametrize("api", ["auth/introspection", "auth/token/create"])
async def test_rt8_simulator_deeply_nested_body_is_a_400(api: str) -> None:
    """The simulator's introspection and token-creation APIs parse the body with
    ``json.loads`` and catch ``ValueError`` only: ``[[[[...`` raises ``RecursionError`` and
    answers 500. In development mode these APIs are public at ``/__authlete`` with the
    published credentials. A malformed body is Authlete's ``A001201`` 400."""
    app = create_simulator_app(SimulatorState())
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://authlete.test") as http:
        response = await http.post(
            f"/api/{DEFAULT_SERVICE_ID}/{api}",
            content=b"[" * 100_000,
            headers={
                "Authorization": f"Bearer {DEFAULT_SERVICE_TOKEN}",
                "Content-Type": "application/json",
            },
        )
    assert response.status_code == 400
    assert response.json()["resultCode"] == "A001201"


# -- RT-9: a binding the guard does not check becomes "unbound" ----------------------------

_FOREIGN_CNF: list[Any] = [
    {"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"},  # RFC 8705 mTLS-bound
    {"jwk": {"kty": "EC"}},  # RFC 7800 proof-of-possession key, not a thumbprint
    "bound",  # not an object at all
]


def _binding_kept(make: Callable[[], Any]) -> None:
    """``make()`` must refuse, or name a binding the middleware will check; an unbound
    ``TokenInfo`` is a downgrade."""
    from dpop_guard.errors import DPoPGuardError

    try:
        info = make()
    except DPoPGuardError:
        return
    assert info.jkt is not None or getattr(info, "x5t_s256", None) is not None


@pytest.mark.parametrize("cnf", _FOREIGN_CNF)
def test_rt9_rfc7662_foreign_confirmation_is_not_unbound(cnf: Any) -> None:
    """An RFC 7662 answer whose ``cnf`` holds no ``jkt`` (an mTLS-bound token's
    ``x5t#S256``, an RFC 7800 ``jwk``, a ``cnf`` that is not an object) gives a
    ``TokenInfo`` with ``jkt=None``: an unbound token. With ``allow_unbound_tokens`` the
    middleware then serves a stolen certificate-bound token as a Bearer token, without the
    certificate. A ``cnf`` the guard cannot check must be refused (or carried, as
    ``TokenInfo.x5t_s256``, and checked)."""
    from dpop_guard.introspection.rfc7662 import token_info_from

    _binding_kept(lambda: token_info_from({"active": True, "scope": "a", "cnf": cnf}, None))


@pytest.mark.parametrize("cnf", _FOREIGN_CNF)
async def test_rt9_jwt_foreign_confirmation_is_not_unbound(cnf: Any) -> None:
    """The same for a JWT access token (RFC 9068) whose ``cnf`` holds no ``jkt``."""
    import time

    from dpop_guard.introspection.jwt import JWTAccessTokenSettings, JWTAccessTokenValidator

    settings = JWTAccessTokenSettings(
        issuer=ISSUER, audience="https://api.bank.test", jwks_uri=f"{ISSUER}/jwks"
    )
    claims = {
        "iss": ISSUER,
        "aud": "https://api.bank.test",
        "exp": int(time.time()) + 300,
        "sub": "alice",
        "scope": "read:accounts",
        "cnf": cnf,
    }
    async with httpx.AsyncClient() as http:  # never used: the claims are checked directly
        validator = JWTAccessTokenValidator(http, settings)
        _binding_kept(lambda: validator._claims(claims))


# -- RT-10: public_url + path is concatenated, and the path may not start with "/" ---------


@pytest.mark.parametrize(
    ("path", "root_path", "public_url"),
    [
        ("*", "", "https://api.bank.test/v1"),  # asterisk-form: htu .../v1*
        ("*", "", "https://api.bank.test"),  # htu https://api.bank.test*: another authority
        ("/v1x/accounts", "/v1", "https://api.bank.test"),  # root_path cut mid-segment
    ],
)
def test_rt10_public_url_keeps_its_authority(path: str, root_path: str, public_url: str) -> None:
    """``target_url`` appends the request path to ``public_url`` on the premise that the
    path starts with ``/``. The request target ``*`` (``OPTIONS *``, which uvicorn passes
    through as path ``*``) and a ``root_path`` stripped in the middle of a segment (the
    strip is a bare ``startswith``, unlike :func:`~dpop_guard.routes.route_path`) break
    it: ``https://api.bank.test`` + ``x/accounts`` is a URL on host
    ``api.bank.testx``. Refuse a target that is not origin-form (400
    ``request_target_invalid``) and strip ``root_path`` only at a segment boundary."""
    from urllib.parse import urlsplit

    from dpop_guard.errors import InvalidRequest

    scope = {
        "type": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": root_path,
        "scheme": "https",
        "headers": [(b"host", b"api.bank.test")],
        "server": ("127.0.0.1", 443),
    }
    try:
        htu = target_url(scope, public_url=public_url, networks=(), proxy_headers=())
    except InvalidRequest as exc:
        assert exc.reason == "request_target_invalid"
        return
    parts, public = urlsplit(htu), urlsplit(public_url)
    assert parts.netloc == public.netloc
    assert parts.path.startswith(public.path.rstrip("/") + "/")


def _target_scope(raw_path: str, root_path: str = "", headers: Any = None) -> dict[str, Any]:
    return {
        "type": "http",
        "path": raw_path,
        "raw_path": raw_path.encode(),
        "root_path": root_path,
        "scheme": "https",
        "headers": headers or [(b"host", b"api.bank.test")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 443),
    }


@pytest.mark.parametrize("public_url", ["https://api.bank.test", None])
@pytest.mark.parametrize(
    "raw_path", ["*", "http://evil.test/accounts", "evil.test/accounts", "", "x"]
)
def test_rt10_request_target_not_origin_form_is_refused(
    raw_path: str, public_url: str | None
) -> None:
    """The neighbours of RT-10: the asterisk form, the absolute form and any target not
    starting with ``/`` are ``request_target_invalid``, with or without ``public_url``."""
    from dpop_guard.errors import InvalidRequest

    with pytest.raises(InvalidRequest) as refused:
        target_url(
            _target_scope(raw_path),
            public_url=public_url,
            networks=(),
            proxy_headers=(),
        )
    assert refused.value.reason == "request_target_invalid"


@pytest.mark.parametrize(
    ("raw_path", "root_path", "expected"),
    [
        ("/v1/accounts", "/v1", "https://api.bank.test/bank/accounts"),
        ("/v1", "/v1", "https://api.bank.test/bank"),
        ("/v1x/accounts", "/v1", "https://api.bank.test/bank/v1x/accounts"),
        ("/v1/accounts", "", "https://api.bank.test/bank/v1/accounts"),
    ],
)
def test_rt10_root_path_is_cut_at_a_segment_boundary(
    raw_path: str, root_path: str, expected: str
) -> None:
    """``root_path`` is removed only where the router removes it (a whole segment), so the
    ``htu`` names the resource the app serves."""
    htu = target_url(
        _target_scope(raw_path, root_path),
        public_url="https://api.bank.test/bank",
        networks=(),
        proxy_headers=(),
    )
    assert htu == expected


# -- RT-11: an evicting Redis reopens replays, and nothing checks for it --------------------


@pytest.mark.redis  # its own redis-server
async def test_rt11_replay_store_on_an_evicting_redis_is_not_trusted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A ``jti`` is recorded before introspection, so a client with no token at all (its
    own key, a junk token) writes replay records at request rate. On a Redis whose
    ``maxmemory-policy`` evicts (``allkeys-*``, and ``volatile-*`` too, since every record
    has a TTL), that flood evicts other clients' records and reopens their proofs. README
    says to run ``noeviction``; nothing checks it. Start-up (``guard.startup()``, the
    store's ``ping``) must refuse or warn loudly, naming ``maxmemory-policy``."""
    import logging

    import redis.asyncio as redis_asyncio

    from tests._support.redis_server import RedisServer

    server = RedisServer().start()
    try:
        admin = redis_asyncio.Redis.from_url(server.url)
        await admin.config_set("maxmemory-policy", "allkeys-lru")
        await admin.config_set("maxmemory", "2mb")  # without a limit nothing is evicted
        await admin.aclose()
        guard = from_env(
            routes=(Route("/health", public=True),),
            environ={
                "DPOP_GUARD_DEVELOPMENT_SIMULATOR": "1",
                "DPOP_GUARD_REPLAY_STORE": server.url,
            },
        )
        refused = False
        with caplog.at_level(logging.WARNING):
            try:
                await guard.startup()
            except Exception:
                refused = True
        await guard.aclose()
    finally:
        server.stop()
    assert refused or any("maxmemory-policy" in r.getMessage() for r in caplog.records)


@pytest.mark.redis  # its own redis-server
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--maxmemory-policy", "allkeys-lru", "--maxmemory", "2mb"), "evicting"),
        (("--maxmemory-policy", "volatile-ttl", "--maxmemory", "2mb"), "evicting"),
        (("--maxmemory-policy", "allkeys-lru", "--maxmemory", "0"), "ok"),  # no limit
        (("--maxmemory-policy", "noeviction", "--maxmemory", "2mb"), "ok"),
        # Managed Redis disables CONFIG: INFO, which serving reads, still tells.
        (("--rename-command", "CONFIG", ""), "ok"),
        (("--rename-command", "INFO", ""), "unknown"),
    ],
)
async def test_rt11_neighbours_eviction_policy(
    caplog: pytest.LogCaptureFixture, args: tuple[str, ...], expected: str
) -> None:
    """The neighbours of RT-11: ``volatile-*`` evicts records too (they all have TTLs),
    no ``maxmemory`` means no eviction whatever the policy, ``noeviction`` is fine. Start-up
    reads what serving reads (``INFO``): a server that refuses ``CONFIG`` (managed Redis) is
    checked all the same, and one that refuses ``INFO``, which serving would refuse on
    every request, is an ERROR at start-up. ``dpop-guard check-config`` reports both an
    evicting store and an unreadable one as a problem."""
    import logging

    from dpop_guard.cli import _check
    from tests._support.redis_server import RedisServer

    server = RedisServer(args=args).start()
    try:
        environ = {
            "DPOP_GUARD_DEVELOPMENT_SIMULATOR": "1",
            "DPOP_GUARD_REPLAY_STORE": server.url,
            "DPOP_GUARD_PUBLIC_URL": "https://api.bank.test",
        }
        guard = from_env(routes=(Route("/health", public=True),), environ=environ)
        with caplog.at_level(logging.WARNING, logger="dpop_guard.replay"):
            await guard.startup()
        await guard.aclose()
        problems = await _check(environ)
    finally:
        server.stop()
    logged = [r for r in caplog.records if r.name == "dpop_guard.replay"]
    flagged = [p for p in problems if "maxmemory-policy" in p or "INFO" in p]
    if expected == "evicting":
        assert [r.levelname for r in logged] == ["ERROR"]
        assert "maxmemory-policy" in logged[0].getMessage()
        assert len(flagged) == 1 and "DPOP_GUARD_REPLAY_STORE" in flagged[0]
    elif expected == "unknown":
        assert [r.levelname for r in logged] == ["ERROR"]
        assert "could not read the replay store's INFO" in logged[0].getMessage()
        assert len(flagged) == 1 and "DPOP_GUARD_REPLAY_STORE" in flagged[0]
    else:
        assert logged == [] and flagged == []


# -- RT-12: the JWT validator accepts RS256 by default --------------------------------------


def test_rt12_jwt_default_algorithms_are_fapi_2() -> None:
    """FAPI 2.0 Security Profile §5.4.1 allows only PS256, ES256 and EdDSA (Ed25519) for
    JWS; the JWT access-token validator accepts RS256 (PKCS#1 v1.5) by default. Keep it
    out of the default (an explicit setting may still allow it for a non-FAPI issuer)."""
    from dpop_guard.introspection.jwt import JWTAccessTokenSettings

    settings = JWTAccessTokenSettings(
        issuer=ISSUER, audience="https://api.bank.test", jwks_uri=f"{ISSUER}/jwks"
    )
    assert set(settings.algorithms) <= {"PS256", "ES256", "EdDSA"}


# -- RT-13: DPoPSecurity on a FastAPI websocket route --------------------------------------


@pytest.mark.e2e  # a uvicorn server
async def test_rt13_fastapi_websocket_route_is_refused_cleanly() -> None:
    """``DPoPSecurity.__call__`` takes ``request: Request``, which FastAPI does not supply
    on a websocket route: every handshake (authenticated or not) raises ``TypeError:
    missing 1 required positional argument: 'request'``, a traceback from client input
    answered 500, and a protected websocket can never be served. Take ``HTTPConnection``
    (FastAPI supplies it for both) and refuse a websocket with the DPoP challenge or a
    close before accept (uvicorn then answers 403), as
    :func:`dpop_guard.starlette.requires_dpop` does. Under real uvicorn."""
    from fastapi import FastAPI, Security, WebSocket
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    from dpop_guard.fastapi import DPoPSecurity
    from tests._support.servers import ServerThread

    dpop = DPoPSecurity()
    app = FastAPI()
    scoped = Security(dpop, scopes=["read:accounts"])

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, auth: Any = scoped) -> None:
        await websocket.accept()
        await websocket.send_text("served")
        await websocket.close()

    with ServerThread(app) as server:
        url = server.url.replace("http://", "ws://") + "/ws"
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, proxy=None) as connection:
                await connection.recv()
    assert refused.value.response.status_code in (401, 403)


async def test_rt13_websocket_without_denial_extension_is_closed_1008() -> None:
    """The neighbour of RT-13: a server without the websocket denial-response extension
    gets a close (1008) before ``accept``, never an exception, and the endpoint never
    runs. Driven as an ASGI app, the messages recorded."""
    from fastapi import FastAPI, Security, WebSocket

    from dpop_guard.fastapi import DPoPSecurity

    app = FastAPI()
    served: list[bool] = []
    scoped = Security(DPoPSecurity(), scopes=["read:accounts"])

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, auth: Any = scoped) -> None:
        served.append(True)
        await websocket.accept()

    sent: list[dict[str, Any]] = []
    inbox = [{"type": "websocket.connect"}]

    async def receive() -> dict[str, Any]:
        return inbox.pop(0) if inbox else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {
        "type": "websocket",
        "path": "/ws",
        "raw_path": b"/ws",
        "root_path": "",
        "scheme": "ws",
        "query_string": b"",
        "headers": [(b"host", b"api.bank.test")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "subprotocols": [],
        "asgi": {"version": "3.0"},
        "extensions": {},
    }
    await app(scope, receive, send)
    assert not served
    assert [m["type"] for m in sent] == ["websocket.close"]
    assert sent[0]["code"] == 1008


# -- RT-14: thieves with a stolen token queue the owner behind them ------------------------


async def _rt14_flood(
    simulator: SimulatorState,
    simulator_url: str,
    signer: ProofSigner,
    *,
    warm: bool,
    thieves: int = 200,
) -> tuple[int, int, set[int]]:
    """200 thieves with a stolen token and keys of their own, then the owner: returns the
    Authlete calls made while the owner's request was in progress, its status and the
    thieves' statuses. ``warm``: the owner used the token before, and its facts have since
    expired (``ttl`` passed, by the cache's injected clock)."""
    import time

    from anyio import create_task_group
    from anyio.lowlevel import checkpoint

    from dpop_guard.introspection.authlete import AuthleteIntrospector
    from dpop_guard.introspection.cached import CachingIntrospector
    from tests._support.harness import Harness, authlete_settings

    offset = [0.0]
    authlete_http = httpx.AsyncClient()
    cache = CachingIntrospector(
        AuthleteIntrospector(authlete_http, authlete_settings(simulator_url)),
        ttl=60,
        clock=lambda: time.time() + offset[0],
    )
    harness = Harness(simulator, simulator_url, introspector=cache)
    during_owner: list[int] = []
    owner_status: list[int] = []
    statuses: set[int] = set()
    try:
        simulator.latency = 0.05
        token = harness.token(signer)
        if warm:
            assert (await harness.call(token, signer)).status_code == 200
            offset[0] = 61.0  # the cached facts are gone; the token is still valid
        keys = [ProofSigner.generate("ES256") for _ in range(thieves)]

        async def thief(key: ProofSigner) -> None:
            statuses.add((await harness.call(token, key)).status_code)

        async def owner() -> None:
            before = simulator.calls["auth/introspection"]
            response = await harness.call(token, signer)
            owner_status.append(response.status_code)
            during_owner.append(simulator.calls["auth/introspection"] - before)

        async with create_task_group() as group:
            for key in keys:
                group.start_soon(thief, key)
            for _ in range(5):  # let every thief reach the introspector first
                await checkpoint()
            group.start_soon(owner)
    finally:
        await harness.aclose()
        await authlete_http.aclose()
    return during_owner[0], owner_status[0], statuses


@pytest.mark.e2e  # the simulator over real HTTP
async def test_rt14_thieves_with_many_keys_do_not_queue_the_owner(
    simulator: SimulatorState, simulator_url: str, signer: ProofSigner
) -> None:
    """A thief holding a stolen token but not its key sends it with proofs of 200
    different keys of its own. Every inner call for the token shared one FIFO limiter of
    64, so the owner's cold request (the first after ``ttl``) waited behind all 200:
    measured 2.1 s instead of 0.07 s with 50 ms per Authlete call (300 thieves), and 2
    Authlete calls per thief request. Counted, not timed: the Authlete calls made while
    the owner's request is in progress must be the owner's own round, and every thief
    is refused (its key is not the one the token is known to be bound to)."""
    during_owner, owner_status, statuses = await _rt14_flood(
        simulator, simulator_url, signer, warm=True
    )
    assert owner_status == 200
    assert statuses == {401}
    assert during_owner <= 2


@pytest.mark.e2e  # the simulator over real HTTP
async def test_rt14_neighbour_first_use_is_bounded(
    simulator: SimulatorState, simulator_url: str, signer: ProofSigner
) -> None:
    """The neighbour of RT-14 no cache can tell apart: a token its owner has never used.
    Nothing distinguishes the owner's key yet, so the bound holds for everyone: at most 8
    keys' calls in flight, every further key refused at once with a 503 (never queued,
    never a pass); the owner's request costs at most one round of the 8, and its retry
    passes."""
    during_owner, owner_status, statuses = await _rt14_flood(
        simulator, simulator_url, signer, warm=False
    )
    assert owner_status in (200, 503)
    assert statuses <= {401, 503} and 503 in statuses
    assert during_owner <= 2 * 8 + 2


# -- RT-15: requires_dpop admits a Bearer token ----------------------------------------------


def test_rt15_requires_dpop_refuses_a_bearer_token() -> None:
    """With ``allow_unbound_tokens`` on (one global switch, for legacy clients), the
    middleware passes an unbound token under ``Bearer``, and
    :func:`~dpop_guard.starlette.check_scopes`, behind ``requires_dpop`` and
    ``DPoPSecurity``, accepts it: an endpoint that says it requires DPoP cannot insist on
    a sender-constrained token. Refuse credentials without a binding there unless the
    endpoint opts in (e.g. ``requires_dpop(..., allow_unbound=True)``)."""
    from starlette.requests import HTTPConnection

    from dpop_guard.credentials import DPoPCredentials
    from dpop_guard.errors import DPoPGuardError
    from dpop_guard.introspection import TokenInfo
    from dpop_guard.starlette import check_scopes

    credentials = DPoPCredentials(
        token=TokenInfo(
            subject="alice",
            client_id="c1",
            scopes=frozenset({"payments:write"}),
            jkt=None,  # what the middleware sets for a Bearer token
            expires_at=None,
        ),
        scheme="Bearer",
        interaction_id=None,
    )
    connection = HTTPConnection({"type": "http", "headers": [], "auth": credentials})
    with pytest.raises(DPoPGuardError):
        check_scopes(connection, ("payments:write",))


def _credentials(jkt: str | None, x5t_s256: str | None, scheme: str = "DPoP") -> Any:
    from dpop_guard.credentials import DPoPCredentials
    from dpop_guard.introspection import TokenInfo

    return DPoPCredentials(
        token=TokenInfo(
            subject="alice",
            client_id="c1",
            scopes=frozenset({"payments:write"}),
            jkt=jkt,
            expires_at=None,
            x5t_s256=x5t_s256,
        ),
        scheme=scheme,
        interaction_id=None,
    )


@pytest.mark.parametrize(
    ("jkt", "x5t_s256", "scheme", "allow_unbound", "admitted"),
    [
        (None, None, "DPoP", False, False),  # unbound under the DPoP scheme: same class
        (None, None, "Bearer", True, True),  # the endpoint opted in
        ("j" * 43, None, "DPoP", False, True),
        (None, "t" * 43, "Bearer", False, True),  # certificate-bound (RFC 8705) on Bearer
    ],
)
def test_rt15_only_sender_constrained_credentials_unless_opted_in(
    jkt: str | None, x5t_s256: str | None, scheme: str, allow_unbound: bool, admitted: bool
) -> None:
    """The neighbours of RT-15: any credentials with neither binding are refused as
    ``token_not_bound``, whatever the scheme, unless ``allow_unbound``; a DPoP or
    certificate binding passes."""
    from starlette.requests import HTTPConnection

    from dpop_guard.errors import InvalidToken
    from dpop_guard.starlette import check_scopes

    auth = _credentials(jkt, x5t_s256, scheme)
    connection = HTTPConnection({"type": "http", "headers": [], "auth": auth})
    if admitted:
        assert check_scopes(connection, ("payments:write",), allow_unbound=allow_unbound) is auth
    else:
        with pytest.raises(InvalidToken) as refused:
            check_scopes(connection, ("payments:write",), allow_unbound=allow_unbound)
        assert refused.value.reason == "token_not_bound"


def _with_auth(app: Any, auth: Any) -> Any:
    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        await app({**scope, "auth": auth}, receive, send)

    return wrapped


@pytest.mark.parametrize("allow_unbound", [False, True])
async def test_rt15_requires_dpop_and_dpop_security_refuse_bearer(allow_unbound: bool) -> None:
    """Both endpoint-level checks, driven as apps: an unbound token is a 401
    ``invalid_token`` challenge unless the endpoint opts in."""
    from fastapi import FastAPI, Security

    from dpop_guard.fastapi import DPoPSecurity
    from dpop_guard.starlette import requires_dpop

    @requires_dpop("payments:write", allow_unbound=allow_unbound)
    async def plain(request: Request) -> Response:
        return Response("served")

    dpop = DPoPSecurity(allow_unbound=allow_unbound)
    fast = FastAPI()
    scoped = Security(dpop, scopes=["payments:write"])

    @fast.get("/pay")
    async def pay(auth: Any = scoped) -> str:
        return "served"

    bearer = _credentials(None, None, "Bearer")
    for app in (Starlette(routes=[HTTPRoute("/pay", plain)]), fast):
        transport = httpx.ASGITransport(app=_with_auth(app, bearer))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.get("/pay")
        if allow_unbound:
            assert response.status_code == 200
        else:
            assert response.status_code == 401
            assert 'error="invalid_token"' in response.headers["www-authenticate"]


# -- RT-16: a stolen JWT costs a revocation call before its binding is checked -------------


@pytest.mark.e2e  # the simulator over real HTTP
async def test_rt16_jwt_binding_is_checked_before_the_revocation_call(
    simulator: SimulatorState, simulator_url: str, signer: ProofSigner
) -> None:
    """On a revocation path, :class:`JWTAccessTokenValidator` asks the revocation
    introspector before anything else is checked, although the token's own ``cnf.jkt``
    already shows the proof key is not its key. So a thief with a stolen JWT (not the
    key) turns every request on a revocation path into Authlete calls, none deduplicated
    (the fresh path bypasses single flight) and none cached (a binding failure never is).
    Compare ``cnf.jkt`` with the request's ``jkt`` (and scopes and expiry) first; ask the
    revocation introspector only for a request that would otherwise pass."""
    import time

    from dpop_guard.introspection import RequestFacts
    from dpop_guard.introspection.authlete import AuthleteIntrospector
    from dpop_guard.introspection.jwt import JWTAccessTokenSettings, JWTAccessTokenValidator
    from tests._support.harness import authlete_settings

    issuer_key = ProofSigner.generate("ES256")
    jwks = {"keys": [{**issuer_key.public_jwk, "kid": "k1", "use": "sig", "alg": "ES256"}]}
    jwks_app = Starlette(
        routes=[HTTPRoute("/jwks", lambda _request: JSONResponse(jwks), methods=["GET"])]
    )
    token = issuer_key.sign_raw(
        {"alg": "ES256", "typ": "at+jwt", "kid": "k1"},
        {
            "iss": ISSUER,
            "aud": "https://api.bank.test",
            "exp": int(time.time()) + 300,
            "sub": "alice",
            "scope": "payments:write",
            "cnf": {"jkt": signer.jkt},  # bound to the owner's key
        },
    )
    thief = ProofSigner.generate("ES256")
    settings = JWTAccessTokenSettings(
        issuer=ISSUER,
        audience="https://api.bank.test",
        jwks_uri=f"{ISSUER}/jwks",
        revocation_paths=("/payments",),
    )
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=jwks_app)) as jwks_http,
        httpx.AsyncClient() as authlete_http,
    ):
        revocation = AuthleteIntrospector(authlete_http, authlete_settings(simulator_url))
        validator = JWTAccessTokenValidator(jwks_http, settings, revocation=revocation)
        facts = RequestFacts(
            method="POST",
            htu="https://api.bank.test/payments",
            proof=thief.sign(htm="POST", htu="https://api.bank.test/payments", access_token=token),
            jkt=thief.jkt,
            path="/payments",
        )
        before = simulator.calls["auth/introspection"]
        with contextlib.suppress(DPoPGuardError):
            await validator.introspect(token, request=facts)
    assert simulator.calls["auth/introspection"] == before


_PKI_CACHE: list[Any] = []


def _pki() -> Any:
    from tests._support.pki import PKI

    if not _PKI_CACHE:
        _PKI_CACHE.append(PKI.generate())
    return _PKI_CACHE[0]


@pytest.mark.e2e  # the simulator over real HTTP
@pytest.mark.parametrize(
    ("case", "expected_reason"),
    [
        ("certificate_missing", "certificate_missing"),  # x5t#S256-bound, no certificate
        ("certificate_mismatch", "certificate_mismatch"),  # x5t#S256-bound, another one
        ("bearer", "bound_token_as_bearer"),  # jkt-bound, sent without a proof
        ("expired", "jwt_expired"),
        ("audience", "jwt_audience"),
    ],
)
async def test_rt16_neighbours_cost_no_revocation_call(
    simulator: SimulatorState,
    simulator_url: str,
    signer: ProofSigner,
    case: str,
    expected_reason: str,
) -> None:
    """The neighbours of RT-16: whatever the token itself decides (its certificate
    binding, DPoP binding on a ``Bearer`` request, expiry, audience) is checked before the
    revocation introspector is asked, so none of them costs an Authlete call."""
    import time

    from dpop_guard.introspection import RequestFacts
    from dpop_guard.introspection.authlete import AuthleteIntrospector
    from dpop_guard.introspection.jwt import JWTAccessTokenSettings, JWTAccessTokenValidator
    from dpop_guard.mtls import ClientCertificate
    from tests._support.harness import authlete_settings

    pki = _pki()
    issuer_key = ProofSigner.generate("ES256")
    jwks = {"keys": [{**issuer_key.public_jwk, "kid": "k1", "use": "sig", "alg": "ES256"}]}
    jwks_app = Starlette(
        routes=[HTTPRoute("/jwks", lambda _request: JSONResponse(jwks), methods=["GET"])]
    )
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": "https://api.bank.test",
        "exp": int(time.time()) + 300,
        "sub": "alice",
        "scope": "payments:write",
        "cnf": {"jkt": signer.jkt},
    }
    certificate: ClientCertificate | None = None
    jkt: str | None = signer.jkt
    if case.startswith("certificate"):
        claims["cnf"] = {"x5t#S256": pki.alice.x5t_s256}
        if case == "certificate_mismatch":
            certificate = ClientCertificate.from_der(pki.mallory.der)
    elif case == "bearer":
        jkt = None
    elif case == "expired":
        claims["exp"] = int(time.time()) - 600
    else:
        claims["aud"] = "https://elsewhere.test"
    token = issuer_key.sign_raw({"alg": "ES256", "typ": "at+jwt", "kid": "k1"}, claims)
    settings = JWTAccessTokenSettings(
        issuer=ISSUER,
        audience="https://api.bank.test",
        jwks_uri=f"{ISSUER}/jwks",
        revocation_paths=("/payments",),
    )
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=jwks_app)) as jwks_http,
        httpx.AsyncClient() as authlete_http,
    ):
        revocation = AuthleteIntrospector(authlete_http, authlete_settings(simulator_url))
        validator = JWTAccessTokenValidator(jwks_http, settings, revocation=revocation)
        facts = RequestFacts(
            method="POST",
            htu="https://api.bank.test/payments",
            proof=None
            if jkt is None
            else signer.sign(htm="POST", htu="https://api.bank.test/payments", access_token=token),
            jkt=jkt,
            path="/payments",
            client_certificate=certificate,
        )
        before = simulator.calls["auth/introspection"]
        with pytest.raises(DPoPGuardError) as raised:
            await validator.introspect(token, request=facts)
    assert raised.value.reason == expected_reason
    assert simulator.calls["auth/introspection"] == before


@pytest.mark.parametrize("algorithm", ["RS256", "ES384"])
def test_rt12_other_algorithms_only_when_configured(algorithm: str) -> None:
    """The neighbours of RT-12: an algorithm outside FAPI 2.0's list is accepted only when
    configured (``DPOP_GUARD_JWT_ALGORITHMS``), never by default."""
    from dpop_guard.introspection.jwt import JWTAccessTokenSettings

    base = {"DPOP_GUARD_JWT_ISSUER": ISSUER, "DPOP_GUARD_JWT_AUDIENCE": "https://api.bank.test"}
    assert algorithm not in JWTAccessTokenSettings.from_env(base).algorithms
    configured = JWTAccessTokenSettings.from_env(
        {**base, "DPOP_GUARD_JWT_ALGORITHMS": f"PS256 {algorithm}"}
    )
    assert configured.algorithms == ("PS256", algorithm)
