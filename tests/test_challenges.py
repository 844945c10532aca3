"""Errors to HTTP responses, and challenge formatting/parsing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dpop_guard.challenges import (
    AUTHENTICATION_REQUIRED,
    ERROR_BODY_SCHEMA,
    TEMPORARILY_UNAVAILABLE,
    build_challenge,
    challenge_for,
    parse_challenge,
)
from dpop_guard.errors import (
    AuthenticationRequired,
    DPoPGuardError,
    InsufficientScope,
    InsufficientUserAuthentication,
    IntrospectionUnavailable,
    InvalidDPoPProof,
    InvalidRequest,
    InvalidToken,
    ReplayStoreUnavailable,
    UseDPoPNonce,
)

ALGS = ("ES256", "PS256", "EdDSA")
# One of each class a request can be refused with.
ALL_ERRORS = [
    AuthenticationRequired("authorization_missing"),
    InvalidRequest("host_invalid"),
    InvalidToken("token_malformed"),
    InvalidDPoPProof("htu_mismatch", 'A "quoted" description'),
    InsufficientScope("scope_missing", scope="a b"),
    InsufficientUserAuthentication("auth_too_old", acr_values=("gold",), max_age=5),
    UseDPoPNonce("nonce_missing", nonce="n1"),
    IntrospectionUnavailable("authlete_timeout"),
    ReplayStoreUnavailable("replay_store_error"),
]


def headers_of(exc: DPoPGuardError, **kwargs: str) -> tuple[int, dict[str, str], dict[str, str]]:
    response = challenge_for(exc, algs=ALGS, **kwargs)  # type: ignore[arg-type]
    headers = {k.decode(): v.decode() for k, v in response.headers}
    return response.status, headers, json.loads(response.body)


class TestChallengeFor:
    @pytest.mark.parametrize(
        ("exc", "status", "error"),
        [
            (InvalidRequest("host_invalid"), 400, "invalid_request"),
            (InvalidToken("token_malformed"), 401, "invalid_token"),
            (InvalidDPoPProof("htu_mismatch"), 401, "invalid_dpop_proof"),
            (InsufficientScope("scope_missing", scope="a b"), 403, "insufficient_scope"),
            (UseDPoPNonce("nonce_missing", nonce="n1"), 401, "use_dpop_nonce"),
        ],
    )
    def test_error_codes(self, exc: DPoPGuardError, status: int, error: str) -> None:
        """Each error maps to its status and a DPoP challenge with its code and algs."""
        got_status, headers, body = headers_of(exc)
        assert got_status == status
        scheme, params = parse_challenge(headers["www-authenticate"])
        assert scheme == "DPoP"
        assert params["error"] == error
        assert params["algs"] == "ES256 PS256 EdDSA"
        assert headers["cache-control"] == "no-store"
        assert body["error"] == error

    def test_scope_param(self) -> None:
        """insufficient_scope names the required scopes."""
        _, headers, _ = headers_of(InsufficientScope("scope_missing", scope="read:accounts"))
        assert parse_challenge(headers["www-authenticate"])[1]["scope"] == "read:accounts"

    def test_nonce_header(self) -> None:
        """use_dpop_nonce carries DPoP-Nonce."""
        _, headers, _ = headers_of(UseDPoPNonce("nonce_missing", nonce="abc"))
        assert headers["dpop-nonce"] == "abc"

    def test_no_credentials(self) -> None:
        """Without credentials the challenge has no error (RFC 6750 section 3.1), and the
        body, which keeps the one shape, says authentication_required."""
        status, headers, body = headers_of(
            AuthenticationRequired("authorization_missing"), realm="bank"
        )
        assert status == 401
        _, params = parse_challenge(headers["www-authenticate"])
        assert params == {"realm": "bank", "algs": "ES256 PS256 EdDSA"}
        assert headers["cache-control"] == "no-store"
        assert body == {
            "error": AUTHENTICATION_REQUIRED,
            "error_description": "Authentication with a DPoP-bound access token is required.",
        }

    @pytest.mark.parametrize("exc", ALL_ERRORS, ids=lambda exc: type(exc).__name__)
    def test_one_body_shape(self, exc: DPoPGuardError) -> None:
        """Every refusal's body is {"error", "error_description"}, valid under
        ERROR_BODY_SCHEMA, its error the challenge's wherever the challenge has one, and
        every response is application/json and no-store."""
        _, headers, body = headers_of(exc)
        assert set(body) == set(ERROR_BODY_SCHEMA["required"])  # type: ignore[call-overload]
        assert all(isinstance(value, str) and value for value in body.values())
        assert body["error_description"] == exc.description
        assert headers["content-type"] == "application/json"
        assert headers["cache-control"] == "no-store"
        if "www-authenticate" in headers:
            params = parse_challenge(headers["www-authenticate"])[1]
            assert body["error"] == params.get("error", AUTHENTICATION_REQUIRED)
        else:
            assert body["error"] == TEMPORARILY_UNAVAILABLE

    @pytest.mark.parametrize(
        "exc",
        [
            IntrospectionUnavailable("authlete_timeout"),
            ReplayStoreUnavailable("replay_store_error"),
        ],
    )
    def test_unavailable(self, exc: DPoPGuardError) -> None:
        """Outages are 503 with Retry-After and no challenge."""
        status, headers, body = headers_of(exc)
        assert status == 503
        assert "www-authenticate" not in headers
        assert headers["retry-after"] == "1"
        assert body == {
            "error": "temporarily_unavailable",
            "error_description": "The service is temporarily unavailable.",
        }

    def test_upstream_params_filtered_and_sanitised(self) -> None:
        """Only known upstream params pass, and control characters never reach a header."""
        exc = InvalidToken(
            "authlete_unauthorized",
            'bad "desc"\r\nX-Injected: 1',
            challenge_params={"error_uri": "https://e/x", "foo": "bar"},
        )
        _, headers, _ = headers_of(exc)
        value = headers["www-authenticate"]
        assert "\r" not in value and "\n" not in value
        params = parse_challenge(value)[1]
        assert params["error_uri"] == "https://e/x"
        assert "foo" not in params
        assert params["error_description"] == 'bad "desc"??X-Injected: 1'


class TestBuildParse:
    def test_example(self) -> None:
        """The documented format."""
        assert (
            build_challenge("DPoP", [("error", "invalid_token"), ("algs", "ES256")])
            == 'DPoP error="invalid_token", algs="ES256"'
        )

    def test_authlete_format(self) -> None:
        """Authlete joins parameters with a bare comma and may use tokens unquoted."""
        value = (
            'Bearer error="insufficient_scope",error_description="[A064302] The access '
            'token does not cover the required scope \'unknown\'.",scope="saying unknown"'
        )
        scheme, params = parse_challenge(value)
        assert scheme == "Bearer"
        assert params["error"] == "insufficient_scope"
        assert params["scope"] == "saying unknown"
        assert parse_challenge("DPoP error=invalid_token")[1] == {"error": "invalid_token"}

    @pytest.mark.parametrize("bad", ["", '"x"', 'DPoP error="unterminated', "DPoP =x", "DPoP a b"])
    def test_malformed(self, bad: str) -> None:
        """Malformed challenges raise ValueError."""
        with pytest.raises(ValueError):
            parse_challenge(bad)

    @pytest.mark.parametrize(("scheme", "name"), [("D P", "a"), ("DPoP", "a b")])
    def test_build_rejects_bad_names(self, scheme: str, name: str) -> None:
        """Scheme and parameter names must be tokens."""
        with pytest.raises(ValueError):
            build_challenge(scheme, [(name, "v")])

    @given(
        st.dictionaries(
            st.from_regex(r"[a-z_]{1,10}", fullmatch=True),
            st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30),
            max_size=5,
        )
    )
    def test_round_trip(self, params: dict[str, str]) -> None:
        """Whatever build_challenge writes, parse_challenge reads back."""
        value = build_challenge("DPoP", params.items())
        assert parse_challenge(value) == ("DPoP", params)

    @given(st.text(max_size=60))
    def test_parse_any_text(self, text: str) -> None:
        """Parsing never raises anything but ValueError."""
        try:
            parse_challenge(text)
        except ValueError:
            pass


def test_insufficient_user_authentication_carries_rfc9470_params() -> None:
    from dpop_guard.errors import InsufficientUserAuthentication

    response = challenge_for(
        InsufficientUserAuthentication("auth_too_old", acr_values=("a", "b"), max_age=0),
        algs=("ES256",),
    )
    assert response.status == 401
    [value] = [v for k, v in response.headers if k == b"www-authenticate"]
    scheme, params = parse_challenge(value.decode())
    assert scheme == "DPoP"
    assert params["error"] == "insufficient_user_authentication"
    assert params["acr_values"] == "a b"
    assert params["max_age"] == "0"


def test_bearer_and_dpop_challenges_for_either() -> None:
    from dpop_guard.errors import AuthenticationRequired, InvalidDPoPProof

    response = challenge_for(
        AuthenticationRequired("authorization_missing"), algs=("ES256",), schemes=("DPoP", "Bearer")
    )
    values = [v.decode() for k, v in response.headers if k == b"www-authenticate"]
    assert [parse_challenge(v)[0] for v in values] == ["DPoP", "Bearer"]
    assert "algs" not in parse_challenge(values[1])[1]
    # A proof error concerns DPoP only, whatever the route accepts.
    response = challenge_for(InvalidDPoPProof("htu_mismatch"), algs=("ES256",), schemes=("Bearer",))
    values = [v.decode() for k, v in response.headers if k == b"www-authenticate"]
    assert [parse_challenge(v)[0] for v in values] == ["DPoP"]
