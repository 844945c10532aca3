"""``dpop-guard conformance --httpsig-key``: what a resource server must accept and refuse
under the FAPI 2.0 HTTP Signatures profile (RFC 9421), dpop_guard's own cases (the OIDF
suite's FAPI2-HTTPSig plan is not reproduced).

Every case sends a DPoP request (token and proof valid) whose signature departs from a
correct one in one way; the correct ones must be accepted, and their signed answer must
verify with the server's public keys when they are given. Signatures are made with the
package's own signer (:func:`dpop_guard.httpsig.sign_request` and the signature base it
uses), never by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import anyio
import httpx

from ..client import DPoPAuth, ProofSigner
from ..httpsig import (
    REQUEST_TAG,
    ResponseSignatureError,
    SignatureParams,
    SigningKey,
    StaticJWKS,
    request_message,
)
from ..httpsig._base import signature_base
from ..httpsig._sign import request_components
from .conformance import Expectation, Outcome

__all__ = ["HTTPSIG_CASES", "run_httpsig_conformance"]

STALE: Final = 120  # seconds: twice the profile's recommended minute


@dataclass(slots=True)
class _Context:
    url: str
    method: str
    body: bytes | None
    key: SigningKey
    auth: DPoPAuth
    http: httpx.AsyncClient
    verifies: bool


def _resign(
    request: httpx.Request,
    ctx: _Context,
    *,
    drop: str | None = None,
    tag: str = REQUEST_TAG,
    created: int | None = None,
    key: SigningKey | None = None,
    url: str | None = None,
) -> httpx.Request:
    """``request`` with its signature made again, departing in one way."""
    signed = request if url is None else httpx.Request(request.method, url, headers=request.headers)
    message = request_message(signed)
    components = [c for c in request_components(message) if c.name != drop]
    now = int(ctx.auth.clock())
    key = key or ctx.key
    params = SignatureParams.build(
        components, created=now if created is None else created, keyid=key.keyid, tag=tag
    )
    value = base64.b64encode(key.sign(signature_base(params, message, in_response=False)))
    request.headers["Signature-Input"] = f"sig1={params.serialized}"
    request.headers["Signature"] = f"sig1=:{value.decode('ascii')}:"
    return request


def _prepared(ctx: _Context) -> httpx.Request:
    """A correct request: fresh proof, signed, not sent."""
    request = ctx.http.build_request(ctx.method, ctx.url, content=ctx.body)
    return next(ctx.auth.sync_auth_flow(request))


Build = Callable[[_Context], httpx.Request | None]


def _case(**change: Any) -> Build:
    return lambda ctx: _resign(_prepared(ctx), ctx, **change)


def _unsigned(ctx: _Context) -> httpx.Request:
    request = _prepared(ctx)
    for name in ("signature", "signature-input"):
        del request.headers[name]
    return request


def _other_key(ctx: _Context) -> httpx.Request:
    from cryptography.hazmat.primitives.asymmetric import ec

    impostor = SigningKey(ec.generate_private_key(ec.SECP256R1()), ctx.key.keyid)
    return _resign(_prepared(ctx), ctx, key=impostor)


def _other_url(ctx: _Context) -> httpx.Request:
    other = ctx.url + ("&" if "?" in ctx.url else "?") + "httpsig-conformance=1"
    return _resign(_prepared(ctx), ctx, url=other)


def _stale(ctx: _Context) -> httpx.Request:
    return _resign(_prepared(ctx), ctx, created=int(ctx.auth.clock()) - STALE)


def _body_changed(ctx: _Context) -> httpx.Request | None:
    if not ctx.body:
        return None
    signed = _prepared(ctx)
    changed = bytes(reversed(ctx.body)) if ctx.body != ctx.body[::-1] else ctx.body + b" "
    return httpx.Request(ctx.method, signed.url, headers=signed.headers, content=changed)


@dataclass(frozen=True, slots=True)
class HTTPSigCase:
    """A case: its name, whether the server must accept it, and how it is built
    (``None``: not applicable); an accepted case is sent through the client's own flow."""

    name: str
    accept: bool
    build: Build | None
    why: str


HTTPSIG_CASES: Final[tuple[HTTPSigCase, ...]] = (
    HTTPSigCase("HttpSigCorrectRequest", True, None, "signed per the profile, answer verified"),
    HTTPSigCase("HttpSigUnsigned", False, _unsigned, "no signature (5.3.1.2: 401)"),
    HTTPSigCase("HttpSigOtherTag", False, _case(tag="other-profile"), "tag not fapi-2-request"),
    HTTPSigCase("HttpSigAuthorizationNotCovered", False, _case(drop="authorization"), "5.3.1.2"),
    HTTPSigCase("HttpSigTargetUriNotCovered", False, _case(drop="@target-uri"), "5.3.1.2"),
    HTTPSigCase("HttpSigDpopNotCovered", False, _case(drop="dpop"), "DPoP header not covered"),
    HTTPSigCase("HttpSigStaleCreated", False, _stale, f"created {STALE} s ago"),
    HTTPSigCase("HttpSigOtherKey", False, _other_key, "signed by another key, same keyid"),
    HTTPSigCase("HttpSigOtherUrl", False, _other_url, "signed for another @target-uri"),
    HTTPSigCase("HttpSigBodyChanged", False, _body_changed, "body changed after signing"),
    HTTPSigCase("HttpSigCorrectRequestStillWorks", True, None, "final sanity check"),
)


async def _accepted(ctx: _Context) -> tuple[int, str]:
    try:
        response = await ctx.http.request(ctx.method, ctx.url, content=ctx.body, auth=ctx.auth)
    except ResponseSignatureError as exc:
        return exc.response.status_code, f"the answer's signature: {exc.reason}"
    verified = "answer verified" if ctx.verifies else "answer not checked"
    return response.status_code, verified


async def run_httpsig_conformance(
    url: str,
    *,
    token: str,
    signer: ProofSigner,
    key: SigningKey,
    response_keys: Mapping[str, Any] | None = None,
    method: str = "GET",
    body: bytes | None = None,
    client: httpx.AsyncClient | None = None,
    deadline: float = 30.0,
) -> list[Outcome]:
    """Run :data:`HTTPSIG_CASES` against ``url``, one after another; one
    :class:`~dpop_guard.devtools.conformance.Outcome` per case.

    :param key: the client's signing key (its ``keyid`` known to the server).
    :param response_keys: the server's public JWK Set: the accepted cases' answers must
        verify with it; ``None`` leaves them unchecked.
    :param body: sent with ``method`` (``POST``...); without it the body case is n/a.
    """
    own = client is None
    http = client or httpx.AsyncClient(timeout=10.0)
    auth = DPoPAuth(signer, token, signing_key=key, response_keys=response_keys)
    ctx = _Context(url, method.upper(), body, key, auth, http, response_keys is not None)
    outcomes = []
    try:
        for case in HTTPSIG_CASES:
            expected: Expectation = "accept" if case.accept else "refuse"
            try:
                with anyio.fail_after(deadline):
                    outcomes.append(await _run(case, ctx, expected))
            except TimeoutError:
                outcomes.append(Outcome(case.name, expected, None, False, "no answer"))
            except httpx.TransportError as exc:
                detail = f"no HTTP answer ({type(exc).__name__})"
                outcomes.append(Outcome(case.name, expected, None, False, detail))
    finally:
        if own:
            await http.aclose()
    return outcomes


async def _run(case: HTTPSigCase, ctx: _Context, expected: Expectation) -> Outcome:
    if case.accept:
        status, detail = await _accepted(ctx)
        passed = status in (200, 201) and "signature:" not in detail
        return Outcome(case.name, expected, status, passed, detail)
    assert case.build is not None
    request = case.build(ctx)
    if request is None:
        return Outcome(case.name, "n/a", None, True, "not applicable (no body sent)")
    response = await ctx.http.send(request)
    status = response.status_code
    # 401 and nothing else (5.3.1.2: "reject ... with HTTP 401"): a 400 from the endpoint
    # itself (a changed body it cannot parse) is not the signature check refusing.
    return Outcome(case.name, expected, status, status == 401, case.why)


def run_from_args(args: argparse.Namespace, signer: ProofSigner) -> list[Outcome]:
    """``dpop-guard conformance --httpsig-key``: the keys read from their files (their
    material never printed), then :func:`run_httpsig_conformance`.

    :raises SystemExit: 2 when a key file cannot be used.
    """
    # The one reader of a private signing JWK (the environment's), so the rules match.
    from ..httpsig._settings import _signing_key

    try:
        key = _signing_key(json.loads(args.httpsig_key.read_text()))
        jwks = None
        if args.httpsig_server_jwks is not None:
            jwks = json.loads(args.httpsig_server_jwks.read_text())
            StaticJWKS(jwks)
    except Exception as exc:  # any failure means "unusable"; the key is never printed
        print(
            f"--httpsig-key/--httpsig-server-jwks: not usable ({type(exc).__name__})",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    return asyncio.run(
        run_httpsig_conformance(
            args.url,
            token=args.token,
            signer=signer,
            key=key,
            response_keys=jwks,
            method=args.method,
            body=None if args.body is None else args.body.encode(),
            deadline=args.deadline,
        )
    )
