"""The benchmark code runs (tiny sizes; figures come from `make bench`, never from tests)."""

from __future__ import annotations

from benchmarks.__main__ import asgi, micro


def test_micro_runs() -> None:
    """Every variant of every algorithm produces a row."""
    rows = micro(20, 1)
    assert {(r["scenario"], r["variant"]) for r in rows} >= {("verify ES256", "dpop_guard")}
    assert len(rows) == 9


async def test_asgi_runs() -> None:
    """The in-process request scenarios all answer 200 (asserted inside)."""
    rows = await asgi(20, 1)
    assert {r["variant"] for r in rows} >= {"bare", "cache_hit", "cache_miss"}
