"""Unpadded base64url (RFC 7515 section 2), strict on input."""

from __future__ import annotations

import base64
import binascii
from typing import Final

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_TO_STANDARD = bytes.maketrans(b"-_+/", b"+/!!")
# By the segment's length mod 4, the octets its last character may be: any (0), none (1,
# an impossible length) or, for 2 and 3, those whose 4 or 2 spare bits are zero, as a
# canonical encoder leaves them. Checking them is cheaper than re-encoding. (A tuple
# indexed by an int, and a set of ints: the cheapest lookups there are.)
_CANONICAL_LAST: Final = (
    frozenset(_ALPHABET.encode()),
    frozenset[int](),
    frozenset(ord(c) for i, c in enumerate(_ALPHABET) if i & 0b1111 == 0),
    frozenset(ord(c) for i, c in enumerate(_ALPHABET) if i & 0b11 == 0),
)
_PADDING: Final = (b"", b"", b"==", b"=")
_a2b = binascii.a2b_base64
_Error = binascii.Error


def b64url_encode(data: bytes) -> str:
    """Encode ``data`` as unpadded base64url text."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(segment: str) -> bytes:
    """Decode one non-empty, unpadded, canonical base64url segment.

    :raises ValueError: on padding, characters outside the alphabet, an impossible length,
        or non-zero spare bits (a second spelling of the same bytes).
    """
    try:
        data = segment.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate
        raise ValueError("not canonical unpadded base64url") from exc
    return b64url_decode_octets(data)


def b64url_decode_octets(segment: bytes) -> bytes:
    """:func:`b64url_decode` of a segment's octets, as the proof verifier has them.

    :raises ValueError: as :func:`b64url_decode` does.
    """
    # On the hot path: one translate and one strict decode, no scans. The translation
    # maps the URL-safe alphabet to the standard one and the standard alphabet's own "+"
    # and "/" to "!", which the strict decoder refuses, as it refuses any other octet
    # outside the alphabet (non-ASCII included) and any "=" inside the data; the last
    # octet's check refuses a trailing "=", an empty segment and non-zero spare bits.
    rest = len(segment) & 3
    try:
        if segment[-1] in _CANONICAL_LAST[rest]:
            return _a2b(segment.translate(_TO_STANDARD) + _PADDING[rest], strict_mode=True)
    except (IndexError, _Error):
        pass
    raise ValueError("not canonical unpadded base64url")
