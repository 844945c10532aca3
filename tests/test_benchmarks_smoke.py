"""The benchmark code runs (tiny sizes; figures come from `make bench`, never from tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

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


def test_miss_in_hits() -> None:
    """A miss's server CPU is reported in hits of the same round, with calls per miss."""
    from benchmarks.load import HIT
    from benchmarks.report import miss_markdown

    def row(name: str, cpu: list[float], calls: int) -> dict[str, object]:
        runs = [
            {"server_cpu_us_per_request": c, "authlete_calls": calls * 100, "requests": 100}
            for c in cpu
        ]
        return {"scenario": name, "server_cpu_us_per_request": sorted(cpu)[1], "runs": runs}

    table = "\n".join(
        miss_markdown([row(HIT, [100, 200, 300], 0), row("cache miss, x", [250, 400, 900], 2)])
    )
    assert "| cache miss, x | 400 | 2.50 (2.00-3.00) | 2.00 |" in table


def test_quick_covers_each_section() -> None:
    """make bench-quick: the ceiling, a hit, a miss, the JWT hit beside Node jose."""
    from benchmarks.load import CEILING, NODE_JOSE, scenarios

    names = [s.name for s in scenarios("redis://unused", quick=True)]
    assert names[0] == CEILING and NODE_JOSE in names
    assert sum(name.startswith("cache miss") for name in names) == 1
    assert any(name.startswith("JWT mode, cache hit") for name in names)


def test_proofs_needed() -> None:
    """A run's proofs: a second spare on the nominal rate, a quarter on 1.5x the rate seen."""
    from benchmarks.load import proofs_needed

    assert proofs_needed(None, 5, 4000) == 24_000
    assert proofs_needed(2000, 5, 4000) == 3000 * 5 + 750


def test_interleaved_order() -> None:
    """Rounds alternate A B C and C B A, each scenario once per round."""
    from benchmarks.load import interleaved

    order = [i for _, i in interleaved(3, 4)]
    assert order == [0, 1, 2, 2, 1, 0, 0, 1, 2, 2, 1, 0]


def test_load_refuses_a_single_round() -> None:
    """The load benchmark never reports fewer than five rounds."""
    from benchmarks.load import load

    with pytest.raises(ValueError, match="at least 5 rounds"):
        load(1, rounds=1)


async def test_instruction_child_runs() -> None:
    """Every in-process instruction scenario that needs no simulator answers 200 (asserted
    inside), and the verify loops run for each algorithm."""
    from benchmarks.instructions import ALGS, _child, _proofs, _signers

    signers = _signers()
    dumps: list[str] = []
    for name in ("bare", "bare+verify", *(f"verify {alg}" for alg in ALGS)):
        alg = name[7:] if name.startswith("verify ") else "ES256"
        data = {
            "proofs": _proofs(signers[alg], "t", 4, "x"),
            "jwk": dict(signers[alg].public_jwk),
            "token": "t",
        }
        assert await _child(name, 4, data, (2, dumps.append)) == 4
    assert dumps[:2] == ["bare:warm", "bare:measured"]


def test_instruction_summary() -> None:
    """The derived figures are the differences the issue asks for, per raw ES256 verify."""
    from benchmarks.instructions import markdown, summarise

    run = {
        "bare": 10.0,
        "bare+verify": 1010.0,
        "hit": 1210.0,
        "miss": 9010.0,
        "verify ES256": 1000.0,
        "verify PS256": 500.0,
        "verify EdDSA": 1500.0,
    }
    result = summarise([run, run], 10, 20, 1.0)
    derived = result["derived"]
    assert derived["middleware_on_hit_vs_verify (hit - bare+verify)"]["median"] == 0.2
    assert derived["middleware_on_hit_vs_verify (hit - bare - verify)"]["median"] == 0.2
    assert "| hit | 1,210 |" in markdown(result)


def test_zipf_mix() -> None:
    """The fleet's token mix is skewed towards the first tokens and repeatable."""
    from benchmarks.fleet import zipf_picks

    picks = zipf_picks(2000, 50, 1.1, seed=1)
    assert picks == zipf_picks(2000, 50, 1.1, seed=1)
    assert picks.count(0) > picks.count(49) * 5


@pytest.mark.valgrind
def test_instructions_under_callgrind(request: pytest.FixtureRequest) -> None:
    """The whole callgrind pipeline, tiny counts (about a minute: runs only when selected
    with ``-m valgrind``)."""
    from benchmarks.instructions import measure

    if "valgrind" not in (request.config.option.markexpr or ""):
        pytest.skip("about a minute under valgrind: select it with -m valgrind")
    result = measure(runs=1, small=2, large=4)
    assert {r["scenario"] for r in result["rows"]} >= {"bare", "hit", "miss", "verify PS256"}
    assert all(r["instructions_per_request"] > 0 for r in result["rows"])


def test_fleet_runs() -> None:
    """A tiny fleet run against a real Redis and the simulator: every request is answered
    200, every token used is introspected at least once, every request touches Redis."""
    from benchmarks.fleet import fleet

    result = fleet(requests=40, tokens=5, concurrency=8, sizes=(1, 2))
    assert [r["guards"] for r in result["rows"]] == [1, 2]
    for row in result["rows"]:
        assert row["non_200"] == 0 and row["requests"] == 40
        assert row["authlete_calls"] >= row["tokens_used"]
        assert row["redis_commands_per_request"] >= 1.0
        assert 0 < row["redis_round_trips_per_request"] <= row["redis_commands_per_request"]


def test_cpu_split_attributes_perf_rows() -> None:
    """perf's per-object rows are summed into the parts of the stack."""
    from benchmarks.cpu_split import OTHER, shares

    report = """# Samples: 916
    40.62%  _rust.abi3.so
    28.38%  libpython3.11.so.1.0
    25.13%  [kernel.kallsyms]
     2.65%  libc.so.6
     1.99%  loop.cpython-311-x86_64-linux-gnu.so
     0.39%  parser.cpython-311-x86_64-linux-gnu.so
     0.41%  _json.cpython-311-x86_64-linux-gnu.so
     0.07%  [vdso]
"""
    found = shares(report)
    assert found["OpenSSL (cryptography)"] == pytest.approx(0.4062)
    assert found["kernel"] == pytest.approx(0.2520)
    assert found["uvloop + httptools"] == pytest.approx(0.0238)
    assert found[OTHER] == pytest.approx(0.0041)
    assert sum(found.values()) == pytest.approx(0.9964)


def test_http_instructions_table() -> None:
    """The over-HTTP counts give the guard's share as hit - ceiling, per ceiling - bare."""
    from benchmarks.http_instructions import SCENARIOS, markdown

    counts = (240_000, 1_100_000, 1_200_000)
    rows = [
        {"scenario": s.name, "requests": 1000, "instructions_per_request": n}
        for s, n in zip(SCENARIOS, counts, strict=True)
    ]
    table = markdown({"stack": "uvicorn", "duration_s": 15, "rows": rows})
    assert "hit - ceiling = 100,000 instructions, 0.116 of the ceiling's verify" in table
