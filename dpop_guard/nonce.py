"""Server-issued DPoP nonces (RFC 9449 sections 8 and 9). Pure: time is passed in.

The default source is stateless and key-bound: a nonce is a time step plus an HMAC over
that step and the client key's thumbprint, under a secret the fleet shares. Any instance
accepts a nonce any other issued, a nonce issued to one key is useless with another, and
nothing is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from typing import Final, Literal, Protocol, runtime_checkable

from ._b64 import b64url_decode, b64url_encode
from .metrics import DEPENDENCIES, NonceEvent

__all__ = ["DEFAULT_NONCE_STEP", "HMACNonceSource", "NonceSource", "NonceStatus"]

DEFAULT_NONCE_STEP: Final = 60
NonceStatus = Literal["current", "expiring", "invalid"]
"""``current``: issued in this time step. ``expiring``: still accepted, but a newer one
exists and should be sent. ``invalid``: stale, foreign, forged or malformed."""

_MAC_BYTES: Final = 16
_STEP: Final = struct.Struct(">Q")


@runtime_checkable
class NonceSource(Protocol):
    """Issues and checks server nonces.

    ``lifetime`` is the longest a nonce stays acceptable, in seconds; a proof carrying a
    valid nonce may be accepted that long after its ``iat``.
    """

    lifetime: int

    def issue(self, jkt: str, now: int) -> str:
        """A fresh nonce for the client key ``jkt`` at time ``now``."""
        ...

    def check(self, nonce: str, jkt: str, now: int) -> NonceStatus:
        """Whether ``nonce`` is acceptable from the key ``jkt`` at time ``now``."""
        ...


class HMACNonceSource:
    """Stateless, key-bound nonces: ``base64url(step || HMAC-SHA256(secret, step || jkt)[:16])``.

    A nonce issued in step ``s`` (``s = now // step``) is accepted during steps ``s`` and
    ``s + 1``; in step ``s + 1`` it is ``expiring`` and the middleware sends the next one on
    the success response. A nonce from step ``s + 1`` is accepted in step ``s`` too, for
    fleet members whose clocks run slightly behind the issuer's.

    :param secret: at least 16 bytes, shared by every instance (``DPOP_GUARD_NONCE_SECRET``).
    :param step: seconds per time step.
    """

    def __init__(self, secret: bytes, *, step: int = DEFAULT_NONCE_STEP) -> None:
        if len(secret) < 16:
            raise ValueError("the nonce secret must be at least 16 bytes")
        if step <= 0:
            raise ValueError("step must be positive")
        self._secret = secret
        self.step = step
        self.lifetime = 2 * step

    @classmethod
    def ephemeral(cls, *, step: int = DEFAULT_NONCE_STEP) -> HMACNonceSource:
        """A source with a random secret: valid for one process only."""
        return cls(secrets.token_bytes(32), step=step)

    def _mac(self, step_index: int, jkt: str) -> bytes:
        message = _STEP.pack(step_index) + jkt.encode("utf-8")
        return hmac.new(self._secret, message, hashlib.sha256).digest()[:_MAC_BYTES]

    def issue(self, jkt: str, now: int) -> str:
        """A nonce for ``jkt`` in the current step."""
        step_index = now // self.step
        if DEPENDENCIES.listening:
            DEPENDENCIES.emit(NonceEvent("issued"))
        return b64url_encode(_STEP.pack(step_index) + self._mac(step_index, jkt))

    def check(self, nonce: str, jkt: str, now: int) -> NonceStatus:
        """``current``, ``expiring`` or ``invalid``; constant-time in the MAC."""
        if len(nonce) > 64:
            return self._refused(nonce, jkt, now)
        try:
            raw = b64url_decode(nonce)
        except ValueError:
            return self._refused(nonce, jkt, now)
        if len(raw) != _STEP.size + _MAC_BYTES:
            return self._refused(nonce, jkt, now)
        (step_index,) = _STEP.unpack(raw[: _STEP.size])
        age = now // self.step - step_index
        if age not in (-1, 0, 1):
            return self._refused(nonce, jkt, now)
        if not hmac.compare_digest(raw[_STEP.size :], self._mac(step_index, jkt)):
            return self._refused(nonce, jkt, now)
        return "expiring" if age == 1 else "current"

    def _refused(self, nonce: str, jkt: str, now: int) -> NonceStatus:
        """``invalid``, reported as ``expired`` (one of ours for ``jkt``, only too old) or
        ``invalid`` when anyone listens (one more MAC, on the refusal path only)."""
        if DEPENDENCIES.listening:
            DEPENDENCIES.emit(
                NonceEvent("expired" if self._expired(nonce, jkt, now) else "invalid")
            )
        return "invalid"

    def _expired(self, nonce: str, jkt: str, now: int) -> bool:
        try:
            raw = b64url_decode(nonce) if len(nonce) <= 64 else b""
        except ValueError:
            return False
        if len(raw) != _STEP.size + _MAC_BYTES:
            return False
        (step_index,) = _STEP.unpack(raw[: _STEP.size])
        genuine = hmac.compare_digest(raw[_STEP.size :], self._mac(step_index, jkt))
        return genuine and now // self.step - step_index > 1
