"""base64url and strict JSON: properties and edge cases."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dpop_guard._b64 import b64url_decode, b64url_encode
from dpop_guard._json import JSONError, parse_object


class TestBase64url:
    @given(st.binary(min_size=1, max_size=300))
    def test_round_trip(self, data: bytes) -> None:
        """Encoding then decoding returns the bytes, with no padding on the wire. (An
        empty segment is refused: no DPoP segment may be empty.)"""
        text = b64url_encode(data)
        assert "=" not in text
        assert b64url_decode(text) == data

    @given(st.text(max_size=50))
    def test_decode_any_text(self, text: str) -> None:
        """Decoding any text returns bytes or raises ValueError, never anything else."""
        try:
            data = b64url_decode(text)
        except ValueError:
            return
        assert b64url_encode(data) == text

    @given(
        st.text(
            alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
            "-_+/= \t\n.!é\x00",
            max_size=40,
        )
    )
    def test_decode_near_alphabet(self, text: str) -> None:
        """Strings close to the alphabet decode only if they are canonical base64url."""
        try:
            data = b64url_decode(text)
        except ValueError:
            return
        assert b64url_encode(data) == text

    @pytest.mark.parametrize(
        "bad",
        [
            "",
            "A",
            "AB==",
            "AB+/",
            "A B",
            "ABC=",
            "AB\n",
            "AAA.",
            "AA AA",
            "AAAA\x00AAA",
            "AB",
            "AAB",
        ],
    )
    def test_rejects(self, bad: str) -> None:
        """Padding, the standard alphabet and impossible lengths are refused."""
        with pytest.raises(ValueError):
            b64url_decode(bad)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


class TestStrictJSON:
    @pytest.mark.parametrize(
        ("raw", "depth"),
        [
            (b"{}", 1),
            (b'{"a":1}', 1),
            (b'{"a":[]}', 2),
            (b'{"a":[{"b":[1]}]}', 4),
        ],
    )
    def test_depth_counts_containers(self, raw: bytes, depth: int) -> None:
        """Depth is container nesting: accepted at the limit, refused one below it."""
        parse_object(raw, max_depth=depth)
        with pytest.raises(JSONError) as info:
            parse_object(raw, max_depth=depth - 1)
        assert info.value.reason == "too_deep"

    @given(st.dictionaries(st.text(max_size=8), json_values, max_size=5))
    def test_objects_round_trip(self, obj: dict[str, Any]) -> None:
        """Objects of depth <= 8 parse back to themselves."""
        try:
            assert parse_object(json.dumps(obj).encode()) == obj
        except JSONError as exc:
            assert exc.reason == "too_deep"

    @given(st.binary(max_size=200))
    def test_any_bytes(self, data: bytes) -> None:
        """Arbitrary bytes parse to a dict or raise JSONError."""
        try:
            assert isinstance(parse_object(data), dict)
        except JSONError:
            pass

    @pytest.mark.parametrize(
        ("raw", "reason"),
        [
            (b'{"a":1,"a":2}', "duplicate_member"),
            (b'{"a":{"b":1,"b":1}}', "duplicate_member"),
            (b"[]", "not_object"),
            (b"1", "not_object"),
            (b'{"a": Infinity}', "non_standard_number"),
            (b"[" * 100_000, "not_json"),
            (b'{"a":' * 9 + b"1" + b"}" * 9, "too_deep"),
            (b"\xc3\x28", "not_json"),
        ],
    )
    def test_rejects(self, raw: bytes, reason: str) -> None:
        """Each refusal has its reason."""
        with pytest.raises(JSONError) as info:
            parse_object(raw)
        assert info.value.reason == reason
