"""Property tests: whatever JSON an upstream sends in any fact, the parsers answer with
facts or a 503-class error, never another exception (Hypothesis)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dpop_guard.errors import IntrospectionUnavailable
from dpop_guard.introspection import InactiveToken, TokenInfo, standard_claims
from dpop_guard.introspection.authlete import _parse_ok, _proof_nonce
from dpop_guard.introspection.redis_cache import RedisTokenCache, _decode
from dpop_guard.introspection.rfc7662 import token_info_from

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)
AUTHLETE_FIELDS = (
    "subject",
    "clientId",
    "scopes",
    "expiresAt",
    "certificateThumbprint",
    "acr",
    "authTime",
    "accessTokenResources",
    "resources",
    "authorizationDetails",
    "grantId",
    "consentedClaims",
    "clientIdAlias",
)
STANDARD_FIELDS = ("cnf", "acr", "auth_time", "aud", "authorization_details", "scope", "exp")


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(AUTHLETE_FIELDS), JSON))
def test_authlete_ok_never_crashes(fields: dict[str, Any]) -> None:
    """Authlete's OK answer: TokenInfo or IntrospectionUnavailable, nothing else."""
    try:
        info = _parse_ok({"action": "OK", **fields}, None)
    except IntrospectionUnavailable:
        return
    assert isinstance(info, TokenInfo)
    assert info.x5t_s256 is None or len(info.x5t_s256) == 43


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(STANDARD_FIELDS), JSON))
def test_rfc7662_never_crashes(fields: dict[str, Any]) -> None:
    """An RFC 7662 answer: TokenInfo, InactiveToken or IntrospectionUnavailable."""
    try:
        info = token_info_from({"active": True, **fields}, None)
    except (IntrospectionUnavailable, InactiveToken):
        return
    assert isinstance(info, TokenInfo)
    try:
        standard_claims(fields)
    except ValueError:
        raise AssertionError("accepted by token_info_from, refused by standard_claims") from None


_SIGNED_CACHE = RedisTokenCache.from_url(
    "redis://127.0.0.1:1/0", secret="fleet-secret-for-tests-0123456789abcdef"
)  # parses values only: never connects


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=300)
    | st.builds(lambda b: b"s" + b, st.binary(max_size=300))
    | st.builds(lambda v: b"u" + json.dumps(v).encode(), JSON)
)
def test_redis_value_never_crashes(raw: bytes) -> None:
    """Any bytes Redis may return under an entry's key, read by a cache with a secret:
    an entry only if validly signed for that key, otherwise nothing, never an error."""
    assert _SIGNED_CACHE._open("dpop_guard:introspection:v3:00", raw) is None


@settings(max_examples=150, deadline=None)
@given(JSON)
def test_redis_entry_never_crashes(value: Any) -> None:
    """A shared-cache entry of any shape decodes to an entry or to nothing."""
    found = _decode(json.dumps(value))
    assert found is None or isinstance(found[0], TokenInfo)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=64))
def test_proof_nonce_never_crashes(proof: str) -> None:
    """Reading a proof's nonce claim tolerates any text."""
    nonce = _proof_nonce(proof)
    assert nonce is None or isinstance(nonce, str)
