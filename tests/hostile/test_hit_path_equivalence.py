"""The hit path's shortcuts answer as the plain checks would (memo dicts, one header pass
that counts values, bytes proofs without an up-front ASCII scan, the server's state
reused): the same status, challenge and reason for every mix of repeated headers, one-shot
header iterables included; a proof with a non-ASCII octet anywhere refused as
proof_malformed whatever else holds; the shape memo's key faithful to the scope; a server
state of None replaced, one that is no mapping a 503."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpop_guard._b64 import b64url_encode
from dpop_guard._binding import policy_for
from dpop_guard._memo import RequestShapes
from dpop_guard.client import ProofSigner
from dpop_guard.errors import InvalidDPoPProof
from dpop_guard.proof import ProofPolicy, ProofVerifier
from dpop_guard.routes import Route
from dpop_guard.settings import GuardSettings
from dpop_guard.testing import make_proof
from tests._support.harness import ORIGIN, Harness, assert_rejected
from tests._support.jwt_issuer import JWTHarness, JWTIssuer

SENT_ID = "7f3c2a4e-1b2d-4c5e-8f90-123456789abc"
OTHER_ID = "00000000-1b2d-4c5e-8f90-123456789abc"

# (Authorization values, DPoP values) -> (status, challenge error, reason). "B": the
# DPoP-bound token; "P": a fresh valid proof for it. Vectors as data: every count of each
# header (0, 1, 2) and both schemes, whichever header repeats.
MATRIX: list[tuple[tuple[str, ...], tuple[str, ...], int, str | None, str | None]] = [
    ((), (), 401, None, "authorization_missing"),
    ((), ("P", "P"), 401, None, "authorization_missing"),
    (("DPoP B",), (), 401, "invalid_dpop_proof", "dpop_header_missing"),
    (("DPoP B",), ("P",), 200, None, None),
    (("DPoP B",), ("",), 401, "invalid_dpop_proof", "proof_malformed"),
    (("DPoP B",), ("P", "P"), 400, "invalid_request", "dpop_header_multiple"),
    (("DPoP B",), ("", "P"), 400, "invalid_request", "dpop_header_multiple"),
    (("DPoP B",), ("P", ""), 400, "invalid_request", "dpop_header_multiple"),
    (("DPoP B", "DPoP B"), (), 400, "invalid_request", "authorization_multiple"),
    (("DPoP B", "DPoP B"), ("P",), 400, "invalid_request", "authorization_multiple"),
    (("DPoP B", "DPoP B"), ("P", "P"), 400, "invalid_request", "authorization_multiple"),
    (("DPoP B", "Bearer B"), ("P",), 400, "invalid_request", "authorization_multiple"),
    (("Bearer B",), (), 401, "invalid_token", "bearer_scheme_refused"),
    (("Bearer B",), ("P",), 400, "invalid_request", "bearer_with_dpop_proof"),
    (("Bearer B",), ("",), 400, "invalid_request", "bearer_with_dpop_proof"),
    (("Bearer B",), ("P", "P"), 400, "invalid_request", "bearer_with_dpop_proof"),
    (("Bearer B", "DPoP B"), ("P",), 400, "invalid_request", "authorization_multiple"),
]


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize(("authorization", "dpop", "status", "error", "reason"), MATRIX)
async def test_repeated_header_matrix(
    h: Harness,
    signer: ProofSigner,
    reasons: list[str],
    authorization: tuple[str, ...],
    dpop: tuple[str, ...],
    status: int,
    error: str | None,
    reason: str | None,
    interleaved: bool,
) -> None:
    """Each mix of Authorization and DPoP headers (and a repeated interaction id) gets
    the refusal of the first header that is wrong, in order or interleaved, twice (the
    second time from the Authorization memo); the first interaction id is the one echoed."""
    token = h.token(signer)
    for _ in range(2):
        auths = [("Authorization", v.replace(" B", f" {token}")) for v in authorization]
        proofs = [
            ("DPoP", make_proof(signer, htm="GET", htu=ORIGIN + "/accounts", access_token=token))
            if v == "P"
            else ("DPoP", v)
            for v in dpop
        ]
        ids = [("x-fapi-interaction-id", SENT_ID), ("x-fapi-interaction-id", OTHER_ID)]
        headers: list[tuple[str, str]] = []
        if interleaved:
            for i in range(max(len(auths), len(proofs), len(ids))):
                headers += [*proofs[i : i + 1], *ids[i : i + 1], *auths[i : i + 1]]
        else:
            headers = [*auths, *proofs, *ids]
        response = await h.client.get("/accounts", headers=headers)
        assert response.headers["x-fapi-interaction-id"] == SENT_ID
        if reason is None:
            assert response.status_code == 200, response.text
            assert response.json()["state_interaction_id"] == SENT_ID
        else:
            assert_rejected(response, status, error, reason, reasons)


@pytest.mark.parametrize("warm", [False, True], ids=["miss", "hit"])
@pytest.mark.parametrize(("authorization", "dpop", "status", "error", "reason"), MATRIX)
async def test_repeated_header_matrix_in_jwt_mode(
    signer: ProofSigner,
    reasons: list[str],
    authorization: tuple[str, ...],
    dpop: tuple[str, ...],
    status: int,
    error: str | None,
    reason: str | None,
    warm: bool,
) -> None:
    """The same answers in jwt mode (a JWT access token verified locally, behind the
    cache), whether the token is cached already (hit) or not (miss)."""
    jh = JWTHarness(JWTIssuer())
    try:
        token = jh.token(signer)
        if warm:
            assert (await jh.call(token, signer)).status_code == 200
        auths = [("Authorization", v.replace(" B", f" {token}")) for v in authorization]
        proofs = [
            ("DPoP", make_proof(signer, htm="GET", htu=ORIGIN + "/accounts", access_token=token))
            if v == "P"
            else ("DPoP", v)
            for v in dpop
        ]
        response = await jh.client.get("/accounts", headers=[*auths, *proofs])
        if reason is None:
            assert response.status_code == 200, response.text
        else:
            assert_rejected(response, status, error, reason, reasons)
    finally:
        await jh.aclose()


async def _drive(app: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def _scope(headers: Any, **extra: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": "/accounts",
        "raw_path": b"/accounts",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 443),
    } | extra


def _guarded_scope(h: Harness, signer: ProofSigner, **extra: Any) -> dict[str, Any]:
    """A request for /accounts with a fresh token and proof, the scope's ``extra`` keys
    set as given."""
    token = h.token(signer)
    proof = make_proof(signer, htm="GET", htu=ORIGIN + "/accounts", access_token=token)
    return _scope(
        [(b"authorization", f"DPoP {token}".encode()), (b"dpop", proof.encode())], **extra
    )


@pytest.mark.parametrize(
    ("twice", "reason"),
    [("authorization", "authorization_multiple"), ("dpop", "dpop_header_multiple")],
)
async def test_repeat_refused_for_what_it_is_with_one_shot_headers(
    h: Harness, signer: ProofSigner, reasons: list[str], twice: str, reason: str
) -> None:
    """Headers a server hands over as a one-shot iterable: a repeated Authorization or
    DPoP header is still 400 for the repeat, not 401 authorization_missing."""
    token = h.token(signer)
    auth = (b"authorization", f"DPoP {token}".encode())
    proof = make_proof(signer, htm="GET", htu=ORIGIN + "/accounts", access_token=token)
    headers = [auth, (b"dpop", proof.encode())]
    headers.insert(0, auth if twice == "authorization" else headers[1])
    sent = await _drive(h.app, _scope(iter(headers)))
    assert sent[0]["status"] == 400
    assert reasons[-1] == reason


async def test_a_state_of_none_is_replaced(h: Harness, signer: ProofSigner) -> None:
    """A server that sends ``state: None`` gets a state dict, not a TypeError out of the
    middleware (a 500 with a traceback)."""
    scope = _guarded_scope(h, signer, state=None)
    sent = await _drive(h.app, scope)
    assert sent[0]["status"] == 200
    assert isinstance(scope["state"], dict) and "fapi_interaction_id" in scope["state"]


@pytest.mark.parametrize("state", [[], (), "text", 7])
async def test_a_state_that_is_no_mapping_is_503_not_a_traceback(
    h: Harness, signer: ProofSigner, reasons: list[str], state: object
) -> None:
    """A server's ``state`` the guard cannot write into is the server's bug: a 503
    internal_error with the guard's challenge, never an exception out of the middleware."""
    scope = _guarded_scope(h, signer, state=state)
    sent = await _drive(h.app, scope)
    assert sent[0]["status"] == 503
    assert reasons[-1] == "internal_error"


URL = ORIGIN + "/accounts"
NOW = 1_800_000_000
_SIGNER = ProofSigner.generate("ES256")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    position=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
    octet=st.integers(min_value=0x80, max_value=0xFF),
    replace=st.booleans(),
    resign=st.booleans(),
    cached=st.booleans(),
    token=st.sampled_from([None, "tok-1"]),
)
def test_any_non_ascii_octet_is_malformed(
    position: float, octet: int, replace: bool, resign: bool, cached: bool, token: str | None
) -> None:
    """A non-ASCII octet anywhere in a proof's octets (inserted or replacing one, in any
    segment or next to a dot), its signature made over the octets as sent or not, the
    header's key cached or not, with or without ath: always proof_malformed, never
    accepted and never another check's reason."""
    verifier = ProofVerifier(ProofPolicy())
    good = make_proof(_SIGNER, htm="GET", htu=URL, access_token=token, iat=NOW).encode()
    if cached:
        verifier.verify(good, method="GET", url=URL, access_token=token, now=NOW)
    fresh = make_proof(_SIGNER, htm="GET", htu=URL, access_token=token, iat=NOW).encode()
    at = int(position * len(fresh))
    mutated = fresh[:at] + bytes([octet]) + fresh[at + 1 if replace else at :]
    if resign and b"." in mutated[at + 1 :]:  # the octet is in the signing input: sign it
        signing_input = mutated.rpartition(b".")[0]
        mutated = signing_input + b"." + b64url_encode(_SIGNER._signature(signing_input)).encode()
    assert not mutated.isascii()
    with pytest.raises(InvalidDPoPProof) as refused:
        verifier.verify(mutated, method="GET", url=URL, access_token=token, now=NOW)
    assert refused.value.reason == "proof_malformed"


@pytest.mark.parametrize("where", [0, 10, -1])
def test_text_with_a_lone_surrogate_is_malformed(where: int) -> None:
    """Text input holding a lone surrogate (no octets can encode it) is proof_malformed."""
    verifier = ProofVerifier(ProofPolicy())
    good = make_proof(_SIGNER, htm="GET", htu=URL, access_token=None, iat=NOW)
    verifier.verify(good, method="GET", url=URL, access_token=None, now=NOW)  # cached
    proof = make_proof(_SIGNER, htm="GET", htu=URL, access_token=None, iat=NOW)
    at = where % len(proof)
    with pytest.raises(InvalidDPoPProof) as refused:
        verifier.verify(
            proof[:at] + "\udce9" + proof[at:], method="GET", url=URL, access_token=None, now=NOW
        )
    assert refused.value.reason == "proof_malformed"


ROUTES = (Route("/health", public=True), Route("/v1/accounts", scopes=("read:accounts",)))
_SETTINGS = GuardSettings(routes=ROUTES)
_POLICIES = {id(r): policy_for(r, _SETTINGS) for r in ROUTES}
_DEFAULT = policy_for(None, _SETTINGS)


def _shapes(public_url: str | None) -> RequestShapes:
    return RequestShapes(
        ROUTES,
        lambda route: _DEFAULT if route is None else _POLICIES[id(route)],
        public_url=public_url,
    )


_PATHS = st.sampled_from(["/health", "/v1/accounts", "/accounts", "/v1", "/", "/v1/health"])
_RAW = st.sampled_from([None, b"", b"/health", b"/v1/accounts", b"/v1/acc%6Funts", b"/x#y"])


@settings(max_examples=200, deadline=None)
@given(
    requests=st.lists(
        st.tuples(
            _PATHS,
            st.sampled_from(["", "/v1", None]),  # None: the scope has no root_path
            st.sampled_from(["GET", "POST"]),
            st.one_of(st.just("missing"), _RAW),
            st.booleans(),
        ),
        min_size=1,
        max_size=8,
    ),
    public_url=st.sampled_from([None, "https://api.bank.test", "https://api.bank.test/base"]),
)
def test_shape_memo_answers_as_the_full_scope_would(
    requests: list[tuple[str, str | None, str, Any, bool]], public_url: str | None
) -> None:
    """Whatever order requests come in (raw_path absent, None or b"", root_path absent
    or not, websocket or not), the remembered shape is the one decided from the request's
    own full scope by a memo that never saw another request: no key collides."""
    memo = _shapes(public_url)
    for path, root, method, raw, websocket in requests:
        scope: dict[str, Any] = {"type": "websocket" if websocket else "http", "path": path}
        if root is not None:
            scope["root_path"] = root
        if raw != "missing":
            scope["raw_path"] = raw
        fresh = _shapes(public_url)
        try:
            expected: Any = fresh.decide(scope, method, websocket)
        except Exception as exc:  # the refusal itself is compared
            expected = (type(exc), getattr(exc, "reason", None))
        try:
            got: Any = memo.shape(scope, method, websocket)
        except Exception as exc:
            got = (type(exc), getattr(exc, "reason", None))
        assert got == expected
