"""Hypothesis tests for the field parsers: any input ends in a value or an
:class:`HTTPSignatureError`, never another exception; what we serialize, we parse back."""

from __future__ import annotations

import base64
import string
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dpop_guard.httpsig import (
    Component,
    HTTPSignatureError,
    Message,
    SignatureParams,
    _sf,
    parse_content_digest,
    verify_request,
)
from dpop_guard.httpsig._base import inner_list, parse_signature_params

from ._support import KEYS, NOW

# Bytes that look like structured fields, and arbitrary bytes.
_SF_ALPHABET = string.ascii_letters + string.digits + '=;:,()"*-_.?@/ \t+\\' + "\x00\x7f\xff"
sf_like = st.text(alphabet=_SF_ALPHABET, max_size=200).map(lambda s: s.encode("latin-1"))
anything = st.one_of(sf_like, st.binary(max_size=200))

_key = st.text(alphabet=string.ascii_lowercase + "-", min_size=1, max_size=8).filter(
    lambda s: s[0].isalpha()
)
_sf_string = st.text(
    alphabet=string.printable.replace("\t", "")
    .replace("\n", "")
    .replace("\r", "")
    .replace("\x0b", "")
    .replace("\x0c", ""),
    max_size=20,
)
_component = st.one_of(
    st.sampled_from(["@method", "@target-uri", "@authority", "@path", "@query", "@status"]).map(
        lambda n: Component(n, {})
    ),
    st.builds(
        lambda n, req: Component(n, {"req": True} if req else {}),
        _key,
        st.booleans(),
    ),
    st.builds(lambda k: Component("signature", {"req": True, "key": k}), _key),
)


@settings(max_examples=300, deadline=None)
@given(anything)
def test_dictionary_parser_only_raises_our_error(value: bytes) -> None:
    try:
        parsed = _sf.parse_dictionary(
            value, max_members=8, reason="signature_malformed", too_many="signature_too_many"
        )
    except HTTPSignatureError as exc:
        assert exc.reason in ("signature_malformed", "signature_too_many")
    else:
        assert len(parsed) <= 8


@settings(max_examples=300, deadline=None)
@given(anything)
def test_content_digest_parser_only_raises_our_error(value: bytes) -> None:
    try:
        digests = parse_content_digest(value)
    except HTTPSignatureError as exc:
        assert exc.reason in ("content_digest_malformed", "content_digest_unsupported")
    else:
        assert digests and all(len(d) in (32, 64) for d in digests.values())


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_component, max_size=6, unique_by=lambda c: c.identity()),
    st.integers(min_value=0, max_value=10**15 - 1),
    _sf_string,
    _sf_string,
)
def test_signature_params_round_trip(
    components: list[Component], created: int, keyid: str, tag: str
) -> None:
    built = SignatureParams.build(components, created=created, keyid=keyid, tag=tag)
    member = _sf.parse_dictionary(
        f"l={built.serialized}".encode(),
        max_members=1,
        reason="signature_malformed",
        too_many="signature_too_many",
    )["l"]
    parsed = parse_signature_params(member, max_components=8)
    assert parsed.serialized == built.serialized
    assert parsed == built


@settings(max_examples=200, deadline=None)
@given(anything, anything, st.lists(anything, max_size=3))
async def test_verifier_only_raises_our_error(
    signature_input: bytes, signature: bytes, digests: list[bytes]
) -> None:
    headers = (
        (b"host", b"rs.example"),
        (b"authorization", b"DPoP x"),
        (b"signature-input", signature_input),
        (b"signature", signature),
        *((b"content-digest", d) for d in digests),
    )
    message = Message("POST", "http", "rs.example", "/a", None, headers)
    try:
        await verify_request(message, key_source=KEYS, now=NOW, has_body=bool(digests))
    except HTTPSignatureError as exc:
        assert exc.status == 401
    else:  # pragma: no cover - a forged signature cannot verify
        raise AssertionError("verified random bytes")


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=64), st.integers(min_value=1, max_value=40))
def test_field_size_is_bounded_before_parsing(lines: int, width: int) -> None:
    values = [b"a" * width] * lines
    try:
        combined = _sf.combine(values, limit=512, reason="signature_field_too_large")
    except HTTPSignatureError as exc:
        assert exc.reason == "signature_field_too_large"
        assert lines * (width + 2) - 2 > 512
    else:
        assert combined is None or len(combined) <= 512


_param_value = st.one_of(
    st.booleans(),
    st.integers(min_value=-(10**15) + 1, max_value=10**15 - 1),
    _sf_string,
    st.binary(max_size=8),
)
_any_component = st.builds(
    Component,
    st.one_of(
        st.sampled_from(
            [
                "@method",
                "@target-uri",
                "authorization",
                "content-digest",
                "signature",
                "@query-param",
            ]
        ),
        st.text(alphabet=string.ascii_letters + "@-", min_size=1, max_size=10),
    ),
    st.dictionaries(
        st.sampled_from(["req", "sf", "key", "name", "bs", "tr", "x"]), _param_value, max_size=3
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_any_component, max_size=8),
    st.dictionaries(
        st.sampled_from(["created", "expires", "keyid", "tag", "alg", "nonce", "x"]),
        _param_value,
        max_size=6,
    ),
    st.binary(min_size=1, max_size=96),
)
async def test_verifier_on_shaped_signature_inputs_only_raises_our_error(
    components: list[Component], params: dict[str, Any], signature: bytes
) -> None:
    """Well-formed fields with every kind of component and parameter reach the deep checks."""
    params = {**params, "tag": "fapi-2-request"}
    try:
        inner = inner_list(components, params)
    except (ValueError, TypeError):  # http-sf refuses to serialize it: not a field we can send
        return
    headers = (
        (b"host", b"rs.example"),
        (b"authorization", b"DPoP x"),
        (b"content-digest", b"sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"),
        (b"signature-input", f"sig1={inner}".encode()),
        (b"signature", b"sig1=:" + base64.b64encode(signature) + b":"),
    )
    message = Message("POST", "http", "rs.example", "/a", "Pet=dog", headers)
    try:
        await verify_request(message, key_source=KEYS, now=NOW, has_body=False)
    except HTTPSignatureError as exc:
        assert exc.status == 401
    else:  # pragma: no cover
        raise AssertionError("verified random bytes")
