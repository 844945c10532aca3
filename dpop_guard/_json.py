"""Strict, bounded JSON for untrusted documents, and the one home of the limits on it.

The rules that live here, for every JSON document the package parses:

1. **Bounded before it is parsed.** The raw octets are counted in C (``bytes.count``, one
   pass each) before the parser sees them: ``{`` plus ``[`` bound the containers, and
   ``,`` bounds the values (every value after the first in a container follows a comma).
   Both counts include brackets and commas inside strings, so they can only over-count:
   a document within the counts is certainly within the limits. A refused document costs
   a few passes over its octets and nothing else.
2. **Bounded while it is parsed.** A number's text is at most :data:`MAX_NUMBER_LENGTH`
   characters, in every document (CPython turns a 4,300-digit integer into an ``int`` in
   quadratic time, about one ES256 verification).
3. **Strict.** An object at the top; no duplicate member names (RFC 7515 section 4);
   finite numbers only (no ``NaN``, no ``Infinity``, no float that overflows); nesting at
   most ``max_depth`` deep; no lone surrogate in any string or member name.

Python's decoder turns the escape ``"\\ud800"`` into a lone surrogate, a ``str`` that
cannot be encoded as UTF-8 again, so it would fail later, wherever a member is hashed,
compared or logged. RFC 8259 section 8.2 leaves such strings' behaviour unpredictable and
RFC 7493 (I-JSON) section 2.1 forbids them: they are refused here.

With the container and value counts bounded, every check after the parse walks at most
that many items, so the whole cost is linear in the octets with C-sized constants
(``benchmarks/proof_worst_case.py`` measures the worst documents found).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Final

from ._reasons import JSONReason

__all__ = [
    "DOCUMENT_LIMITS",
    "ISSUER_LIMITS",
    "JOSE_LIMITS",
    "MAX_CONTAINERS",
    "MAX_DEPTH",
    "MAX_DOCUMENT_DEPTH",
    "MAX_NUMBER_LENGTH",
    "MAX_VALUES",
    "JSONError",
    "JSONLimits",
    "parse_object",
]

MAX_DEPTH: Final = 8
"""Nesting allowed in a JOSE header or claim set (a DPoP proof, a JWT access token)."""
MAX_CONTAINERS: Final = 16
"""Objects and arrays (``{`` and ``[`` octets) in a JOSE header or claim set. A DPoP
proof's header holds 2 or 3 (the header, ``jwk``, maybe ``key_ops``), its claims 1."""
MAX_VALUES: Final = 64
"""Commas in a JOSE header or claim set: a bound on its members and array elements. An
honest proof holds about ten. Each value may cost up to a microsecond to convert (a
float such as ``2.2250738585072011e-308``), so this bounds the parse."""
MAX_NUMBER_LENGTH: Final = 40
"""Characters in one JSON number: a NumericDate needs 10, a 64-bit integer 20."""
MAX_DOCUMENT_DEPTH: Final = 32
"""Nesting allowed in other JSON: answers of the servers the package calls (Authlete,
RFC 7662, token endpoints), and JSON read from the environment."""


@dataclass(frozen=True, slots=True)
class JSONLimits:
    """How large a document :func:`parse_object` accepts. ``None`` leaves a count unbounded
    (for documents whose size is bounded elsewhere and that come from a party we called)."""

    max_depth: int = MAX_DEPTH
    max_containers: int | None = MAX_CONTAINERS
    max_values: int | None = MAX_VALUES


JOSE_LIMITS: Final = JSONLimits()
"""For JOSE headers and claims, parsed (the header before any signature check) from
attacker-controlled octets."""
ISSUER_LIMITS: Final = JSONLimits(max_containers=None, max_values=None)
"""For claims a trusted issuer signed (a JWT access token), parsed once its signature
holds: JOSE depth, any number of members."""
DOCUMENT_LIMITS: Final = JSONLimits(
    max_depth=MAX_DOCUMENT_DEPTH, max_containers=None, max_values=None
)
"""For server answers and configuration: deeper nesting, any number of members."""


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
    if len(text) > MAX_NUMBER_LENGTH:
        raise JSONError("number_too_long")
    value = float(text)
    if not math.isfinite(value):  # 1e400 overflows to infinity: no finite number
        raise JSONError("non_standard_number")
    return value


def _short_int(text: str) -> int:
    if len(text) > MAX_NUMBER_LENGTH:
        raise JSONError("number_too_long")
    return int(text)


# Two decoders with the same number rules: the strict one builds each object through
# _no_duplicates; the flat one lets the C scanner build it, for a document with a single
# object, whose duplicates parse_object finds by counting (see there).
_STRICT: Final = json.JSONDecoder(
    object_pairs_hook=_no_duplicates,
    parse_constant=_reject_constant,
    parse_float=_finite_float,
    parse_int=_short_int,
)
_FLAT: Final = json.JSONDecoder(
    parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_short_int
)


_OPEN_OBJECT: Final = ord("{")
_OPEN_ARRAY: Final = ord("[")
_COMMA: Final = ord(",")
_JSON_WHITESPACE: Final = " \t\n\r"  # RFC 8259 section 2; str.strip() takes more


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


def parse_object(data: bytes, limits: JSONLimits = JOSE_LIMITS) -> dict[str, Any]:
    """Parse ``data`` as a UTF-8 JSON object within ``limits``.

    :raises JSONError: with reason ``too_many_containers`` or ``too_many_values`` (refused
        before parsing), ``not_json``, ``number_too_long``, ``not_object``,
        ``duplicate_member``, ``non_standard_number`` (NaN, infinities, a float that
        overflows), ``too_deep`` or ``lone_surrogate``.
    """
    # No "[" and no "{" after the first octet, as in the usual proof's claims, is two
    # memchr calls; counting walks every octet (about 1,800 instructions a count on a
    # proof). The octets are given as ints: ``b"[" in data`` first tries int(b"[").
    if _OPEN_ARRAY not in data and _OPEN_OBJECT not in data[1:]:
        containers = 1
    else:
        containers = data.count(_OPEN_OBJECT) + data.count(_OPEN_ARRAY)
    commas = data.count(_COMMA)
    if limits.max_containers is not None and containers > limits.max_containers:
        raise JSONError("too_many_containers")
    if limits.max_values is not None and commas >= limits.max_values:
        raise JSONError("too_many_values")
    try:
        text = data.decode("utf-8")
        # A document with one bracket is at most one object of scalars. Its m members are
        # parted by m - 1 commas and strings can only add commas, so when the object has
        # exactly commas + 1 distinct members, no name was repeated: the C scanner builds
        # it alone. Otherwise the strict decoder checks every object for duplicates.
        # (raw_decode of the text without its surrounding whitespace: decode finds that
        # whitespace with two regular expressions, 3,000 instructions a proof.)
        decoder = _FLAT if containers == 1 else _STRICT
        text = text.strip(_JSON_WHITESPACE)
        value, end = decoder.raw_decode(text)
        if end != len(text):
            raise JSONError("not_json")  # text after the document
        if containers == 1 and type(value) is dict and len(value) != commas + 1:
            value = _STRICT.decode(text)
    except JSONError:
        raise
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError included
        raise JSONError("not_json") from exc
    if type(value) is not dict:
        raise JSONError("not_object")
    # A document nests no deeper than it has brackets: the walk, bounded by the counts,
    # runs only for documents with more brackets than the depth allows.
    if containers > limits.max_depth and _depth(value, limits.max_depth) > limits.max_depth:
        raise JSONError("too_deep")
    # Text decoded from UTF-8 holds no surrogates, so only an escape can make one. (A
    # search for one character is a memchr; one for "\\ud" costs 6 ns an octet in a text
    # of backslashes, more than the check itself.)
    if "\\" in text and _has_lone_surrogate(value):
        raise JSONError("lone_surrogate")
    return value
