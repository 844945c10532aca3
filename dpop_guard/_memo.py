"""Memoised per-request decisions that depend only on the request line and the settings.

A route decision is a pure function of ``(path, method)`` and the (immutable) route
rules, and the request target's validity a pure function of ``raw_path``: a client sends
the same few of each again and again, so both are remembered. The memos are bounded: a
client sending endless new paths only makes them start over (``dict.clear`` every
``maxsize`` new keys), which costs it the computation it would cost without a memo.
Refusals are never remembered (they are raised afresh each time, so each carries its own
traceback), and nothing request-specific beyond the key is kept.
"""

from __future__ import annotations

from typing import Final

from starlette.types import Scope

from ._authorization import AuthorizationHeader, parse_authorization
from ._target import request_target_path
from .errors import InvalidRequest
from .routes import Route, has_control_characters, has_dot_segments, route_for

__all__ = ["PUBLIC", "Authorizations", "Public", "RouteDecisions", "TargetPaths"]

MEMO_SIZE: Final = 1024


class Public:
    """The decision "a public route: pass the request through untouched"."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PUBLIC"


PUBLIC: Final = Public()


class RouteDecisions:
    """What the rules decide for ``method path``: :data:`PUBLIC`, or the :class:`Route`
    (``None``: no rule matched) a protected request is checked against.

    :param routes: the path rules, in order (the first match wins).
    :param maxsize: decisions remembered before the memo starts over.
    """

    __slots__ = ("_memo", "_routes", "maxsize")

    def __init__(self, routes: tuple[Route, ...], maxsize: int = MEMO_SIZE) -> None:
        self._routes = routes
        self._memo: dict[tuple[str, str], Route | Public | None] = {}
        self.maxsize = maxsize

    def decide(self, path: str, method: str) -> Route | Public | None:
        """The decision for ``method path`` (``path`` as the router sees it).

        :raises InvalidRequest: ``path_control_character``: routers differ on these
            (``$`` matches before a trailing ``\\n``), so no rule can be trusted to
            cover them and nobody is served.
        """
        key = (path, method)
        memo = self._memo
        if key in memo:
            return memo[key]
        if has_control_characters(path):
            raise InvalidRequest("path_control_character", "The request path is not valid.")
        route = route_for(self._routes, path, method)
        decision: Route | Public | None = route
        if route is not None and route.public:
            # "/public/../private" must not ride on a public prefix into an app (or a
            # framework) that resolves dot segments after us: protect it.
            decision = None if has_dot_segments(path) else PUBLIC
        if len(memo) >= self.maxsize:
            memo.clear()
        memo[key] = decision
        return decision


class TargetPaths:
    """:func:`~dpop_guard._target.request_target_path`, remembered per ``raw_path``.

    :param maxsize: paths remembered before the memo starts over.
    """

    __slots__ = ("_memo", "maxsize")

    def __init__(self, maxsize: int = MEMO_SIZE) -> None:
        self._memo: dict[bytes, str] = {}
        self.maxsize = maxsize

    def path(self, scope: Scope) -> str:
        """The request target's path, still percent-encoded, query removed.

        :raises InvalidRequest: ``request_target_invalid``, as ``request_target_path``.
        """
        raw: bytes | None = scope.get("raw_path")
        if not raw:
            return request_target_path(scope)  # rare: the server sent no raw_path
        memo = self._memo
        found = memo.get(raw)
        if found is not None:
            return found
        path = request_target_path(scope)
        if len(memo) >= self.maxsize:
            memo.clear()
        memo[raw] = path
        return path


class Authorizations:
    """:func:`~dpop_guard._authorization.parse_authorization` of one ``Authorization``
    value, remembered per raw value: a client presents the same token on every request,
    and the parse is a pure function of the value and ``max_token_bytes`` (about 7,000
    instructions per request saved; ``benchmarks/README.md``). Refusals are raised afresh
    and never remembered.

    :param max_token_bytes: the token length bound, as ``parse_authorization`` takes it.
    :param maxsize: values remembered before the memo starts over.
    """

    __slots__ = ("_memo", "max_token_bytes", "maxsize")

    def __init__(self, max_token_bytes: int, maxsize: int = MEMO_SIZE) -> None:
        self._memo: dict[bytes, AuthorizationHeader] = {}
        self.max_token_bytes = max_token_bytes
        self.maxsize = maxsize

    def parse(self, values: list[bytes]) -> AuthorizationHeader:
        """The parsed header of a request's ``Authorization`` values (raw bytes).

        :raises DPoPGuardError: as ``parse_authorization``.
        """
        if len(values) == 1:
            found = self._memo.get(values[0])
            if found is not None:
                return found
        header = parse_authorization(
            [v.decode("latin-1") for v in values], max_token_bytes=self.max_token_bytes
        )
        memo = self._memo
        if len(memo) >= self.maxsize:
            memo.clear()
        memo[values[0]] = header  # exactly one value, or the parse has refused
        return header
