"""A resource-endpoint conformance self-test, runnable against any deployed API.

It sends what the OpenID Foundation's FAPI 2.0 conformance suite sends to a resource
endpoint (``FAPI2SPFinalDpopNegativeTests`` and its neighbours in
``conformance-suite/.../fapi2spfinal/``) and checks each answer the way the suite does:
the refusals must be a 400 or 401, the acceptances a 200 or 201. Each case is named after the
suite's condition it mirrors, so a failure here points at the suite test that would fail.

What it needs is what the suite is configured with: the resource URL, an access token bound
to a DPoP key, and that key (a private JWK). Every request carries a fresh proof; a server
that demands nonces is followed the way the suite's
``CallProtectedResourceAllowingDpopNonceError`` does (one retry, only on a 401
``use_dpop_nonce`` with exactly one ``DPoP-Nonce`` header).

This does NOT exercise the authorization server, and it does not prove the server's
replay store is fleet-wide: the replay case sends both copies to the same URL, which may
land on different instances behind a load balancer (that is the point, if so).

Bounded: each case has a total deadline (``deadline``, 30 s by default: a target that
dribbles its answer a byte at a time cannot hold a case past it), and at most
:data:`MAX_BODY_BYTES` of an answer is read (only its status and headers are judged).

Example (or ``dpop-guard conformance URL --token-file token.txt --key key.json``)::

    outcomes = asyncio.run(run_conformance("https://api.bank.example/accounts",
                                           token=token, signer=ProofSigner.from_jwk(jwk)))
    assert all(o.passed for o in outcomes)
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import re
import secrets
import ssl
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from .._b64 import b64url_encode
from ..challenges import parse_challenge
from ..client import ProofSigner
from ..proof import DPOP_TYP, compute_ath

__all__ = [
    "DEFAULT_DEADLINE",
    "MAX_BODY_BYTES",
    "MTLS_CASES",
    "TOKEN_ENV",
    "Case",
    "Outcome",
    "main",
    "run_conformance",
    "run_mtls_conformance",
]

DEFAULT_DEADLINE = 30.0
"""Seconds one case may take in total, retries included."""
MAX_BODY_BYTES = 1 << 20
"""At most this much of an answer's body is read; the rest is never downloaded."""
TOKEN_ENV = "DPOP_CONFORMANCE_TOKEN"  # noqa: S105 - the name of a variable
"""The environment variable ``--token-env`` reads by default."""

Expectation = Literal["refuse", "accept", "either"]

#: RFC 9449 section 8.1: ``nonce = 1*NQCHAR``, NQCHAR = %x21 / %x23-5B / %x5D-7E.
_NQCHAR = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
_INTERACTION_ID = "x-fapi-interaction-id"


@dataclass(slots=True)
class _Request:
    """One request as the case wants it sent; the runner signs the proof last."""

    url: str
    header: dict[str, Any]
    claims: dict[str, Any]
    scheme: str = "DPoP"
    send_token: bool = True
    proofs: int = 1
    dpop_header_name: str = "DPoP"
    signer: ProofSigner | None = None
    tamper: Callable[[str], str] | None = None
    query_token: bool = False
    extra_headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Case:
    """One conformance case: the suite's condition name, what the server must do, and how
    the request departs from a correct one."""

    name: str
    expect: Expectation
    build: Callable[[_Request, _Context], _Request | None]
    """Edits a correct request into the case's request; ``None`` means not applicable."""
    why: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one case got."""

    case: str
    expected: Expectation | Literal["n/a"]
    status: int | None
    passed: bool
    detail: str = ""


@dataclass(slots=True)
class _Context:
    url: str
    method: str
    token: str
    signer: ProofSigner
    nonce: str | None = None
    fixed_jti: str = field(default_factory=lambda: secrets.token_urlsafe(16))


def _correct(ctx: _Context) -> _Request:
    header = {"typ": DPOP_TYP, "alg": ctx.signer.alg, "jwk": dict(ctx.signer.public_jwk)}
    claims: dict[str, Any] = {
        "jti": secrets.token_urlsafe(16),
        "htm": ctx.method,
        "htu": _strip(ctx.url),
        "iat": int(time.time()),
        "ath": compute_ath(ctx.token),
    }
    return _Request(url=ctx.url, header=header, claims=claims)


def _strip(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _drop(
    where: Literal["header", "claims"], name: str
) -> Callable[[_Request, _Context], _Request]:
    def build(req: _Request, _ctx: _Context) -> _Request:
        getattr(req, where).pop(name, None)
        return req

    return build


def _set(
    where: Literal["header", "claims"], name: str, value: Callable[[_Context], Any]
) -> Callable[[_Request, _Context], _Request]:
    def build(req: _Request, ctx: _Context) -> _Request:
        getattr(req, where)[name] = value(ctx)
        return req

    return build


def _private_jwk(signer: ProofSigner) -> dict[str, Any]:
    """The signer's public JWK plus its private members, for the private-key case."""
    jwk = dict(signer.public_jwk)
    key = signer.key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = (key.curve.key_size + 7) // 8
        jwk["d"] = b64url_encode(key.private_numbers().private_value.to_bytes(size, "big"))
    elif isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        for name, value in (
            ("d", numbers.d),
            ("p", numbers.p),
            ("q", numbers.q),
            ("dp", numbers.dmp1),
            ("dq", numbers.dmq1),
            ("qi", numbers.iqmp),
        ):
            jwk[name] = b64url_encode(value.to_bytes((value.bit_length() + 7) // 8, "big"))
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        from cryptography.hazmat.primitives.serialization import (
            Encoding,
            NoEncryption,
            PrivateFormat,
        )

        raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        jwk["d"] = b64url_encode(raw)
    return jwk


def _flip_signature(proof: str) -> str:
    head, _, signature = proof.rpartition(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return f"{head}.{flipped}"


def _remove_alg_after_signing(proof: str) -> str:
    header_b64, payload, signature = proof.split(".")
    from .._b64 import b64url_decode

    header = json.loads(b64url_decode(header_b64))
    header.pop("alg", None)
    new_header = b64url_encode(json.dumps(header, separators=(",", ":")).encode())
    return f"{new_header}.{payload}.{signature}"


def _sign_none(req: _Request, _ctx: _Context) -> _Request:
    def unsigned(proof: str) -> str:
        _, payload, _ = proof.split(".")
        header = dict(req.header, alg="none")
        encoded = b64url_encode(json.dumps(header, separators=(",", ":")).encode())
        return f"{encoded}.{payload}."

    req.tamper = unsigned
    return req


def _rs256(req: _Request, ctx: _Context) -> _Request | None:
    if not isinstance(ctx.signer.key, rsa.RSAPrivateKey):
        return None  # the suite runs this case only with an RSA key
    req.signer = ProofSigner(ctx.signer.key, alg="RS256")
    req.header["alg"] = "RS256"
    return req


def _htu_with_query(req: _Request, _ctx: _Context) -> _Request:
    req.claims["htu"] = req.claims["htu"] + "?foo=bar#frag"
    return req


def _request_with_query(req: _Request, _ctx: _Context) -> _Request:
    # The htu stays bare while the request carries a query: the query must be ignored.
    req.url = req.url + ("&" if "?" in req.url else "?") + "dpop_guard_conformance=1"
    return req


def _other_url(req: _Request, _ctx: _Context) -> _Request:
    parts = urlsplit(req.claims["htu"])
    req.claims["htu"] = urlunsplit(
        (parts.scheme, parts.netloc, parts.path.rstrip("/") + "/other", "", "")
    )
    return req


def _upper_htu(req: _Request, _ctx: _Context) -> _Request:
    parts = urlsplit(req.claims["htu"])
    req.claims["htu"] = urlunsplit((parts.scheme.upper(), parts.netloc.upper(), parts.path, "", ""))
    return req


def _default_port(req: _Request, _ctx: _Context) -> _Request | None:
    parts = urlsplit(req.claims["htu"])
    if parts.port is not None:
        return None  # the endpoint has a non-default port: nothing to add
    port = {"https": 443, "http": 80}.get(parts.scheme.lower())
    if port is None:
        return None
    req.claims["htu"] = urlunsplit((parts.scheme, f"{parts.netloc}:{port}", parts.path, "", ""))
    return req


def _other_key(req: _Request, _ctx: _Context) -> _Request:
    other = ProofSigner.generate("ES256")
    req.signer = other
    req.header = {"typ": DPOP_TYP, "alg": other.alg, "jwk": dict(other.public_jwk)}
    return req


def _extra_members(req: _Request, _ctx: _Context) -> _Request:
    req.header["dpop_guard_extra"] = "ignored"
    req.claims["dpop_guard_extra"] = {"nested": [1, 2, 3]}
    return req


def _two_proofs(req: _Request, _ctx: _Context) -> _Request:
    req.proofs = 2
    return req


def _capital_header(req: _Request, _ctx: _Context) -> _Request:
    req.dpop_header_name = "DPOP"
    return req


def _not_jwt(req: _Request, _ctx: _Context) -> _Request:
    req.tamper = lambda proof: proof.replace(".", "", 1)
    return req


def _no_proof(req: _Request, _ctx: _Context) -> _Request:
    req.proofs = 0
    return req


def _bearer_no_proof(req: _Request, _ctx: _Context) -> _Request:
    req.proofs = 0
    req.scheme = "Bearer"
    return req


def _inverted_scheme(req: _Request, _ctx: _Context) -> _Request:
    req.scheme = "dPoP"
    return req


def _token_in_query(req: _Request, _ctx: _Context) -> _Request:
    req.send_token = False
    req.proofs = 0
    req.query_token = True
    return req


def _fixed_jti(req: _Request, ctx: _Context) -> _Request:
    req.claims["jti"] = ctx.fixed_jti
    return req


def _nbf_exp(req: _Request, _ctx: _Context) -> _Request:
    now = int(time.time())
    req.claims["nbf"] = now - 5
    req.claims["exp"] = now + 60
    return req


def _iat(offset: int) -> Callable[[_Request, _Context], _Request]:
    def build(req: _Request, _ctx: _Context) -> _Request:
        req.claims["iat"] = int(time.time()) + offset
        return req

    return build


def _tamper(fn: Callable[[str], str]) -> Callable[[_Request, _Context], _Request]:
    def build(req: _Request, _ctx: _Context) -> _Request:
        req.tamper = fn
        return req

    return build


def _unchanged(req: _Request, _ctx: _Context) -> _Request:
    return req


#: The cases, in the suite's order. ``either`` marks what the suite only warns about.
CASES: tuple[Case, ...] = (
    Case("EnsureCorrectDpopProofWorks", "accept", _unchanged, "a correct proof"),
    Case("AddDpopHeaderAllCapital", "accept", _capital_header, "header name DPOP"),
    Case("MultipleProofs", "refuse", _two_proofs, "two DPoP headers"),
    Case("NotWellformedDPoP", "refuse", _not_jwt, "not a JWT"),
    Case("RemoveTypFromDpopProof", "refuse", _drop("header", "typ")),
    Case("SignDpopAndRemoveAlg", "refuse", _tamper(_remove_alg_after_signing)),
    Case("RemoveJwkFromDpopProof", "refuse", _drop("header", "jwk")),
    Case("RemoveJtiFromDpopProof", "refuse", _drop("claims", "jti")),
    Case("RemoveHtmFromDpopProof", "refuse", _drop("claims", "htm")),
    Case("RemoveHtuFromDpopProof", "refuse", _drop("claims", "htu")),
    Case("RemoveIatFromDpopProof", "refuse", _drop("claims", "iat")),
    Case("SkipSetDpopAccessTokenHash", "refuse", _drop("claims", "ath"), "ath missing"),
    Case("SetDpopHeaderTypToInvalidValue", "refuse", _set("header", "typ", lambda _: "JWT")),
    Case("ChangeSignAlgorithm", "refuse", _rs256, "RS256 (RSA keys only)"),
    Case("SignDpopProofWithNone", "refuse", _sign_none),
    Case("InvalidateDpopProofSignature", "refuse", _tamper(_flip_signature)),
    Case(
        "SetDpopHeaderJwkToPrivateKey",
        "refuse",
        _set("header", "jwk", lambda ctx: _private_jwk(ctx.signer)),
    ),
    Case("SetDpopHtmToPut", "refuse", _set("claims", "htm", lambda _: "PUT")),
    Case("AddQueryAndFragmentToDpopHtu", "accept", _htu_with_query),
    Case("RemoveQueryAndFragmentFromDpopHtu", "accept", _request_with_query),
    Case("SetDpopHtuToDifferentUrl", "refuse", _other_url),
    Case("SetDpopIatToOneHourInFuture", "refuse", _iat(3600)),
    Case("SetDpopIatToOneHourInPast", "refuse", _iat(-3600)),
    Case("FixedJtiClaim", "accept", _fixed_jti, "first use of a jti"),
    Case("FixedJtiClaimReused", "refuse", _fixed_jti, "second use of the same jti"),
    Case(
        "SetDpopAccessTokenHashToIncorrectValue",
        "refuse",
        _set("claims", "ath", lambda _: compute_ath("another token")),
    ),
    Case("GenerateNewSignKey", "refuse", _other_key, "another key"),
    Case("AddExtraClaimsToHeaderAndClaims", "accept", _extra_members),
    Case("DpopHtuUpperCase", "accept", _upper_htu, "upper-case scheme and host"),
    Case("DpopHtuWithPort", "accept", _default_port, "explicit default port"),
    Case("RemoveDpopFromResourceRequest", "refuse", _no_proof, "no DPoP header"),
    Case("CallProtectedResourceForceBearer", "refuse", _bearer_no_proof, "Bearer, no proof"),
    Case("AccessTokenTypeHeaderCaseSensitivity", "accept", _inverted_scheme, "scheme dPoP"),
    Case("DpopIat10SecondsAfterSucceeds", "accept", _iat(8), "iat +8 s"),
    Case("DpopIat10SecondsBeforeSucceeds", "accept", _iat(-10), "iat -10 s"),
    Case("CheckDpopProofNbfExp", "accept", _nbf_exp, "nbf and exp present"),
    Case("DisallowAccessTokenInQuery", "refuse", _token_in_query, "token in the query"),
    Case("EnsureCorrectDpopProofStillWorks", "accept", _unchanged, "final sanity check"),
)


def _sign(req: _Request, ctx: _Context) -> str:
    signer = req.signer or ctx.signer
    claims = dict(req.claims)
    if ctx.nonce is not None:
        claims["nonce"] = ctx.nonce
    proof = signer.sign_raw(req.header, claims)
    return req.tamper(proof) if req.tamper is not None else proof


def _headers(req: _Request, ctx: _Context, interaction_id: str) -> list[tuple[str, str]]:
    headers = [(_INTERACTION_ID, interaction_id), *req.extra_headers]
    if req.send_token:
        headers.append(("Authorization", f"{req.scheme} {ctx.token}"))
    for _ in range(req.proofs):
        # Two headers of one proof each: the suite's MultipleProofs signs twice.
        headers.append((req.dpop_header_name, _sign(req, ctx)))
    return headers


def _asks_for_nonce(response: _Answer) -> bool:
    """Whether a ``WWW-Authenticate`` of ``response`` is a ``DPoP`` challenge with
    ``error=use_dpop_nonce`` (quoted or not, among other challenges or alone)."""
    for value in response.headers.get_list("www-authenticate"):
        try:
            scheme, params = parse_challenge(value)
        except ValueError:
            continue
        if scheme.lower() == "dpop" and params.get("error") == "use_dpop_nonce":
            return True
    return False


def _nonce_challenge(response: _Answer) -> str | None:
    """The nonce to retry with, exactly under the suite's rule, else ``None``."""
    if response.status_code != 401 or not _asks_for_nonce(response):
        return None
    nonces = response.headers.get_list("dpop-nonce")
    if len(nonces) != 1 or not _NQCHAR.fullmatch(nonces[0]):
        return None
    return nonces[0]


def _check_headers(response: _Answer, interaction_id: str, *, require_id: bool) -> str:
    """Problems with the FAPI response headers (empty when there are none)."""
    problems = []
    echoed = response.headers.get_list(_INTERACTION_ID)
    if echoed and echoed != [interaction_id]:
        problems.append(f"x-fapi-interaction-id {echoed!r} is not the one sent")
    elif not echoed and require_id:
        problems.append("x-fapi-interaction-id not echoed")
    if _asks_for_nonce(response) and _nonce_challenge(response) is None:
        problems.append("use_dpop_nonce without exactly one valid DPoP-Nonce on a 401")
    date = response.headers.get("date")
    if date is None:
        problems.append("no Date header")
    else:
        try:
            skew = abs(parsedate_to_datetime(date).timestamp() - time.time())
        except (TypeError, ValueError):
            problems.append("unparseable Date header")
        else:
            if skew > 300:
                problems.append(f"Date is {skew:.0f} s off")
    nonces = response.headers.get_list("dpop-nonce")
    if len(nonces) > 1:
        problems.append("more than one DPoP-Nonce header")
    elif nonces and not _NQCHAR.fullmatch(nonces[0]):
        problems.append("DPoP-Nonce is not 1*NQCHAR")
    return "; ".join(problems)


class _Answer:
    """What a case judges of an answer: status and headers, the body read up to
    :data:`MAX_BODY_BYTES` and dropped."""

    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.headers = response.headers
        self.is_success = response.is_success


async def _send(
    client: httpx.AsyncClient, method: str, url: str, headers: list[tuple[str, str]]
) -> _Answer:
    """One request whose body is read only up to :data:`MAX_BODY_BYTES`."""
    async with client.stream(method, url, headers=headers) as response:
        read = 0
        async for chunk in response.aiter_raw():
            read += len(chunk)
            if read >= MAX_BODY_BYTES:
                break  # leaving the block closes the connection: the rest is never read
        return _Answer(response)


async def _within(deadline: float, name: str, expect: Expectation, run: Any) -> Outcome:
    """``run()``'s outcome, or a failure once ``deadline`` seconds have passed."""
    try:
        with anyio.fail_after(deadline):
            outcome: Outcome = await run()
            return outcome
    except TimeoutError:
        return Outcome(name, expect, None, False, f"no complete answer within {deadline:g} s")
    except httpx.TransportError as exc:
        return Outcome(name, expect, None, False, f"no HTTP answer ({type(exc).__name__})")


async def _run_case(
    case: Case, ctx: _Context, client: httpx.AsyncClient, *, require_id: bool
) -> Outcome:
    req = case.build(_correct(ctx), ctx)
    if req is None:
        return Outcome(case.name, "n/a", None, True, "not applicable to this endpoint/key")
    interaction_id = str(uuid.uuid4())
    url = req.url
    if req.query_token:
        url = url + ("&" if "?" in url else "?") + "access_token=" + ctx.token
    response: _Answer | None = None
    used_nonce = False
    for _attempt in range(2):
        response = await _send(client, ctx.method, url, _headers(req, ctx, interaction_id))
        nonce = _nonce_challenge(response)
        if nonce is None:
            break
        ctx.nonce = nonce
        used_nonce = True
        # The retry is a new proof, as the suite's is: a server may have recorded the
        # first jti before it asked for a nonce (an authorization server that issues the
        # nonces is asked after the jti is recorded). Only the fixed-jti cases keep theirs.
        if req.claims.get("jti") != ctx.fixed_jti:
            req.claims["jti"] = secrets.token_urlsafe(16)
    assert response is not None
    # A nonce on a success replaces the stored one, as in the suite.
    next_nonce = response.headers.get_list("dpop-nonce")
    if response.is_success and len(next_nonce) == 1:
        ctx.nonce = next_nonce[0]
    status = response.status_code
    expected: Expectation = case.expect
    if used_nonce and case.name.startswith("SetDpopIatToOneHour"):
        # The suite accepts either answer once the server used a nonce: a nonce may
        # replace the iat check (RFC 9449 section 11.1).
        expected = "either"
    if expected == "accept":
        passed = status in (200, 201)
    elif expected == "refuse":
        passed = status in (400, 401) or (
            case.name == "DisallowAccessTokenInQuery" and status == 414
        )
    else:
        passed = True
    detail = _check_headers(response, interaction_id, require_id=require_id)
    if detail:
        passed = False
    return Outcome(case.name, expected, status, passed, detail or case.why)


async def run_conformance(
    url: str,
    *,
    token: str,
    signer: ProofSigner,
    method: str = "GET",
    client: httpx.AsyncClient | None = None,
    cases: Sequence[Case] = CASES,
    require_interaction_id: bool = False,
    deadline: float = DEFAULT_DEADLINE,
) -> list[Outcome]:
    """Run ``cases`` against the resource at ``url``, one after another.

    :param url: the protected resource, as clients address it (its ``htu``).
    :param token: an access token bound to ``signer``'s key.
    :param signer: the DPoP key the token is bound to.
    :param method: the HTTP method the resource answers with 200 or 201.
    :param client: the client to send with (e.g. one holding a TLS client certificate);
        by default a fresh ``httpx.AsyncClient``.
    :param require_interaction_id: fail a case whose answer does not echo the
        ``x-fapi-interaction-id`` sent (ConnectID and the UK require it; plain FAPI 2.0
        only advises it).
    :param deadline: seconds each case may take in total; a case still waiting then fails.
    :returns: one :class:`Outcome` per case, in order.
    """
    ctx = _Context(url=url, method=method.upper(), token=token, signer=signer)
    own = client is None
    http = client or httpx.AsyncClient(timeout=10.0)
    try:
        return [
            await _within(
                deadline,
                case.name,
                case.expect,
                lambda case=case: _run_case(case, ctx, http, require_id=require_interaction_id),
            )
            for case in cases
        ]
    finally:
        if own:
            await http.aclose()


#: The certificate-bound (RFC 8705) cases: (name, expectation, with the certificate?, how
#: the token is sent). Not the OIDF suite's: dpop_guard's own, for mTLS deployments.
MTLS_CASES: tuple[tuple[str, Expectation, bool, Literal["header", "query"]], ...] = (
    ("CertificateBoundTokenWithItsCertificate", "accept", True, "header"),
    ("CertificateBoundTokenWithoutCertificate", "refuse", False, "header"),
    ("CertificateBoundTokenInQuery", "refuse", True, "query"),
    ("CertificateBoundTokenStillWorks", "accept", True, "header"),
)


async def run_mtls_conformance(
    url: str,
    *,
    token: str,
    with_certificate: httpx.AsyncClient,
    without_certificate: httpx.AsyncClient,
    method: str = "GET",
    require_interaction_id: bool = False,
    deadline: float = DEFAULT_DEADLINE,
) -> list[Outcome]:
    """Run :data:`MTLS_CASES` against ``url`` with a certificate-bound ``token`` on the
    ``Bearer`` scheme (RFC 8705 section 3).

    :param with_certificate: a client presenting the certificate the token is bound to.
    :param without_certificate: a client presenting none. A proxy that requires client
        certificates refuses its TLS handshake: that counts as a refusal.
    :returns: one :class:`Outcome` per case, in order.
    """
    outcomes = []
    for name, expect, certificate, where in MTLS_CASES:
        client = with_certificate if certificate else without_certificate
        interaction_id = str(uuid.uuid4())
        headers = [(_INTERACTION_ID, interaction_id)]
        target = url
        if where == "header":
            headers.append(("Authorization", f"Bearer {token}"))
        else:
            target = url + ("&" if "?" in url else "?") + "access_token=" + token
        try:
            with anyio.fail_after(deadline):
                response = await _send(client, method.upper(), target, headers)
        except TimeoutError:
            detail = f"no complete answer within {deadline:g} s"
            outcomes.append(Outcome(name, expect, None, False, detail))
            continue
        except httpx.TransportError as exc:
            # Only a refusal may end in the handshake; an acceptance needs an answer.
            passed = expect == "refuse" and not certificate
            detail = f"no HTTP answer ({type(exc).__name__})"
            outcomes.append(Outcome(name, expect, None, passed, detail))
            continue
        status = response.status_code
        passed = status in (200, 201) if expect == "accept" else status in (400, 401, 403)
        detail = _check_headers(response, interaction_id, require_id=require_interaction_id)
        outcomes.append(Outcome(name, expect, status, passed and not detail, detail))
    return outcomes


def format_table(outcomes: Sequence[Outcome]) -> str:
    """The outcomes as a plain-text table: case, expected, got, pass, detail."""
    rows = [("case", "expected", "got", "pass", "detail")]
    rows += [
        (
            o.case,
            o.expected,
            "-" if o.status is None else str(o.status),
            "PASS" if o.passed else "FAIL",
            o.detail,
        )
        for o in outcomes
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4]
        for row in rows
    ]
    failed = sum(not o.passed for o in outcomes)
    lines.append(f"{len(outcomes) - failed} passed, {failed} failed")
    return "\n".join(line.rstrip() for line in lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``dpop-guard conformance`` arguments."""
    parser.add_argument("url", help="the protected resource URL, as clients address it")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--token-file",
        type=Path,
        help="a file holding the access token bound to --key (or to --mtls-cert); '-' reads "
        "standard input",
    )
    source.add_argument(
        "--token-env",
        nargs="?",
        const=TOKEN_ENV,
        metavar="VARIABLE",
        help=f"read the access token from this environment variable (default {TOKEN_ENV})",
    )
    source.add_argument(
        "--token",
        help="deprecated: the token on the command line shows in the process list; use "
        "--token-file or --token-env",
    )
    bound = parser.add_mutually_exclusive_group(required=True)
    bound.add_argument("--key", type=Path, help="the DPoP private JWK file")
    bound.add_argument(
        "--mtls-cert",
        type=Path,
        help="the client certificate (PEM) a certificate-bound --token is bound to: runs "
        "the RFC 8705 cases instead of the DPoP ones",
    )
    parser.add_argument("--mtls-key", type=Path, help="the private key (PEM) of --mtls-cert")
    parser.add_argument("--ca", type=Path, help="CA file (PEM) to verify the server with")
    parser.add_argument("--method", default="GET", help="HTTP method the resource answers")
    parser.add_argument("--json", action="store_true", help="print the outcomes as JSON")
    parser.add_argument(
        "--require-interaction-id",
        action="store_true",
        help="fail when x-fapi-interaction-id is not echoed (UK, ConnectID)",
    )
    parser.add_argument(
        "--httpsig-key",
        type=Path,
        help="the client's private JWK (with kid) for RFC 9421 message signatures: runs the "
        "FAPI 2.0 HTTP Signatures cases instead of the DPoP ones (with --key)",
    )
    parser.add_argument(
        "--httpsig-server-jwks",
        type=Path,
        help="the resource server's public JWK Set: the accepted cases' answers must verify",
    )
    parser.add_argument("--body", help="a request body to send with --method (HTTP Signatures)")
    parser.add_argument(
        "--deadline",
        type=float,
        default=DEFAULT_DEADLINE,
        help=f"seconds each case may take in total (default {DEFAULT_DEADLINE:g}); a target "
        "that answers slower fails the case",
    )


def _token(args: argparse.Namespace) -> str | None:
    """The token from --token-file, --token-env or (deprecated) --token; ``None``, with the
    reason on standard error, when there is none. The token itself is never printed."""
    import os

    if args.token is not None:
        print(
            "warning: --token shows the token in the process list; use --token-file or --token-env",
            file=sys.stderr,
        )
        return str(args.token)
    if args.token_file is not None:
        try:
            raw = (
                sys.stdin.read(64 * 1024)
                if str(args.token_file) == "-"
                else args.token_file.read_text()
            )
        except (OSError, UnicodeDecodeError) as exc:
            print(
                f"--token-file {args.token_file}: unreadable ({type(exc).__name__})",
                file=sys.stderr,
            )
            return None
        where = f"--token-file {args.token_file}"
    else:
        raw = os.environ.get(args.token_env, "")
        where = f"--token-env {args.token_env}"
    token = raw.strip()
    if not token or any(c.isspace() or not c.isprintable() for c in token):
        print(f"{where}: holds no token (one line, no spaces)", file=sys.stderr)
        return None
    return token


def run_from_args(args: argparse.Namespace) -> int:
    """Run the self-test from parsed arguments; 0 when every case passed, 1 when one
    failed, 2 when the key or the token cannot be used."""
    token = _token(args)
    if token is None:
        return 2
    args.token = token
    if not args.deadline > 0:
        print("--deadline must be a positive number of seconds", file=sys.stderr)
        return 2
    if args.mtls_cert is not None:
        try:
            contexts = _tls_contexts(args)
        except OSError as exc:  # ssl.SSLError included
            print(
                f"--mtls-cert/--mtls-key/--ca: not usable ({type(exc).__name__})", file=sys.stderr
            )
            return 2
        return _report(asyncio.run(_run_mtls(args, *contexts)), as_json=args.json)
    try:
        jwk: Mapping[str, Any] = json.loads(args.key.read_text())
        signer = ProofSigner.from_jwk(jwk)
    except Exception as exc:  # joserfc's own errors too: any of them means "unusable"
        # The message names the file and the problem, never the key material.
        print(f"--key {args.key}: not a usable private JWK ({type(exc).__name__})", file=sys.stderr)
        return 2
    if args.httpsig_key is not None:
        from ._conformance_httpsig import run_from_args as run_httpsig

        return _report(run_httpsig(args, signer), as_json=args.json)
    outcomes = asyncio.run(
        run_conformance(
            args.url,
            token=args.token,
            signer=signer,
            method=args.method,
            require_interaction_id=args.require_interaction_id,
            deadline=args.deadline,
        )
    )
    return _report(outcomes, as_json=args.json)


def _report(outcomes: Sequence[Outcome], *, as_json: bool) -> int:
    if as_json:
        print(json.dumps([dataclasses.asdict(o) for o in outcomes]))
    else:
        print(format_table(outcomes))
    return 0 if all(o.passed for o in outcomes) else 1


def _tls_contexts(args: argparse.Namespace) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """TLS contexts presenting ``--mtls-cert`` and presenting nothing, both verifying the
    server with ``--ca`` (or the system's CAs)."""
    contexts = []
    for certificate in (True, False):
        ctx = ssl.create_default_context(cafile=None if args.ca is None else str(args.ca))
        if certificate:
            ctx.load_cert_chain(
                str(args.mtls_cert), None if args.mtls_key is None else str(args.mtls_key)
            )
        contexts.append(ctx)
    return contexts[0], contexts[1]


async def _run_mtls(
    args: argparse.Namespace, with_context: ssl.SSLContext, without_context: ssl.SSLContext
) -> list[Outcome]:
    async with (
        httpx.AsyncClient(verify=with_context, timeout=10.0) as with_certificate,
        httpx.AsyncClient(verify=without_context, timeout=10.0) as without_certificate,
    ):
        return await run_mtls_conformance(
            args.url,
            token=args.token,
            with_certificate=with_certificate,
            without_certificate=without_certificate,
            method=args.method,
            require_interaction_id=args.require_interaction_id,
            deadline=args.deadline,
        )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dpop_guard.devtools.conformance URL --token-file F --key key.json``."""
    parser = argparse.ArgumentParser(prog="dpop-guard conformance", description=__doc__)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover - the command line
    sys.exit(main())
