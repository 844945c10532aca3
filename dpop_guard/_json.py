"""Strict JSON for JOSE headers and claims: objects only, no duplicate members, shallow,
finite numbers, and text that is valid Unicode.

Python's decoder turns the escape ``"\\ud800"`` into a lone surrogate, a ``str`` that cannot
be encoded as UTF-8 again, so it would fail later, wherever a member is hashed, compared
or logged. RFC 8259 section 8.2 leaves such strings' behaviour unpredictable and RFC 7493
(I-JSON) section 2.1 forbids them: they are refused here, at the parse, for every string
and member name.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final

from ._reasons import JSONReason

MAX_DEPTH = 8


class JSONError(ValueError):
    """The bytes are not a JSON object we accept; ``reason`` says why."""

    def __init__(self, reason: JSONReason) -> None:
        super().__init__(reason)
        self.reason: JSONReason = reason


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        # RFC 7515 section 4: a JOSE parser MUST reject duplicate header parameter names
        # (or use lexically last). Rejecting closes parser-differential attacks.
        raise JSONError("duplicate_member")
    return obj


def _reject_constant(name: str) -> Any:
    raise JSONError("non_standard_number")  # NaN, Infinity, -Infinity


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 overflows to infinity: no finite number
        raise JSONError("non_standard_number")
    return value


_DECODER = json.JSONDecoder(
    object_pairs_hook=_no_duplicates,
    parse_constant=_reject_constant,
    parse_float=_finite_float,
)
_SCAN = _DECODER.scan_once  # type: ignore[attr-defined]  # set in __init__, not typed


def _depth(value: Any, limit: int) -> int:
    """How deeply containers nest: ``{}`` is 1, ``{"a": []}`` is 2 (scalars add nothing),
    so a document never nests deeper than it has brackets. Stops early past ``limit``."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    deepest = 0
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > limit:
            return level
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


# Any surrogate made by an escape starts like this; most documents holding \u escapes at
# all hold none of these, so the full check below rarely runs.
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: Any) -> bool:
    """Whether any string or member name in ``value`` holds a surrogate code point. (A
    valid pair, ``"\\ud83d\\ude00"``, is decoded to one character and is not one.)

    Serialising without escapes and encoding as UTF-8 runs in C and fails exactly on a
    surrogate: on an 8 KiB document of escapes it costs 20-35 µs, where a walk in Python
    costs 37 µs or more."""
    try:
        json.dumps(value, ensure_ascii=False, check_circular=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


# The fast path's decoder: the same number hooks, no object hook, so the C scanner builds
# the dict itself and no Python frame runs per object.
_FLAT_SCAN = json.JSONDecoder(  # type: ignore[attr-defined]
    parse_constant=_reject_constant,
    parse_float=_finite_float,
).scan_once


def parse_object(data: bytes, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """Parse ``data`` as a UTF-8 JSON object.

    :raises JSONError: with reason ``not_json``, ``not_object``, ``duplicate_member``,
        ``non_standard_number`` (NaN, infinities, a float that overflows), ``lone_surrogate``
        or ``too_deep``.
    """
    # The fast path, for a flat object as every proof's claims are: no "[" (so no array),
    # no "{" after the first character (so no nested object) and no backslash (so no
    # escape, hence no surrogate). Such a text, if it is JSON to its end, is one object of
    # scalars, depth 1. Its m members are parted by m - 1 commas, and strings can only
    # add commas: so when the text holds exactly len(value) - 1 commas, m == len(value)
    # and no member name was repeated. Anything else, and every refusal, goes to
    # _parse_strict, which decides what to return or raise (tests/test_encoding.py
    # compares the two on generated documents). It saves about 6,000 instructions per
    # proof: the pairs list, the dict built from it and _no_duplicates' frame, the
    # bracket counts and the escape search. (``in`` on str is a memchr; on bytes, or
    # str.find, it costs five times as much.)
    try:
        text = data.decode("utf-8")
        if "[" not in text and "\\" not in text and "{" not in text[1:] and max_depth > 0:
            value, end = _FLAT_SCAN(text, 0)
            if end == len(text) and type(value) is dict and text.count(",") == len(value) - 1:
                return value
    except (ValueError, StopIteration):  # JSONError and UnicodeDecodeError included
        pass
    return _parse_strict(data, max_depth)


def _parse_strict(data: bytes, max_depth: int) -> dict[str, Any]:
    """:func:`parse_object` for any document: every rule checked on its own."""
    try:
        text = data.decode("utf-8")
        try:
            # The scanner alone is half the cost of decode(), which also skips
            # whitespace around the document; fall back to it for anything unusual.
            value, end = _SCAN(text, 0)
        except StopIteration:
            end = -1
        if end != len(text):
            value = _DECODER.decode(text)
    except JSONError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise JSONError("not_json") from exc
    if not isinstance(value, dict):
        raise JSONError("not_object")
    # A document nests no deeper than it has brackets; most headers have two, so the
    # walk is skipped on the hot path.
    if text.count("{") + text.count("[") > max_depth and _depth(value, max_depth) > max_depth:
        raise JSONError("too_deep")
    # Text decoded from UTF-8 holds no surrogates, so only a \u escape can make one.
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        raise JSONError("lone_surrogate")
    return value
