"""Memoised per-request decisions that depend only on the request line and the settings.

Rules that live here:

- **What a memo may hold: bounded in bytes.** Everything a client can put into a memo
  is bounded by its size in bytes, not by a count of entries: an input over
  :data:`MAX_REMEMBERED` characters is decided afresh on every request and never
  remembered, and a memo that holds more than :data:`MEMO_BUDGET` bytes (estimated from
  the sizes of the strings it keeps, an upper bound) starts over (``dict.clear``). A
  client sending endless new values only makes it start over, which costs it the
  computation it would cost without a memo. Worst case per worker: two memos of
  :data:`MEMO_BUDGET` each (request shapes, ``Authorization`` values), about 2 MiB in all
  (measured by ``tests/test_memo.py::test_retained_memory_after_a_flood``).
- **Refusals are never remembered**: they are raised afresh each time, so each carries
  its own traceback; nothing request-specific beyond the key is kept.

The route, its policy, the request target's validity and (under a configured public URL)
the ``htu`` are a pure function of the request line and the (immutable) settings; the
parse of ``Authorization`` a pure function of its value. A client sends the same few of
each again and again, so both are remembered.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from starlette.types import Scope

from ._authorization import AuthorizationHeader, parse_authorization
from ._binding import Policy
from ._bounded import ENTRY_OVERHEAD, MAX_REMEMBERED, MEMO_BUDGET, Memo
from ._target import public_target, request_target_path
from .errors import InvalidRequest
from .routes import Route, has_control_characters, has_dot_segments, route_for, route_path

__all__ = [
    "ENTRY_OVERHEAD",
    "MAX_REMEMBERED",
    "MEMO_BUDGET",
    "Authorizations",
    "Memo",
    "RequestShapes",
    "Shape",
]


@dataclass(frozen=True, slots=True)
class Shape:
    """What the request line decides, before any header is read: a pure function of the
    scope's ``type``, ``method``, ``path``, ``root_path`` and ``raw_path`` and of the
    (immutable) settings."""

    path: str
    """The routed path (relative to ``root_path``, decoded), as the router sees it."""
    kind: Literal["metadata", "public", "protected"]
    """``metadata``: the RFC 9728 document is answered; ``public``: passed through
    untouched; ``protected``: authenticated against :attr:`policy`."""
    route: Route | None
    """The matched rule (``None``: no rule matched, or a public rule's dot-segment path)."""
    policy: Policy | None
    """The route's precomputed policy, for a protected request."""
    target: str | None
    """The request target's path, still percent-encoded, query removed (protected only)."""
    htu: str | None
    """The URL proofs are checked against when it does not depend on the headers (a
    configured public URL); ``None``: compose it per request from ``Host`` and the
    trusted proxies' headers."""


ShapeKey = tuple[str, str, str, "bytes | None", bool]
"""What a :class:`Shape` depends on: ``(path, root_path, method, raw_path, websocket)``."""


class RequestShapes:
    """:class:`Shape` per request line, remembered (:class:`Memo`).

    :param routes: the path rules, in order (the first match wins).
    :param policy_of: the precomputed policy of a rule (``None``: no rule matched).
    :param public_url: the configured public URL, or ``None``.
    :param serves_metadata: whether ``(path, method)`` asks for the RFC 9728 document.
    :param budget: bytes remembered at most.
    """

    __slots__ = ("_memo", "_policy_of", "_public_url", "_routes", "_serves_metadata")

    def __init__(
        self,
        routes: tuple[Route, ...],
        policy_of: Callable[[Route | None], Policy],
        *,
        public_url: str | None = None,
        serves_metadata: Callable[[str, str], bool] | None = None,
        budget: int = MEMO_BUDGET,
    ) -> None:
        self._routes = routes
        self._policy_of = policy_of
        self._public_url = public_url
        self._serves_metadata = serves_metadata
        self._memo: Memo[ShapeKey, Shape] = Memo(self._decide_key, _shape_cost, budget=budget)

    def __len__(self) -> int:
        return len(self._memo)

    def shape(self, scope: Scope, method: str, websocket: bool) -> Shape:
        """The shape of this request line.

        :raises InvalidRequest: ``path_control_character`` (routers differ on these:
            ``$`` matches before a trailing ``\\n``, so no rule can be trusted to cover
            them and nobody is served) or ``request_target_invalid``
            (:func:`~dpop_guard._target.request_target_path`).
        """
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        raw: bytes | None = scope.get("raw_path")
        key = (path, root, method, raw, websocket)
        shape = self._memo.get(key)
        if shape is None:
            shape = self._memo.remember(key, len(path) + len(root) + (len(raw) if raw else 0))
        return shape

    def _decide_key(self, key: ShapeKey) -> Shape:
        path, root, method, raw, websocket = key
        return self.decide({"path": path, "root_path": root, "raw_path": raw}, method, websocket)

    def decide(self, scope: Scope, method: str, websocket: bool) -> Shape:
        """The shape of this request line, decided afresh (what :meth:`shape` remembers).

        :raises InvalidRequest: as :meth:`shape`.
        """
        path = route_path(scope)
        serves = self._serves_metadata
        if not websocket and serves is not None and serves(path, method):
            return Shape(path, "metadata", None, None, None, None)
        if has_control_characters(path):
            raise InvalidRequest("path_control_character", "The request path is not valid.")
        route = route_for(self._routes, path, method)
        # "#" or control characters in the target: 400, whatever the rules say.
        target = request_target_path(scope)
        if route is not None and route.public:
            # "/public/../private" must not ride on a public prefix into an app (or a
            # framework) that resolves dot segments after us: protect it.
            if not has_dot_segments(path):
                return Shape(path, "public", route, None, None, None)
            route = None
        public_url = self._public_url
        root = scope.get("root_path", "")
        htu = None if public_url is None else public_target(public_url, root, target)
        return Shape(path, "protected", route, self._policy_of(route), target, htu)


class Authorizations:
    """:func:`~dpop_guard._authorization.parse_authorization` of one ``Authorization``
    value, remembered per raw value (:class:`Memo`): a client presents the same token on
    every request, and the parse is a pure function of the value and ``max_token_bytes``.

    :param max_token_bytes: the token length bound, as ``parse_authorization`` takes it.
    :param budget: bytes remembered at most.
    """

    __slots__ = ("_memo", "max_token_bytes")

    def __init__(self, max_token_bytes: int, budget: int = MEMO_BUDGET) -> None:
        self.max_token_bytes = max_token_bytes
        self._memo: Memo[bytes, AuthorizationHeader] = Memo(
            self._parse_one, _authorization_cost, budget=budget
        )

    def __len__(self) -> int:
        return len(self._memo)

    def header(self, value: bytes, count: int) -> AuthorizationHeader:
        """The parsed header of a request that sent ``count`` ``Authorization`` values,
        the last of them ``value`` (raw bytes).

        :raises DPoPGuardError: as ``parse_authorization`` (none or several values are
            refused by their number alone).
        """
        if count == 1:
            return self._memo.get(value) or self._memo.remember(value, len(value))
        return parse_authorization(
            [value.decode("latin-1")] * count, max_token_bytes=self.max_token_bytes
        )

    def _parse_one(self, value: bytes) -> AuthorizationHeader:
        return parse_authorization([value.decode("latin-1")], max_token_bytes=self.max_token_bytes)


def _shape_cost(key: ShapeKey, shape: Shape) -> int:
    path, root, _, raw, _ = key
    kept = (path, root, raw, shape.path, shape.target, shape.htu)
    return sum(sys.getsizeof(part) for part in kept if part)


def _authorization_cost(value: bytes, header: AuthorizationHeader) -> int:
    return sys.getsizeof(value) + sys.getsizeof(header.token)
