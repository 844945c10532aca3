"""base64url and strict JSON: properties and edge cases."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings, target
from hypothesis import strategies as st

from dpop_guard._b64 import b64url_decode, b64url_encode
from dpop_guard._json import (
    DOCUMENT_LIMITS,
    MAX_CONTAINERS,
    MAX_NUMBER_LENGTH,
    MAX_VALUES,
    JSONError,
    JSONLimits,
    parse_object,
)


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

    @given(
        st.lists(
            st.sampled_from(
                [
                    *b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=. \n",
                    0,
                    0x80,
                    0xFF,
                ]
            ),
            max_size=40,
        ).map(bytes)
    )
    def test_octets_decode_only_canonical(self, raw: bytes) -> None:
        """The verifier's decoder of a segment's octets accepts exactly the canonical
        spellings: what it decodes encodes back to the same octets, and it agrees with
        the text decoder wherever the octets are text."""
        from dpop_guard._b64 import b64url_decode_octets

        try:
            data = b64url_decode_octets(raw)
        except ValueError:
            data = None
        if data is not None:
            assert b64url_encode(data).encode() == raw
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            return
        try:
            assert b64url_decode(text) == data
        except ValueError:
            assert data is None

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
        parse_object(raw, JSONLimits(max_depth=depth))
        with pytest.raises(JSONError) as info:
            parse_object(raw, JSONLimits(max_depth=depth - 1))
        assert info.value.reason == "too_deep"

    @given(st.dictionaries(st.text(max_size=8), json_values, max_size=5))
    def test_objects_round_trip(self, obj: dict[str, Any]) -> None:
        """Objects within the JOSE limits parse back to themselves; others are refused
        by the limit they pass."""
        try:
            assert parse_object(json.dumps(obj).encode()) == obj
        except JSONError as exc:
            assert exc.reason in {"too_deep", "too_many_containers", "too_many_values"}

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
            (b"[" * 100_000, "too_many_containers"),
            (b"[" * 100_000, "too_many_containers"),
            (b'{"a":[' + b",".join([b"{}"] * 1900) + b"]}", "too_many_containers"),
            (b'{"a":' + b"[" * 8 + b"]" * 8 + b"}", "too_deep"),
            (b'{"a":[' + b",".join([b"1"] * (MAX_VALUES + 1)) + b"]}", "too_many_values"),
            (b'{"a":"' + b"," * MAX_VALUES + b'"}', "too_many_values"),  # strings count too
            (b'{"a":"' + b"[" * MAX_CONTAINERS + b'"}', "too_many_containers"),
            (b'{"a":' + b"9" * (MAX_NUMBER_LENGTH + 1) + b"}", "number_too_long"),
            (b'{"a":[' + b"9" * 4300 + b"]}", "number_too_long"),
            (b'{"a":0.' + b"1" * MAX_NUMBER_LENGTH + b"}", "number_too_long"),
            (b'{"a":1e' + b"0" * MAX_NUMBER_LENGTH + b"}", "number_too_long"),
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


class TestBoundsBeforeParsing:
    """What a JOSE document may hold is bounded by counting octets: the limits accept
    the largest honest shapes and refuse one more."""

    def test_limits_accept_what_they_allow(self) -> None:
        values = b",".join([b"1"] * MAX_VALUES)
        assert len(parse_object(b'{"a":[' + values + b"]}")["a"]) == MAX_VALUES
        nested = b'{"a":' + b"[" * 7 + b"]" * 7 + b"}"
        assert parse_object(nested)["a"] == [[[[[[[]]]]]]]
        wide = b'{"a":[' + b",".join([b"{}"] * (MAX_CONTAINERS - 2)) + b"]}"
        assert len(parse_object(wide)["a"]) == MAX_CONTAINERS - 2
        number = b"9" * MAX_NUMBER_LENGTH
        assert parse_object(b'{"a":' + number + b"}") == {"a": int(number)}

    def test_documents_have_no_count_limits(self) -> None:
        """Server answers and configuration are bounded in depth (and in size where they
        are read), not in members."""
        many = b'{"a":[' + b",".join([b"{}"] * 5000) + b"]}"
        assert len(parse_object(many, DOCUMENT_LIMITS)["a"]) == 5000
        with pytest.raises(JSONError) as info:
            parse_object(b'{"a":' * 33 + b"1" + b"}" * 33, DOCUMENT_LIMITS)
        assert info.value.reason == "too_deep"


# Pieces of nearly flat objects, where the fast path and its edges meet: few member names
# (so duplicates), numbers that overflow or are not JSON, strings with ":", "," or a backslash,
# whitespace, and now and then a nested container, a bad octet or trailing text.
_names = st.sampled_from(
    ['"a"', '"b"', '"jti"', '"htu"', '"iat"', '"ath"', '""', '"\\u0061"', '"\\ud800"']
)
_good_scalars = ["1", "-0", "1790000000", "1.5", "1e-400", "true", "null", '"GET"']
_good_scalars += [
    '"https://rs.example.com/a,b"',
    '":"',
    '","',
    '",,"',
    '"x\\"y"',
    '"\\ud83d\\ude00"',
    "{}",
    "[]",
]
_bad_scalars = ["1e400", "-1E+400", "NaN", "Infinity", '{"a":1,"a":2}', "[1e400]", "01", '"\x01"']
_scalars = st.sampled_from(_good_scalars * 4 + _bad_scalars)
_spaces = st.sampled_from(["", "", "", " ", "\n"])


@st.composite
def _nearly_flat(draw: st.DrawFn) -> bytes:
    members = draw(st.lists(st.tuples(_names, _spaces, _scalars, _spaces), min_size=0, max_size=6))
    text = "{" + ",".join(f"{n}{w}:{x}{v}" for n, w, v, x in members) + "}"
    text = draw(st.sampled_from(["", "", "", " "])) + text + draw(_spaces)
    raw = text.encode()
    tail = draw(st.sampled_from([b""] * 8 + [b"\xff", b"}", b"x"]))
    return raw + tail


def _duplicates(raw: bytes) -> bool:
    """Whether some object in the JSON text ``raw`` repeats a member name."""

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({name for name, _ in pairs}) != len(pairs):
            raise LookupError
        return dict(pairs)

    try:
        json.loads(raw, object_pairs_hook=hook)
    except LookupError:
        return True
    except ValueError:
        pass
    return False


class TestOneObjectIsStillStrict:
    """A document with one object is built by the C scanner and its duplicates found by
    counting commas: on nearly flat documents, whatever is accepted is what
    ``json.loads`` reads, with no repeated name, no non-finite number, and a refused
    duplicate is a real one."""

    @settings(max_examples=400)
    @given(_nearly_flat())
    def test_accepted_is_json_without_duplicates(self, raw: bytes) -> None:
        try:
            value = parse_object(raw)
        except JSONError as exc:
            if exc.reason == "duplicate_member":
                assert _duplicates(raw)
            return
        assert value == json.loads(raw)
        assert not _duplicates(raw)
        assert all(
            not isinstance(v, float) or (v == v and abs(v) != float("inf")) for v in value.values()
        )


_wide_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**60), 10**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet='a,[{\\"\ud7ff\u00e9', max_size=30),
    lambda children: (
        st.lists(children, max_size=40)
        | st.dictionaries(st.text(alphabet="ab,[", max_size=4), children, max_size=40)
    ),
    max_leaves=400,
)


def _census(value: Any) -> tuple[int, int, int]:
    """(containers, scalars, longest integer's digits) of a parsed document."""
    containers = scalars = longest = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (dict, list)):
            containers += 1
            stack.extend(item.values() if isinstance(item, dict) else item)
        else:
            scalars += 1
            if type(item) is int:
                longest = max(longest, len(str(abs(item))))
    return containers, scalars, longest


class TestWorkIsBounded:
    """A search for costly documents. Whatever is accepted, the parser built at most
    MAX_CONTAINERS containers and MAX_CONTAINERS + MAX_VALUES values in all, no integer
    longer than MAX_NUMBER_LENGTH digits: the work after the C scanner (the hooks, the
    depth walk, the surrogate check) is bounded by these counts. The counts are the cost
    proxy hypothesis is steered to maximise; no time is measured."""

    @settings(max_examples=120, deadline=None)
    @given(st.dictionaries(st.text(max_size=3), _wide_json, max_size=40))
    def test_accepted_documents_are_bounded(self, document: dict[str, Any]) -> None:
        raw = json.dumps(document, ensure_ascii=False).encode("utf-8", "surrogatepass")
        try:
            value = parse_object(raw)
        except JSONError:
            return
        containers, scalars, longest = _census(value)
        target(float(containers + scalars), label="values built")
        target(float(longest), label="longest integer")
        assert containers <= MAX_CONTAINERS
        assert containers + scalars <= MAX_CONTAINERS + MAX_VALUES
        assert longest <= MAX_NUMBER_LENGTH
