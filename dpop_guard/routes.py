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
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from starlette.types import Scope

__all__ = ["Route", "has_control_characters", "has_dot_segments", "route_for", "route_path"]

_PLACEHOLDER: Final = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")
# C0 controls, DEL and C1 controls: no router should see them, and a permissive regex
# (a trailing "\n" before "$") would route them where a rule does not look.
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _method(value: str) -> str:
    """The method as rules compare it: upper case, ``HEAD`` folded into ``GET``."""
    upper = value.upper()
    return "GET" if upper == "HEAD" else upper


@dataclass(frozen=True, slots=True)
class Route:
    """A path rule. ``pattern`` is a path with ``{name}`` segments and an optional
    trailing ``*`` (any remainder). The first matching rule wins; paths that match no rule
    are protected with no scope requirement (fail closed).

    ``methods`` are compared case-insensitively, and a rule listing ``GET`` also covers
    ``HEAD``.

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
        """True if this rule covers ``method path`` (method case-insensitive, ``HEAD`` as
        ``GET``)."""
        if self._methods is not None and _method(method) not in self._methods:
            return False
        return self.regex.fullmatch(path) is not None


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
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if not root or not path.startswith(root):
        return path
    if path == root:
        return "/"
    if path[len(root)] == "/":
        return path[len(root) :]
    return path
