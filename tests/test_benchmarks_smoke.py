"""The benchmark code runs (tiny sizes; figures come from `make bench`, never from tests)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.micro import asgi, micro


def test_micro_runs() -> None:
    """Every variant of every algorithm produces a row."""
    rows = micro(20, 1)
    assert {(r["scenario"], r["variant"]) for r in rows} >= {
        ("verify ES256", "dpop_guard"),
        ("verify PS256", "raw verify (floor)"),
    }


async def test_asgi_runs() -> None:
    """The in-process request scenarios all answer 200 (asserted inside)."""
    rows = await asgi(20, 1)
    assert {r["variant"] for r in rows} >= {"bare ASGI endpoint", "cache hit"}


def test_report(tmp_path: Path) -> None:
    """The Markdown table and the plot are written from a result."""
    from benchmarks.micro import machine, replay_scale
    from benchmarks.report import markdown, plot

    result = {
        "machine": machine(),
        "micro": micro(10, 1, ("ES256",)) + replay_scale(100),
        "load": [],
        "load_duration_s": 0,
    }
    table = markdown(result)
    assert "| verify ES256 | dpop_guard |" in table and "B/record" in table
    plot(result, tmp_path / "plot.png")
