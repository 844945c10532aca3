"""The documentation's examples, run: a page opts a fenced block in with an HTML comment on
the line before it (blank lines allowed), which the built site does not show.

- ``<!-- run -->`` before a ````python`` block: the block is executed. A page's blocks run
  in the page's order, in one namespace, in a fresh temporary working directory, with every
  ``DPOP_GUARD_*``/``AUTHLETE_*`` variable removed but ``DPOP_GUARD_DEVELOPMENT_SIMULATOR=1``
  (the embedded Authlete simulator).
- ``<!-- file: NAME -->`` before any block: the block is written to ``NAME`` in that
  directory (an ``app.py`` that a later ``serve`` block imports, a ``.env``).
- ``<!-- serve -->`` before a ````sh`` block of the form
  ``[VAR=value ...] uvicorn module:attribute [--port N] [--factory]``: the module is imported
  (from the page's directory, else from the installed packages) with exactly those
  ``DPOP_GUARD_*``/``AUTHLETE_*`` variables set and no others, and served by a real uvicorn
  on a free loopback port until the page ends. Later blocks that name ``127.0.0.1:N`` or
  ``localhost:N`` reach that server instead.

Every page under ``docs/`` and the README is read; a marker that is not followed by a block,
or a ``serve`` line the runner cannot honour exactly, fails the test rather than running
something else. Pages whose examples serve are marked ``e2e`` (a real uvicorn).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shlex
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests._support.servers import ServerThread

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [*sorted(DOCS.rglob("*.md")), ROOT / "README.md"]
# Pages that must hold at least one example the runner executes.
RUNNABLE_PAGES = frozenset(
    {
        "checks.md",
        "fapi2.md",
        "frameworks.md",
        "index.md",
        "metadata.md",
        "mtls.md",
        "nonces.md",
        "observability.md",
        "policy.md",
        "simulator.md",
        "usage.md",
    }
)

_MARK = re.compile(r"<!--\s*(?:(run)|(serve)|file:\s*(\S+))\s*-->")
_FENCE = re.compile(r"(`{3,}|~{3,})\s*([\w+-]*)(?:\s+\S.*)?")  # ```python title="app.py"
_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.DOTALL)
_CONFIGURATION = ("DPOP_GUARD_", "AUTHLETE_")
_LOGGERS = (
    "",
    "dpop_guard",
    "dpop_guard.introspection",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
)
# What a page's ``run`` blocks see until a ``serve`` block sets its own: a development
# checkout's environment, the embedded Authlete simulator switched on by name.
ENVIRONMENT = {"DPOP_GUARD_DEVELOPMENT_SIMULATOR": "1"}


@dataclass(frozen=True)
class Block:
    """One marked fenced block: ``kind`` is ``run``, ``serve`` or ``file``."""

    page: Path
    line: int
    kind: str
    name: str
    language: str
    code: str

    @property
    def where(self) -> str:
        page = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page
        return f"{page}:{self.line}"


def marked_blocks(page: Path) -> list[Block]:
    """The page's marked blocks in order; a marker without a block is an error."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    for index, line in enumerate(lines):
        mark = _MARK.fullmatch(line.strip())
        if mark is None:
            continue
        start = index + 1
        while start < len(lines) and not lines[start].strip():
            start += 1
        fence = _FENCE.fullmatch(lines[start].strip()) if start < len(lines) else None
        if fence is None:
            raise AssertionError(f"{page}:{index + 1}: {line.strip()} is not followed by a block")
        indent = len(lines[start]) - len(lines[start].lstrip())
        end = start + 1
        while end < len(lines) and lines[end].strip() != fence[1]:
            end += 1
        if end == len(lines):
            raise AssertionError(f"{page}:{start + 1}: the block is never closed")
        code = "\n".join(text[indent:] for text in lines[start + 1 : end]) + "\n"
        kind = "run" if mark[1] else "serve" if mark[2] else "file"
        found.append(Block(page, start + 2, kind, mark[3] or "", fence[2], code))
    return found


@dataclass(frozen=True)
class ServeCommand:
    """``[VAR=value ...] uvicorn module:attribute [--port N] [--factory]``, parsed."""

    environment: dict[str, str]
    target: str
    port: int
    factory: bool


def parse_serve(block: Block) -> ServeCommand:
    words = shlex.split(block.code.replace("\\\n", " "), comments=True)
    environment: dict[str, str] = {}
    while words and (assignment := _ASSIGNMENT.fullmatch(words[0])):
        environment[assignment[1]] = assignment[2]
        words.pop(0)
    if not words or words.pop(0) != "uvicorn":
        raise AssertionError(f"{block.where}: not `[VAR=value ...] uvicorn module:app`")
    targets, port, factory = [], 8000, False
    while words:
        word = words.pop(0)
        if word == "--port" and words:
            port = int(words.pop(0))
        elif word == "--factory":
            factory = True
        elif not word.startswith("-") and ":" in word:
            targets.append(word)
        else:
            raise AssertionError(f"{block.where}: the runner cannot honour {word!r}")
    if len(targets) != 1:
        raise AssertionError(f"{block.where}: not `[VAR=value ...] uvicorn module:app`")
    target = targets[0]
    return ServeCommand(environment, target, port, factory)


def load_app(command: ServeCommand, directory: Path) -> Any:
    """A fresh copy of the module (its settings are read at import), not ``sys.modules``'."""
    module_name, _, attribute = command.target.partition(":")
    local = directory / (module_name.replace(".", "/") + ".py")
    if local.exists():
        spec = importlib.util.spec_from_file_location(f"_docs_example_{module_name}", local)
    else:
        found = importlib.util.find_spec(module_name)
        spec = None if found is None or found.origin is None else found
    if spec is None or spec.loader is None:
        raise AssertionError(f"cannot import {module_name}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    app = getattr(module, attribute)
    return app() if command.factory else app


class _Deferred:
    """The ASGI app a server is created with before the example's app is imported (the
    import reads ``DPOP_GUARD_PUBLIC_URL``, which holds the server's port)."""

    app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


class PageRun:
    """Runs one page's blocks: a namespace, a directory, the servers it started."""

    def __init__(self, page: Path, directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.page = page
        self.directory = directory
        self.monkeypatch = monkeypatch
        self.servers: list[ServerThread] = []
        self.addresses: dict[str, str] = {}
        self.module = types.ModuleType(f"_docs_example_{page.stem.replace('-', '_')}")
        self.module.__file__ = str(directory / "example.py")

    def reach(self, code: str) -> str:
        for documented, real in self.addresses.items():
            code = code.replace(documented, real)
        return code

    def run(self, block: Block) -> None:
        if block.kind == "file":
            (self.directory / block.name).write_text(self.reach(block.code), encoding="utf-8")
        elif block.kind == "serve":
            self.serve(parse_serve(block))
        elif block.language not in ("python", "py"):
            raise AssertionError(f"{block.where}: `run` executes python blocks only")
        else:
            code = compile(self.reach(block.code), block.where, "exec")
            exec(code, self.module.__dict__)  # noqa: S102 - the documentation's own example

    def serve(self, command: ServeCommand) -> None:
        for name in list(os.environ):
            if name.startswith(_CONFIGURATION):
                self.monkeypatch.delenv(name)
        app = _Deferred()
        server = ServerThread(app)
        for host in ("127.0.0.1", "localhost"):
            self.addresses[f"{host}:{command.port}"] = server.address
        for name, value in command.environment.items():
            self.monkeypatch.setenv(name, self.reach(value))  # DPOP_GUARD_PUBLIC_URL
        app.app = load_app(command, self.directory)
        self.servers.append(server.start())

    def close(self) -> None:
        for server in reversed(self.servers):
            server.stop()


def _param(page: Path) -> Any:
    blocks = marked_blocks(page)
    marks = [pytest.mark.e2e] if any(block.kind == "serve" for block in blocks) else []
    return pytest.param(page, marks=marks, id=str(page.relative_to(ROOT)))


@pytest.fixture(name="page_run")
def _page_run(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PageRun]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in list(os.environ):
        if name.startswith(_CONFIGURATION):
            monkeypatch.delenv(name)
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    run = PageRun(request.param, tmp_path, monkeypatch)
    sys.modules[run.module.__name__] = run.module
    # An example may configure logging, as a program would; the next test gets it back.
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    saved = [(logger.handlers[:], logger.level, logger.propagate) for logger in loggers]
    try:
        yield run
    finally:
        run.close()
        del sys.modules[run.module.__name__]
        for logger, (handlers, level, propagate) in zip(loggers, saved, strict=True):
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate


@pytest.mark.parametrize(
    "page_run",
    [_param(page) for page in PAGES if any(True for _ in marked_blocks(page))],
    indirect=True,
)
def test_page_examples_run(page_run: PageRun) -> None:
    """Each marked block of the page runs without raising (its own asserts included)."""
    for block in marked_blocks(page_run.page):
        page_run.run(block)


@pytest.mark.parametrize("name", sorted(RUNNABLE_PAGES))
def test_page_has_a_runnable_example(name: str) -> None:
    assert any(block.kind == "run" for block in marked_blocks(DOCS / name)), name


def test_a_marker_without_a_block_is_an_error(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- run -->\n\nText, not a block.\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="not followed by a block"):
        marked_blocks(page)


def test_a_block_with_attributes_and_indentation_is_read(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        '- a step:\n\n    <!-- run -->\n    ```python title="x.py"\n    x = 1\n    ```\n',
        encoding="utf-8",
    )
    (block,) = marked_blocks(page)
    assert (block.kind, block.language, block.code) == ("run", "python", "x = 1\n")


def test_a_failing_example_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- run -->\n```python\nassert 1 + 1 == 3\n```\n", encoding="utf-8")
    run = PageRun(page, tmp_path, monkeypatch)
    (block,) = marked_blocks(page)
    with pytest.raises(AssertionError):
        run.run(Block(page, block.line, block.kind, block.name, block.language, block.code))


@pytest.mark.parametrize(
    ("line", "refusal"),
    [
        ("uvicorn app:app --reload", "cannot honour '--reload'"),
        ("gunicorn app:app", "not `"),
        ("X=1 uvicorn app", "cannot honour 'app'"),
        ("X=1 uvicorn", "not `"),
    ],
)
def test_a_serve_line_the_runner_cannot_honour_fails(
    tmp_path: Path, line: str, refusal: str
) -> None:
    block = Block(tmp_path / "page.md", 1, "serve", "", "sh", line + "\n")
    with pytest.raises(AssertionError, match=re.escape(refusal)):
        parse_serve(block)


def test_a_serve_line_is_parsed() -> None:
    block = Block(
        DOCS / "index.md",
        1,
        "serve",
        "",
        "sh",
        "DPOP_GUARD_DEVELOPMENT_SIMULATOR=1 \\\n  uvicorn --factory app:app --port 8001\n",
    )
    assert parse_serve(block) == ServeCommand(
        {"DPOP_GUARD_DEVELOPMENT_SIMULATOR": "1"}, "app:app", 8001, True
    )
