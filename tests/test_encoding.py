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
            (b'{"a":1e400}', "non_standard_number"),
            (b'{"a":-1E+400}', "non_standard_number"),
            (b'{"a":[0.1,1e309]}', "non_standard_number"),
            (b'{"a":"\\ud800"}', "lone_surrogate"),
            (b'{"a":"x\\uDFFF"}', "lone_surrogate"),
            (b'{"a":"\\ude00\\ud83d"}', "lone_surrogate"),
            (b'{"\\ud800":1}', "lone_surrogate"),
            (b'{"a":[{"b":["\\udbff"]}]}', "lone_surrogate"),
            (b'{"a":"\\ud83d"}', "lone_surrogate"),
            (b'{"a":"\xed\xa0\x80"}', "not_json"),  # a surrogate in raw (CESU-8) bytes
        ],
    )
    def test_rejects(self, raw: bytes, reason: str) -> None:
        """Each refusal has its reason."""
        with pytest.raises(JSONError) as info:
            parse_object(raw)
        assert info.value.reason == reason

    @pytest.mark.parametrize(
        ("raw", "value"),
        [
            (b'{"a":"\\ud83d\\ude00"}', "\U0001f600"),
            (b'{"a":"\\\\ud800"}', "\\ud800"),
            (b'{"a":"\\u00e9\\u0000"}', "\u00e9\u0000"),
            (b'{"a":1e-400}', 0.0),
            (b'{"a":-0}', 0),
        ],
    )
    def test_accepts(self, raw: bytes, value: Any) -> None:
        """A valid surrogate pair, an escaped backslash, escaped controls, and numbers
        that underflow are accepted."""
        assert parse_object(raw) == {"a": value}

    @given(
        st.lists(
            st.one_of(
                st.integers(0xD780, 0xE020).map(lambda c: f"\\u{c:04x}"),
                st.sampled_from(["a", "\\\\", "\\n"]),
            ),
            max_size=6,
        )
    )
    def test_parsed_text_is_valid_unicode(self, parts: list[str]) -> None:
        """Whatever \\u escapes a string holds, a parsed document's strings all encode
        as UTF-8 again, or the document is refused as lone_surrogate."""
        raw = ('{"k":"' + "".join(parts) + '"}').encode()
        try:
            value = parse_object(raw)
        except JSONError as exc:
            assert exc.reason == "lone_surrogate"
            return
        value["k"].encode("utf-8")
