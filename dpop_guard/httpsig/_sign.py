"""Sign a resource response, per RFC 9421 and the FAPI 2.0 HTTP Signatures profile
(section 5.3.2.1, "Requirements for Resource Servers").

Covered, in this order (each when it applies):

==========================================  ==========================================
component                                    profile rule
==========================================  ==========================================
``"@status"``                                 shall cover ``@status``
``"content-type"``                            the profile's NOTE: "anything else relevant"
``"content-digest"``                          a response with content: send and cover it
``"@method";req``, ``"@target-uri";req``     link the response to its request
``"content-digest";req``                      the request carried content
``"signature";req;key="<label>"``             the request was signed: cover its signature
``"signature-input";req;key="<label>"``       ... and its signature input
==========================================  ==========================================

Parameters: ``created``, ``keyid`` (the :class:`SigningKey`'s) and
``tag="fapi-2-response"``; no ``alg`` (the key the client holds says it, as in
Authlete's ``FapiResourceResponseSigner``). Authlete's later releases also cover
``"authorization";req`` and ``"dpop";req``; the request's signature, covered here with
``;req``, already covers both.
"""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Final

from ._base import SignatureParams, signature_base
from ._components import Component, Message
from ._keys import SigningKey
from ._verify import REQUEST_TAG, required_components

__all__ = [
    "REQUEST_LABEL",
    "RESPONSE_LABEL",
    "RESPONSE_TAG",
    "request_components",
    "response_components",
    "sign_request",
    "sign_response",
]

RESPONSE_TAG: Final = "fapi-2-response"
RESPONSE_LABEL: Final = "sig1"
REQUEST_LABEL: Final = "sig1"


def request_components(request: Message) -> list[Component]:
    """The components a FAPI request signature covers (FAPI HTTP Signatures 5.3.1.1):
    the ones the verifier requires (:func:`~dpop_guard.httpsig._verify.required_components`),
    ``dpop`` when the request carries a DPoP header and ``content-digest`` when it carries
    one (the signer adds it for a request with content). ``authorization`` is left out
    only when the request has none (a request without a token is not a FAPI resource
    request; the verifier refuses it)."""
    names = required_components(
        dpop=bool(request.field_lines(b"dpop")),
        body=bool(request.field_lines(b"content-digest")),
    )
    return [
        Component(name, {})
        for name in names
        if name != "authorization" or request.field_lines(b"authorization")
    ]


def sign_request(
    request: Message, *, key: SigningKey, now: int, label: str = REQUEST_LABEL
) -> list[tuple[bytes, bytes]]:
    """The ``Signature-Input`` and ``Signature`` field lines for ``request`` (a client's
    side of the profile): :func:`request_components`, ``created``, ``keyid`` and
    ``tag="fapi-2-request"``, no ``alg`` (the key the server holds says it).

    :param request: the request with its final header fields, ``content-digest``
        included when it has content.
    :raises HTTPSignatureError: a component that cannot be resolved (a header value
        that is not visible ASCII).
    """
    params = SignatureParams.build(
        request_components(request), created=now, keyid=key.keyid, tag=REQUEST_TAG
    )
    return _fields(label, params, key, signature_base(params, request, in_response=False))


def _fields(
    label: str, params: SignatureParams, key: SigningKey, base: bytes
) -> list[tuple[bytes, bytes]]:
    signature = base64.b64encode(key.sign(base)).decode("ascii")
    return [
        (b"signature-input", f"{label}={params.serialized}".encode("ascii")),
        (b"signature", f"{label}=:{signature}:".encode("ascii")),
    ]


def response_components(response: Message, *, request_label: str | None) -> list[Component]:
    """The components a FAPI response signature covers (the table above)."""
    request = response.request
    assert request is not None
    components = [Component("@status", {})]
    if response.field_lines(b"content-type"):
        components.append(Component("content-type", {}))
    if response.field_lines(b"content-digest"):
        components.append(Component("content-digest", {}))
    components += [Component("@method", {"req": True}), Component("@target-uri", {"req": True})]
    if request.field_lines(b"content-digest"):
        components.append(Component("content-digest", {"req": True}))
    if request_label is not None:
        components.append(Component("signature", {"req": True, "key": request_label}))
        components.append(Component("signature-input", {"req": True, "key": request_label}))
    return components


def sign_response(
    response: Message,
    *,
    key: SigningKey,
    now: int,
    request_label: str | None,
    label: str = RESPONSE_LABEL,
) -> list[tuple[bytes, bytes]]:
    """The ``Signature-Input`` and ``Signature`` field lines for ``response``.

    :param response: the response, with its ``request`` and its final header fields
        (``content-digest`` included when it has content).
    :param request_label: the label of the request's verified signature, or ``None``.
    :raises HTTPSignatureError: a component that cannot be resolved (a bug or a response
        header that is not ASCII).
    """
    components = response_components(response, request_label=request_label)
    assert key.alg is not None
    params = SignatureParams.build(components, created=now, keyid=key.keyid, tag=RESPONSE_TAG)
    return _fields(label, params, key, signature_base(params, response, in_response=True))


def with_status(request: Message, status: int, headers: tuple[tuple[bytes, bytes], ...]) -> Message:
    """The response :class:`Message` answering ``request``."""
    return replace(request, status=status, headers=headers, request=request)
