"""Unpadded base64url (RFC 7515 section 2), strict on input."""

from __future__ import annotations

import base64
import binascii

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_TO_STANDARD = bytes.maketrans(b"-_+/", b"+/!!")
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
    # On the hot path: one translate and one strict decode, no scans. The translation
    # maps the URL-safe alphabet to the standard one and the standard alphabet's own "+"
    # and "/" to "!", which the strict decoder refuses, as it refuses any other character
    # outside the alphabet and any "=" inside the data; the last character's check below
    # refuses a trailing "=" and non-zero spare bits. (Non-ASCII fails the encode.)
    rest = len(segment) % 4
    if rest == 1 or not segment or segment[-1] not in _CANONICAL_LAST[rest]:
        raise ValueError("not canonical unpadded base64url")
    try:
        data = binascii.a2b_base64(
            segment.encode("ascii").translate(_TO_STANDARD) + _PADDING[rest], strict_mode=True
        )
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise ValueError("not canonical unpadded base64url") from exc
    return data
