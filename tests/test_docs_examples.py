"""The documentation's examples run.

A page opts a fenced ``python`` block in by putting ``<!-- run -->`` (an HTML comment, which
the site does not show) on the line just before the fence. The marked blocks of one page
run in order, in one namespace, like the cells of a notebook: a later block can call the
app an earlier one built. They run in this process, with the environment of a development
checkout and nothing else: every ``DPOP_GUARD_*`` and ``AUTHLETE_*`` variable removed, then
``DPOP_GUARD_DEVELOPMENT_SIMULATOR=1`` (the embedded Authlete simulator). A block shows what
it expects with plain ``assert`` statements; an exception, or a warning (the suite turns
them into errors), fails the page, with the traceback pointing at the page's line.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MARKER = "<!-- run -->"
_FENCE = re.compile(r"^(`{3,}|~{3,})\s*(\S*)")
ENVIRONMENT = {"DPOP_GUARD_DEVELOPMENT_SIMULATOR": "1"}


def runnable_blocks(text: str) -> list[tuple[int, str]]:
    """The ``(first line, code)`` of each fenced python block preceded by the marker.

    :raises ValueError: a marker not followed by a python fence, or a fence left open.
    """
    lines = text.splitlines()
    blocks: list[tuple[int, str]] = []
    index = 0
    while index < len(lines):
        if lines[index].strip() != MARKER:
            index += 1
            continue
        fence = _FENCE.match(lines[index + 1]) if index + 1 < len(lines) else None
        if fence is None or fence.group(2) not in ("python", "py"):
            raise ValueError(f"line {index + 1}: {MARKER} must precede a python fence")
        start = index + 2
        end = start
        while end < len(lines) and not lines[end].startswith(fence.group(1)):
            end += 1
        if end == len(lines):
            raise ValueError(f"line {index + 2}: the fence is never closed")
        blocks.append((start + 1, "\n".join(lines[start:end]) + "\n"))
        index = end + 1
    return blocks


def pages() -> list[Path]:
    candidates = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
    return [page for page in candidates if MARKER in page.read_text(encoding="utf-8")]


def test_pages_opt_in() -> None:
    """The pages that promise runnable examples have some (the runner cannot pass by
    finding nothing)."""
    names = {page.relative_to(ROOT).as_posix() for page in pages()}
    assert {"docs/usage.md", "docs/frameworks.md"} <= names


@pytest.mark.parametrize("page", pages(), ids=lambda page: page.relative_to(ROOT).as_posix())
def test_page_runs(page: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every marked block of the page runs, in order, in one namespace."""
    for name in list(os.environ):
        if name.startswith(("DPOP_GUARD_", "AUTHLETE_")):
            monkeypatch.delenv(name)
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    blocks = runnable_blocks(page.read_text(encoding="utf-8"))
    assert blocks
    namespace: dict[str, object] = {"__name__": f"docs_example_{page.stem}"}
    filename = page.relative_to(ROOT).as_posix()
    for first_line, code in blocks:
        # Padding with newlines makes tracebacks name the page's own line numbers.
        exec(compile("\n" * (first_line - 1) + code, filename, "exec"), namespace)  # noqa: S102


class TestRunnableBlocks:
    def test_marked_blocks_only(self) -> None:
        """Only a python block right after the marker is taken, with its first line."""
        text = "\n".join(
            [
                "# Page",
                "```python",
                "skipped = 1",
                "```",
                MARKER,
                "```python",
                "taken = 2",
                "```",
                "",
                MARKER,
                "~~~~py",
                "also = 3",
                "```",
                "~~~~",
            ]
        )
        assert runnable_blocks(text) == [(7, "taken = 2\n"), (12, "also = 3\n```\n")]

    @pytest.mark.parametrize(
        "text", [MARKER, f"{MARKER}\n```sh\nls\n```", f"{MARKER}\ntext", f"{MARKER}\n```python\nx"]
    )
    def test_bad_marker(self, text: str) -> None:
        """A marker that is not followed by a closed python fence is an error, never a
        block silently skipped."""
        with pytest.raises(ValueError):
            runnable_blocks(text)
