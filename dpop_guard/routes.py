"""Path rules: which requests are public, which scopes and nonces a protected one needs.

Rules are a second layer. Scopes are best decided where dispatch happens (the endpoint:
:func:`dpop_guard.starlette.requires_dpop` or :class:`dpop_guard.fastapi.DPoPSecurity`),
because a second copy of the router can disagree with the real one. Where rules are used,
they are at least as broad as the routers they front:

- the method is compared case-insensitively, and ``HEAD`` matches a rule that lists ``GET``
  (Starlette and FastAPI serve ``HEAD`` with the ``GET`` handler);
- a decoded path holding a control character is refused before any rule is tried
  (Starlette's ``$`` accepts a trailing ``\\n``, so ``/accounts%0A`` reaches ``/accounts``);
- a path with dot segments never rides on a public rule;
- a path that matches no rule is protected (fail closed).

The per-route policy, all in :class:`Route`, validated when the rule is made (and, for
``sender_constraint``, when the middleware is built)::

    field              default  meaning
    -----------------  -------  ------------------------------------------------------------
    pattern            (req.)   path, ``{name}`` segments, optional trailing ``*``
    methods            None     the methods covered (``GET`` covers ``HEAD``); None: all
    public             False    no authentication at all (no dot segments ride on it)
    scopes             ()       all required; else 403 ``insufficient_scope``
    acr_values         ()       the token's ``acr`` must be one of them (RFC 9470); else 401
                                ``insufficient_user_authentication`` with ``acr_values``
    max_age            None     the user authenticated at most this many seconds ago
                                (0..10 years); unknown ``auth_time`` fails
    nonce              None     require a server nonce here; None follows
                                ``GuardSettings.nonce``
    sender_constraint  "dpop"   ``dpop``: DPoP-bound tokens on the DPoP scheme; ``mtls``:
                                certificate-bound (RFC 8705), ``Bearer`` accepted; ``either``:
                                one of the two. mtls/either need a ``certificate_source``.

Scopes and step-up can also be stated at the endpoint
(:func:`dpop_guard.starlette.requires_dpop`, :class:`dpop_guard.fastapi.DPoPSecurity`),
checked from ``request.auth``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

from ._asgi import Scope

__all__ = [
    "MAX_MAX_AGE",
    "PUBLIC_MARK",
    "SENDER_CONSTRAINTS",
    "Route",
    "SenderConstraint",
    "check_acr_values",
    "check_max_age",
    "has_control_characters",
    "has_dot_segments",
    "route_for",
    "route_path",
    "strip_root",
]

PUBLIC_MARK: Final = "__dpop_guard_public__"
"""The attribute :func:`dpop_guard.starlette.public` sets on an endpoint that a framework's
router serves publicly (``guard.install`` learns such paths: :mod:`dpop_guard._install`)."""

SenderConstraint = Literal["dpop", "mtls", "either"]
"""How a route's tokens must be sender-constrained: by DPoP (RFC 9449), by a client
certificate (RFC 8705) or by either."""
SENDER_CONSTRAINTS: Final = ("dpop", "mtls", "either")
#: The largest ``max_age`` a route may state: ten years of seconds. Anything larger is a
#: typo, and keeping it bounded keeps the challenge parameter and the arithmetic small.
MAX_MAX_AGE: Final = 10 * 365 * 24 * 3600
# An acr value is an RFC 6749 NQCHAR-free token: printable ASCII without space, quote or
# backslash, so that it survives a space-separated list and a quoted challenge parameter.
_ACR: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,255}")

_PLACEHOLDER: Final = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")
# C0 controls, DEL and C1 controls: no router should see them, and a permissive regex
# (a trailing "\n" before "$") would route them where a rule does not look.
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _method(value: str) -> str:
    """A method as a rule lists it: upper case, ``HEAD`` folded into ``GET``."""
    upper = value.upper()
    return "GET" if upper == "HEAD" else upper


@dataclass(frozen=True, slots=True)
class Route:
    """A path rule. ``pattern`` is a path with ``{name}`` segments and an optional
    trailing ``*`` (any remainder). The first matching rule wins; paths that match no rule
    are protected with no scope requirement (fail closed).

    A rule listing ``GET`` also covers ``HEAD``. A protected rule compares the request's
    method case-insensitively (it protects every spelling); a public rule compares it
    exactly, upper case (RFC 9110 methods are case-sensitive, and a router dispatches
    ``get`` elsewhere than ``GET``: a public rule opens only the methods it names).

    >>> rule = Route("/accounts/{account_id}/transactions", scopes=("read:transactions",))
    >>> rule.matches("/accounts/42/transactions", "head"), rule.matches("/accounts/42", "GET")
    (True, False)
    """

    pattern: str
    scopes: tuple[str, ...] = ()
    public: bool = False
    methods: tuple[str, ...] | None = None
    nonce: bool | None = None
    """Require a server nonce on this route; ``None`` follows ``GuardSettings.nonce``."""
    acr_values: tuple[str, ...] = ()
    """Step-up (RFC 9470): the token's ``acr`` must be one of these (empty: any)."""
    max_age: int | None = None
    """Step-up (RFC 9470): the user must have authenticated at most this many seconds ago."""
    sender_constraint: SenderConstraint = "dpop"
    """``dpop`` (default), ``mtls`` (RFC 8705 certificate-bound) or ``either``."""
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _methods: frozenset[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.pattern.startswith("/"):
            raise ValueError(f"Route pattern must start with '/': {self.pattern!r}")
        if _CONTROL.search(self.pattern):
            raise ValueError(f"Route pattern holds a control character: {self.pattern!r}")
        if isinstance(self.scopes, str):
            raise ValueError("Route scopes must be a sequence of scope names, not one string")
        object.__setattr__(self, "scopes", tuple(self.scopes))
        for scope in self.scopes:
            if not scope or " " in scope:
                raise ValueError(f"invalid scope name {scope!r}")
        object.__setattr__(self, "acr_values", check_acr_values(self.acr_values))
        check_max_age(self.max_age)
        if self.sender_constraint not in SENDER_CONSTRAINTS:
            raise ValueError(
                f"sender_constraint must be one of {', '.join(SENDER_CONSTRAINTS)}, "
                f"got {self.sender_constraint!r}"
            )
        if self.public and (self.acr_values or self.max_age is not None):
            raise ValueError(f"a public route cannot require step-up: {self.pattern!r}")
        pattern = self.pattern
        prefix = pattern.endswith("*")
        if prefix:
            pattern = pattern[:-1]
        parts: list[str] = []
        pos = 0
        for match in _PLACEHOLDER.finditer(pattern):
            parts.append(re.escape(pattern[pos : match.start()]))
            parts.append("[^/]+")
            pos = match.end()
        parts.append(re.escape(pattern[pos:]))
        source = "".join(parts) + (".*" if prefix else "")
        object.__setattr__(self, "regex", re.compile(source, re.DOTALL))
        if self.methods is None:
            object.__setattr__(self, "_methods", None)
        else:
            if isinstance(self.methods, str):
                raise ValueError("Route methods must be a sequence of methods, not one string")
            methods = tuple(m.upper() for m in self.methods)
            object.__setattr__(self, "methods", methods)
            object.__setattr__(self, "_methods", frozenset(_method(m) for m in methods))

    def matches(self, path: str, method: str) -> bool:
        """True if this rule covers ``method path`` (``HEAD`` as ``GET``; the method
        compared case-insensitively by a protected rule, exactly by a public one)."""
        if self._methods is not None:
            if self.public:
                method = "GET" if method == "HEAD" else method
            else:
                method = _method(method)
            if method not in self._methods:
                return False
        return self.regex.fullmatch(path) is not None


def check_acr_values(values: Iterable[str]) -> tuple[str, ...]:
    """``values`` as a tuple, each an acr token (printable ASCII, no space, quote or
    backslash, at most 255 characters), with no duplicates.

    :raises ValueError: one string instead of a sequence, or a value that is not a token.
    """
    if isinstance(values, str):
        raise ValueError("acr_values must be a sequence of acr values, not one string")
    result = tuple(values)
    for value in result:
        if not isinstance(value, str) or not _ACR.fullmatch(value):
            raise ValueError(f"invalid acr value {value!r}")
    if len(set(result)) != len(result):
        raise ValueError("acr_values holds a duplicate")
    return result


def check_max_age(value: int | None) -> None:
    """:raises ValueError: ``value`` is not ``None`` or an int in ``0..MAX_MAX_AGE``."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"max_age must be an int number of seconds, got {value!r}")
    if not 0 <= value <= MAX_MAX_AGE:
        raise ValueError(f"max_age must be between 0 and {MAX_MAX_AGE}, got {value!r}")


def route_for(routes: Iterable[Route], path: str, method: str) -> Route | None:
    """The first rule matching ``method path``, or ``None`` (protected, no scopes)."""
    for route in routes:
        if route.matches(path, method):
            return route
    return None


def has_control_characters(value: str) -> bool:
    """Whether ``value`` holds a C0 or C1 control character or DEL."""
    return _CONTROL.search(value) is not None


def has_dot_segments(path: str) -> bool:
    """Whether ``path`` has a ``.`` or ``..`` segment."""
    return "/." in path and any(seg in (".", "..") for seg in path.split("/"))


def route_path(scope: Scope) -> str:
    """The decoded path relative to the app's mount point, as Starlette's router sees it
    (``root_path`` is stripped only at a segment boundary)."""
    return strip_root(scope["path"], scope.get("root_path", "")) or "/"


def strip_root(path: str, root: str) -> str:
    """``path`` relative to the mount point ``root``, cut only at a segment boundary:
    ``/v1/accounts`` under ``/v1`` is ``/accounts``, ``/v1`` is ``""``, and ``/v1x/accounts``
    is not under ``/v1`` (returned unchanged). One rule for the router's view of the path
    (:func:`route_path`) and the ``htu`` (:func:`dpop_guard._target.target_url`): a cut in
    the middle of a segment would make them disagree, or move the path into the host.

    :param path: a path (decoded or percent-encoded; ``root`` in the same form).
    :param root: the ASGI ``root_path`` (no trailing ``/``), or ``""``.
    """
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :]
    return path
