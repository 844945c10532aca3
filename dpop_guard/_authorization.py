"""The ``Authorization`` header (RFC 9449 section 7.1, RFC 6750 section 2.1)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .errors import AuthenticationRequired, InvalidRequest, InvalidToken

# token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="  (RFC 9110 11.2)
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


@dataclass(frozen=True, slots=True)
class AuthorizationHeader:
    """The access token and the scheme it came with. (A slotted dataclass: it is built
    once per distinct header value and remembered (``_memo.Authorizations``), and read on
    every request; with :class:`~dpop_guard._memo.Shape`, about 1,400 instructions per hit
    fewer than as named tuples, ``benchmarks/README.md``.)"""

    scheme: Literal["DPoP", "Bearer"]
    token: str


def parse_authorization(values: Sequence[str], *, max_token_bytes: int) -> AuthorizationHeader:
    """Parse the ``Authorization`` header values of one request.

    The scheme is case-insensitive (RFC 9110 section 11.1); exactly one space-separated
    token68 must follow.

    :raises AuthenticationRequired: no header, or a scheme other than DPoP or Bearer.
    :raises InvalidRequest: more than one ``Authorization`` header.
    :raises InvalidToken: the token is missing, too long, or not token68.
    """
    if not values:
        raise AuthenticationRequired("authorization_missing")
    if len(values) > 1:
        raise InvalidRequest(
            "authorization_multiple", "Exactly one Authorization header is allowed."
        )
    value = values[0].strip(" \t")
    scheme, _, token = value.partition(" ")
    folded = scheme.lower()
    if folded == "dpop":
        canonical: Literal["DPoP", "Bearer"] = "DPoP"
    elif folded == "bearer":
        canonical = "Bearer"
    else:
        raise AuthenticationRequired("authorization_scheme_unsupported")
    token = token.lstrip(" ")
    if not token:
        raise InvalidToken("token_missing", "The access token is missing.")
    if len(token) > max_token_bytes:
        raise InvalidToken("token_too_long", "The access token is malformed.")
    if not _TOKEN68.fullmatch(token):
        raise InvalidToken("token_malformed", "The access token is malformed.")
    return AuthorizationHeader(canonical, token)
