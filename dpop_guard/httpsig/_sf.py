"""Structured field parsing (RFC 9651, which revises RFC 8941) for the signature fields,
bounded before it costs anything.

Parsing is done by ``http-sf`` (Mark Nottingham's implementation of RFC 9651, the parser
``http-message-signatures`` uses too): a linear, non-recursive parser (an inner list
cannot nest) whose errors carry a position. This module adds what a verifier facing an
attacker needs on top: a byte cap checked before parsing, a member cap checked after,
duplicate keys refused (the library keeps the last one by default, which would let two
``Signature-Input`` lines disagree silently), and one exception for every failure.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NoReturn

import http_sf
from http_sf.innerlist import ser_item_or_inner_list
from http_sf.types import DictionaryType, ItemOrInnerListType

from ._reasons import HTTPSignatureError, SignatureReason

__all__ = ["combine", "parse_dictionary", "serialize", "serialize_member"]


def combine(values: Iterable[bytes], *, limit: int, reason: SignatureReason) -> bytes | None:
    """The field lines of one field combined with ``", "`` (RFC 9110 section 5.3).

    :returns: ``None`` when the field is absent.
    :raises HTTPSignatureError: ``reason`` (status 401) when the combined value is longer
        than ``limit`` bytes; counted as the lines come, so a flood of lines stops early.
    """
    lines: list[bytes] = []
    size = 0
    for value in values:
        size += len(value) + 2
        if size > limit + 2:
            raise HTTPSignatureError(reason)
        lines.append(value.strip(b" \t"))
    return b", ".join(lines) if lines else None


def _duplicate(key: str, context: str) -> NoReturn:
    raise ValueError(f"duplicate {context} key")


def parse_dictionary(
    value: bytes, *, max_members: int, reason: SignatureReason, too_many: SignatureReason
) -> DictionaryType:
    """Parse ``value`` as an RFC 9651 Dictionary with unique keys and parameters.

    :raises HTTPSignatureError: ``reason`` for anything that is not a Dictionary,
        ``too_many`` for more than ``max_members`` members.
    """
    try:
        parsed = http_sf.parse(value, tltype="dictionary", on_duplicate_key=_duplicate)
    except (ValueError, TypeError, IndexError) as exc:  # StructuredFieldError is a ValueError
        raise HTTPSignatureError(reason) from exc
    assert isinstance(parsed, dict)
    if len(parsed) > max_members:
        raise HTTPSignatureError(too_many)
    return parsed


def serialize(structure: http_sf.StructuredType) -> str:
    """The canonical serialization (RFC 9651 section 4.1)."""
    return http_sf.ser(structure)


def serialize_member(member: ItemOrInnerListType) -> str:
    """The canonical serialization of one Dictionary member's value (an Item or an Inner
    List, with its parameters)."""
    return ser_item_or_inner_list(member)
