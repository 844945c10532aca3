"""Errors to HTTP: status, ``WWW-Authenticate`` (RFC 9449 section 7.1, RFC 6750 section 3),
``DPoP-Nonce``, ``Cache-Control: no-store`` and a small JSON body. The only place that
maps an error to the wire: the middleware, :func:`~dpop_guard.starlette.requires_dpop` and
:class:`~dpop_guard.fastapi.DPoPSecurity` all answer with :func:`challenge_for`'s response,
so a client sees one shape wherever a request is refused.

The body is always ``{"error": ..., "error_description": ...}`` (:data:`ERROR_BODY_SCHEMA`).
Its ``error`` is the challenge's, except where the challenge may not carry one:

- no credentials at all: RFC 6750 section 3.1 says the challenge then carries no error
  code, so the ``WWW-Authenticate`` has only ``algs`` (and ``realm``), and the body says
  ``authentication_required``, a code of this API's own (not one of RFC 6750's, which
  would tell the client its request or token was wrong: none was sent);
- an outage (503): no challenge at all, since the client did nothing wrong, and the body
  says ``temporarily_unavailable`` (RFC 6749's word for it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .errors import (
    DPoPGuardError,
    InsufficientScope,
    InsufficientUserAuthentication,
    InvalidDPoPProof,
    ServiceUnavailable,
    UseDPoPNonce,
)

__all__ = [
    "AUTHENTICATION_REQUIRED",
    "BEARER_SCHEME",
    "DPOP_NONCE_HEADER",
    "DPOP_SCHEME",
    "ERROR_BODY_SCHEMA",
    "TEMPORARILY_UNAVAILABLE",
    "ErrorResponse",
    "build_challenge",
    "challenge_for",
    "parse_challenge",
]

DPOP_SCHEME = "DPoP"
BEARER_SCHEME = "Bearer"
DPOP_NONCE_HEADER = "DPoP-Nonce"

AUTHENTICATION_REQUIRED = "authentication_required"
"""The body's ``error`` when no credentials were sent (the challenge has none)."""
TEMPORARILY_UNAVAILABLE = "temporarily_unavailable"
"""The body's ``error`` on a 503 (there is no challenge)."""

ERROR_BODY_SCHEMA: dict[str, object] = {
    "title": "DPoPError",
    "type": "object",
    "properties": {
        "error": {
            "type": "string",
            "description": "The challenge's error code (RFC 6750, RFC 9449, RFC 9470), or "
            f"{AUTHENTICATION_REQUIRED} when no credentials were sent, or "
            f"{TEMPORARILY_UNAVAILABLE} on a 503.",
            "examples": ["invalid_token", "invalid_dpop_proof", "insufficient_scope"],
        },
        "error_description": {"type": "string"},
    },
    "required": ["error", "error_description"],
    "additionalProperties": False,
}
"""The JSON Schema of every error body the guard sends (used in OpenAPI)."""

# Anything but printable ASCII is replaced, so an upstream description can never split a
# header (CR/LF) or fail latin-1 encoding.
_UNSAFE = re.compile(r"[^\x20-\x7e]")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# Challenge parameters an upstream may contribute; anything else it sends is dropped.
_UPSTREAM_PARAMS = ("error_uri", "scope", "resource_metadata")


def _quote(value: str) -> str:
    value = _UNSAFE.sub("?", value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_challenge(scheme: str, params: Iterable[tuple[str, str]] = ()) -> str:
    """Format one challenge: ``Scheme k1="v1", k2="v2"``. Values are always quoted.

    >>> build_challenge("DPoP", [("error", "invalid_token"), ("algs", "ES256")])
    'DPoP error="invalid_token", algs="ES256"'
    """
    if not _TOKEN.fullmatch(scheme):
        raise ValueError(f"invalid auth-scheme {scheme!r}")
    rendered = []
    for name, value in params:
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"invalid auth-param name {name!r}")
        rendered.append(f"{name}={_quote(value)}")
    return scheme if not rendered else f"{scheme} {', '.join(rendered)}"


# auth-param = token BWS "=" BWS ( token / quoted-string ), RFC 9110 section 11.2.
_PARAM = re.compile(
    r"\s*([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)\s*=\s*"
    r'(?:"((?:[^"\\]|\\.)*)"|([!#$%&\'*+\-.^_`|~0-9A-Za-z]+))\s*(?:,|$)'
)


def parse_challenge(value: str) -> tuple[str, dict[str, str]]:
    """Parse one challenge such as Authlete's ``responseContent``.

    Returns the scheme and its parameters (names lower-cased, first occurrence wins).
    Authlete joins parameters with ``,`` and no space; both spellings are accepted.

    :raises ValueError: if ``value`` is not a single well-formed challenge.
    """
    value = value.strip()
    scheme, _, rest = value.partition(" ")
    if not _TOKEN.fullmatch(scheme):
        raise ValueError("no auth-scheme")
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        match = _PARAM.match(rest, pos)
        if match is None or match.end() == pos:
            raise ValueError("malformed auth-param")
        name = match.group(1).lower()
        raw = match.group(2)
        text = re.sub(r"\\(.)", r"\1", raw) if raw is not None else match.group(3)
        params.setdefault(name, text)
        pos = match.end()
    return scheme, params


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """A complete error answer: ASGI-ready status, headers and body."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


def challenge_for(
    exc: DPoPGuardError,
    *,
    algs: Sequence[str],
    realm: str | None = None,
    extra_params: Mapping[str, str] | None = None,
    schemes: Sequence[str] = (DPOP_SCHEME,),
) -> ErrorResponse:
    """Map ``exc`` to its response.

    - 401/400/403: ``WWW-Authenticate: DPoP [realm], error, error_description, [error_uri],
      [scope], algs`` (RFC 9449 section 7.1; ``algs`` lists the accepted algorithms).
      With no credentials at all (:class:`AuthenticationRequired`) the challenge carries
      no ``error`` (RFC 6750 section 3.1).
    - :class:`UseDPoPNonce` adds ``DPoP-Nonce``.
    - :class:`InsufficientUserAuthentication` adds RFC 9470's ``acr_values`` and
      ``max_age`` (where the route states them).
    - ``schemes`` are the challenges to send, one ``WWW-Authenticate`` each: ``DPoP``
      (with ``algs``) and/or ``Bearer`` (RFC 6750, for certificate-bound tokens, RFC 8705).
      A proof or nonce error only ever concerns DPoP, so it is sent as a ``DPoP``
      challenge alone, whatever ``schemes`` says.
    - :class:`ServiceUnavailable`: 503, ``Retry-After``, and no challenge, since the client
      did nothing wrong.

    Every response carries ``Cache-Control: no-store``. The body is
    ``{"error": ..., "error_description": ...}``: the challenge's code, or
    :data:`AUTHENTICATION_REQUIRED` without credentials, or :data:`TEMPORARILY_UNAVAILABLE`
    on a 503 (see the module's docstring); it never holds a token or a claim.
    """
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"cache-control", b"no-store"),
        (b"pragma", b"no-cache"),
    ]
    if isinstance(exc, ServiceUnavailable):
        headers.append((b"retry-after", str(exc.retry_after).encode()))
        return _response(exc.status, headers, TEMPORARILY_UNAVAILABLE, exc.description)

    params: list[tuple[str, str]] = []
    if realm is not None:
        params.append(("realm", realm))
    if exc.error is not None:
        params.append(("error", exc.error))
        params.append(("error_description", exc.description))
    upstream = dict(exc.challenge_params)
    if isinstance(exc, InsufficientScope):
        upstream["scope"] = exc.scope
    if extra_params:
        upstream.update(extra_params)
    params.extend((name, upstream[name]) for name in _UPSTREAM_PARAMS if name in upstream)
    if isinstance(exc, InsufficientUserAuthentication):
        if exc.acr_values:
            params.append(("acr_values", " ".join(exc.acr_values)))
        if exc.max_age is not None:
            params.append(("max_age", str(exc.max_age)))
    if isinstance(exc, (InvalidDPoPProof, UseDPoPNonce)) or not schemes:
        schemes = (DPOP_SCHEME,)
    for scheme in schemes:
        own = [*params, ("algs", " ".join(algs))] if scheme == DPOP_SCHEME else params
        headers.append((b"www-authenticate", build_challenge(scheme, own).encode("latin-1")))
    if isinstance(exc, UseDPoPNonce):
        headers.append((DPOP_NONCE_HEADER.lower().encode(), exc.nonce.encode("ascii")))
    return _response(exc.status, headers, exc.error or AUTHENTICATION_REQUIRED, exc.description)


def _response(
    status: int, headers: list[tuple[bytes, bytes]], error: str, description: str
) -> ErrorResponse:
    body = json.dumps({"error": error, "error_description": description})
    return ErrorResponse(status, tuple(headers), body.encode())
