"""HTTPSignatureMiddleware: one test per rule, asserting the status, the error code and
the internal reason; real keys, a real replay store, an injected clock."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from dpop_guard.credentials import DPoPCredentials
from dpop_guard.httpsig import SCOPE_KEY, Component, SigningKey, StaticJWKS, VerifiedSignature
from dpop_guard.httpsig._base import inner_list
from dpop_guard.introspection import TokenInfo
from dpop_guard.replay.memory import MemoryReplayStore

from ._support import (
    AUTHORIZATION,
    CLIENT_KEY,
    NOW,
    SERVER_KEY,
    Result,
    call,
    echo_app,
    middleware,
    reason,
    sign,
    with_body,
)

AUTH = [("authorization", AUTHORIZATION)]
BODY = b'{"amount": 10}'
WITH_BODY = ("@method", "@target-uri", "authorization", "content-digest")


def refused(result: Result, status: int, error: str) -> None:
    assert result.status == status
    assert result.headers["cache-control"] == "no-store"
    assert result.headers["content-type"] == "application/json"
    document = json.loads(result.body)
    assert document["error"] == error
    assert isinstance(document["error_description"], str)
    assert result.completed


async def test_signed_get_passes_and_app_sees_the_verified_signature() -> None:
    result = await call(middleware(), "GET", "/accounts", sign("GET", "/accounts", AUTH))
    assert result.status == 200
    assert result.app_scope is not None
    verified = result.app_scope[SCOPE_KEY]
    assert isinstance(verified, VerifiedSignature)
    assert (verified.label, verified.keyid, verified.alg) == ("sig1", "client-1", "ES256")


async def test_signed_post_with_matching_digest_passes() -> None:
    headers = sign("POST", "/pay", with_body(BODY), components=WITH_BODY)
    result = await call(middleware(), "POST", "/pay", headers, chunks=[BODY[:5], BODY[5:]])
    assert result.status == 200
    assert json.loads(result.body) == {"echo": BODY.hex()}


async def test_missing_signature_is_refused_with_accept_signature(
    caplog: pytest.LogCaptureFixture,
) -> None:
    result = await call(middleware(), "POST", "/pay", [*with_body(BODY), ("dpop", "x")])
    refused(result, 401, "invalid_signature")
    assert reason(caplog) == "signature_missing"
    assert result.headers["accept-signature"] == (
        'sig1=("@method" "@target-uri" "authorization" "dpop" "content-digest")'
        ';created;tag="fapi-2-request"'
    )
    assert result.app_chunks == []


async def test_optional_route_passes_an_unsigned_request() -> None:
    guard = middleware(mode={"/open": "optional"})
    result = await call(guard, "GET", "/open/x", AUTH)
    assert result.status == 200
    assert result.app_scope is not None and result.app_scope[SCOPE_KEY] is None


async def test_optional_route_still_refuses_a_bad_signature(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = middleware(mode={"/open": "optional"})
    headers = sign("GET", "/elsewhere", AUTH)  # signed for another path
    result = await call(guard, "GET", "/open/x", headers)
    refused(result, 401, "invalid_signature")
    assert reason(caplog) == "signature_invalid"


async def test_off_route_is_untouched_and_an_unmatched_prefix_is_required(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = middleware(mode={"/health": "off", "/open": "optional"}, signing_key=SERVER_KEY)
    result = await call(guard, "GET", "/health", [])
    assert result.status == 200 and "signature" not in result.headers
    # "/healthz" is not under "/health": segment boundaries; no prefix means required
    refused(await call(guard, "GET", "/healthz", []), 401, "invalid_signature")
    assert reason(caplog) == "signature_missing"


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"tag": "other"}, "signature_not_fapi"),
        ({"tag": None}, "signature_not_fapi"),
        ({"components": ("@target-uri", "authorization")}, "signature_component_required"),
        ({"components": ("@method", "authorization")}, "signature_component_required"),
        ({"components": ("@method", "@target-uri")}, "signature_component_required"),
        ({"created": None}, "signature_created_missing"),
        ({"created": NOW - 61}, "signature_too_old"),
        ({"created": NOW + 6}, "signature_created_in_future"),
        ({"keyid": None}, "signature_keyid_missing"),
        ({"keyid": "nobody"}, "signature_key_unknown"),
        ({"extra_params": ";expires=1767225599"}, "signature_expired"),
        ({"extra_params": ';alg="ed25519"'}, "signature_alg_mismatch"),
        ({"extra_params": ";foo=1"}, "signature_parameter_invalid"),
        ({"extra_params": ';created="1"'}, "signature_malformed"),
    ],
)
async def test_signature_rules(
    kwargs: dict[str, Any], expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    result = await call(middleware(), "GET", "/accounts", sign("GET", "/accounts", AUTH, **kwargs))
    refused(result, 401, "invalid_signature")
    assert reason(caplog) == expected


async def test_matching_alg_parameter_is_accepted() -> None:
    headers = sign("GET", "/a", AUTH, extra_params=';alg="ecdsa-p256-sha256"')
    assert (await call(middleware(), "GET", "/a", headers)).status == 200


async def test_a_bad_signature_parameter_type_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    headers = sign("GET", "/a", AUTH, extra_params=";nonce=5")
    refused(await call(middleware(), "GET", "/a", headers), 401, "invalid_signature")
    assert reason(caplog) == "signature_parameter_invalid"


@pytest.mark.parametrize(
    ("method", "path", "query", "extra"),
    [
        ("POST", "/accounts", None, []),  # another method
        ("GET", "/accounts/2", None, []),  # another path
        ("GET", "/accounts", "x=1", []),  # a query added
    ],
)
async def test_tampering_breaks_the_signature(
    method: str, path: str, query: str | None, extra: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    headers = sign("GET", "/accounts", AUTH)
    refused(await call(middleware(), method, path, headers, query=query), 401, "invalid_signature")
    assert reason(caplog) == "signature_invalid"


async def test_another_authorization_breaks_the_signature(
    caplog: pytest.LogCaptureFixture,
) -> None:
    headers = [
        (k, "DPoP other" if k == "authorization" else v) for k, v in sign("GET", "/accounts", AUTH)
    ]
    refused(await call(middleware(), "GET", "/accounts", headers), 401, "invalid_signature")
    assert reason(caplog) == "signature_invalid"


async def test_dpop_header_must_be_covered(caplog: pytest.LogCaptureFixture) -> None:
    headers = sign("GET", "/a", [*AUTH, ("dpop", "proof")])
    refused(await call(middleware(), "GET", "/a", headers), 401, "invalid_signature")
    assert reason(caplog) == "signature_component_required"
    covered = sign("GET", "/a", [*AUTH, ("dpop", "proof")], components=(*WITH_BODY[:3], "dpop"))
    assert (await call(middleware(), "GET", "/a", covered)).status == 200


async def test_a_body_needs_content_digest_covered(caplog: pytest.LogCaptureFixture) -> None:
    headers = sign("POST", "/pay", with_body(BODY))  # digest sent, not covered
    result = await call(middleware(), "POST", "/pay", headers, chunks=[BODY])
    refused(result, 401, "invalid_signature")
    assert reason(caplog) == "signature_component_required"
    assert result.app_chunks == []


async def test_undeclared_body_without_covered_digest_is_refused_before_the_app_sees_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No Content-Length, no Transfer-Encoding (HTTP/2 allows it), yet bytes arrive."""
    headers = sign("POST", "/pay", AUTH)
    result = await call(middleware(), "POST", "/pay", headers, chunks=[b"smuggled", b""])
    refused(result, 401, "invalid_signature")
    assert reason(caplog) == "content_digest_not_covered"
    assert result.app_chunks == [{"type": "http.disconnect"}]


async def test_digest_mismatch_is_refused_before_the_app_sees_the_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    headers = sign("POST", "/pay", with_body(BODY), components=WITH_BODY)
    tampered = b'{"amount": 99}'
    result = await call(middleware(), "POST", "/pay", headers, chunks=[tampered[:5], tampered[5:]])
    refused(result, 401, "invalid_signature")
    assert reason(caplog) == "content_digest_mismatch"
    # the app saw the first chunk (streaming), never the end of the body
    assert result.app_chunks[0]["more_body"] is True
    assert result.app_chunks[-1] == {"type": "http.disconnect"}
    assert not any(m.get("more_body") is False for m in result.app_chunks)


@pytest.mark.parametrize(
    ("digest", "expected"),
    [
        ("sha-256=:AAAA:", "content_digest_malformed"),  # wrong length
        ("sha-256=abc", "content_digest_malformed"),  # not a byte sequence
        ("md5=:AAAAAAAAAAAAAAAAAAAAAA==:", "content_digest_unsupported"),
        ("sha-256", "content_digest_malformed"),  # boolean
    ],
)
async def test_bad_content_digest_is_refused(
    digest: str, expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    base = [(k, digest if k == "content-digest" else v) for k, v in with_body(BODY)]
    headers = sign("POST", "/pay", base, components=WITH_BODY)
    result = await call(middleware(), "POST", "/pay", headers, chunks=[BODY])
    refused(result, 401, "invalid_signature")
    assert reason(caplog) == expected


async def test_declared_body_over_the_bound_is_refused_up_front(
    caplog: pytest.LogCaptureFixture,
) -> None:
    headers = sign("POST", "/pay", with_body(BODY), components=WITH_BODY)
    result = await call(middleware(max_body_bytes=8), "POST", "/pay", headers, chunks=[BODY])
    refused(result, 413, "invalid_request")
    assert reason(caplog) == "body_too_large"
    assert result.app_chunks == []


async def test_streamed_body_over_the_bound_is_cut(caplog: pytest.LogCaptureFixture) -> None:
    body = b"x" * 40
    fields = [(k, v) for k, v in with_body(body) if k != "content-length"]
    fields.append(("transfer-encoding", "chunked"))
    headers = sign("POST", "/pay", fields, components=WITH_BODY)
    result = await call(
        middleware(max_body_bytes=16), "POST", "/pay", headers, chunks=[body[:10], body[10:], b""]
    )
    refused(result, 413, "invalid_request")
    assert reason(caplog) == "body_too_large"
    assert sum(len(m.get("body", b"")) for m in result.app_chunks) <= 16


async def test_replay_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    guard = middleware(replay_store=MemoryReplayStore())
    headers = sign("GET", "/accounts", AUTH)
    assert (await call(guard, "GET", "/accounts", headers)).status == 200
    refused(await call(guard, "GET", "/accounts", headers), 401, "invalid_signature")
    assert reason(caplog) == "signature_replayed"


async def test_a_failing_key_source_is_503(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        async def resolve(self, keyid: str, *, client_id: str | None) -> None:
            raise OSError("jwks endpoint down")

    result = await call(middleware(key_source=Broken()), "GET", "/a", sign("GET", "/a", AUTH))
    refused(result, 503, "temporarily_unavailable")
    assert reason(caplog) == "key_source_unavailable"
    assert "accept-signature" not in result.headers


async def test_a_full_replay_store_is_503(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryReplayStore(maxsize=1)
    guard = middleware(replay_store=store)
    assert (await call(guard, "GET", "/a", sign("GET", "/a", AUTH))).status == 200
    result = await call(guard, "GET", "/b", sign("GET", "/b", AUTH))
    refused(result, 503, "temporarily_unavailable")
    assert reason(caplog) == "replay_store_unavailable"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            [("signature-input", "x" * 9000), ("signature", "sig1=:AA==:")],
            "signature_field_too_large",
        ),
        (
            [
                ("signature-input", ", ".join(f"s{i}=()" for i in range(9))),
                ("signature", "s0=:AA==:"),
            ],
            "signature_too_many",
        ),
        (
            [("signature-input", 'sig1=("@method"'), ("signature", "sig1=:AA==:")],
            "signature_malformed",
        ),
        (
            [("signature-input", 'sig1=("@method");tag="fapi-2-request"')],
            "signature_label_unpaired",
        ),
        (
            [
                ("signature-input", 'sig1=();tag="fapi-2-request", sig2=();tag="fapi-2-request"'),
                ("signature", "sig1=:AA==:, sig2=:AA==:"),
            ],
            "signature_ambiguous",
        ),
        (
            [
                ("signature-input", 'sig1=();tag="fapi-2-request", sig1=();tag="x"'),
                ("signature", "sig1=:AA==:"),
            ],
            "signature_malformed",
        ),
        (
            [
                (
                    "signature-input",
                    "sig1=(" + " ".join(f'"h{i}"' for i in range(25)) + ');tag="fapi-2-request"',
                ),
                ("signature", "sig1=:AA==:"),
            ],
            "signature_components_too_many",
        ),
        (
            [
                ("signature-input", 'sig1=("@method" "@method");tag="fapi-2-request"'),
                ("signature", "sig1=:AA==:"),
            ],
            "signature_component_duplicate",
        ),
        (
            [
                ("signature-input", 'sig1=(@method);tag="fapi-2-request"'),
                ("signature", "sig1=:AA==:"),
            ],
            "signature_malformed",
        ),
    ],
)
async def test_field_bounds_and_shapes(
    fields: list[tuple[str, str]], expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    result = await call(middleware(), "GET", "/a", [*AUTH, ("host", "rs.example"), *fields])
    refused(result, 401, "invalid_signature")
    assert reason(caplog) == expected


@pytest.mark.parametrize(
    ("component", "expected"),
    [
        (Component("authorization", {"bs": True}), "signature_component_unsupported"),
        (Component("authorization", {"tr": True}), "signature_component_unsupported"),
        (Component("@status", {}), "signature_component_invalid"),
        (Component("@unknown", {}), "signature_component_unsupported"),
        (Component("x-absent", {}), "signature_component_absent"),
        (Component("Authorization", {}), "signature_component_invalid"),
        (Component("authorization", {"sf": True}), "signature_component_unsupported"),
    ],
)
async def test_component_rules(
    component: Component, expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    items = [
        ("@method", {}),
        ("@target-uri", {}),
        ("authorization", {}),
        (component.name, component.params),
    ]
    await _hand_built(items, expected, caplog)


async def test_req_on_a_request_does_not_count_as_covered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    items = [("@method", {"req": True}), ("@target-uri", {}), ("authorization", {})]
    await _hand_built(items, "signature_component_required", caplog)
    items = [*items, ("@method", {})]
    await _hand_built(items, "signature_component_invalid", caplog)


async def _hand_built(
    items: list[tuple[str, dict[str, Any]]], expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    # built by hand: our own signer refuses these components too
    components = [Component(name, params) for name, params in items]
    inner = inner_list(components, {"created": NOW, "keyid": "client-1", "tag": "fapi-2-request"})
    fields = [
        *AUTH,
        ("host", "rs.example"),
        ("signature-input", f"sig1={inner}"),
        ("signature", "sig1=:AA==:"),
    ]
    refused(await call(middleware(), "GET", "/a", fields), 401, "invalid_signature")
    assert reason(caplog) == expected


async def test_bad_host_is_400(caplog: pytest.LogCaptureFixture) -> None:
    headers = [(k, "rs.example/evil" if k == "host" else v) for k, v in sign("GET", "/a", AUTH)]
    refused(await call(middleware(), "GET", "/a", headers), 400, "invalid_request")
    assert reason(caplog) == "request_invalid"


async def test_public_url_sets_target_uri_and_authority() -> None:
    headers = sign("GET", "/a", AUTH, host="api.example.com")
    # the request reaches the app with an internal Host; the client signed the public one
    internal = [(k, "10.0.0.5:8080" if k == "host" else v) for k, v in headers]
    guard = middleware(public_url="http://api.example.com:80")
    assert (await call(guard, "GET", "/a", internal)).status == 200
    refused(await call(middleware(), "GET", "/a", internal), 401, "invalid_signature")


async def test_websocket_on_a_signed_route_is_closed() -> None:
    sent: list[dict[str, Any]] = []
    inbox = [{"type": "websocket.connect"}]

    async def receive() -> MutableMapping[str, Any]:
        return inbox.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {"type": "websocket", "path": "/ws", "headers": []}
    await middleware()(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]


async def test_unknown_scope_type_never_reaches_the_app() -> None:
    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["type"])

    async def nothing() -> dict[str, Any]:
        raise AssertionError

    await middleware(app)({"type": "webtransport", "path": "/"}, nothing, nothing)  # type: ignore[arg-type]
    await middleware(app)({"type": "lifespan"}, nothing, nothing)  # type: ignore[arg-type]
    assert reached == ["lifespan"]


def test_static_jwks_refuses_bad_keys() -> None:
    good = SigningKey(ec.generate_private_key(ec.SECP256R1()), "k").public_jwk()
    with pytest.raises(ValueError, match="kid"):
        StaticJWKS({"keys": [{**good, "kid": None}]})
    with pytest.raises(ValueError, match="twice"):
        StaticJWKS({"keys": [good, good]})
    with pytest.raises(ValueError, match="alg"):
        StaticJWKS({"keys": [{**good, "alg": "RS256"}]})
    with pytest.raises(ValueError, match="jwk_private"):
        StaticJWKS({"keys": [{**good, "d": "AAAA"}]})
    with pytest.raises(ValueError):
        StaticJWKS({"keys": [{**good, "alg": "PS256"}]})  # an EC key is not PS256


_ = echo_app


def _behind_a_guard(client_id: str | None, app: Any) -> Any:
    """What DPoPGuardMiddleware in front does: ``scope["auth"]`` holds the credentials."""

    async def guard(scope: Any, receive: Any, send: Any) -> None:
        token = TokenInfo(
            subject="u1", client_id=client_id, scopes=frozenset(), expires_at=None, jkt=None
        )
        scope["auth"] = DPoPCredentials(token=token, scheme="DPoP", interaction_id=None)
        await app(scope, receive, send)

    return guard


async def test_per_client_keys_refuse_another_clients_key(caplog: pytest.LogCaptureFixture) -> None:
    other = SigningKey(ec.generate_private_key(ec.SECP256R1()), "client-2")
    keys = StaticJWKS.per_client(
        {"c1": {"keys": [CLIENT_KEY.public_jwk()]}, "c2": {"keys": [other.public_jwk()]}}
    )
    signed_by_c2 = sign("GET", "/a", AUTH, keyid="client-2", key=other)
    # the token is c2's: its key is found
    ok = _behind_a_guard("c2", middleware(key_source=keys))
    assert (await call(ok, "GET", "/a", signed_by_c2)).status == 200
    # the token is c1's, the request signed with c2's key: refused
    wrong = _behind_a_guard("c1", middleware(key_source=keys))
    refused(
        await call(wrong, "GET", "/a", sign("GET", "/a", AUTH, keyid="client-2", key=other)),
        401,
        "invalid_signature",
    )
    assert reason(caplog) == "signature_key_unknown"
    # no guard in front, no client: nothing is found
    refused(
        await call(
            middleware(key_source=keys),
            "GET",
            "/a",
            sign("GET", "/a", AUTH, keyid="client-2", key=other),
        ),
        401,
        "invalid_signature",
    )
    assert reason(caplog) == "signature_key_unknown"
    with pytest.raises(ValueError, match="twice"):
        StaticJWKS.per_client(
            {"c1": {"keys": [other.public_jwk()]}, "c2": {"keys": [other.public_jwk()]}}
        )
