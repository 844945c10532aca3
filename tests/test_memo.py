"""The memoised route decisions and request-target checks: the same answers as the
functions they remember, bounded, and refusals never remembered."""

from __future__ import annotations

import pytest

from dpop_guard._authorization import parse_authorization
from dpop_guard._memo import PUBLIC, Authorizations, RouteDecisions, TargetPaths
from dpop_guard._target import request_target_path
from dpop_guard.errors import AuthenticationRequired, InvalidRequest, InvalidToken
from dpop_guard.routes import Route, route_for

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


@pytest.mark.parametrize(("path", "method"), CASES)
def test_same_decision_as_route_for(path: str, method: str) -> None:
    """Remembered or not, the decision is route_for's, with public dot-segment paths
    protected (no rule) and other public paths passed."""
    decisions = RouteDecisions(ROUTES)
    route = route_for(ROUTES, path, method)
    expected: object = route
    if route is not None and route.public:
        expected = None if "/.." in path or "/./" in path else PUBLIC
    assert decisions.decide(path, method) is expected
    assert decisions.decide(path, method) is expected  # from the memo


def test_control_characters_refused_every_time() -> None:
    """A path with a control character is refused on each request, never remembered."""
    decisions = RouteDecisions(ROUTES)
    for _ in range(2):
        with pytest.raises(InvalidRequest) as refused:
            decisions.decide("/health\n", "GET")
        assert refused.value.reason == "path_control_character"
    assert decisions._memo == {}


def test_route_memo_bounded() -> None:
    """Endless new paths never grow the memo past its size."""
    decisions = RouteDecisions(ROUTES, maxsize=8)
    for i in range(100):
        decisions.decide(f"/p{i}", "GET")
        assert len(decisions._memo) <= 8


def scope(raw: bytes) -> dict[str, object]:
    return {"type": "http", "path": raw.decode("latin-1"), "raw_path": raw}


def test_target_paths_same_as_function_and_bounded() -> None:
    """Valid targets give request_target_path's answer, remembered within a bound;
    invalid ones are refused every time and never remembered."""
    paths = TargetPaths(maxsize=4)
    for i in range(20):
        raw = f"/a{i}?q=1".encode()
        assert paths.path(scope(raw)) == request_target_path(scope(raw)) == f"/a{i}"
        assert len(paths._memo) <= 4
    for _ in range(2):
        with pytest.raises(InvalidRequest) as refused:
            paths.path(scope(b"/a#frag"))
        assert refused.value.reason == "request_target_invalid"
    assert b"/a#frag" not in paths._memo


def test_target_without_raw_path() -> None:
    """A server that sends no raw_path gets the quoted path, as before."""
    assert TargetPaths().path({"type": "http", "path": "/a b"}) == "/a%20b"


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
    assert memo._memo == {}


def test_authorizations_bounded() -> None:
    memo = Authorizations(max_token_bytes=64, maxsize=2)
    for i in range(5):
        memo.parse([f"DPoP t{i}".encode()])
        assert len(memo._memo) <= 2
