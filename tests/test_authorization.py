"""The Authorization header parser."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dpop_guard._authorization import parse_authorization
from dpop_guard.errors import AuthenticationRequired, DPoPGuardError, InvalidRequest, InvalidToken


def parse(*values: str) -> tuple[str, str]:
    header = parse_authorization(list(values), max_token_bytes=100)
    return header.scheme, header.token


class TestAccepts:
    @pytest.mark.parametrize("scheme", ["DPoP", "dpop", "DPOP", "dPoP"])
    def test_scheme_case_insensitive(self, scheme: str) -> None:
        """The auth-scheme is case-insensitive (RFC 9110 section 11.1)."""
        assert parse(f"{scheme} abc") == ("DPoP", "abc")

    def test_bearer(self) -> None:
        """Bearer is recognised (and refused later unless unbound tokens are allowed)."""
        assert parse("Bearer abc") == ("Bearer", "abc")

    @pytest.mark.parametrize(
        "token", ["a-b.c_d~e+f/g==", "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"]
    )
    def test_token68(self, token: str) -> None:
        """Every token68 character is accepted."""
        assert parse(f"DPoP {token}")[1] == token


class TestRejects:
    def test_missing(self) -> None:
        """No header: 401 with no error code."""
        with pytest.raises(AuthenticationRequired) as info:
            parse()
        assert info.value.reason == "authorization_missing"
        assert info.value.error is None

    def test_two_headers(self) -> None:
        """Two Authorization headers: 400 invalid_request."""
        with pytest.raises(InvalidRequest) as info:
            parse("DPoP a", "Bearer b")
        assert info.value.reason == "authorization_multiple"

    @pytest.mark.parametrize("value", ["Basic dXNlcjpwYXNz", "Token abc", "DPoPabc", ""])
    def test_other_scheme(self, value: str) -> None:
        """Schemes other than DPoP and Bearer get a bare challenge."""
        with pytest.raises(AuthenticationRequired) as info:
            parse(value)
        assert info.value.reason == "authorization_scheme_unsupported"

    @pytest.mark.parametrize(
        ("value", "scheme"),
        [("DPoP  abc", "DPoP"), ("Bearer   abc", "Bearer"), ("dpop abc", "DPoP")],
    )
    def test_one_or_more_spaces(self, value: str, scheme: str) -> None:
        """``credentials = auth-scheme 1*SP token68`` (RFC 9110 section 11.4, RFC 6750
        section 2.1): any number of spaces separate the scheme from the token (the whole
        value is still bounded by the token limit before it is looked at)."""
        assert parse(value) == (scheme, "abc")

    @pytest.mark.parametrize("value", ["DPoP", "DPoP ", "Bearer   "])
    def test_no_token(self, value: str) -> None:
        """A scheme without a token."""
        with pytest.raises(InvalidToken) as info:
            parse(value)
        assert info.value.reason == "token_missing"

    @pytest.mark.parametrize(
        "value",
        [
            "DPoP a b",
            "DPoP a,b",
            "DPoP =abc",
            "DPoP a=b",
            "DPoP tök",
            "DPoP a\tb",
            "DPoP abc m a l f o r m e d",
        ],
    )
    def test_not_token68(self, value: str) -> None:
        """Anything but one token68 is malformed."""
        with pytest.raises(InvalidToken) as info:
            parse(value)
        assert info.value.reason == "token_malformed"

    def test_too_long(self) -> None:
        """Tokens over the limit are refused before matching."""
        with pytest.raises(InvalidToken) as info:
            parse("DPoP " + "a" * 101)
        assert info.value.reason == "token_too_long"

    @given(st.lists(st.text(max_size=40), max_size=3))
    def test_any_input(self, values: list[str]) -> None:
        """No input raises anything but a DPoPGuardError."""
        try:
            parse_authorization(values, max_token_bytes=100)
        except DPoPGuardError:
            pass
