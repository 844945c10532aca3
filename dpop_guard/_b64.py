"""Unpadded base64url (RFC 7515 section 2), strict on input."""

from __future__ import annotations

import base64
import binascii

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
# The last character of a segment of length 2 or 3 (mod 4) carries 4 or 2 spare bits, which
# a canonical encoder leaves at zero. Checking them is cheaper than re-encoding.
_CANONICAL_LAST = {
    0: frozenset(_ALPHABET),
    2: frozenset(c for i, c in enumerate(_ALPHABET) if i & 0b1111 == 0),
    3: frozenset(c for i, c in enumerate(_ALPHABET) if i & 0b11 == 0),
}
_PADDING = {0: b"", 2: b"==", 3: b"="}


def b64url_encode(data: bytes) -> str:
    """Encode ``data`` as unpadded base64url text."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(segment: str) -> bytes:
    """Decode one non-empty, unpadded, canonical base64url segment.

    :raises ValueError: on padding, characters outside the alphabet, an impossible length,
        or non-zero spare bits (a second spelling of the same bytes).
    """
    # On the hot path: this is cheaper than a regular expression. The standard alphabet's
    # "+", "/" and "=" are refused first; any other stray character is dropped by the
    # non-strict decoder, which the exact-length check below then catches.
    rest = len(segment) % 4
    if (
        rest == 1
        or not segment
        or segment[-1] not in _CANONICAL_LAST[rest]
        or "+" in segment
        or "/" in segment
        or "=" in segment
    ):
        raise ValueError("not canonical unpadded base64url")
    try:
        raw = segment.encode("ascii")
        data = binascii.a2b_base64(raw.translate(_TO_STANDARD) + _PADDING[rest])
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise ValueError("not canonical unpadded base64url") from exc
    if len(data) != len(segment) * 3 // 4:
        raise ValueError("not canonical unpadded base64url")
    return data
