"""The memoised request shapes (route, policy, target, htu) and Authorization parses: the
same answers as the functions they remember, bounded, and refusals never remembered."""

from __future__ import annotations

from typing import Any, cast

import pytest

from dpop_guard._authorization import parse_authorization
from dpop_guard._binding import policy_for
from dpop_guard._memo import Authorizations, RequestShapes
from dpop_guard._target import request_target_path
from dpop_guard.errors import AuthenticationRequired, InvalidRequest, InvalidToken
from dpop_guard.introspection import Introspector
from dpop_guard.routes import Route, route_for
from dpop_guard.settings import GuardSettings

ROUTES = (
    Route("/health", public=True),
    Route("/public/{rest}", public=True),
    Route("/accounts", scopes=("read:accounts",), methods=("GET",)),
)
CASES = [
    ("/health", "GET"),
    ("/health", "head"),
    ("/public/x", "POST"),
    ("/public/..", "GET"),
    ("/accounts", "GET"),
    ("/accounts", "POST"),
    ("/other", "GET"),
]


def shapes(maxsize: int = 1024, public_url: str | None = None) -> RequestShapes:
    policies = {id(r): policy_for(r, GuardSettings(routes=ROUTES)) for r in ROUTES}
    default = policy_for(None, GuardSettings(routes=ROUTES))
    return RequestShapes(
        ROUTES,
        lambda route: default if route is None else policies[id(route)],
        public_url=public_url,
        serves_metadata=lambda path, method: path == "/.well-known/meta" and method == "GET",
        maxsize=maxsize,
    )


def scope(raw: bytes, root: str = "") -> dict[str, object]:
    path = raw.decode("latin-1").partition("?")[0]
    return {"type": "http", "path": root + path, "root_path": root, "raw_path": root.encode() + raw}


@pytest.mark.parametrize(("path", "method"), CASES)
def test_same_decision_as_route_for(path: str, method: str) -> None:
    """Remembered or not, the decision is route_for's, with public dot-segment paths
    protected (no rule) and other public paths passed."""
    memo = shapes()
    route = route_for(ROUTES, path, method)
    public = route is not None and route.public and "/.." not in path and "/./" not in path
    for _ in range(2):  # computed, then from the memo
        shape = memo.shape_of(scope(path.encode()), method, False)
        assert shape.kind == ("public" if public else "protected")
        assert shape.route is (route if public or route is None or not route.public else None)
        assert (shape.policy is None) == public
        assert shape.path == path


def test_metadata_first_and_never_for_websockets() -> None:
    """The RFC 9728 document is answered before any rule is read; a websocket never gets it."""
    memo = shapes()
    assert memo.shape_of(scope(b"/.well-known/meta"), "GET", False).kind == "metadata"
    assert memo.shape_of(scope(b"/.well-known/meta"), "GET", True).kind == "protected"


def test_control_characters_refused_every_time() -> None:
    """A path with a control character is refused on each request, never remembered."""
    memo = shapes()
    for _ in range(2):
        with pytest.raises(InvalidRequest) as refused:
            memo.shape_of(
                {"type": "http", "path": "/health\n", "raw_path": b"/health%0A"}, "GET", False
            )
        assert refused.value.reason == "path_control_character"
    assert memo == {}


def test_invalid_targets_refused_every_time() -> None:
    """A target with "#" is refused on each request, public rule or not, never remembered."""
    memo = shapes()
    for raw in (b"/accounts#frag", b"/health#x"):
        for _ in range(2):
            with pytest.raises(InvalidRequest) as refused:
                memo.shape_of(scope(raw), "GET", False)
            assert refused.value.reason == "request_target_invalid"
    assert memo == {}


def test_memo_bounded() -> None:
    """Endless new request lines never grow the memo past its size."""
    memo = shapes(maxsize=8)
    for i in range(100):
        memo.shape_of(scope(f"/p{i}?q=1".encode()), "GET", False)
        assert len(memo) <= 8


def test_target_and_htu_under_a_public_url() -> None:
    """The target is request_target_path's (query cut), and under a public URL the htu is
    composed from it, with the mount point cut at a segment boundary."""
    memo = shapes(public_url="https://api.example.com/v2")
    for raw, root, htu in (
        (b"/accounts?x=1", "", "https://api.example.com/v2/accounts"),
        (b"/accounts", "/mnt", "https://api.example.com/v2/accounts"),
        (b"/a%20b", "", "https://api.example.com/v2/a%20b"),
    ):
        shape = memo.shape_of(scope(raw, root), "GET", False)
        assert shape.target == request_target_path(scope(raw, root))
        assert shape.htu == htu
    assert shapes().shape_of(scope(b"/accounts"), "GET", False).htu is None  # from the headers


def test_target_without_raw_path() -> None:
    """A server that sends no raw_path gets the quoted path, as before."""
    shape = shapes().shape_of({"type": "http", "path": "/a b"}, "GET", False)
    assert shape.target == "/a%20b"


@pytest.mark.parametrize("value", ["DPoP abc.def", "bearer  xyz=", "DPOP tok~en"])
def test_authorizations_same_as_function(value: str) -> None:
    memo = Authorizations(max_token_bytes=64)
    expected = parse_authorization([value], max_token_bytes=64)
    assert memo.parse([value.encode()]) == expected
    assert memo.parse([value.encode()]) == expected  # from the memo


def test_authorization_refusals_every_time_and_never_remembered() -> None:
    memo = Authorizations(max_token_bytes=8)
    for _ in range(2):
        with pytest.raises(InvalidToken) as caught:
            memo.parse([b"DPoP " + b"a" * 9])
        assert caught.value.reason == "token_too_long"
        with pytest.raises(AuthenticationRequired):
            memo.parse([b"Basic abc"])
        with pytest.raises(InvalidRequest):
            memo.parse([b"DPoP a", b"DPoP a"])
        with pytest.raises(AuthenticationRequired):
            memo.parse([])
    assert memo == {}


def test_authorizations_bounded() -> None:
    memo = Authorizations(max_token_bytes=64, maxsize=2)
    for i in range(5):
        memo.parse([f"DPoP t{i}".encode()])
        assert len(memo) <= 2


def test_middleware_keys_its_shapes_by_key_of() -> None:
    """The middleware builds the memo key inline: it is RequestShapes.key_of's, for a
    request with and without raw_path and root_path."""
    import asyncio

    from dpop_guard.middleware import DPoPGuardMiddleware

    async def app(scope: object, receive: object, send: object) -> None:
        return None

    async def send(message: object) -> None:
        return None

    async def receive() -> dict[str, object]:
        return {"type": "http.request"}

    never_called = cast(Introspector, object())  # public routes only
    guard = DPoPGuardMiddleware(
        app, introspector=never_called, settings=GuardSettings(routes=ROUTES)
    )
    scopes: list[dict[str, Any]] = [
        {"type": "http", "method": "GET", "path": "/health", "headers": []},
        {**scope(b"/health?x=1", "/mnt"), "method": "GET", "headers": []},
    ]
    for one in scopes:
        asyncio.run(guard(one, receive, send))
    assert list(guard._shapes) == [RequestShapes.key_of(s, "GET", False) for s in scopes]
