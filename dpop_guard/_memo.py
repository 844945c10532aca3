"""Memoised per-request decisions that depend only on the request line and the settings.

The route, its policy, the request target's validity and (under a configured public URL)
the ``htu`` are a pure function of the request line and the (immutable) settings, and the
parse of ``Authorization`` a pure function of its value: a client sends the same few of
each again and again, so both are remembered. The memos are bounded: a
client sending endless new paths only makes them start over (``dict.clear`` every
``maxsize`` new keys), which costs it the computation it would cost without a memo.
Refusals are never remembered (they are raised afresh each time, so each carries its own
traceback), and nothing request-specific beyond the key is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from starlette.types import Scope

from ._authorization import AuthorizationHeader, parse_authorization
from ._binding import Policy
from ._target import public_target, request_target_path
from .errors import InvalidRequest
from .routes import Route, has_control_characters, has_dot_segments, route_for, route_path

__all__ = ["Authorizations", "RequestShapes", "Shape"]

MEMO_SIZE: Final = 1024


@dataclass(frozen=True, slots=True)
class Shape:
    """What the request line decides, before any header is read: a pure function of the
    scope's ``type``, ``method``, ``path``, ``root_path`` and ``raw_path`` and of the
    (immutable) settings. (A slotted dataclass: built once per distinct request line and
    read on every request; see :class:`~dpop_guard._authorization.AuthorizationHeader`.)"""

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


class RequestShapes(dict[ShapeKey, Shape]):
    """:class:`Shape` per request line, remembered: one lookup where the route, the
    request target and the ``htu`` each had a memo of their own (part of the first step
    of the shell pass in ``benchmarks/README.md``). A dict whose ``__missing__`` decides:
    the middleware reads ``shapes[key]`` with the key of :meth:`key_of` built inline, a
    lookup in C with no Python frame on a hit (about 470 instructions per request fewer
    than a method). A client sending endless new request lines only makes the memo start
    over (``dict.clear`` every ``maxsize`` new keys), which costs it what it would cost
    without a memo. Refusals are never remembered: they are raised afresh.

    :param routes: the path rules, in order (the first match wins).
    :param policy_of: the precomputed policy of a rule (``None``: no rule matched).
    :param public_url: the configured public URL, or ``None``.
    :param serves_metadata: whether ``(path, method)`` asks for the RFC 9728 document.
    :param maxsize: shapes remembered before the memo starts over.
    """

    __slots__ = ("_policy_of", "_public_url", "_routes", "_serves_metadata", "maxsize")

    def __init__(
        self,
        routes: tuple[Route, ...],
        policy_of: Callable[[Route | None], Policy],
        *,
        public_url: str | None = None,
        serves_metadata: Callable[[str, str], bool] | None = None,
        maxsize: int = MEMO_SIZE,
    ) -> None:
        super().__init__()
        self._routes = routes
        self._policy_of = policy_of
        self._public_url = public_url
        self._serves_metadata = serves_metadata
        self.maxsize = maxsize

    @staticmethod
    def key_of(scope: Scope, method: str, websocket: bool) -> ShapeKey:
        """The memo key of a request: everything its shape depends on."""
        return (scope["path"], scope.get("root_path", ""), method, scope.get("raw_path"), websocket)

    def shape_of(self, scope: Scope, method: str, websocket: bool) -> Shape:
        """The shape of this request line.

        :raises InvalidRequest: ``path_control_character`` (routers differ on these:
            ``$`` matches before a trailing ``\\n``, so no rule can be trusted to cover
            them and nobody is served) or ``request_target_invalid``
            (:func:`~dpop_guard._target.request_target_path`).
        """
        return self[self.key_of(scope, method, websocket)]

    def __missing__(self, key: ShapeKey) -> Shape:
        path, root, method, raw, websocket = key
        scope = {"path": path, "root_path": root, "raw_path": raw}
        shape = self._decide(scope, root, method, websocket)
        if len(self) >= self.maxsize:
            self.clear()
        self[key] = shape
        return shape

    def _decide(self, scope: Scope, root: str, method: str, websocket: bool) -> Shape:
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
        htu = None if public_url is None else public_target(public_url, root, target)
        return Shape(path, "protected", route, self._policy_of(route), target, htu)


class Authorizations(dict[bytes, AuthorizationHeader]):
    """:func:`~dpop_guard._authorization.parse_authorization` of one ``Authorization``
    value, remembered per raw value: a client presents the same token on every request,
    and the parse is a pure function of the value and ``max_token_bytes`` (about 7,000
    instructions per request saved; ``benchmarks/README.md``). A dict whose
    ``__missing__`` parses: the middleware reads ``authorizations[value]`` for a request's
    one value (a lookup in C, about 370 instructions fewer than a method) and calls
    :meth:`parse` otherwise. Refusals are raised afresh and never remembered.

    :param max_token_bytes: the token length bound, as ``parse_authorization`` takes it.
    :param maxsize: values remembered before the memo starts over.
    """

    __slots__ = ("max_token_bytes", "maxsize")

    def __init__(self, max_token_bytes: int, maxsize: int = MEMO_SIZE) -> None:
        super().__init__()
        self.max_token_bytes = max_token_bytes
        self.maxsize = maxsize

    def parse(self, values: list[bytes]) -> AuthorizationHeader:
        """The parsed header of a request's ``Authorization`` values (raw bytes).

        :raises DPoPGuardError: as ``parse_authorization``.
        """
        if len(values) == 1:
            return self[values[0]]
        # None or several: refused (parse_authorization raises; nothing is remembered).
        return parse_authorization(
            [v.decode("latin-1") for v in values], max_token_bytes=self.max_token_bytes
        )

    def __missing__(self, value: bytes) -> AuthorizationHeader:
        header = parse_authorization(
            [value.decode("latin-1")], max_token_bytes=self.max_token_bytes
        )
        if len(self) >= self.maxsize:
            self.clear()
        self[value] = header
        return header
