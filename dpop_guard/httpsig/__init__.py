"""RFC 9421 HTTP message signatures and RFC 9530 ``Content-Digest`` for resource requests
and responses, per the FAPI 2.0 HTTP Signatures profile.

Needs the ``httpsig`` extra (``pip install 'dpop_guard[httpsig]'``, for ``http-sf``).

- :class:`HTTPSignatureMiddleware`: verify requests and sign responses, per path prefix.
- :func:`verify_request`, :func:`sign_response`: the same, without ASGI;
  :func:`verify_response`: what a client checks of a signed response.
- :class:`StaticJWKS` (a :class:`KeySource`), :class:`SigningKey`.
- :class:`HTTPSignatureError`: every refusal, with its ``reason``.
- :class:`MessageSigning`, :func:`sign_request`: the client's side, used by
  :class:`dpop_guard.client.DPoPAuth` (``signing_key=``, ``response_keys=``);
  :class:`ResponseSignatureError`: a response it refuses.
"""

from __future__ import annotations

try:
    import http_sf  # noqa: F401
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
    from .._extras import missing_extra

    raise missing_extra("httpsig", "dpop_guard.httpsig") from exc

from ._base import SignatureParams
from ._client import MessageSigning, ResponseSignatureError, request_message
from ._components import Component, Message
from ._digest import content_digest, parse_content_digest
from ._keys import JWA_TO_RFC9421, KeySource, SigningKey, StaticJWKS, VerificationKey
from ._middleware import SCOPE_KEY, HTTPSignatureMiddleware, Mode
from ._reasons import SIGNATURE_REASONS, HTTPSignatureError, SignatureReason
from ._sign import RESPONSE_TAG, sign_request, sign_response
from ._verify import (
    REQUEST_TAG,
    RESPONSE_POLICY,
    VerifiedSignature,
    VerifyPolicy,
    verify_request,
    verify_response,
)

__all__ = [
    "JWA_TO_RFC9421",
    "REQUEST_TAG",
    "RESPONSE_POLICY",
    "RESPONSE_TAG",
    "SCOPE_KEY",
    "SIGNATURE_REASONS",
    "Component",
    "HTTPSignatureError",
    "HTTPSignatureMiddleware",
    "KeySource",
    "Message",
    "MessageSigning",
    "Mode",
    "ResponseSignatureError",
    "SignatureParams",
    "SignatureReason",
    "SigningKey",
    "StaticJWKS",
    "VerificationKey",
    "VerifiedSignature",
    "VerifyPolicy",
    "content_digest",
    "parse_content_digest",
    "request_message",
    "sign_request",
    "sign_response",
    "verify_request",
    "verify_response",
]
