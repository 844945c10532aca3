"""The Markdown table and the plot of one benchmark run, and where results are written."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from .load import HIT
from .micro import RESULTS


def save(name: str, result: dict[str, Any], table: str, *, show: bool = True) -> None:
    """Write ``results/<name>.json`` and ``results/<name>.md`` (``table``); with ``show``,
    print the table and what was written."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(table)
    if show:
        print(table)
        print(f"written: {RESULTS}/{name}.json, {name}.md")


def _fmt_ratio(row: dict[str, Any]) -> str:
    ratio = row.get("ratio")
    if ratio is None or ratio != ratio:
        return ""
    return f"{ratio:.2f}x {row['ratio_to']}"


def _ranged(row: dict[str, Any], key: str) -> str:
    """``0.45x (0.41-0.48)``: the median over the rounds and its range (``-``: the
    reference did not run)."""
    if key not in row:
        return "-"
    low, high = row.get(f"{key}_range", (row[key], row[key]))
    return f"{row[key]:.2f}x ({low:.2f}-{high:.2f})"


def jwt_markdown(load: list[dict[str, Any]]) -> list[str]:
    """JWT mode against the Node.js peers (issue 24 section 1): req/s with its range, and
    the ratio to the hand-written Node ``jose`` server taken within each round."""
    rows = [row for row in load if "ratio_to_node_jose" in row]
    if not rows:
        return []
    lines = [
        "",
        "JWT access tokens (RFC 9068) with a fresh DPoP proof per request, same run: "
        "dpop_guard in jwt mode (uvicorn) and the Node.js peers (node:http), one process each.",
        "",
        "| scenario | req/s (range) | vs Node jose | server CPU µs/req | p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        low, high = row["rps_range"]
        lines.append(
            f"| {row['scenario']} | {row['rps']:.0f} ({low:.0f}-{high:.0f}) | "
            f"{_ranged(row, 'ratio_to_node_jose')} | {row['server_cpu_us_per_request']:.0f} | "
            f"{row['p99_us'] / 1000:.1f} |"
        )
    return lines


def miss_markdown(load: list[dict[str, Any]]) -> list[str]:
    """What a cache miss costs (issue 24 section 2): server CPU per miss in hits of server
    CPU, taken within each round, and Authlete calls per miss."""
    hits = next((row for row in load if row["scenario"] == HIT), None)
    misses = [row for row in load if row["scenario"].startswith("cache miss")]
    if hits is None or not misses:
        return []
    lines = [
        "",
        "A cache miss in cache hits of server CPU (each round's miss CPU per request over the "
        "same round's hit CPU per request; medians and ranges):",
        "",
        "| scenario | server CPU µs/miss | in hits | Authlete calls per miss |",
        "|---|---:|---:|---:|",
    ]
    for row in misses:
        ratios = [
            run["server_cpu_us_per_request"] / hit["server_cpu_us_per_request"]
            for run, hit in zip(row["runs"], hits["runs"], strict=True)
        ]
        calls = [run["authlete_calls"] / max(1, run["requests"]) for run in row["runs"]]
        lines.append(
            f"| {row['scenario']} | {row['server_cpu_us_per_request']:.0f} | "
            f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) | "
            f"{statistics.median(calls):.2f} |"
        )
    return lines


def markdown(result: dict[str, Any]) -> str:
    info = result["machine"]
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}, "
        f"cryptography {info['cryptography']}, joserfc {info['joserfc']}, "
        f"starlette {info['starlette']}, httpx {info['httpx']}"
        + (" (quick run)" if result.get("quick") else ""),
        "",
        "| scenario | variant | median µs | spread | vs floor |",
        "|---|---|---:|---:|---:|",
    ]
    for row in result["micro"]:
        extra = _fmt_ratio(row)
        if "worst_call_ms" in row:
            per = row["bytes_per_record"]
            extra = f"worst call {row['worst_call_ms']:.2f} ms" + (
                "" if per != per else f", {per:.0f} B/record"
            )
        lines.append(
            f"| {row['scenario']} | {row['variant']} | {row['median_us']:.1f} | "
            f"{row['spread']:.0%} | {extra} |"
        )
    if result.get("instructions"):
        from .instructions import markdown as instructions_markdown

        lines += ["", instructions_markdown(result["instructions"]).rstrip()]
    if result["load"]:
        rounds = result.get("load_rounds", 1)
        stack = result["load"][0].get("stack", "uvicorn")
        lines += [
            "",
            f"Load: {stack}; uvicorn (1 worker unless noted) pinned to core 0, wrk (1 thread, "
            f"32 connections, {result['load_duration_s']} s per run) and the simulator on "
            f"core 1; a distinct fresh proof per request. {rounds} interleaved rounds "
            "(A B C ... C B A): medians, and each ratio's range over the rounds.",
            "",
            "| scenario | req/s | vs bare | vs ceiling | p50 ms | p99 ms | p99.9 ms | non-2xx "
            "| Authlete calls | server CPU µs/req | wrk CPU |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in result["load"]:
            lines.append(
                f"| {row['scenario']} | {row['rps']:.0f} | {_ranged(row, 'ratio_to_bare')} | "
                f"{_ranged(row, 'ratio_to_ceiling')} | "
                f"{row['p50_us'] / 1000:.1f} | {row['p99_us'] / 1000:.1f} | "
                f"{row['p999_us'] / 1000:.1f} | {row['non_2xx'] + row['socket_errors']:.0f} | "
                f"{row['authlete_calls']:.0f} | {row['server_cpu_us_per_request']:.0f} | "
                f"{row['generator_cpu']:.0%} |"
            )
        lines += miss_markdown(result["load"])
        lines += jwt_markdown(result["load"])
    if result.get("tail"):
        from .tail import markdown as tail_markdown

        lines += ["", tail_markdown(result["tail"]).rstrip()]
    if result.get("fleet"):
        from .fleet import markdown as fleet_markdown

        lines += ["", fleet_markdown(result["fleet"]).rstrip()]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    """A two-panel PNG: verification vs the floor, and load req/s vs the bare endpoint.
    Skipped (with a note) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (make bench installs it)")
        return
    verify = [r for r in result["micro"] if r["scenario"].startswith("verify")]
    counts = result.get("instructions")
    panels = 1 + bool(result["load"]) + bool(counts)
    fig, axes = plt.subplots(1, panels, figsize=(7 * panels, 5), squeeze=False)
    ax = axes[0][0]
    labels = [f"{r['scenario'][7:]} {r['variant']}" for r in verify]
    ax.barh(
        labels,
        [r["ratio"] for r in verify],
        color=[
            "#999"
            if "floor" in r["variant"]
            else "#2a7"
            if r["variant"] == "dpop_guard"
            else "#c66"
            for r in verify
        ],
    )
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("time per proof, x the raw signature verify")
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title("Proof verification vs the floor")
    if result["load"]:
        ax = axes[0][1]
        load = result["load"]
        medians = [r["rps"] for r in load]
        ranges = [r.get("rps_range", (r["rps"], r["rps"])) for r in load]
        ax.barh(
            [r["scenario"] for r in load],
            medians,
            xerr=[
                [m - lo for m, (lo, _) in zip(medians, ranges, strict=True)],
                [hi - m for m, (_, hi) in zip(medians, ranges, strict=True)],
            ],
            color="#47a",
            ecolor="black",
            capsize=3,
        )
        for i, r in enumerate(load):
            ax.text(
                ranges[i][1],
                i,
                f" {r['rps']:.0f} ({r.get('ratio_to_bare', float('nan')):.2f}x bare, "
                f"{r.get('ratio_to_ceiling', float('nan')):.2f}x ceiling)",
                va="center",
                fontsize=7,
            )
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlabel(
            f"requests/s, median and range of {result.get('load_rounds', 1)} interleaved rounds"
        )
        ax.set_title(f"Load: {load[0].get('stack', 'uvicorn')}", fontsize=8)
    if counts:
        ax = axes[0][panels - 1]
        unit = counts["raw_es256_verify_instructions"]
        rows = counts["rows"]
        ax.barh(
            [r["scenario"] for r in rows],
            [r["instructions_per_request"] / unit for r in rows],
            color=["#2a7" if r["scenario"] in ("hit", "miss") else "#999" for r in rows],
        )
        for i, r in enumerate(rows):
            ax.text(
                r["instructions_per_request"] / unit,
                i,
                f" {r['instructions_per_request']:,.0f} (spread {r['spread']:.2%})",
                va="center",
                fontsize=7,
            )
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlabel("instructions per request, x one raw ES256 verify (callgrind)")
        ax.set_title(f"Instructions ({counts['runs']} runs, deterministic)")
    info = result["machine"]
    fig.suptitle(
        f"dpop_guard - {info['cpu']}, {info['cores']} cores, Python {info['python']}", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
