"""A signing client and an ASGI driver for the middleware tests (real keys, real stores)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from http_sf.types import ParamsType

from dpop_guard.httpsig import (
    Component,
    HTTPSignatureMiddleware,
    Message,
    SignatureParams,
    SigningKey,
    StaticJWKS,
    content_digest,
)
from dpop_guard.httpsig._base import inner_list, signature_base

NOW = 1_767_225_600
CLIENT_KEY = SigningKey(ec.generate_private_key(ec.SECP256R1()), "client-1")
SERVER_KEY = SigningKey(ec.generate_private_key(ec.SECP256R1()), "rs-1")
KEYS = StaticJWKS({"keys": [CLIENT_KEY.public_jwk()]})
AUTHORIZATION = "DPoP eyJhbGciOiJFUzI1NiJ9.e30.sig"


def sign(
    method: str,
    path: str,
    headers: Sequence[tuple[str, str]],
    *,
    query: str | None = None,
    components: Sequence[str | Component] = ("@method", "@target-uri", "authorization"),
    created: int | None = NOW,
    keyid: str | None = "client-1",
    tag: str | None = "fapi-2-request",
    extra_params: str = "",
    label: str = "sig1",
    key: SigningKey = CLIENT_KEY,
    host: str = "rs.example",
) -> list[tuple[str, str]]:
    """``headers`` plus ``Signature-Input`` and ``Signature`` over ``components``."""
    items = [c if isinstance(c, Component) else Component(c, {}) for c in components]
    params: ParamsType = {}
    if created is not None:
        params["created"] = created
    if keyid is not None:
        params["keyid"] = keyid
    if tag is not None:
        params["tag"] = tag
    serialized = inner_list(items, params) + extra_params
    sp = SignatureParams(tuple(items), serialized=serialized)
    all_headers = [("host", host), *headers]
    message = Message(
        method,
        "http",
        host,
        path,
        query,
        tuple((k.encode(), v.encode()) for k, v in all_headers),
    )
    base = signature_base(sp, message, in_response=False)
    value = base64.b64encode(key.sign(base)).decode()
    return [
        *all_headers,
        ("signature-input", f"{label}={serialized}"),
        ("signature", f"{label}=:{value}:"),
    ]


def with_body(body: bytes) -> list[tuple[str, str]]:
    return [
        ("authorization", AUTHORIZATION),
        ("content-type", "application/json"),
        ("content-digest", content_digest(body)),
        ("content-length", str(len(body))),
    ]


@dataclass
class Result:
    status: int
    headers: dict[str, str]
    body: bytes
    app_chunks: list[dict[str, Any]] = field(default_factory=list)
    app_scope: dict[str, Any] | None = None
    completed: bool = True


async def echo_app(scope: Any, receive: Any, send: Any) -> None:
    """Reads the whole body chunk by chunk, then answers it back as JSON; records the
    messages it received and its scope in ``scope["_record"]``."""
    record = scope["_record"]
    record["scope"] = scope
    chunks: list[bytes] = []
    while True:
        message = await receive()
        record["seen"].append(message)
        if message["type"] == "http.disconnect":
            return
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b'{"echo":"' + b"".join(chunks).hex().encode() + b'"}'
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def call(
    guard: Any,
    method: str,
    path: str,
    headers: Sequence[tuple[str, str]],
    *,
    chunks: Sequence[bytes] = (b"",),
    query: str | None = None,
) -> Result:
    """Run one HTTP request through ``guard``; ``chunks`` are the body's messages."""
    inbox = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []
    record: dict[str, Any] = {"seen": [], "scope": None}
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": (query or "").encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
        "server": ("rs.example", 80),
        "client": ("127.0.0.1", 1234),
        "_record": record,
    }

    async def receive() -> dict[str, Any]:
        return inbox.pop(0) if inbox else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await guard(scope, receive, send)
    starts = [m for m in sent if m["type"] == "http.response.start"]
    bodies = [m for m in sent if m["type"] == "http.response.body"]
    assert len(starts) <= 1
    if not starts:
        return Result(0, {}, b"", record["seen"], record["scope"], completed=False)
    headers_out: dict[str, str] = {}
    for k, v in starts[0]["headers"]:
        assert k.decode() not in headers_out, k
        headers_out[k.decode()] = v.decode()
    completed = bool(bodies) and not bodies[-1].get("more_body", False)
    body = b"".join(m.get("body", b"") for m in bodies)
    return Result(
        starts[0]["status"], headers_out, body, record["seen"], record["scope"], completed
    )


def middleware(app: Any = echo_app, **kwargs: Any) -> HTTPSignatureMiddleware:
    kwargs.setdefault("key_source", KEYS)
    kwargs.setdefault("clock", lambda: NOW)
    return HTTPSignatureMiddleware(app, **kwargs)


def reason(caplog: pytest.LogCaptureFixture) -> str | None:
    found = [getattr(r, "dpop_guard_reason", None) for r in caplog.records]
    found = [f for f in found if f]
    return found[-1] if found else None


def _keyword_sign() -> bool:
    """Whether this cryptography takes ``sign(data, signature_algorithm=...)`` by keyword,
    as the ``http-message-signatures`` package calls it (cryptography 42, the package's
    floor, takes it by position only)."""
    from cryptography.hazmat.primitives import hashes

    key = ec.generate_private_key(ec.SECP256R1())
    try:
        key.sign(b"", signature_algorithm=ec.ECDSA(hashes.SHA256()))
    except TypeError:
        return False
    return True


needs_interop_peer = pytest.mark.skipif(
    not _keyword_sign(),
    reason="http-message-signatures needs a newer cryptography than the one installed "
    "(make test-lowest pins cryptography to the package's floor); make test runs these",
)
