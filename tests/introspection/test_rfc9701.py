"""RFC 9701 signed introspection answers: one refusal vector per rule of
``dpop_guard.introspection._signed`` (each a 503 with its own reason: the authorization
server's side failing), the accepted shapes, a fixed clock, and Hypothesis over the parser.

The keys are a fixed key set looked up by ``kid`` (what the remote JWKS machinery returns,
tested over HTTP in ``test_rfc9701_e2e.py``)."""

from __future__ import annotations

import base64
import json
from typing import Any, ClassVar, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jwk as jose_jwk
from joserfc import jws

from dpop_guard._env import ConfigurationError
from dpop_guard._reasons import IntrospectionReason
from dpop_guard.errors import IntrospectionUnavailable, InvalidToken
from dpop_guard.introspection import InactiveToken
from dpop_guard.introspection._signed import (
    MAX_SIGNED_RESPONSE_BYTES,
    SignedResponseSettings,
    SignedResponseVerifier,
)
from dpop_guard.introspection.rfc7662 import token_info_from

NOW = 1_767_225_600
ISSUER = "https://as.example.com"
AUDIENCE = "rs-client"
SETTINGS = SignedResponseSettings(
    issuer=ISSUER, audience=AUDIENCE, jwks_uri="https://as.example.com/jwks"
)
EC = jose_jwk.ECKey.generate_key("P-256", parameters={"kid": "ec-1", "alg": "ES256"})
RSA = jose_jwk.RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "alg": "PS256"})
RSA_ANY_ALG = jose_jwk.RSAKey.import_key(
    {k: v for k, v in RSA.as_dict(private=True).items() if k != "alg"}
)
OTHER_EC = jose_jwk.ECKey.generate_key("P-256", parameters={"kid": "ec-1", "alg": "ES256"})
KEYS = {"ec-1": EC, "rsa-1": RSA}
CONTENT = {
    "active": True,
    "client_id": "app",
    "sub": "alice",
    "scope": "read:accounts",
    "exp": NOW + 600,
    "aud": "https://api.bank.test",
    "cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},
}


async def fixed_keys(kid: str) -> Any:
    """A fixed key set: the key named ``kid``, or the refusal the remote set gives."""
    try:
        return KEYS[kid]
    except KeyError:
        raise InvalidToken("jwt_unknown_key", "unknown") from None


def verifier(**changes: Any) -> SignedResponseVerifier:
    options = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks_uri": "https://as.example.com/jwks",
        **changes,
    }
    return SignedResponseVerifier(
        fixed_keys, SignedResponseSettings(**options), clock=lambda: NOW + 0.5
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": NOW,
        "token_introspection": CONTENT,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()


def signed(
    payload: dict[str, Any] | None = None,
    *,
    key: Any = EC,
    alg: str = "ES256",
    header: dict[str, Any] | None = None,
) -> bytes:
    head = {"alg": alg, "kid": key.kid, "typ": "token-introspection+jwt"}
    head.update(header or {})
    head = {k: v for k, v in head.items() if v is not _DROP}
    body = json.dumps(claims() if payload is None else payload).encode()
    return jws.serialize_compact(head, body, key, algorithms=[alg]).encode()


def unsigned(head: dict[str, Any], payload: dict[str, Any], signature: str = "") -> bytes:
    return (
        f"{b64(json.dumps(head).encode())}.{b64(json.dumps(payload).encode())}.{signature}"
    ).encode()


async def refused(body: bytes, reason: str, **changes: Any) -> None:
    with pytest.raises(IntrospectionUnavailable) as caught:
        await verifier(**changes).verify(body)
    assert caught.value.reason == reason
    assert caught.value.status == 503


class TestAccepted:
    async def test_es256(self) -> None:
        """The content, and the JWS itself as received (for the audit trail), without the
        whitespace around it."""
        body = signed()
        answer = await verifier().verify(body + b"\r\n")
        assert answer.content == CONTENT
        assert answer.jwt == body.decode()

    async def test_ps256(self) -> None:
        assert (await verifier().verify(signed(key=RSA, alg="PS256"))).content == CONTENT

    @pytest.mark.parametrize(
        "typ",
        [
            "token-introspection+jwt",
            "application/token-introspection+jwt",
            "Token-Introspection+JWT",
        ],
    )
    async def test_typ_spellings(self, typ: str) -> None:
        """RFC 7515 section 4.1.9: the ``application/`` prefix may be left out, and media
        types compare case-insensitively."""
        assert (await verifier().verify(signed(header={"typ": typ}))).content == CONTENT

    async def test_aud_list_naming_us(self) -> None:
        body = signed(claims(aud=["other", AUDIENCE]))
        assert (await verifier().verify(body)).content == CONTENT

    async def test_iat_at_the_edges(self) -> None:
        """``max_age`` plus the leeway in the past, the leeway ahead."""
        for iat in (NOW - 60 - 5 + 1, NOW + 5):
            assert (await verifier().verify(signed(claims(iat=iat)))).content == CONTENT

    async def test_inactive(self) -> None:
        body = signed(claims(token_introspection={"active": False}))
        data = (await verifier().verify(body)).content
        with pytest.raises(InactiveToken) as caught:
            token_info_from(data, None)
        assert caught.value.reason == "introspection_inactive"

    async def test_facts_come_from_the_one_parser(self) -> None:
        """The signed content's facts are what the plain parser makes of them: the
        binding from ``cnf.jkt``, the token's own ``aud`` still checked."""
        answer = await verifier().verify(signed())
        info = token_info_from(answer.content, "https://api.bank.test", signed_jwt=answer.jwt)
        assert info.jkt == CONTENT["cnf"]["jkt"]  # type: ignore[index]
        assert info.introspection_jwt == answer.jwt
        assert info.subject == "alice" and info.scopes == frozenset({"read:accounts"})
        with pytest.raises(InactiveToken) as caught:
            token_info_from(answer.content, "https://other.bank.test")
        assert caught.value.reason == "introspection_audience"


# One vector per rule: (the answer, the reason).
VECTORS: list[tuple[str, bytes, str]] = [
    ("oversized", b"a" * (MAX_SIGNED_RESPONSE_BYTES + 1), "introspection_jwt_too_large"),
    ("plain JSON", json.dumps(CONTENT).encode(), "introspection_unsigned"),
    (
        "plain JSON after whitespace",
        b"\r\n " + json.dumps(CONTENT).encode(),
        "introspection_unsigned",
    ),
    ("two segments", b"eyJhbGciOiJFUzI1NiJ9.e30", "introspection_jwt_malformed"),
    ("four segments", signed() + b".x", "introspection_jwt_malformed"),
    ("not ascii", "é.é.é".encode(), "introspection_jwt_malformed"),
    ("header not base64url", b"!!!." + signed().split(b".", 1)[1], "introspection_jwt_malformed"),
    ("header not an object", b64(b"[1]").encode() + b".e30.AA", "introspection_jwt_malformed"),
    (
        "header duplicate member",
        b64(b'{"alg":"ES256","alg":"none"}').encode() + b".e30.AA",
        "introspection_jwt_malformed",
    ),
    ("typ JWT", signed(header={"typ": "JWT"}), "introspection_jwt_typ"),
    ("typ missing", signed(header={"typ": _DROP}), "introspection_jwt_typ"),
    ("typ of an access token", signed(header={"typ": "at+jwt"}), "introspection_jwt_typ"),
    (
        "typ not a string",
        unsigned({"alg": "ES256", "kid": "ec-1", "typ": 1}, claims(), "AA"),
        "introspection_jwt_typ",
    ),
    (
        "alg none",
        unsigned({"alg": "none", "kid": "ec-1", "typ": "token-introspection+jwt"}, claims()),
        "introspection_jwt_alg",
    ),
    ("alg RS256", signed(key=RSA_ANY_ALG, alg="RS256"), "introspection_jwt_alg"),
    (
        "alg missing",
        unsigned({"kid": "ec-1", "typ": "token-introspection+jwt"}, claims(), "AA"),
        "introspection_jwt_alg",
    ),
    ("kid missing", signed(header={"kid": _DROP}), "introspection_jwt_unknown_key"),
    ("kid unknown", signed(header={"kid": "ec-2"}), "introspection_jwt_unknown_key"),
    (
        "kid not a string",
        unsigned({"alg": "ES256", "kid": 7, "typ": "token-introspection+jwt"}, claims(), "AA"),
        "introspection_jwt_unknown_key",
    ),
    ("signed by another key under our kid", signed(key=OTHER_EC), "introspection_jwt_signature"),
    (
        "alg of another key type",
        signed(key=EC, header={"kid": "rsa-1"}),
        "introspection_jwt_signature",
    ),
    ("empty signature", signed().rsplit(b".", 1)[0] + b".", "introspection_jwt_signature"),
    (
        "payload not JSON",
        jws.serialize_compact(
            {"alg": "ES256", "kid": "ec-1", "typ": "token-introspection+jwt"},
            b"nope",
            EC,
            algorithms=["ES256"],
        ).encode(),
        "introspection_jwt_content",
    ),
    ("payload not an object", signed([CONTENT]), "introspection_jwt_content"),  # type: ignore[arg-type]
    ("iss other", signed(claims(iss="https://evil.example.com")), "introspection_jwt_issuer"),
    ("iss missing", signed(claims(iss=_DROP)), "introspection_jwt_issuer"),
    ("iss with a trailing slash", signed(claims(iss=ISSUER + "/")), "introspection_jwt_issuer"),
    ("aud other", signed(claims(aud="other")), "introspection_jwt_audience"),
    ("aud missing", signed(claims(aud=_DROP)), "introspection_jwt_audience"),
    ("aud list without us", signed(claims(aud=["a", "b"])), "introspection_jwt_audience"),
    ("aud list with a non-string", signed(claims(aud=[AUDIENCE, 1])), "introspection_jwt_audience"),
    ("aud object", signed(claims(aud={AUDIENCE: 1})), "introspection_jwt_audience"),
    ("iat stale", signed(claims(iat=NOW - 66)), "introspection_jwt_iat"),
    ("iat far future", signed(claims(iat=NOW + 6)), "introspection_jwt_iat"),
    ("iat missing", signed(claims(iat=_DROP)), "introspection_jwt_iat"),
    ("iat a float", signed(claims(iat=float(NOW))), "introspection_jwt_iat"),
    ("iat a bool", signed(claims(iat=True)), "introspection_jwt_iat"),
    ("iat a string", signed(claims(iat=str(NOW))), "introspection_jwt_iat"),
    ("exp passed", signed(claims(exp=NOW - 10)), "introspection_jwt_expired"),
    ("exp not a number", signed(claims(exp="soon")), "introspection_jwt_expired"),
    (
        "token_introspection missing",
        signed(claims(token_introspection=_DROP)),
        "introspection_jwt_content",
    ),
    (
        "token_introspection a string",
        signed(claims(token_introspection=json.dumps(CONTENT))),
        "introspection_jwt_content",
    ),
    (
        "token_introspection a list",
        signed(claims(token_introspection=[CONTENT])),
        "introspection_jwt_content",
    ),
    (
        "active missing",
        signed(claims(token_introspection={"sub": "alice"})),
        "introspection_jwt_content",
    ),
    (
        "active a string",
        signed(claims(token_introspection={"active": "true"})),
        "introspection_jwt_content",
    ),
]


@pytest.mark.parametrize(("body", "reason"), [v[1:] for v in VECTORS], ids=[v[0] for v in VECTORS])
async def test_refusal(body: bytes, reason: str) -> None:
    await refused(body, reason)


async def test_hs256_with_the_public_key_as_secret() -> None:
    """The classic confusion: an HMAC over the answer keyed with the server's public key.
    HS* is never in the allow-list (and cannot be configured into it)."""
    head = {"alg": "HS256", "kid": "ec-1", "typ": "token-introspection+jwt"}
    secret = jose_jwk.OctKey.import_key(json.dumps(EC.as_dict(private=False)).encode())
    body = jws.serialize_compact(head, json.dumps(claims()).encode(), secret, algorithms=["HS256"])
    await refused(body.encode(), "introspection_jwt_alg")
    with pytest.raises(ValueError, match="asymmetric"):
        SignedResponseSettings(
            issuer=ISSUER, audience=AUDIENCE, jwks_uri=ISSUER + "/jwks", algorithms=("HS256",)
        )


async def test_tampered_payload() -> None:
    head, _, signature = signed().split(b".")
    forged = claims(token_introspection={**CONTENT, "scope": "admin"})
    await refused(
        b".".join([head, b64(json.dumps(forged).encode()).encode(), signature]),
        "introspection_jwt_signature",
    )


async def test_algorithm_allow_list_is_configurable() -> None:
    """PS256 only: an ES256 answer is refused by its alg, before its key is looked up."""
    await refused(signed(), "introspection_jwt_alg", algorithms=("PS256",))
    answer = await verifier(algorithms=("PS256",)).verify(signed(key=RSA, alg="PS256"))
    assert answer.content == CONTENT


async def test_max_age_is_configurable() -> None:
    await refused(signed(claims(iat=NOW - 20)), "introspection_jwt_iat", max_age=10)


async def test_unreachable_key_set_is_its_own_outage() -> None:
    async def no_keys(kid: str) -> Any:
        raise IntrospectionUnavailable("jwks_unavailable")

    with pytest.raises(IntrospectionUnavailable) as caught:
        await SignedResponseVerifier(no_keys, SETTINGS, clock=lambda: NOW).verify(signed())
    assert caught.value.reason == "jwks_unavailable"


class TestSettings:
    BASE: ClassVar[dict[str, str]] = {
        "DPOP_GUARD_INTROSPECTION_SIGNED": "required",
        "DPOP_GUARD_INTROSPECTION_ISSUER": ISSUER,
        "DPOP_GUARD_INTROSPECTION_JWKS_URI": ISSUER + "/jwks",
    }

    def test_off_by_default(self) -> None:
        assert SignedResponseSettings.from_env({}, default_audience="rs") is None

    def test_required(self) -> None:
        got = SignedResponseSettings.from_env(self.BASE, default_audience="rs")
        assert got == SignedResponseSettings(
            issuer=ISSUER, audience="rs", jwks_uri=ISSUER + "/jwks"
        )

    def test_every_option(self) -> None:
        env = self.BASE | {
            "DPOP_GUARD_INTROSPECTION_SIGNED_AUDIENCE": "https://rs.example.com",
            "DPOP_GUARD_INTROSPECTION_SIGNED_ALGORITHMS": "PS256 ES256",
            "DPOP_GUARD_INTROSPECTION_SIGNED_MAX_AGE": "30",
        }
        got = SignedResponseSettings.from_env(env, default_audience="rs")
        assert got is not None
        assert (got.audience, got.algorithms, got.max_age) == (
            "https://rs.example.com",
            ("PS256", "ES256"),
            30,
        )

    @pytest.mark.parametrize(
        ("env", "named"),
        [
            ({"DPOP_GUARD_INTROSPECTION_SIGNED": "maybe"}, "DPOP_GUARD_INTROSPECTION_SIGNED"),
            ({"DPOP_GUARD_INTROSPECTION_ISSUER": ISSUER}, "DPOP_GUARD_INTROSPECTION_ISSUER"),
            ({"DPOP_GUARD_INTROSPECTION_SIGNED": "required"}, "DPOP_GUARD_INTROSPECTION_ISSUER"),
            (
                {
                    "DPOP_GUARD_INTROSPECTION_SIGNED": "required",
                    "DPOP_GUARD_INTROSPECTION_ISSUER": ISSUER,
                },
                "DPOP_GUARD_INTROSPECTION_JWKS_URI",
            ),
        ],
    )
    def test_refused(self, env: dict[str, str], named: str) -> None:
        with pytest.raises(ValueError, match=named):
            SignedResponseSettings.from_env(env, default_audience="rs")

    def test_insecure_jwks_uri(self) -> None:
        env = self.BASE | {"DPOP_GUARD_INTROSPECTION_JWKS_URI": "http://as.example.com/jwks"}
        with pytest.raises(ValueError, match="jwks_uri"):
            SignedResponseSettings.from_env(env, default_audience="rs")

    def test_no_audience(self) -> None:
        with pytest.raises(ValueError, match="SIGNED_AUDIENCE"):
            SignedResponseSettings.from_env(self.BASE, default_audience=None)

    def test_configuration_error_type(self) -> None:
        with pytest.raises(ConfigurationError):
            SignedResponseSettings.from_env(
                {"DPOP_GUARD_INTROSPECTION_SIGNED": "maybe"}, default_audience="rs"
            )


# -- Hypothesis: whatever the answer, a verdict or a 503 with a known reason -------------

REASONS = {  # the signed-answer reasons, from the one table of reasons
    reason
    for reason in get_args(IntrospectionReason)
    if reason == "introspection_unsigned" or reason.startswith("introspection_jwt_")
}
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)


async def outcome(body: bytes) -> dict[str, Any] | str:
    try:
        return (await verifier().verify(body)).content
    except IntrospectionUnavailable as exc:
        assert exc.reason in REASONS
        return exc.reason


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
async def test_any_bytes(body: bytes) -> None:
    result = await outcome(body)
    assert isinstance(result, str)  # nothing unsigned by our key passes


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["alg", "kid", "typ", "crit", "jwk", "x"]), JSON, max_size=5),
    st.dictionaries(
        st.sampled_from(["iss", "aud", "iat", "exp", "token_introspection"]), JSON, max_size=5
    ),
)
async def test_any_header_and_claims(header: dict[str, Any], payload: dict[str, Any]) -> None:
    """Arbitrary headers and claims, unsigned (any signature) or signed by our key: only
    a signed answer that meets every rule is accepted."""
    assert isinstance(await outcome(unsigned(header, payload, "AA")), str)
    result = await outcome(signed(payload))
    if not isinstance(result, str):
        c = claims()
        assert payload.get("iss") == c["iss"] and isinstance(
            payload.get("token_introspection"), dict
        )
        assert result == payload["token_introspection"]


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=200), st.integers(min_value=0, max_value=255))
async def test_any_one_byte_change(position: int, value: int) -> None:
    """A valid answer with one octet changed is the same answer, or refused."""
    body = bytearray(signed())
    body[position % len(body)] = value
    result = await outcome(bytes(body))
    assert result == CONTENT or isinstance(result, str)
