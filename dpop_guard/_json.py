"""Strict JSON for JOSE headers and claims: objects only, no duplicate members, shallow."""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 8


class JSONError(ValueError):
    """The bytes are not a JSON object we accept; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        # RFC 7515 section 4: a JOSE parser MUST reject duplicate header parameter names
        # (or use lexically last). Rejecting closes parser-differential attacks.
        raise JSONError("duplicate_member")
    return obj


def _reject_constant(name: str) -> Any:
    raise JSONError("non_standard_number")  # NaN, Infinity, -Infinity


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
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


def parse_object(data: bytes, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """Parse ``data`` as a UTF-8 JSON object.

    :raises JSONError: with reason ``not_json``, ``not_object``, ``duplicate_member``,
        ``non_standard_number`` or ``too_deep``.
    """
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
    # A document nests no deeper than it has brackets; most proofs have one or two, so the
    # walk is skipped on the hot path.
    if text.count("{") + text.count("[") > max_depth and _depth(value, max_depth) > max_depth:
        raise JSONError("too_deep")
    return value
