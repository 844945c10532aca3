"""Unpadded base64url (RFC 7515 section 2), strict on input."""

from __future__ import annotations

import base64
import binascii
import re

# The alphabet of RFC 4648 section 5, with no padding. A segment of length 1 (mod 4) can
# never be produced by an encoder, so it is refused here rather than by the decoder.
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# The last character of a segment of length 2 or 3 (mod 4) carries 4 or 2 spare bits, which
# a canonical encoder leaves at zero. Checking them is cheaper than re-encoding.
_CANONICAL_LAST = {
    2: frozenset(c for i, c in enumerate(_ALPHABET) if i & 0b1111 == 0),
    3: frozenset(c for i, c in enumerate(_ALPHABET) if i & 0b11 == 0),
}


def b64url_encode(data: bytes) -> str:
    """Encode ``data`` as unpadded base64url text."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(segment: str) -> bytes:
    """Decode one unpadded base64url segment.

    :raises ValueError: on padding, characters outside the alphabet, an impossible length,
        or non-zero trailing bits (a second spelling of the same bytes).
    """
    rest = len(segment) % 4
    if rest == 1 or not _SEGMENT.fullmatch(segment):
        raise ValueError("not unpadded base64url")
    # Canonical form only: "AB" and "AC" decode to the same byte; accepting both would
    # make two spellings of one signature.
    if rest and segment[-1] not in _CANONICAL_LAST[rest]:
        raise ValueError("non-canonical base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except binascii.Error as exc:  # pragma: no cover - the checks above admit no bad input
        raise ValueError("not unpadded base64url") from exc
