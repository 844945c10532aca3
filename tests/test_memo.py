"""The memoised request shapes (route, policy, target, htu) and Authorization parses: the
same answers as the functions they remember, bounded, and refusals never remembered."""

from __future__ import annotations

import gc
import logging
import sys
import tracemalloc
from collections.abc import Iterator, MutableMapping
from typing import Any, cast

import pytest

from dpop_guard._authorization import parse_authorization
from dpop_guard._binding import policy_for
from dpop_guard._memo import MAX_REMEMBERED, MEMO_BUDGET, Authorizations, Memo, RequestShapes
from dpop_guard._target import request_target_path
from dpop_guard.errors import AuthenticationRequired, InvalidRequest, InvalidToken
from dpop_guard.introspection import Introspector
from dpop_guard.middleware import DPoPGuardMiddleware
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


def shapes(budget: int = MEMO_BUDGET, public_url: str | None = None) -> RequestShapes:
    policies = {id(r): policy_for(r, GuardSettings(routes=ROUTES)) for r in ROUTES}
    default = policy_for(None, GuardSettings(routes=ROUTES))
    return RequestShapes(
        ROUTES,
        lambda route: default if route is None else policies[id(route)],
        public_url=public_url,
        serves_metadata=lambda path, method: path == "/.well-known/meta" and method == "GET",
        budget=budget,
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
        shape = memo.shape(scope(path.encode()), method, False)
        assert shape.kind == ("public" if public else "protected")
        assert shape.route is (route if public or route is None or not route.public else None)
        assert (shape.policy is None) == public
        assert shape.path == path


def test_metadata_first_and_never_for_websockets() -> None:
    """The RFC 9728 document is answered before any rule is read; a websocket never gets it."""
    memo = shapes()
    assert memo.shape(scope(b"/.well-known/meta"), "GET", False).kind == "metadata"
    assert memo.shape(scope(b"/.well-known/meta"), "GET", True).kind == "protected"


def test_control_characters_refused_every_time() -> None:
    """A path with a control character is refused on each request, never remembered."""
    memo = shapes()
    for _ in range(2):
        with pytest.raises(InvalidRequest) as refused:
            memo.shape(
                {"type": "http", "path": "/health\n", "raw_path": b"/health%0A"}, "GET", False
            )
        assert refused.value.reason == "path_control_character"
    assert len(memo) == 0


def test_invalid_targets_refused_every_time() -> None:
    """A target with "#" is refused on each request, public rule or not, never remembered."""
    memo = shapes()
    for raw in (b"/accounts#frag", b"/health#x"):
        for _ in range(2):
            with pytest.raises(InvalidRequest) as refused:
                memo.shape(scope(raw), "GET", False)
            assert refused.value.reason == "request_target_invalid"
    assert len(memo) == 0


def test_memo_bounded_in_bytes() -> None:
    """Endless new request lines never grow the memo past its budget in bytes."""
    memo = shapes(budget=16_384)
    for i in range(1000):
        memo.shape(scope(f"/p{i}?q=1".encode()), "GET", False)
        assert memo._memo.held <= 16_384
    assert 0 < len(memo) < 1000


def test_long_request_lines_decided_every_time_and_never_remembered() -> None:
    """A request line over MAX_REMEMBERED characters is decided afresh, the same way."""
    memo = shapes()
    long = b"/accounts/" + b"a" * MAX_REMEMBERED
    first = memo.shape(scope(long), "GET", False)
    assert memo.shape(scope(long), "GET", False) == first
    assert first.kind == "protected" and len(memo) == 0


def test_target_and_htu_under_a_public_url() -> None:
    """The target is request_target_path's (query cut), and under a public URL the htu is
    composed from it, with the mount point cut at a segment boundary."""
    memo = shapes(public_url="https://api.example.com/v2")
    for raw, root, htu in (
        (b"/accounts?x=1", "", "https://api.example.com/v2/accounts"),
        (b"/accounts", "/mnt", "https://api.example.com/v2/accounts"),
        (b"/a%20b", "", "https://api.example.com/v2/a%20b"),
    ):
        shape = memo.shape(scope(raw, root), "GET", False)
        assert shape.target == request_target_path(scope(raw, root))
        assert shape.htu == htu
    assert shapes().shape(scope(b"/accounts"), "GET", False).htu is None  # from the headers


def test_target_without_raw_path() -> None:
    """A server that sends no raw_path gets the quoted path, as before."""
    shape = shapes().shape({"type": "http", "path": "/a b"}, "GET", False)
    assert shape.target == "/a%20b"


@pytest.mark.parametrize("value", ["DPoP abc.def", "bearer xyz=", "DPOP tok~en"])
def test_authorizations_same_as_function(value: str) -> None:
    memo = Authorizations(max_token_bytes=64)
    expected = parse_authorization([value], max_token_bytes=64)
    assert memo.header(value.encode(), 1) == expected
    assert memo.header(value.encode(), 1) == expected  # from the memo


def test_authorization_refusals_every_time_and_never_remembered() -> None:
    memo = Authorizations(max_token_bytes=8)
    for _ in range(2):
        with pytest.raises(InvalidToken) as caught:
            memo.header(b"DPoP " + b"a" * 9, 1)
        assert caught.value.reason == "token_too_long"
        with pytest.raises(InvalidToken) as caught:
            memo.header(b"DPoP a b", 1)
        assert caught.value.reason == "token_malformed"
        with pytest.raises(AuthenticationRequired):
            memo.header(b"Basic abc", 1)
        with pytest.raises(InvalidRequest):
            memo.header(b"DPoP a", 2)
        with pytest.raises(AuthenticationRequired):
            memo.header(b"", 0)
    assert len(memo) == 0


def test_authorizations_bounded_in_bytes() -> None:
    memo = Authorizations(max_token_bytes=4096, budget=32_768)
    for i in range(200):
        memo.header(f"DPoP {i:04d}{'t' * 1000}".encode(), 1)
        assert memo._memo.held <= 32_768
    assert 0 < len(memo) < 200


def test_memo_never_remembers_over_its_size() -> None:
    computed: list[str] = []

    def compute(key: str) -> str:
        computed.append(key)
        return key.upper()

    memo: Memo[str, str] = Memo(compute, lambda k, v: sys.getsizeof(k) + sys.getsizeof(v))
    big = "x" * (MAX_REMEMBERED + 1)
    assert memo.get(big) is None
    assert memo.remember(big, len(big)) == big.upper()
    assert memo.get(big) is None  # over the size: computed, never remembered
    assert memo.remember("ab", 2) == "AB" == memo.get("ab")
    assert computed == [big, "ab"]


def test_discard_gives_back_what_the_entry_was_charged() -> None:
    memo: Memo[str, str] = Memo(str.upper, lambda k, v: sys.getsizeof(k) + sys.getsizeof(v))
    memo.remember("ab", 2)
    held = memo.held
    memo.remember("cd", 2)
    memo.discard("cd")
    memo.discard("never-remembered")
    assert memo.get("cd") is None and memo.get("ab") == "AB"
    assert memo.held == held and len(memo) == 1
    memo.put("ab", "AB", 2)  # put again: charged once
    assert memo.held == held


# -- retained memory after a flood of maximal inputs (issue 19, section 3) ----------------

FLOOD_BOUND = 2 * MEMO_BUDGET + 512 * 1024
"""What a worker may keep after any flood: the two memos' budgets (request shapes,
Authorization values) and a margin for the dicts' own tables."""


def _flood_guard(public_url: str | None) -> DPoPGuardMiddleware:
    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("no flood request is served")

    # Every flood request is refused before any introspection (no proof comes with it),
    # so the introspector is never reached.
    unreachable = cast(Introspector, object())
    routes = (Route("/health", public=True), Route("/{rest}", scopes=("read",)))
    settings = GuardSettings(routes=routes, public_url=public_url, max_token_bytes=8192)
    return DPoPGuardMiddleware(app, introspector=unreachable, settings=settings)


def _flood_requests() -> Iterator[dict[str, Any]]:
    """Every shape of input a client controls that reaches a memo, at its largest."""
    token = "t" * (MAX_REMEMBERED - 10)  # the longest Authorization value remembered
    for i in range(300):  # 65,000-byte paths: what uvicorn with httptools accepts
        path = f"/{i:05d}" + "a" * 64_994
        yield {"path": path, "raw_path": path.encode(), "authorization": b"DPoP x"}
    for i in range(300):  # the largest remembered path, widest characters, no raw_path
        path = f"/{i:05d}" + "\U0001f600" * (MAX_REMEMBERED - 6)
        yield {"path": path, "authorization": b"DPoP x"}
    for i in range(300):  # just over the limit: decided per request
        path = f"/{i:05d}" + "b" * (MAX_REMEMBERED - 5)
        yield {"path": path, "raw_path": path.encode(), "authorization": b"DPoP x"}
    for i in range(300):  # Authorization: DPoP<60,000 spaces>token
        yield {"path": "/a", "authorization": b"DPoP" + b" " * 60_000 + b"t%05d" % i}
    for i in range(2000):  # many distinct tokens, the longest remembered
        yield {"path": "/a", "authorization": f"DPoP {i:09d}{token}".encode()}
    for i in range(600):  # many distinct tokens at the token limit
        yield {"path": "/a", "authorization": b"DPoP %09d" % i + b"u" * 8180}


@pytest.mark.parametrize("public_url", [None, "https://api.example.com/v1"])
def test_retained_memory_after_a_flood(
    public_url: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    """After a flood of maximal inputs at every memo a request reaches (request shapes,
    htu under a public URL, Authorization parses), the memory still held is bounded in
    bytes (measured with tracemalloc), whatever came. (Before the byte bounds, 1,020
    65,000-byte paths alone kept about 250 MiB.)"""
    import asyncio

    # What is measured is the guard's memory: the refusals' INFO records would otherwise be
    # kept by pytest's log capture whenever an earlier test left the logger at INFO.
    caplog.set_level(logging.WARNING, logger="dpop_guard")
    guard = _flood_guard(public_url)
    statuses: list[int] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def flood() -> None:
        for request in _flood_requests():
            scope: dict[str, Any] = {
                "type": "http",
                "method": "GET",
                "path": request["path"],
                "headers": [
                    (b"host", b"api.example.com"),
                    (b"authorization", request["authorization"]),
                ],
            }
            if "raw_path" in request:
                scope["raw_path"] = request["raw_path"]
            await guard(scope, receive, send)

    async def warm_up() -> None:
        await guard(
            {"type": "http", "method": "GET", "path": "/a", "headers": []},
            receive,
            send,
        )

    asyncio.run(warm_up())
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        asyncio.run(flood())
        statuses.clear()
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert retained < FLOOD_BOUND, f"{retained:,} bytes retained"
