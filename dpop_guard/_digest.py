"""SHA-256 for the request path's short inputs (cache keys, replay keys).

CPython's own SHA-256 (``_sha2`` from 3.12, ``_sha256`` before) hashes a 100-byte input in
half the time of ``hashlib.sha256``, which goes through OpenSSL 3's provider lookup and
context allocation on every call; the digests are the same (SHA-256 is SHA-256). Where
the interpreter was built without its own hashes, ``hashlib.sha256`` is used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Protocol

__all__ = ["sha256"]


class Hash(Protocol):
    """What the request path uses of a hash object."""

    def digest(self) -> bytes: ...

    def hexdigest(self) -> str: ...


def _builtin() -> Callable[[bytes], Hash]:
    for name in ("_sha2", "_sha256"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        function = getattr(module, "sha256", None)
        if callable(function) and function(b"abc").hexdigest() == _ABC:
            return function  # type: ignore[no-any-return]
    return hashlib.sha256


_ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2 B.1
sha256: Callable[[bytes], Hash] = _builtin()
"""``sha256(data)``: a hash object with ``digest()`` and ``hexdigest()``."""
