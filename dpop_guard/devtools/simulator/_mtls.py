"""Authlete's RFC 8705 certificate binding, for the development simulator.

Pure functions the simulator calls: they decide, the simulator builds Authlete's response
around the decision. What Authlete does, as far as it is documented (``[U]``: undocumented detail,
chosen to be the strict reading):

- ``/auth/token/create`` takes ``certificateThumbprint`` (``x5t#S256``) and binds the new
  token to it, as it takes ``dpopKeyThumbprint`` for DPoP.
- ``/auth/introspection`` takes ``clientCertificate`` (PEM) and ``clientCertificatePath``. A
  token bound to a certificate and introspected without one, with one that cannot be read,
  or with another one, is ``UNAUTHORIZED`` in the ``Bearer`` scheme. ``OK`` carries
  ``certificateThumbprint``. For an unbound token the certificate is ignored ``[U]``.
- ``/auth/introspection/standard`` returns ``cnf.x5t#S256`` for a certificate-bound token.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ...errors import InvalidRequest
from ...mtls import ClientCertificate

__all__ = [
    "BindingRefusal",
    "check_certificate_binding",
    "confirmation",
    "token_create_thumbprint",
]

_B64URL: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True, slots=True)
class BindingRefusal:
    """Why Authlete refuses the binding: its result code and message (``UNAUTHORIZED``)."""

    code: str
    message: str


# Result codes in Authlete's A065 range (token validity); the numbers are [U].
MISSING: Final = BindingRefusal(
    "A065304", "The access token is bound to a client certificate, but none was presented."
)
UNREADABLE: Final = BindingRefusal("A065306", "The client certificate could not be parsed.")
MISMATCH: Final = BindingRefusal(
    "A065305", "The client certificate does not match the one the access token is bound to."
)


def token_create_thumbprint(body: Mapping[str, Any]) -> str | None:
    """The ``certificateThumbprint`` of a ``/auth/token/create`` request, or ``None``.

    :raises ValueError: when it is present but not an unpadded base64url SHA-256 (43
        characters), which the simulator answers with ``BAD_REQUEST``.
    """
    value = body.get("certificateThumbprint")
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) != 43 or not _B64URL.issuperset(value):
        raise ValueError("certificateThumbprint is not a base64url SHA-256 thumbprint")
    return value


def check_certificate_binding(bound: str | None, body: Mapping[str, Any]) -> BindingRefusal | None:
    """Check an ``/auth/introspection`` request's certificate against the token's binding.

    :param bound: the token's ``x5t#S256``, or ``None`` for a token not bound to one.
    :param body: the introspection request (``clientCertificate``, ``clientCertificatePath``).
    :returns: ``None`` when the binding holds (or there is none), else the refusal.
    """
    if bound is None:
        return None
    pem = body.get("clientCertificate")
    if not isinstance(pem, str) or not pem:
        return MISSING
    path = body.get("clientCertificatePath") or []
    if not isinstance(path, list) or not all(isinstance(p, str) for p in path):
        return UNREADABLE
    try:
        presented = ClientCertificate.from_pem(pem, path)
    except InvalidRequest:
        return UNREADABLE
    if not hmac.compare_digest(presented.thumbprint, bound):
        return MISMATCH
    return None


def confirmation(*, jkt: str | None, x5t_s256: str | None) -> dict[str, str] | None:
    """The RFC 7662 ``cnf`` member for a token bound by DPoP, by certificate, or both."""
    cnf: dict[str, str] = {}
    if jkt is not None:
        cnf["jkt"] = jkt
    if x5t_s256 is not None:
        cnf["x5t#S256"] = x5t_s256
    return cnf or None
