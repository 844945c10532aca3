"""``Content-Digest`` (RFC 9530): parse the field, and hash a body incrementally as it
streams.

Only the algorithms the IANA registry lists as active are used: ``sha-256`` and
``sha-512``. A field may carry several; members with other (unknown or deprecated)
algorithms are ignored (RFC 9530 section 3), every supported member must match, and a
field with no supported member at all is refused: a verifier that cannot check the
digest cannot accept the body.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Final

from . import _sf
from ._reasons import HTTPSignatureError

__all__ = ["ALGORITHMS", "DigestChecker", "content_digest", "parse_content_digest"]

ALGORITHMS: Final[Mapping[str, tuple[str, int]]] = {
    "sha-256": ("sha256", 32),
    "sha-512": ("sha512", 64),
}
_MAX_MEMBERS: Final = 8


def content_digest(body: bytes, algorithm: str = "sha-256") -> str:
    """The ``Content-Digest`` value for ``body`` with one algorithm."""
    name, _ = ALGORITHMS[algorithm]
    digest = hashlib.new(name, body).digest()
    return f"{algorithm}=:{base64.b64encode(digest).decode('ascii')}:"


def parse_content_digest(value: bytes) -> dict[str, bytes]:
    """The supported members of a ``Content-Digest`` value: algorithm -> digest.

    :raises HTTPSignatureError: ``content_digest_malformed`` (not a Dictionary, a member
        that is not a Byte Sequence of the algorithm's length, too many members),
        ``content_digest_unsupported`` (no ``sha-256`` or ``sha-512`` member).
    """
    parsed = _sf.parse_dictionary(
        value,
        max_members=_MAX_MEMBERS,
        reason="content_digest_malformed",
        too_many="content_digest_malformed",
    )
    digests: dict[str, bytes] = {}
    for algorithm, member in parsed.items():
        if algorithm not in ALGORITHMS:
            continue
        digest = member[0] if isinstance(member, tuple) else member
        if type(digest) is not bytes or len(digest) != ALGORITHMS[algorithm][1]:
            raise HTTPSignatureError("content_digest_malformed")
        digests[algorithm] = digest
    if not digests:
        raise HTTPSignatureError("content_digest_unsupported")
    return digests


class DigestChecker:
    """Hash a body chunk by chunk and compare it, at the end, with the expected digests.

    Memory is one hash state per algorithm whatever the body's size: nothing is buffered.
    """

    __slots__ = ("_expected", "_hashes", "size")

    def __init__(self, expected: Mapping[str, bytes]) -> None:
        self._expected = dict(expected)
        self._hashes = {a: hashlib.new(ALGORITHMS[a][0]) for a in self._expected}
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        for state in self._hashes.values():
            state.update(chunk)

    def matches(self) -> bool:
        """Whether every expected digest equals the body's (constant-time compare)."""
        import hmac

        return all(
            hmac.compare_digest(self._hashes[a].digest(), d) for a, d in self._expected.items()
        )
