"""Response signing by the middleware: what is covered, the bound on a held response,
and the routes that declare themselves unsigned."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from dpop_guard.httpsig import (
    HTTPSignatureError,
    Message,
    StaticJWKS,
    VerifyPolicy,
    content_digest,
    verify_response,
)

from ._support import AUTHORIZATION, NOW, SERVER_KEY, call, middleware, reason, sign, with_body

AUTH = [("authorization", AUTHORIZATION)]
BODY = b'{"amount": 10}'
WITH_BODY = ("@method", "@target-uri", "authorization", "content-digest")


def streaming_app(parts: list[bytes], status: int = 200) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        for i, part in enumerate(parts):
            await send(
                {"type": "http.response.body", "body": part, "more_body": i < len(parts) - 1}
            )

    return app


def _response(
    result: Any, request_headers: list[tuple[str, str]], method: str, path: str
) -> Message:
    headers = tuple((k.encode(), v.encode()) for k, v in result.headers.items())
    sent = tuple((k.encode(), v.encode()) for k, v in request_headers)
    request = Message(method, "http", "rs.example", path, None, sent)
    return Message(
        method, "http", "rs.example", path, None, headers, status=result.status, request=request
    )


async def _verify_response(
    result: Any, request_headers: list[tuple[str, str]], method: str, path: str
) -> list[str]:
    """Check our response signature with :func:`verify_response` (the client's rules; the
    interop tests check it with another implementation); return the covered identifiers."""
    signed = any(k == "signature-input" for k, _ in request_headers)
    verified = await verify_response(
        _response(result, request_headers, method, path),
        key_source=StaticJWKS({"keys": [SERVER_KEY.public_jwk()]}),
        now=NOW,
        has_body=bool(result.body),
        request_label="sig1" if signed else None,
    )
    params = verified.params
    assert (params.tag, params.created, params.keyid, params.alg) == (
        "fapi-2-response",
        NOW,
        "rs-1",
        None,
    )
    return [c.serialized() for c in params.components]


async def test_response_to_a_signed_post_covers_the_profiles_components() -> None:
    headers = sign("POST", "/pay", with_body(BODY), components=WITH_BODY)
    result = await call(middleware(signing_key=SERVER_KEY), "POST", "/pay", headers, chunks=[BODY])
    assert result.status == 200
    assert result.headers["content-digest"] == content_digest(result.body)
    covered = await _verify_response(result, headers, "POST", "/pay")
    assert covered == [
        '"@status"',
        '"content-type"',
        '"content-digest"',
        '"@method";req',
        '"@target-uri";req',
        '"content-digest";req',
        '"signature";req;key="sig1"',
        '"signature-input";req;key="sig1"',
    ]


async def test_response_to_an_unsigned_request_on_an_optional_route() -> None:
    guard = middleware(signing_key=SERVER_KEY, mode="optional")
    result = await call(guard, "GET", "/a", [("host", "rs.example"), *AUTH])
    covered = await _verify_response(result, [("host", "rs.example"), *AUTH], "GET", "/a")
    assert covered == [
        '"@status"',
        '"content-type"',
        '"content-digest"',
        '"@method";req',
        '"@target-uri";req',
    ]


async def test_a_streamed_response_is_held_and_signed_whole() -> None:
    parts = [b"a" * 10, b"b" * 10, b""]
    guard = middleware(streaming_app(parts), signing_key=SERVER_KEY)
    headers = sign("GET", "/a", AUTH)
    result = await call(guard, "GET", "/a", headers)
    assert result.body == b"a" * 10 + b"b" * 10
    assert result.headers["content-digest"] == content_digest(result.body)
    await _verify_response(result, headers, "GET", "/a")


async def test_an_empty_response_has_no_content_digest() -> None:
    guard = middleware(streaming_app([b""], status=204), signing_key=SERVER_KEY)
    headers = sign("GET", "/a", AUTH)
    result = await call(guard, "GET", "/a", headers)
    assert result.status == 204 and "content-digest" not in result.headers
    assert '"content-digest"' not in await _verify_response(result, headers, "GET", "/a")


async def test_a_response_over_the_bound_is_a_500_never_unsigned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = middleware(
        streaming_app([b"x" * 10, b"x" * 10]), signing_key=SERVER_KEY, max_response_bytes=15
    )
    result = await call(guard, "GET", "/a", sign("GET", "/a", AUTH))
    assert result.status == 500
    assert result.headers["cache-control"] == "no-store"
    assert b"server_error" in result.body and b"x" not in result.body
    assert reason(caplog) == "response_too_large_to_sign"


async def test_a_declared_streaming_route_is_sent_unsigned_as_it_streams() -> None:
    parts = [b"x" * 10, b"x" * 10]
    guard = middleware(
        streaming_app(parts),
        signing_key=SERVER_KEY,
        max_response_bytes=15,
        unsigned_responses=["/feed"],
    )
    result = await call(guard, "GET", "/feed/live", sign("GET", "/feed/live", AUTH))
    assert result.status == 200 and result.body == b"x" * 20
    assert "signature" not in result.headers


async def test_an_app_that_never_finishes_its_body_gets_a_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"half", "more_body": True})

    result = await call(
        middleware(app, signing_key=SERVER_KEY), "GET", "/a", sign("GET", "/a", AUTH)
    )
    assert result.status == 500
    assert reason(caplog) == "response_not_signable"


async def test_a_non_ascii_response_header_cannot_be_signed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", "text/é".encode())],
            }
        )
        await send({"type": "http.response.body", "body": b"ok"})

    result = await call(
        middleware(app, signing_key=SERVER_KEY), "GET", "/a", sign("GET", "/a", AUTH)
    )
    assert result.status == 500
    assert reason(caplog) == "response_not_signable"


async def test_app_sent_signature_fields_are_replaced() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        forged = [(b"signature", b"sig1=:AAAA:"), (b"content-digest", b"sha-256=:AAAA:")]
        await send({"type": "http.response.start", "status": 200, "headers": forged})
        await send({"type": "http.response.body", "body": b"ok"})

    headers = sign("GET", "/a", AUTH)
    result = await call(middleware(app, signing_key=SERVER_KEY), "GET", "/a", headers)
    assert result.headers["content-digest"] == content_digest(b"ok")
    await _verify_response(result, headers, "GET", "/a")


def test_policy_bounds_are_checked() -> None:
    with pytest.raises(ValueError):
        VerifyPolicy(max_age=0)
    with pytest.raises(ValueError):
        VerifyPolicy(max_skew=-1)
    with pytest.raises(ValueError):
        middleware(mode={"/": "sometimes"})


@pytest.mark.parametrize(
    "url", ["ftp://rs.example", "https://rs.example/v1", "https://rs.example:99999", "rs.example"]
)
def test_public_url_must_be_an_origin(url: str) -> None:
    with pytest.raises(ValueError, match="public_url"):
        middleware(public_url=url)


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (lambda m: replace(m, status=201), "signature_invalid"),
        (lambda m: replace(m, request=replace(m.request, path="/other")), "signature_invalid"),
        (
            lambda m: replace(
                m, headers=tuple((k, b"x" if k == b"signature" else v) for k, v in m.headers)
            ),
            "signature_label_unpaired",
        ),
    ],
)
async def test_a_client_refuses_a_tampered_response(tamper: Any, expected: str) -> None:
    headers = sign("GET", "/a", AUTH)
    result = await call(middleware(signing_key=SERVER_KEY), "GET", "/a", headers)
    with pytest.raises(HTTPSignatureError) as caught:
        await verify_response(
            tamper(_response(result, headers, "GET", "/a")),
            key_source=StaticJWKS({"keys": [SERVER_KEY.public_jwk()]}),
            now=NOW,
            has_body=True,
        )
    assert caught.value.reason == expected


async def test_a_client_requires_the_request_signature_covered() -> None:
    """A response signed without the request's signature (label "other" is not covered)."""
    headers = sign("GET", "/a", AUTH)
    result = await call(middleware(signing_key=SERVER_KEY), "GET", "/a", headers)
    with pytest.raises(HTTPSignatureError) as caught:
        await verify_response(
            _response(result, headers, "GET", "/a"),
            key_source=StaticJWKS({"keys": [SERVER_KEY.public_jwk()]}),
            now=NOW,
            has_body=True,
            request_label="other",
        )
    assert caught.value.reason == "signature_component_required"
