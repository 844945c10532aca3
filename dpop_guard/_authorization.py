"""The ``Authorization`` header (RFC 9449 section 7.1, RFC 6750 section 2.1).

Rules that live here: the scheme is ``DPoP`` or ``Bearer`` (case-insensitive); one or more
spaces separate it from exactly one token68 (``1*SP``, RFC 9110 section 11.4); a value
longer than the longest that could hold a token within ``max_token_bytes`` is refused
before any other work (so a value of 60,000 spaces costs a length check, and nothing of it
is kept).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .errors import AuthenticationRequired, InvalidRequest, InvalidToken

# token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="  (RFC 9110 11.2)
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# "Bearer " and optional whitespace the server left around the value: a longer value
# cannot hold a token within the limit.
_LONGEST_PREFIX = len("Bearer ") + 2


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

    The scheme is case-insensitive (RFC 9110 section 11.1); one or more spaces, then
    exactly one token68, must follow.

    :raises AuthenticationRequired: no header, or a scheme other than DPoP or Bearer.
    :raises InvalidRequest: more than one ``Authorization`` header.
    :raises InvalidToken: the token is missing, too long (``token_too_long``, the value
        as a whole too, before it is looked at), or not token68 (``token_malformed``).
    """
    if not values:
        raise AuthenticationRequired("authorization_missing")
    if len(values) > 1:
        raise InvalidRequest(
            "authorization_multiple", "Exactly one Authorization header is allowed."
        )
    value = values[0]
    if len(value) > max_token_bytes + _LONGEST_PREFIX:
        raise InvalidToken("token_too_long", "The access token is malformed.")
    value = value.strip(" \t")
    scheme, _, token = value.partition(" ")
    token = token.lstrip(" ")  # credentials = auth-scheme 1*SP token68
    folded = scheme.lower()
    if folded == "dpop":
        canonical: Literal["DPoP", "Bearer"] = "DPoP"
    elif folded == "bearer":
        canonical = "Bearer"
    else:
        raise AuthenticationRequired("authorization_scheme_unsupported")
    if not token:
        raise InvalidToken("token_missing", "The access token is missing.")
    if len(token) > max_token_bytes:
        raise InvalidToken("token_too_long", "The access token is malformed.")
    if not _TOKEN68.fullmatch(token):
        raise InvalidToken("token_malformed", "The access token is malformed.")
    return AuthorizationHeader(canonical, token)
